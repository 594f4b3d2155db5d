"""Request-body schemas of the Metabase endpoints the provisioning client calls, transcribed from
Metabase's own definitions into JSON Schema (draft 2020-12) for the fake (tests/metabase_fake.py).

Metabase validates each request body against the Malli schema of its endpoint's ``defendpoint``
form (``api.macros/defendpoint``) and answers 400 with ``{"errors": {key: message},
"specific-errors": {key: [...]}}`` when the body does not conform. Two readings are transcribed,
and a body must pass both (the fake accepts only what both accept):

- the pinned release line, v0.56: Metabase's API reference for v0.56, which is its OpenAPI
  rendering of every endpoint's defendpoint schema (metabase/docs.metabase.github.io,
  ``_docs/v0.56/api.html``, "clojure -M:ee:doc api-documentation"); there every body map is open.
  Read for every endpoint but POST /api/collection and POST /api/dashboard;
- Metabase's source, ``src/metabase/<module>/api*.clj`` of metabase/metabase at the commits named
  in each citation (its master branch after v0.64): the same keys and types, and some maps closed
  (``[:map {:closed true} ...]``: unknown keys are refused), the stricter reading kept.

The source could not be read at the release tag itself: a snapshot of metabase/metabase (2.8 GB)
is over what these machines can fetch, and the public file index holds master's versions. So
each schema names both readings; README, "Metabase", says what that leaves unverified.

Rules that no schema here can state are named where they are enforced: dashboard-card ids
unique (``ms/maps-with-unique-key``, a keyword of its own below); the engine, password and locale
predicates are transcribed as their documented outcome (each cites what it stands for)."""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema import Draft202012Validator

RELEASE = "v0.56.9"
RELEASE_LINE = "v0.56"
V056 = "metabase/docs.metabase.github.io _docs/v0.56/api.html (OpenAPI of the v0.56 defendpoint schemas)"


def _master(path: str, commit: str) -> str:
    return f"metabase/metabase {path} @ {commit} (master)"


SETUP = _master("src/metabase/setup_rest/api.clj", "038837f3b80daf0ce7ddcff13b46d816da872bc4")
SESSION = _master("src/metabase/session/api.clj", "9c25e6e0c64b58023bd3f8a40b626e493ba9e9e8")
DATABASE = _master("src/metabase/warehouses_rest/api.clj", "004f0ce656e42aade438e58c78c39878f6d30605")
TABLE = _master("src/metabase/warehouse_schema_rest/api/table.clj", "eb7cd25703c69949d81b892d796be78a8dc82401")
FIELD = _master("src/metabase/warehouse_schema_rest/api/field.clj", "7daaac5945ea2ca0453c3f1278a8056073b3ab18")
COLLECTION = _master("src/metabase/collections_rest/api.clj", "00f7311ce8e270337507b6ccff0e2452719e11ea")
CARD = _master("src/metabase/queries_rest/api/card.clj", "00f456610872646e9938b3df5c46e891f481b39d")
DASHBOARD = _master("src/metabase/dashboards_rest/api.clj", "0085ec32cfbcf177a60b4bb864174d9d3f2ead64")

# -- Metabase's schema vocabulary (metabase.util.malli.schema, ``ms/``), with its API error messages
NON_BLANK = {"type": "string", "pattern": r"\S", "description": "value must be a non-blank string."}
POSITIVE_INT = {"type": "integer", "minimum": 1, "description": "value must be an integer greater than zero."}
NON_NEGATIVE_INT = {"type": "integer", "minimum": 0,
                    "description": "value must be an integer greater or equal to than zero."}
INT = {"type": "integer", "description": "value must be an integer."}
MAP = {"type": "object", "description": "Value must be a map."}
BOOLEAN = {"type": "boolean"}
STRING = {"type": "string"}


def maybe(schema: dict) -> dict:
    """Malli ``[:maybe s]``: s or null."""
    return {"anyOf": [schema, {"type": "null"}], **({"description": schema["description"]}
                                                    if "description" in schema else {})}


# ms/Email is u/email?; ms/ValidPassword is u.password/is-valid? whose default complexity
# (MB_PASSWORD_COMPLEXITY=normal) asks for 6 characters and a digit (the list of common passwords
# it also refuses is not transcribed); ms/ValidLocale is a locale Metabase ships (en, pt_BR, ...)
EMAIL = {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "description": "value must be a valid email address."}
PASSWORD = {"type": "string", "minLength": 6, "pattern": r"[0-9]", "description": "password is too common."}
LOCALE = {"type": "string", "pattern": r"^[a-z]{2}(_[A-Z]{2})?$",
          "description": "String must be a valid two-letter ISO language or language-country code e.g. 'en' or 'en_US'."}

# DBEngineString: a non-blank string naming a registered driver ((driver/the-driver engine)); the
# image registers the built-in h2, mysql and postgres and the drivers under modules/drivers
ENGINES = ["athena", "bigquery-cloud-sdk", "clickhouse", "databricks", "druid", "druid-jdbc", "h2", "mongo",
           "mysql", "oracle", "postgres", "presto-jdbc", "redshift", "snowflake", "sparksql", "sqlite",
           "sqlserver", "starburst", "vertica"]
ENGINE = {"type": "string", "enum": ENGINES, "description": "value must be a valid database engine."}

CARD_TYPE = {"type": "string", "enum": ["question", "metric", "model"]}  # ::queries.schema/card-type
PARAMETER_MAPPING = {"type": "object", "properties": {"parameter_id": NON_BLANK, "target": {}},
                     "required": ["parameter_id", "target"]}


def body(endpoint: str, sources: list[str], properties: dict[str, dict], required: tuple[str, ...] = (),
         closed: bool = False, **extra: Any) -> dict:
    """A request-body schema, its citation in ``$comment``. ``closed``: Malli's {:closed true}."""
    schema = {"$comment": f"{endpoint}: " + "; ".join(sources), "type": "object", "properties": properties,
              "required": list(required), **extra}
    if closed:
        schema["additionalProperties"] = False
    return schema


SCHEMAS: dict[str, dict] = {
    "POST /api/setup": body("POST /api/setup", [V056, SETUP], {
        "token": NON_BLANK,
        "user": {**MAP, "properties": {
            "email": EMAIL, "password": PASSWORD, "first_name": maybe(NON_BLANK), "last_name": maybe(NON_BLANK),
            "site_name": maybe(STRING), "password_confirm": maybe(STRING)},
            "required": ["email", "password"]},
        "prefs": {**MAP, "properties": {
            "site_name": NON_BLANK, "site_locale": maybe(LOCALE),
            "allow_tracking": maybe({"type": ["boolean", "string"]})},
            "required": ["site_name"]},
        "database": maybe(MAP),
    }, required=("token", "user", "prefs")),

    "POST /api/session": body("POST /api/session", [V056, SESSION], {
        "username": NON_BLANK, "password": NON_BLANK}, required=("username", "password")),

    "POST /api/database": body("POST /api/database", [V056, DATABASE], {
        "name": NON_BLANK, "engine": ENGINE, "details": MAP,
        "is_full_sync": maybe(BOOLEAN), "is_on_demand": maybe(BOOLEAN), "schedules": maybe(MAP),
        "auto_run_queries": maybe(BOOLEAN), "cache_ttl": maybe(POSITIVE_INT),
        "connection_source": maybe({"type": "string", "enum": ["admin", "setup"]}),
        "provider_name": maybe(STRING),
    }, required=("name", "engine", "details")),

    "PUT /api/database/:id": body("PUT /api/database/:id", [V056, DATABASE], {
        "name": maybe(NON_BLANK), "engine": maybe(ENGINE), "refingerprint": maybe(BOOLEAN),
        "details": maybe(MAP), "write_data_details": maybe(MAP), "schedules": maybe(MAP),
        "is_full_sync": maybe(BOOLEAN), "is_on_demand": maybe(BOOLEAN), "description": maybe(STRING),
        "caveats": maybe(STRING), "points_of_interest": maybe(STRING), "auto_run_queries": maybe(BOOLEAN),
        "cache_ttl": maybe(POSITIVE_INT), "provider_name": maybe(STRING), "settings": maybe(MAP),
        "is_stub": maybe(BOOLEAN),
    }, closed=True),

    # TableVisibilityType and FieldOrder: the Table model's visibility-types #{:hidden :technical
    # :cruft} and field-orderings (metabase/metabase src/metabase/warehouse_schema/models/table.clj)
    "PUT /api/table/:id": body("PUT /api/table/:id", [V056, TABLE], {
        "display_name": maybe(NON_BLANK), "entity_type": maybe(STRING),
        "visibility_type": maybe({"type": "string", "enum": ["hidden", "technical", "cruft"]}),
        "description": maybe(STRING), "caveats": maybe(STRING), "points_of_interest": maybe(STRING),
        "show_in_getting_started": maybe(BOOLEAN),
        "field_order": maybe({"type": "string", "enum": ["alphabetical", "custom", "database", "smart"]}),
    }),

    "PUT /api/field/:id": body("PUT /api/field/:id", [V056, FIELD], {
        "caveats": maybe(NON_BLANK), "description": maybe(NON_BLANK), "display_name": maybe(NON_BLANK),
        "fk_target_field_id": maybe(POSITIVE_INT), "points_of_interest": maybe(NON_BLANK),
        "semantic_type": maybe(STRING), "coercion_strategy": maybe(STRING),
        "visibility_type": maybe({"type": "string", "enum": ["details-only", "hidden", "normal", "retired", "sensitive"]}),
        "has_field_values": maybe(STRING), "settings": maybe(MAP),
        "nfc_path": maybe({"type": "array", "items": NON_BLANK}), "json_unfolding": maybe(BOOLEAN),
    }),

    "POST /api/collection": body("POST /api/collection", [COLLECTION], {
        "name": NON_BLANK, "description": maybe(NON_BLANK), "parent_id": maybe(POSITIVE_INT),
        "namespace": maybe(NON_BLANK), "authority_level": maybe({"type": "string", "enum": ["official"]}),
    }, required=("name",)),

    "PUT /api/collection/:id": body("PUT /api/collection/:id", [V056, COLLECTION], {
        "name": maybe(NON_BLANK), "description": maybe(NON_BLANK), "archived": maybe(BOOLEAN),
        "parent_id": maybe(POSITIVE_INT), "type": maybe(STRING),
        "authority_level": maybe({"type": "string", "enum": ["official"]}),
    }),

    # CardCreateSchema: collection_id is a positive integer in v0.56 and also a NanoID on master;
    # only what both accept is accepted
    "POST /api/card": body("POST /api/card", [V056, CARD], {
        "name": NON_BLANK, "type": maybe(CARD_TYPE), "dataset_query": MAP, "entity_id": maybe(NON_BLANK),
        "parameters": maybe({"type": "array"}), "parameter_mappings": maybe({"type": "array"}),
        "description": maybe(NON_BLANK), "display": NON_BLANK, "visualization_settings": MAP,
        "collection_id": maybe(POSITIVE_INT), "collection_position": maybe(POSITIVE_INT),
        "result_metadata": maybe({"type": "array"}), "cache_ttl": maybe(POSITIVE_INT),
        "dashboard_id": maybe(POSITIVE_INT), "dashboard_tab_id": maybe(POSITIVE_INT),
    }, required=("name", "dataset_query", "display", "visualization_settings")),

    # CardUpdateSchema: open in v0.56, {:closed true} on master
    "PUT /api/card/:id": body("PUT /api/card/:id", [V056, CARD], {
        "name": maybe(NON_BLANK), "parameters": maybe({"type": "array"}),
        "parameter_mappings": maybe({"type": "array"}), "dataset_query": maybe(MAP), "type": maybe(CARD_TYPE),
        "display": maybe(NON_BLANK), "description": maybe(STRING), "visualization_settings": maybe(MAP),
        "archived": maybe(BOOLEAN), "enable_embedding": maybe(BOOLEAN), "embedding_type": maybe(STRING),
        "embedding_params": maybe({"type": "object", "additionalProperties": {
            "type": "string", "enum": ["disabled", "enabled", "locked"]}}),
        "collection_id": maybe(POSITIVE_INT), "collection_position": maybe(POSITIVE_INT),
        "result_metadata": maybe({"type": "array"}), "cache_ttl": maybe(POSITIVE_INT),
        "collection_preview": maybe(BOOLEAN), "dashboard_id": maybe(POSITIVE_INT),
        "dashboard_tab_id": maybe(POSITIVE_INT),
    }, closed=True),

    "POST /api/dashboard": body("POST /api/dashboard", [DASHBOARD], {
        "name": NON_BLANK, "parameters": maybe({"type": "array"}), "description": maybe(STRING),
        "cache_ttl": maybe(POSITIVE_INT), "collection_id": maybe(POSITIVE_INT),
        "collection_position": maybe(POSITIVE_INT),
    }, required=("name",)),
}

# UpdatedDashboardCard ({:closed true} on master; v0.56 requires parameter_id and target in each mapping)
DASHCARD = body("dashcard of PUT /api/dashboard/:id", [V056, DASHBOARD], {
    "id": INT, "size_x": POSITIVE_INT, "size_y": POSITIVE_INT, "row": NON_NEGATIVE_INT, "col": NON_NEGATIVE_INT,
    "card_id": maybe(POSITIVE_INT), "action_id": maybe(POSITIVE_INT), "dashboard_tab_id": maybe(INT),
    "parameter_mappings": maybe({"type": "array", "items": PARAMETER_MAPPING}),
    "visualization_settings": maybe(MAP), "inline_parameters": maybe({"type": "array", "items": NON_BLANK}),
    "series": maybe({"type": "array", "items": {"type": "object", "properties": {"id": POSITIVE_INT},
                                                 "required": ["id"], "additionalProperties": False}}),
}, required=("id", "size_x", "size_y", "row", "col"), closed=True)

UNIQUE_IDS = "value must be seq of maps in which ids are unique"

# DashUpdates ({:closed true} on master)
SCHEMAS["PUT /api/dashboard/:id"] = body("PUT /api/dashboard/:id", [V056, DASHBOARD], {
    "name": maybe(NON_BLANK), "description": maybe(STRING), "caveats": maybe(STRING),
    "points_of_interest": maybe(STRING), "show_in_getting_started": maybe(BOOLEAN),
    "enable_embedding": maybe(BOOLEAN), "embedding_type": maybe(STRING), "embedding_params": maybe(MAP),
    "parameters": maybe({"type": "array"}), "position": maybe(POSITIVE_INT),
    "width": {"type": "string", "enum": ["fixed", "full"]}, "archived": maybe(BOOLEAN),
    "auto_apply_filters": maybe(BOOLEAN), "collection_id": maybe(POSITIVE_INT),
    "collection_position": maybe(POSITIVE_INT), "cache_ttl": maybe(POSITIVE_INT),
    "dashcards": maybe({"type": "array", "items": DASHCARD, "uniqueKey": "id", "description": UNIQUE_IDS}),
    "tabs": maybe({"type": "array", "uniqueKey": "id", "description": UNIQUE_IDS, "items": {
        "type": "object", "properties": {"id": INT, "name": NON_BLANK, "position": NON_NEGATIVE_INT},
        "required": ["id", "name"], "additionalProperties": False}}),
}, closed=True)


def _unique_key(validator, key, instance, schema):
    """ms/maps-with-unique-key: a sequence of maps whose ``key`` values are all different."""
    if isinstance(instance, list):
        seen = [item.get(key) for item in instance if isinstance(item, dict)]
        if len(seen) != len(set(map(repr, seen))):
            yield jsonschema.ValidationError(UNIQUE_IDS)


Validator = jsonschema.validators.extend(Draft202012Validator, {"uniqueKey": _unique_key})
for _schema in [*SCHEMAS.values(), DASHCARD]:
    Validator.check_schema(_schema)
VALIDATORS = {name: Validator(schema) for name, schema in SCHEMAS.items()}


def _specific(error: jsonschema.ValidationError) -> list[str]:
    """What failed under an ``anyOf`` (Malli's [:maybe s]): the errors of the non-null branch."""
    inner = [e for e in error.context or [] if not (e.validator == "type" and e.validator_value == "null")]
    if not inner:
        return [error.message]
    return [m for e in inner for m in _specific(e)]


def errors_of(endpoint: str, request_body: Any) -> dict | None:
    """None when ``request_body`` conforms, else Metabase's 400 body: ``errors`` maps each
    offending top-level key to its API error message, ``specific-errors`` to what failed."""
    validator = VALIDATORS[endpoint]
    properties = validator.schema["properties"]
    errors: dict[str, str] = {}
    specific: dict[str, list[str]] = {}
    for error in sorted(validator.iter_errors(request_body), key=lambda e: list(e.absolute_path)):
        if error.validator == "required" and not error.absolute_path:
            keys = [error.message.split("'")[1]]
        elif error.validator == "additionalProperties" and not error.absolute_path:
            keys = sorted(set(request_body) - set(properties))
        elif error.absolute_path:
            keys = [str(error.absolute_path[0])]
        else:
            keys = ["body"]
        top_level = error.validator in {"required", "additionalProperties"} and not error.absolute_path
        for key in keys:
            # the API error message of the innermost schema that failed (Metabase's own wording)
            message = (None if top_level else error.schema.get("description")) \
                or properties.get(key, {}).get("description")
            if error.validator == "additionalProperties" and not error.absolute_path:
                message = "disallowed key"
            errors.setdefault(key, message or error.message)
            specific.setdefault(key, []).extend(_specific(error))
    return {"errors": errors, "specific-errors": specific} if errors else None
