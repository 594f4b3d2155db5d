"""Provision Metabase (open-source edition) from the specs in ``metabase/`` through its REST API:
first-run setup when needed, login, the warehouse connection as the read-only BI role limited to
schema ``analytics``, a schema sync, dbt descriptions on tables and columns, then create-or-update
of the collection, the cards (native queries) and the dashboards, matched by name.

Idempotent by construction: every object is read first and written only when it differs from the
spec, so a second run against an unchanged Metabase writes nothing (a schema sync is still
requested: it picks up tables certified since). Standard library HTTP only (urllib), so the
provisioning container needs nothing beyond the project's own dependencies.

Only ever run against a local fake of the API (tests/metabase_fake.py) that holds every request
body to Metabase's own request schemas of METABASE_RELEASE, never a real Metabase: see README,
"Metabase"."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from voice_analytics_dagster.defs.bi.spec import (
    CERTIFIED_SCHEMA,
    Card,
    Collection,
    Dashboard,
    card_payload,
    load_collection,
    tables_read,
)

# The Metabase release this client is checked against: docker-compose.yml's image and the fake's
# schemas (tests/metabase_api_schemas.py) name the same one; tests/unit/test_metabase_provision.py
# fails when they disagree.
METABASE_RELEASE = "v0.56.9"


class MetabaseError(RuntimeError):
    pass


@dataclass(frozen=True)
class WarehouseConnection:
    """How Metabase reaches the warehouse (its own view of the network: in docker-compose the
    host is the PostgreSQL service's name), as the read-only BI role."""

    host: str
    port: int
    dbname: str
    user: str
    password: str = field(repr=False)
    ssl: bool = False

    def details(self) -> dict[str, Any]:
        """``details`` of POST/PUT /api/database for the postgres engine, limited to analytics."""
        return {
            "host": self.host, "port": self.port, "dbname": self.dbname,
            "user": self.user, "password": self.password, "ssl": self.ssl,
            # Metabase syncs (and offers in its data browser) the certified schema only
            "schema-filters-type": "inclusion",
            "schema-filters-patterns": CERTIFIED_SCHEMA,
        }


@dataclass(frozen=True)
class ProvisionOptions:
    url: str
    admin_email: str
    admin_password: str = field(repr=False)
    warehouse: WarehouseConnection
    database_name: str = "Voice analytics (certified)"
    site_name: str = "Voice analytics"
    ready_timeout: float = 0.0
    sync_timeout: float = 120.0
    # PUT the database even when its visible details agree (Metabase never returns the password,
    # so a rotated password cannot be detected)
    update_password: bool = False
    descriptions: dict[str, tuple[str, dict[str, str]]] | None = None


@dataclass
class Report:
    actions: list[tuple[str, str]] = field(default_factory=list)

    def add(self, what: str, outcome: str) -> None:
        self.actions.append((outcome, what))

    def of(self, outcome: str) -> list[str]:
        return [w for o, w in self.actions if o == outcome]

    @property
    def changed(self) -> bool:
        return any(o in {"created", "updated"} for o, _ in self.actions)

    def render(self) -> str:
        counts = {o: len(self.of(o)) for o in ("created", "updated", "unchanged")}
        lines = [f"  {o:<9} {w}" for o, w in self.actions if o != "unchanged"]
        head = (f"Metabase provisioned: {counts['created']} created, {counts['updated']} updated, "
                f"{counts['unchanged']} unchanged")
        return "\n".join([head, *lines])


class Metabase:
    """A thin JSON client: one method per HTTP verb, the session in X-Metabase-Session."""

    def __init__(self, url: str, timeout: float = 60.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session: str | None = None

    def request(self, method: str, path: str, body: Any = None, query: dict | list | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(query, doseq=True) if query else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if self.session:
            req.add_header("X-Metabase-Session", self.session)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:500]
            raise MetabaseError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            raise MetabaseError(f"{method} {path}: {getattr(exc, 'reason', exc)}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return raw.decode(errors="replace")

    def get(self, path: str, query: dict | list | None = None) -> Any:
        return self.request("GET", path, query=query)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, body if body is not None else {})

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, body)


def _data(listing: Any) -> list[dict]:
    """List endpoints answer a bare list or ``{"data": [...]}`` depending on the endpoint and
    the Metabase version."""
    if isinstance(listing, dict):
        return list(listing.get("data") or [])
    return list(listing or [])


def native_sql(dataset_query: dict | None) -> str | None:
    """The SQL of a native query, in the legacy shape ({"native": {"query": ...}}) or the MBQL 5
    shape that newer Metabase versions return ({"stages": [{"native": "..."}]})."""
    if not dataset_query:
        return None
    native = dataset_query.get("native")
    if isinstance(native, dict):
        return native.get("query")
    stages = dataset_query.get("stages") or []
    if stages and isinstance(stages[0].get("native"), str):
        return stages[0]["native"]
    return None


def _same_settings(desired: dict, current: dict | None) -> bool:
    """Metabase may add settings of its own (defaults, column widths): only ours must agree."""
    current = current or {}
    return all(current.get(k) == v for k, v in desired.items())


def wait_ready(mb: Metabase, timeout: float, log: Callable[[str], None]) -> None:
    """Wait for GET /api/health to answer {"status": "ok"} (Metabase takes a minute to start)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if (mb.get("/api/health") or {}).get("status") == "ok":
                return
        except MetabaseError:
            pass
        if time.monotonic() >= deadline:
            raise MetabaseError(f"Metabase at {mb.url} is not healthy after {timeout:g} s")
        log("waiting for Metabase to start ...")
        time.sleep(2)


def setup_and_login(mb: Metabase, opts: ProvisionOptions, report: Report) -> None:
    props = mb.get("/api/session/properties") or {}
    token = props.get("setup-token")
    if token and not props.get("has-user-setup"):
        # a fresh Metabase: create the first admin (POST /api/setup also logs it in)
        body = {
            "token": token,
            "user": {"first_name": "Voice", "last_name": "Analytics", "email": opts.admin_email,
                     "password": opts.admin_password},
            "prefs": {"site_name": opts.site_name, "site_locale": "en", "allow_tracking": False},
        }
        mb.post("/api/setup", body)
        report.add(f"first-run setup (admin {opts.admin_email})", "created")
    session = mb.post("/api/session", {"username": opts.admin_email, "password": opts.admin_password})
    if not isinstance(session, dict) or not session.get("id"):
        raise MetabaseError("POST /api/session returned no session id")
    mb.session = session["id"]


def ensure_database(mb: Metabase, opts: ProvisionOptions, report: Report) -> int:
    details = opts.warehouse.details()
    body = {"name": opts.database_name, "engine": "postgres", "details": details,
            "is_full_sync": True, "auto_run_queries": True}
    existing = [d for d in _data(mb.get("/api/database")) if d.get("name") == opts.database_name]
    what = f"database connection '{opts.database_name}' ({opts.warehouse.user}@{opts.warehouse.host}/{opts.warehouse.dbname}, schema {CERTIFIED_SCHEMA})"
    if not existing:
        created = mb.post("/api/database", body)
        report.add(what, "created")
        return int(created["id"])
    db_id = int(existing[0]["id"])
    current = mb.get(f"/api/database/{db_id}") or {}
    visible = {k: v for k, v in details.items() if k != "password"}  # Metabase masks the password
    current_details = current.get("details") or {}
    same = current.get("engine") == "postgres" and all(current_details.get(k) == v for k, v in visible.items())
    if same and not opts.update_password:
        report.add(what, "unchanged")
    else:
        mb.put(f"/api/database/{db_id}", {"name": opts.database_name, "engine": "postgres", "details": details})
        report.add(what, "updated")
    return db_id


def sync_and_wait(mb: Metabase, db_id: int, wanted: set[str], timeout: float,
                  log: Callable[[str], None]) -> dict[str, dict]:
    """Ask for a schema sync, then wait until every wanted table of analytics is known to
    Metabase; returns its tables by name (empty ones missing after the timeout are reported)."""
    mb.post(f"/api/database/{db_id}/sync_schema")
    deadline = time.monotonic() + timeout
    while True:
        metadata = mb.get(f"/api/database/{db_id}/metadata", {"include_hidden": "true"}) or {}
        tables = {t["name"]: t for t in metadata.get("tables", []) if t.get("schema") == CERTIFIED_SCHEMA}
        missing = wanted - set(tables)
        if not missing:
            return tables
        if time.monotonic() >= deadline:
            log(f"warning: after {timeout:g} s Metabase does not list {sorted(missing)} yet "
                "(the cards are native SQL and work anyway; descriptions are pushed on the next run)")
            return tables
        time.sleep(1)


def push_descriptions(mb: Metabase, tables: dict[str, dict], descriptions: dict[str, tuple[str, dict[str, str]]],
                      report: Report) -> None:
    """dbt descriptions of tables and columns onto Metabase's tables and fields (only when they differ)."""
    for name, table in sorted(tables.items()):
        if name not in descriptions:
            continue
        text, columns = descriptions[name]
        if text and table.get("description") != text:
            mb.put(f"/api/table/{table['id']}", {"description": text})
            report.add(f"description of table {name}", "updated")
        else:
            report.add(f"description of table {name}", "unchanged")
        for f in table.get("fields") or []:
            wanted = columns.get(f.get("name"))
            if wanted and f.get("description") != wanted:
                mb.put(f"/api/field/{f['id']}", {"description": wanted})
                report.add(f"description of column {name}.{f['name']}", "updated")


def ensure_collection(mb: Metabase, collection: Collection, report: Report) -> int:
    matches = [c for c in _data(mb.get("/api/collection"))
               if c.get("name") == collection.name and not c.get("archived")
               and isinstance(c.get("id"), int) and c.get("location", "/") == "/"]
    what = f"collection '{collection.name}'"
    # Metabase takes a collection's description as a non-blank string or null
    description = collection.description or None
    if not matches:
        created = mb.post("/api/collection", {"name": collection.name, "description": description})
        report.add(what, "created")
        return int(created["id"])
    coll = matches[0]
    if coll.get("description") != description:
        mb.put(f"/api/collection/{coll['id']}", {"description": description})
        report.add(what, "updated")
    else:
        report.add(what, "unchanged")
    return int(coll["id"])


def _items(mb: Metabase, collection_id: int, model: str) -> dict[str, int]:
    items = _data(mb.get(f"/api/collection/{collection_id}/items", {"models": model}))
    return {i["name"]: int(i["id"]) for i in items if i.get("model", model) == model and not i.get("archived")}


def ensure_card(mb: Metabase, card: Card, db_id: int, collection_id: int, existing: dict[str, int],
                report: Report) -> int:
    payload = card_payload(card, db_id, collection_id)
    what = f"card '{card.name}'"
    if card.name not in existing:
        created = mb.post("/api/card", payload)
        report.add(what, "created")
        return int(created["id"])
    card_id = existing[card.name]
    current = mb.get(f"/api/card/{card_id}") or {}
    same = (
        current.get("description") == payload["description"]
        and current.get("display") == payload["display"]
        and current.get("collection_id") == collection_id
        and native_sql(current.get("dataset_query")) == card.sql
        and (current.get("dataset_query") or {}).get("database") == db_id
        and _same_settings(payload["visualization_settings"], current.get("visualization_settings"))
    )
    if same:
        report.add(what, "unchanged")
    else:
        mb.put(f"/api/card/{card_id}", payload)
        report.add(what, "updated")
    return card_id


def desired_dashcards(dashboard: Dashboard, card_ids: dict[str, int], current: list[dict]) -> list[dict]:
    """``dashcards`` of PUT /api/dashboard/:id: existing dashboard cards keep their id (matched by
    card), new ones get negative ids as Metabase's API asks."""
    by_card = {dc.get("card_id"): dc["id"] for dc in current if dc.get("card_id") is not None}
    out = []
    for i, card in enumerate(dashboard.cards):
        cid = card_ids[card.name]
        out.append({"id": by_card.get(cid, -(i + 1)), "card_id": cid, **card.layout,
                    "parameter_mappings": [], "visualization_settings": {}, "series": []})
    return out


def _layout(dashcards: list[dict]) -> set[tuple]:
    return {(dc.get("card_id"), dc.get("row"), dc.get("col"), dc.get("size_x"), dc.get("size_y"))
            for dc in dashcards}


def ensure_dashboard(mb: Metabase, dashboard: Dashboard, card_ids: dict[str, int], collection_id: int,
                     existing: dict[str, int], report: Report) -> int:
    what = f"dashboard '{dashboard.name}'"
    created = dashboard.name not in existing
    if created:
        dash_id = int(mb.post("/api/dashboard", {"name": dashboard.name, "description": dashboard.description,
                                                 "collection_id": collection_id})["id"])
    else:
        dash_id = existing[dashboard.name]
    current = mb.get(f"/api/dashboard/{dash_id}") or {}
    current_cards = current.get("dashcards") or current.get("ordered_cards") or []
    wanted = desired_dashcards(dashboard, card_ids, current_cards)
    if (not created and current.get("description") == dashboard.description
            and _layout(current_cards) == _layout(wanted)):
        report.add(what, "unchanged")
        return dash_id
    mb.put(f"/api/dashboard/{dash_id}", {"description": dashboard.description, "dashcards": wanted})
    report.add(what, "created" if created else "updated")
    return dash_id


def provision(opts: ProvisionOptions, collection: Collection | None = None,
              log: Callable[[str], None] = lambda _m: None) -> Report:
    collection = collection or load_collection()
    report = Report()
    mb = Metabase(opts.url)
    if opts.ready_timeout:
        wait_ready(mb, opts.ready_timeout, log)
    setup_and_login(mb, opts, report)
    db_id = ensure_database(mb, opts, report)
    wanted = {t for c in collection.cards() for _, t in tables_read(c.sql)}
    tables = sync_and_wait(mb, db_id, wanted, opts.sync_timeout, log)
    if opts.descriptions:
        push_descriptions(mb, tables, opts.descriptions, report)
    coll_id = ensure_collection(mb, collection, report)
    cards = _items(mb, coll_id, "card")
    card_ids = {c.name: ensure_card(mb, c, db_id, coll_id, cards, report) for c in collection.cards()}
    dashboards = _items(mb, coll_id, "dashboard")
    for d in collection.dashboards:
        ensure_dashboard(mb, d, card_ids, coll_id, dashboards, report)
    return report


def manifest_descriptions(manifest: dict) -> dict[str, tuple[str, dict[str, str]]]:
    """table name -> (description, {column: description}) of every dbt model and source."""
    out: dict[str, tuple[str, dict[str, str]]] = {}
    nodes = [n for n in manifest["nodes"].values() if n["resource_type"] == "model"]
    for node in [*manifest["sources"].values(), *nodes]:  # a model wins over a source of the same name
        columns = {c: " ".join((v.get("description") or "").split()) for c, v in (node.get("columns") or {}).items()}
        out[node["name"]] = (" ".join((node.get("description") or "").split()), {c: d for c, d in columns.items() if d})
    return out


def wait_for_publication(conninfo_url: str, timeout: float, log: Callable[[str], None]) -> None:
    """Wait until the BI role can read a publication (the role and analytics exist only after the
    pipeline's first publication; Metabase refuses a connection it cannot open)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(conninfo_url, connect_timeout=5) as conn:
                if conn.execute("select 1 from analytics.publication_log where status = 'published' limit 1").fetchone():
                    return
        except psycopg.Error:
            pass
        if time.monotonic() >= deadline:
            raise MetabaseError(f"no publication readable by the BI role after {timeout:g} s")
        log("waiting for the pipeline's first publication ...")
        time.sleep(10)
