"""The provisioning client against a local fake of Metabase's REST API (tests/metabase_fake.py, on
127.0.0.1): it sets up a fresh Metabase, connects the warehouse as the BI role limited to
analytics, creates the collection, every card and every dashboard with valid bodies, and a second
run creates and changes nothing. Never run against a real Metabase (none can be downloaded here)."""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from tests.metabase_api_schemas import RELEASE, SCHEMAS, errors_of
from tests.metabase_fake import FakeMetabase, FakeServer
from voice_analytics_dagster.defs.bi.spec import load_collection, selected_columns, tables_read
from voice_analytics_dagster.tools import metabase as client

ADMIN = ("admin@example.org", "s3cret-admin-pass")
COLLECTION = load_collection()
TABLES = {t: sorted({col for c in COLLECTION.cards() if t in {x for _, x in tables_read(c.sql)}
                     for col in selected_columns(c.sql)})
          for t in {t for c in COLLECTION.cards() for _, t in tables_read(c.sql)}}
WAREHOUSE = client.WarehouseConnection("warehouse.internal", 5432, "voice_analytics", "metabase", "bi-pass")
DESCRIPTIONS = {"fct_voice_kpis": ("The voice KPIs.", {"kpi": "The KPI's name."}),
                "fct_abandonment_drivers": ("The model's drivers.", {})}


def options(url: str, **kw) -> client.ProvisionOptions:
    return client.ProvisionOptions(url=url, admin_email=ADMIN[0], admin_password=ADMIN[1], warehouse=WAREHOUSE,
                                   sync_timeout=5, descriptions=DESCRIPTIONS, **kw)


@pytest.fixture
def fresh():
    fake = FakeMetabase(TABLES, admin=ADMIN)
    with FakeServer(fake) as url:
        yield fake, url


def bodies(fake: FakeMetabase, method: str, path: str) -> list:
    return [b for m, p, b in fake.requests if m == method and p == path]


def test_first_run_sets_up_connects_and_creates_everything(fresh):
    fake, url = fresh
    report = client.provision(options(url), COLLECTION)
    assert fake.violations == []

    [setup] = bodies(fake, "POST", "/api/setup")
    assert setup["token"] == "6f0c3d1e-setup-token" and setup["user"]["email"] == ADMIN[0]
    assert bodies(fake, "POST", "/api/session") == [{"username": ADMIN[0], "password": ADMIN[1]}]

    [db] = bodies(fake, "POST", "/api/database")
    assert db["engine"] == "postgres"
    assert db["details"] == {"host": "warehouse.internal", "port": 5432, "dbname": "voice_analytics",
                             "user": "metabase", "password": "bi-pass", "ssl": False,
                             "schema-filters-type": "inclusion", "schema-filters-patterns": "analytics"}
    [database] = fake.databases.values()
    assert ("POST", f"/api/database/{database['id']}/sync_schema") in fake.writes()

    [coll] = fake.collections.values()
    assert coll["name"] == COLLECTION.name
    assert sorted(c["name"] for c in fake.cards.values()) == sorted(c.name for c in COLLECTION.cards())
    for card in fake.cards.values():
        spec = next(c for c in COLLECTION.cards() if c.name == card["name"])
        assert card["collection_id"] == coll["id"]
        assert card["dataset_query"] == {"type": "native", "database": database["id"],
                                         "native": {"query": spec.sql, "template-tags": {}}}
    assert sorted(d["name"] for d in fake.dashboards.values()) == sorted(d.name for d in COLLECTION.dashboards)
    for dash in fake.dashboards.values():
        spec = next(d for d in COLLECTION.dashboards if d.name == dash["name"])
        ids = {c["name"]: c["id"] for c in fake.cards.values()}
        assert {(dc["card_id"], dc["row"], dc["col"], dc["size_x"], dc["size_y"]) for dc in dash["dashcards"]} == \
            {(ids[c.name], c.layout["row"], c.layout["col"], c.layout["size_x"], c.layout["size_y"]) for c in spec.cards}
        assert dash["description"] == spec.description

    kpis = next(t for t in fake.tables.values() if t["name"] == "fct_voice_kpis")
    assert kpis["description"] == "The voice KPIs."
    assert next(f for f in fake.fields.values() if f["table_id"] == kpis["id"] and f["name"] == "kpi")["description"] \
        == "The KPI's name."
    n_cards, n_dash = len(COLLECTION.cards()), len(COLLECTION.dashboards)
    assert len(report.of("created")) == 1 + 1 + 1 + n_cards + n_dash  # setup, database, collection, cards, dashboards


@pytest.mark.parametrize("mbql5", [False, True], ids=["legacy-query-shape", "mbql5-query-shape"])
def test_a_second_run_creates_and_changes_nothing(mbql5):
    fake = FakeMetabase(TABLES, admin=ADMIN, mbql5=mbql5)
    with FakeServer(fake) as url:
        client.provision(options(url), COLLECTION)
        state = json.dumps([fake.databases, fake.collections, fake.cards, fake.dashboards, fake.tables, fake.fields],
                           sort_keys=True)
        fake.requests.clear()
        report = client.provision(options(url), COLLECTION)
    # the only writes: logging in and asking for a schema sync (which picks up newly published tables)
    assert [w for w in fake.writes() if w[0] != "POST" or not (w[1] == "/api/session" or w[1].endswith("/sync_schema"))] == []
    assert not report.changed and report.of("created") == [] and report.of("updated") == []
    assert json.dumps([fake.databases, fake.collections, fake.cards, fake.dashboards, fake.tables, fake.fields],
                      sort_keys=True) == state
    assert fake.violations == []


def test_a_drifted_card_and_layout_are_put_back_and_nothing_else(fresh):
    fake, url = fresh
    client.provision(options(url), COLLECTION)
    card = next(c for c in fake.cards.values() if c["name"] == COLLECTION.cards()[0].name)
    card["dataset_query"]["native"]["query"] = "select 1"  # someone edited it in Metabase
    dash = next(iter(fake.dashboards.values()))
    dash["dashcards"][0]["size_x"] = 3
    fake.requests.clear()
    report = client.provision(options(url), COLLECTION)
    assert [w for w in fake.writes() if w[0] == "PUT"] == [("PUT", f"/api/card/{card['id']}"),
                                                           ("PUT", f"/api/dashboard/{dash['id']}")]
    assert card["dataset_query"]["native"]["query"] == COLLECTION.cards()[0].sql
    assert len(report.of("updated")) == 2 and report.of("created") == []
    # the dashboard card kept its id (updated in place, not replaced)
    [put] = bodies(fake, "PUT", f"/api/dashboard/{dash['id']}")
    assert all(dc["id"] > 0 for dc in put["dashcards"])


def test_an_already_set_up_metabase_is_only_logged_into():
    fake = FakeMetabase(TABLES, set_up=True, admin=ADMIN)
    with FakeServer(fake) as url:
        client.provision(options(url), COLLECTION)
    assert bodies(fake, "POST", "/api/setup") == []
    assert fake.violations == []


def test_a_wrong_admin_password_fails_with_metabases_answer(fresh):
    fake, url = fresh
    client.provision(options(url), COLLECTION)
    bad = client.ProvisionOptions(url=url, admin_email=ADMIN[0], admin_password="wrong", warehouse=WAREHOUSE)
    with pytest.raises(client.MetabaseError, match="HTTP 401"):
        client.provision(bad, COLLECTION)


# -- the fake holds the client to Metabase's own request schemas (tests/metabase_api_schemas.py) --

DASHCARD = {"id": -1, "card_id": 3, "row": 0, "col": 0, "size_x": 6, "size_y": 4, "parameter_mappings": [],
            "visualization_settings": {}, "series": []}
VALID = {
    "POST /api/setup": {"token": "t-1", "user": {"first_name": "V", "last_name": "A", "email": "a@example.org",
                                                 "password": "s3cret-pass"},
                        "prefs": {"site_name": "S", "site_locale": "en", "allow_tracking": False}},
    "POST /api/session": {"username": "a@example.org", "password": "s3cret-pass"},
    "POST /api/database": {"name": "W", "engine": "postgres", "details": {"host": "h", "port": 5432},
                           "is_full_sync": True, "auto_run_queries": True},
    "PUT /api/database/:id": {"name": "W", "engine": "postgres", "details": {"host": "h"}},
    "PUT /api/table/:id": {"description": "The table."},
    "PUT /api/field/:id": {"description": "The column."},
    "POST /api/collection": {"name": "C", "description": "The collection."},
    "PUT /api/collection/:id": {"description": "The collection."},
    "POST /api/card": {"name": "K", "description": "A card.", "display": "bar", "collection_id": 2,
                       "dataset_query": {"type": "native", "database": 1, "native": {"query": "select 1"}},
                       "visualization_settings": {}},
    "PUT /api/card/:id": {"name": "K", "description": "A card.", "display": "table", "collection_id": 2,
                          "dataset_query": {"type": "native", "database": 1, "native": {"query": "select 1"}},
                          "visualization_settings": {"graph.dimensions": ["month"]}},
    "POST /api/dashboard": {"name": "D", "description": "A dashboard.", "collection_id": 2},
    "PUT /api/dashboard/:id": {"description": "A dashboard.", "dashcards": [DASHCARD]},
}


def _with(endpoint: str, path: tuple, value=None, delete: bool = False) -> dict:
    body = copy.deepcopy(VALID[endpoint])
    target = body
    for part in path[:-1]:
        target = target[part]
    if delete:
        del target[path[-1]]
    elif isinstance(target, list) and path[-1] == len(target):
        target.append(value)
    else:
        target[path[-1]] = value
    return body


def test_the_valid_bodies_conform():
    assert {e: errors_of(e, b) for e, b in VALID.items()} == {e: None for e in VALID}
    assert set(VALID) == set(SCHEMAS)
    # display is a non-blank string in Metabase's schema, not an enumeration: the frontend decides
    # what it can draw (metabase/spec.py keeps the project's own list)
    assert errors_of("POST /api/card", _with("POST /api/card", ("display",), "sankey")) is None


# one bad body per transcribed rule: (endpoint, the changed path, the new value or DELETE, the key
# Metabase names in its answer)
DELETE = object()
BAD = [
    ("POST /api/setup", ("token",), DELETE, "token"),
    ("POST /api/setup", ("token",), " ", "token"),
    ("POST /api/setup", ("user", "email"), "admin-at-example", "user"),
    ("POST /api/setup", ("user", "password"), "abcdef", "user"),
    ("POST /api/setup", ("user", "password"), "a1", "user"),
    ("POST /api/setup", ("user", "first_name"), "", "user"),
    ("POST /api/setup", ("prefs", "site_name"), "", "prefs"),
    ("POST /api/setup", ("prefs", "site_locale"), "english", "prefs"),
    ("POST /api/setup", ("prefs",), DELETE, "prefs"),
    ("POST /api/session", ("password",), DELETE, "password"),
    ("POST /api/session", ("username",), "", "username"),
    ("POST /api/database", ("name",), DELETE, "name"),
    ("POST /api/database", ("engine",), "postgresql", "engine"),
    ("POST /api/database", ("details",), "postgresql://h/db", "details"),
    ("POST /api/database", ("is_full_sync",), "yes", "is_full_sync"),
    ("POST /api/database", ("connection_source",), "api", "connection_source"),
    ("PUT /api/database/:id", ("ssl",), True, "ssl"),
    ("PUT /api/database/:id", ("cache_ttl",), 0, "cache_ttl"),
    ("PUT /api/table/:id", ("visibility_type",), "secret", "visibility_type"),
    ("PUT /api/table/:id", ("description",), 5, "description"),
    ("PUT /api/field/:id", ("description",), "", "description"),
    ("PUT /api/field/:id", ("visibility_type",), "secret", "visibility_type"),
    ("POST /api/collection", ("name",), DELETE, "name"),
    ("POST /api/collection", ("description",), "", "description"),
    ("POST /api/collection", ("parent_id",), 0, "parent_id"),
    ("PUT /api/collection/:id", ("authority_level",), "gold", "authority_level"),
    ("POST /api/card", ("display",), "", "display"),
    ("POST /api/card", ("visualization_settings",), DELETE, "visualization_settings"),
    ("POST /api/card", ("dataset_query",), "select 1", "dataset_query"),
    ("POST /api/card", ("collection_id",), "V1StGXR8_Z5jdHi6B-myT", "collection_id"),  # a NanoID: master only
    ("POST /api/card", ("type",), "report", "type"),
    ("POST /api/card", ("description",), "", "description"),
    ("PUT /api/card/:id", ("colour",), "red", "colour"),
    ("PUT /api/card/:id", ("dataset_query",), [], "dataset_query"),
    ("PUT /api/card/:id", ("embedding_params",), {"month": "visible"}, "embedding_params"),
    ("POST /api/dashboard", ("name",), DELETE, "name"),
    ("POST /api/dashboard", ("collection_id",), -3, "collection_id"),
    ("PUT /api/dashboard/:id", ("ordered_cards",), [], "ordered_cards"),
    ("PUT /api/dashboard/:id", ("width",), "wide", "width"),
    ("PUT /api/dashboard/:id", ("dashcards", 0, "size_x"), 0, "dashcards"),
    ("PUT /api/dashboard/:id", ("dashcards", 0, "row"), -1, "dashcards"),
    ("PUT /api/dashboard/:id", ("dashcards", 0, "col"), DELETE, "dashcards"),
    ("PUT /api/dashboard/:id", ("dashcards", 0, "sizeX"), 6, "dashcards"),
    ("PUT /api/dashboard/:id", ("dashcards", 0, "parameter_mappings"), [{"parameter_id": "p"}], "dashcards"),
    ("PUT /api/dashboard/:id", ("dashcards", 0, "series"), [{"id": 4, "name": "x"}], "dashcards"),
    ("PUT /api/dashboard/:id", ("dashcards", 1), dict(DASHCARD, card_id=4), "dashcards"),  # two with id -1
]


@pytest.fixture(scope="module")
def served():
    fake = FakeMetabase(TABLES, set_up=True, admin=ADMIN)
    fake.sessions.add("s")
    with FakeServer(fake) as url:
        yield fake, url


@pytest.mark.parametrize("endpoint, path, value, key", BAD,
                         ids=[f"{e} {'.'.join(map(str, p))}" for e, p, _, _ in BAD])
def test_the_fake_refuses_what_metabase_refuses(served, endpoint, path, value, key):
    body = _with(endpoint, path, delete=True) if value is DELETE else _with(endpoint, path, value)
    answer = errors_of(endpoint, body)
    assert answer is not None and set(answer["errors"]) == {key}, answer
    assert answer["specific-errors"][key]
    # and over HTTP, as Metabase answers: 400 with {"errors": ..., "specific-errors": ...}
    fake, url = served
    fake.violations.clear()
    mb = client.Metabase(url)
    mb.session = "s"
    with pytest.raises(client.MetabaseError, match="HTTP 400") as raised:
        mb.request(endpoint.split()[0], endpoint.split()[1].replace(":id", "7"), body)
    assert json.loads(str(raised.value).split("HTTP 400: ", 1)[1]) == answer
    assert fake.violations


def test_every_body_of_a_full_provision_conforms_and_every_endpoint_is_exercised():
    fake = FakeMetabase(TABLES, admin=ADMIN)
    with FakeServer(fake) as url:
        client.provision(options(url), COLLECTION)  # first run: setup, creations, descriptions
        # what an operator changed in Metabase, put back by the next run (every update endpoint)
        next(iter(fake.collections.values()))["description"] = "edited"
        card = next(iter(fake.cards.values()))
        card["display"] = "line"
        next(iter(fake.dashboards.values()))["dashcards"][0]["row"] = 40
        client.provision(options(url, update_password=True), COLLECTION)
    assert fake.violations == []
    exercised = {f"{m} {re.sub(r'/[0-9]+', '/:id', p)}" for m, p, _ in fake.requests}
    assert set(SCHEMAS) <= exercised
    for method, path, sent in fake.requests:
        endpoint = f"{method} {re.sub(r'/[0-9]+', '/:id', path)}"
        if endpoint in SCHEMAS:
            assert errors_of(endpoint, sent) is None, (endpoint, sent)


def test_client_fake_and_compose_name_one_metabase_release():
    from tests.compose_topology import COMPOSE_FILE, ENV_EXAMPLE, interpolate, read_env_file

    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    image = compose["services"]["metabase"]["image"]
    assert interpolate(image, {}) == f"metabase/metabase:{client.METABASE_RELEASE}"
    assert read_env_file(ENV_EXAMPLE.read_text())["METABASE_VERSION"] == client.METABASE_RELEASE
    assert RELEASE == client.METABASE_RELEASE


def test_native_sql_reads_both_query_shapes():
    assert client.native_sql({"type": "native", "native": {"query": "select 1"}}) == "select 1"
    assert client.native_sql({"stages": [{"lib/type": "mbql.stage/native", "native": "select 2"}]}) == "select 2"
    assert client.native_sql({"type": "query", "query": {"source-table": 1}}) is None


def test_the_cli_provisions_with_the_configured_bi_role(fresh, monkeypatch, capsys):
    from voice_analytics_dagster.lib.settings import get_settings, reset_settings_cache
    from voice_analytics_dagster.tools.cli import main

    fake, url = fresh
    monkeypatch.setenv("VOICE_ANALYTICS_METABASE_ADMIN_PASSWORD", ADMIN[1])
    monkeypatch.setenv("VOICE_ANALYTICS_DATABASE_URL", "postgresql://pipeline:pw@db.internal:6543/warehouse")
    reset_settings_cache()
    try:
        code = main(["metabase", "provision", "--url", url, "--admin-email", ADMIN[0], "--sync-timeout", "5",
                     "--ready-timeout", "5"])
        settings = get_settings()
    finally:
        reset_settings_cache()
    assert code == 0, capsys.readouterr()
    [db] = bodies(fake, "POST", "/api/database")
    assert (db["details"]["host"], db["details"]["port"], db["details"]["dbname"]) == ("db.internal", 6543, "warehouse")
    assert (db["details"]["user"], db["details"]["password"]) == (settings.bi_role, settings.bi_password)
    assert "Metabase provisioned:" in capsys.readouterr().out
    assert fake.violations == []
