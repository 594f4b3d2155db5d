"""Superset's REST API (JWT login plus the CSRF token its write endpoints ask for) and the
idempotent provisioning of the specs: the warehouse connection, one dataset and one chart per card,
one dashboard per dashboard file. Everything is matched by name (the database by its name, a
dataset by database, schema and name, a chart by name, a dashboard by slug), created when missing,
updated when it differs from the specs, and left alone otherwise."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import requests

from voice_analytics_dagster.defs.bi.spec import CERTIFIED_SCHEMA, Collection
from voice_analytics_dagster.lib.warehouse import ConnInfo
from voice_analytics_dagster.tools.superset import payloads

KINDS = ("database", "dataset", "chart", "dashboard")


class SupersetError(RuntimeError):
    """Superset refused a request (the message names the request and Superset's answer)."""


class SupersetClient:
    def __init__(self, base_url: str, timeout: float = 120):
        self.base = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def login(self, username: str, password: str) -> None:
        answer = self.http.post(f"{self.base}/api/v1/security/login", timeout=self.timeout,
                                json={"username": username, "password": password, "provider": "db", "refresh": True})
        if answer.status_code != 200:
            raise SupersetError(f"login as {username!r} refused ({answer.status_code}): {answer.text[:300]}")
        self.http.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
        # write endpoints check a CSRF token bound to the session cookie this request sets
        self.http.headers["X-CSRFToken"] = self.get("/api/v1/security/csrf_token/")["result"]
        self.http.headers["Referer"] = self.base + "/"

    def request(self, method: str, path: str, body: dict | None = None, ok: tuple[int, ...] = (200, 201)) -> dict:
        answer = self.http.request(method, self.base + path, json=body, timeout=self.timeout)
        if answer.status_code not in ok:
            raise SupersetError(f"{method} {path} answered {answer.status_code}: {answer.text[:600]}")
        return answer.json() if answer.content else {}

    def get(self, path: str) -> dict:
        return self.request("GET", path)

    def post(self, path: str, body: dict) -> dict:
        return self.request("POST", path, body)

    def put(self, path: str, body: dict) -> dict:
        return self.request("PUT", path, body)

    def list_all(self, resource: str) -> list[dict]:
        """Every object of a resource, page by page (matched by name here, not by a server-side
        filter: no quoting of names into Superset's rison query language)."""
        rows: list[dict] = []
        page = 0
        while True:
            answer = self.get(f"/api/v1/{resource}/?q=(page:{page},page_size:100)")
            rows += answer["result"]
            if not answer["result"] or len(rows) >= answer["count"]:
                return rows
            page += 1

    def chart_data(self, chart_id: int) -> list[dict]:
        """The results of a chart's saved query context (GET /api/v1/chart/<id>/data/)."""
        return self.get(f"/api/v1/chart/{chart_id}/data/")["result"]


@dataclass
class ProvisionReport:
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {k: {"created": 0, "updated": 0, "unchanged": 0} for k in KINDS})
    chart_ids: dict[str, int] = field(default_factory=dict)
    dashboard_ids: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, outcome: str) -> None:
        self.counts[kind][outcome] += 1

    @property
    def created(self) -> int:
        return sum(c["created"] for c in self.counts.values())

    def render(self) -> str:
        return "\n".join(f"  {kind + 's':<11} " + ", ".join(f"{n} {outcome}" for outcome, n in c.items())
                         for kind, c in self.counts.items())


def differs(desired: Any, actual: Any) -> bool:
    """Whether ``actual`` lacks something of ``desired``: dicts compared on desired's keys (Superset
    adds keys of its own to what it stores), JSON text compared as what it encodes. Pure."""
    if isinstance(desired, str) and isinstance(actual, str) and desired[:1] in "{[":
        try:
            desired, actual = json.loads(desired), json.loads(actual)
        except ValueError:
            return desired != actual
    if isinstance(desired, dict):
        return not isinstance(actual, dict) or any(differs(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (not isinstance(actual, list) or len(desired) != len(actual)
                or any(differs(d, a) for d, a in zip(desired, actual, strict=True)))
    return desired != actual


def masked_uri(uri: str) -> str:
    """A URI as Superset shows it: the password replaced by ten X. Pure."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.replace(f":{parts.password}@", ":XXXXXXXXXX@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _ensure_database(client: SupersetClient, conn: ConnInfo, report: ProvisionReport) -> int:
    desired = payloads.database_payload(conn)
    found = [d for d in client.list_all("database") if d["database_name"] == desired["database_name"]]
    if not found:
        report.count("database", "created")
        return int(client.post("/api/v1/database/", desired)["id"])
    db_id = int(found[0]["id"])
    current = client.get(f"/api/v1/database/{db_id}/connection")["result"]
    comparable = {**desired, "sqlalchemy_uri": masked_uri(desired["sqlalchemy_uri"])}
    schemas_ok = _lists_schemas(client, db_id)
    if differs(comparable, current) or not schemas_ok:
        # the password is never shown back: a connection that cannot list schemas gets it again
        client.put(f"/api/v1/database/{db_id}", desired)
        report.count("database", "updated")
    else:
        report.count("database", "unchanged")
    return db_id


def _lists_schemas(client: SupersetClient, db_id: int) -> bool:
    try:
        return CERTIFIED_SCHEMA in client.get(f"/api/v1/database/{db_id}/schemas/?q=(force:!t)")["result"]
    except SupersetError:
        return False


def _ensure_datasets(client: SupersetClient, collection: Collection, db_id: int,
                     report: ProvisionReport) -> dict[str, int]:
    existing = {d["table_name"]: int(d["id"]) for d in client.list_all("dataset")
                if d.get("schema") == CERTIFIED_SCHEMA and (d.get("database") or {}).get("id") == db_id}
    ids: dict[str, int] = {}
    for card in filter(payloads.is_compiled, collection.cards()):
        desired = payloads.dataset_update_payload(card, collection)
        if card.name not in existing:
            ds_id = int(client.post("/api/v1/dataset/", payloads.dataset_create_payload(card, db_id))["id"])
            client.put(f"/api/v1/dataset/{ds_id}", desired)
            report.count("dataset", "created")
        else:
            ds_id = existing[card.name]
            current = client.get(f"/api/v1/dataset/{ds_id}")["result"]
            if differs(desired, current):
                client.put(f"/api/v1/dataset/{ds_id}", desired)
                if current.get("sql") != card.sql:
                    client.put(f"/api/v1/dataset/{ds_id}/refresh", {})  # its columns follow the new SQL
                report.count("dataset", "updated")
            else:
                report.count("dataset", "unchanged")
        ids[card.name] = ds_id
    return ids


def _ensure_dashboards(client: SupersetClient, collection: Collection, report: ProvisionReport) -> set[int]:
    existing = {d["slug"]: int(d["id"]) for d in client.list_all("dashboard") if d.get("slug")}
    created: set[int] = set()
    for d in collection.dashboards:
        if d.slug in existing:
            report.dashboard_ids[d.name] = existing[d.slug]
        else:
            dash_id = int(client.post("/api/v1/dashboard/", payloads.dashboard_payload(d, collection, None))["id"])
            report.dashboard_ids[d.name] = dash_id
            created.add(dash_id)
            report.count("dashboard", "created")
    return created


def _ensure_charts(client: SupersetClient, collection: Collection, dataset_ids: dict[str, int],
                   report: ProvisionReport) -> None:
    existing = {c["slice_name"]: int(c["id"]) for c in client.list_all("chart")}
    for d in collection.dashboards:
        for card in filter(payloads.is_compiled, d.cards):
            desired = payloads.chart_payload(card, dataset_ids[card.name], report.dashboard_ids[d.name], collection)
            if card.name not in existing:
                report.chart_ids[card.name] = int(client.post("/api/v1/chart/", desired)["id"])
                report.count("chart", "created")
                continue
            chart_id = report.chart_ids[card.name] = existing[card.name]
            current = client.get(f"/api/v1/chart/{chart_id}")["result"]
            current["dashboards"] = [x["id"] for x in current.get("dashboards", [])]
            comparable = {k: v for k, v in desired.items() if k not in {"datasource_id", "datasource_type",
                                                                        "query_context_generation"}}
            if differs(comparable, current):
                client.put(f"/api/v1/chart/{chart_id}", desired)
                report.count("chart", "updated")
            else:
                report.count("chart", "unchanged")


def _place_charts(client: SupersetClient, collection: Collection, created: set[int], report: ProvisionReport) -> None:
    for d in collection.dashboards:
        dash_id = report.dashboard_ids[d.name]
        desired = payloads.dashboard_payload(d, collection, report.chart_ids)
        current = client.get(f"/api/v1/dashboard/{dash_id}")["result"]
        if differs(desired, current):
            client.put(f"/api/v1/dashboard/{dash_id}", desired)
            if dash_id not in created:
                report.count("dashboard", "updated")
        elif dash_id not in created:
            report.count("dashboard", "unchanged")


def provision(client: SupersetClient, collection: Collection, warehouse: ConnInfo) -> ProvisionReport:
    """Create or update everything the specs describe; a second call with the same specs changes nothing."""
    report = ProvisionReport()
    db_id = _ensure_database(client, warehouse, report)
    dataset_ids = _ensure_datasets(client, collection, db_id, report)
    created = _ensure_dashboards(client, collection, report)
    _ensure_charts(client, collection, dataset_ids, report)
    _place_charts(client, collection, created, report)
    return report


def verify_charts(client: SupersetClient, chart_ids: dict[str, int]) -> dict[str, list[int]]:
    """Every chart answered through Superset's chart data API: rows per query, by chart name."""
    rows: dict[str, list[int]] = {}
    for name, chart_id in chart_ids.items():
        results = client.chart_data(chart_id)
        failed = [r for r in results if r.get("status") not in (None, "success") or r.get("error")]
        if failed or not results:
            raise SupersetError(f"chart {name!r} ({chart_id}) does not answer through its data API: {failed or results}")
        rows[name] = [int(r.get("rowcount", len(r.get("data", [])))) for r in results]
    return rows
