"""A stand-in for the handful of Metabase REST endpoints the provisioning client calls, served by
the standard library on 127.0.0.1 in a thread. It keeps state like Metabase (ids, a setup token
that disappears after setup, masked passwords, dashboard cards with negative ids on creation) and
checks every request body against Metabase's own request schemas, transcribed with their sources
in tests/metabase_api_schemas.py (release RELEASE there, the one docker-compose.yml pins). A body
that breaks them is answered 400 with Metabase's error shape and recorded in ``violations``.

It is not Metabase: it cannot tell whether a card renders or a query runs there (README)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.metabase_api_schemas import SCHEMAS, errors_of


def violations_of(endpoint: str, body: Any) -> list[str]:
    """The rules ``body`` breaks as ``endpoint: key: message`` lines (empty when it conforms)."""
    answer = errors_of(endpoint, body)
    if answer is None:
        return []
    return [f"{endpoint}: {key}: {message}" for key, message in answer["errors"].items()]


class FakeMetabase:
    """State of one fake Metabase; ``tables`` are what a schema sync discovers: name -> columns."""

    def __init__(self, tables: dict[str, list[str]], set_up: bool = False, mbql5: bool = False,
                 admin: tuple[str, str] = ("admin@example.org", "s3cret-admin-pass")):
        self.tables_available = tables
        self.mbql5 = mbql5  # answer GET /api/card in the MBQL 5 shape of newer versions
        self.setup_token = None if set_up else "6f0c3d1e-setup-token"
        self.users = {admin[0]: admin[1]} if set_up else {}
        self.requests: list[tuple[str, str, Any]] = []
        self.violations: list[str] = []
        self.sessions: set[str] = set()
        self.next_id = 1
        self.databases: dict[int, dict] = {}
        self.tables: dict[int, dict] = {}
        self.fields: dict[int, dict] = {}
        self.collections: dict[int, dict] = {}
        self.cards: dict[int, dict] = {}
        self.dashboards: dict[int, dict] = {}
        self.lock = threading.Lock()

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- request handling ---------------------------------------------------------------------
    def handle(self, method: str, path: str, query: dict, body: Any, session: str | None) -> tuple[int, Any]:
        self.requests.append((method, path, body))
        route = re.sub(r"/\d+", "/:id", path)
        endpoint = f"{method} {route}"
        if endpoint in SCHEMAS:
            # Metabase checks the body against the endpoint's schema before anything else
            answer = errors_of(endpoint, body)
            if answer is not None:
                self.violations += violations_of(endpoint, body)
                return 400, answer
        if path == "/api/health":
            return 200, {"status": "ok"}
        if path == "/api/session/properties" and method == "GET":
            return 200, {"setup-token": self.setup_token, "has-user-setup": bool(self.users)}
        if path == "/api/setup" and method == "POST":
            return self._setup(body)
        if path == "/api/session" and method == "POST":
            if self.users.get(body["username"]) != body["password"]:
                return 401, {"errors": {"password": "did not match stored password"}}
            return 200, {"id": self._session()}
        if session not in self.sessions:
            return 401, "Unauthenticated"
        ids = [int(x) for x in re.findall(r"/(\d+)", path)]
        handler = getattr(self, "_" + method.lower() + route.replace("/api", "").replace("/:id", "_id").replace("/", "_"), None)
        if handler is None:
            return 404, f"no fake for {method} {route}"
        return handler(*ids, query=query, body=body)

    def _session(self) -> str:
        token = f"session-{len(self.sessions) + 1}"
        self.sessions.add(token)
        return token

    def _setup(self, body) -> tuple[int, Any]:
        if self.setup_token is None or body["token"] != self.setup_token:
            # SetupToken: part of the endpoint's schema, so a 400 with its API error message
            return 400, {"errors": {"token": "Token does not match the setup token."}}
        self.users[body["user"]["email"]] = body["user"]["password"]
        self.setup_token = None
        return 200, {"id": self._session()}

    # databases
    def _get_database(self, query, body):
        return 200, {"data": [self._public_db(d) for d in self.databases.values()], "total": len(self.databases)}

    def _public_db(self, db):
        details = dict(db["details"])
        if "password" in details:
            details["password"] = "**MetabasePass**"  # Metabase never returns a stored secret
        return {**db, "details": details}

    def _post_database(self, query, body):
        db = {"id": self._id(), "name": body["name"], "engine": body["engine"], "details": body["details"],
              "is_full_sync": body.get("is_full_sync", True)}
        self.databases[db["id"]] = db
        return 200, self._public_db(db)

    def _get_database_id(self, db_id, query, body):
        return (200, self._public_db(self.databases[db_id])) if db_id in self.databases else (404, "Not found.")

    def _put_database_id(self, db_id, query, body):
        self.databases[db_id].update(body)
        return 200, self._public_db(self.databases[db_id])

    def _post_database_id_sync_schema(self, db_id, query, body):
        db = self.databases[db_id]
        pattern = db["details"].get("schema-filters-patterns")
        if db["details"].get("schema-filters-type") == "inclusion" and pattern != "analytics":
            return 200, {"status": "ok"}  # nothing else exists on this fake warehouse
        known = {t["name"] for t in self.tables.values() if t["db_id"] == db_id}
        for name, columns in self.tables_available.items():
            if name in known:
                continue
            tid = self._id()
            self.tables[tid] = {"id": tid, "db_id": db_id, "name": name, "schema": "analytics", "description": None}
            for c in columns:
                fid = self._id()
                self.fields[fid] = {"id": fid, "table_id": tid, "name": c, "description": None}
        return 200, {"status": "ok"}

    def _get_database_id_metadata(self, db_id, query, body):
        tables = [{**t, "fields": [f for f in self.fields.values() if f["table_id"] == t["id"]]}
                  for t in self.tables.values() if t["db_id"] == db_id]
        return 200, {"id": db_id, "tables": tables}

    def _put_table_id(self, tid, query, body):
        self.tables[tid]["description"] = body["description"]
        return 200, self.tables[tid]

    def _put_field_id(self, fid, query, body):
        self.fields[fid]["description"] = body["description"]
        return 200, self.fields[fid]

    # collections
    def _get_collection(self, query, body):
        return 200, [{"id": "root", "name": "Our analytics"}, *self.collections.values()]

    def _post_collection(self, query, body):
        c = {"id": self._id(), "name": body["name"], "description": body.get("description"), "location": "/",
             "archived": False}
        self.collections[c["id"]] = c
        return 200, c

    def _put_collection_id(self, cid, query, body):
        self.collections[cid].update(body)
        return 200, self.collections[cid]

    def _get_collection_id_items(self, cid, query, body):
        models = set(query.get("models", ["card", "dashboard"]))
        items = [{"id": c["id"], "name": c["name"], "model": "card"} for c in self.cards.values()
                 if c["collection_id"] == cid and "card" in models]
        items += [{"id": d["id"], "name": d["name"], "model": "dashboard"} for d in self.dashboards.values()
                  if d["collection_id"] == cid and "dashboard" in models]
        return 200, {"data": items, "total": len(items), "models": sorted(models)}

    # cards
    def _post_card(self, query, body):
        card = {"id": self._id(), **body, "archived": False}
        card["visualization_settings"] = {**body["visualization_settings"]}
        self.cards[card["id"]] = card
        return 200, card

    def _get_card_id(self, card_id, query, body):
        card = dict(self.cards[card_id])
        q = card["dataset_query"]
        if self.mbql5:
            card["dataset_query"] = {"lib/type": "mbql/query", "database": q["database"],
                                     "stages": [{"lib/type": "mbql.stage/native", "native": q["native"]["query"],
                                                 "template-tags": q["native"].get("template-tags", {})}]}
        return 200, card

    def _put_card_id(self, card_id, query, body):
        self.cards[card_id].update(body)
        return 200, self.cards[card_id]

    # dashboards
    def _post_dashboard(self, query, body):
        d = {"id": self._id(), "name": body["name"], "description": body.get("description"),
             "collection_id": body.get("collection_id"), "dashcards": [], "archived": False}
        self.dashboards[d["id"]] = d
        return 200, d

    def _get_dashboard_id(self, dash_id, query, body):
        return 200, self.dashboards[dash_id]

    def _put_dashboard_id(self, dash_id, query, body):
        # the schema passed; Metabase then refuses dashboard cards whose card it cannot find
        unknown = [dc["card_id"] for dc in body.get("dashcards") or [] if dc.get("card_id") not in self.cards]
        if unknown:
            self.violations.append(f"PUT /api/dashboard/:id: unknown card ids {unknown}")
            return 404, "Not found."
        d = self.dashboards[dash_id]
        if "dashcards" in body:
            kept = {dc["id"]: dc for dc in d["dashcards"]}
            new = []
            for dc in body["dashcards"]:
                dc = dict(dc)
                if dc["id"] < 0 or dc["id"] not in kept:
                    dc["id"] = self._id()
                new.append(dc)
            d["dashcards"] = new
        d.update({k: v for k, v in body.items() if k != "dashcards"})
        return 200, d

    # -- recorded traffic --------------------------------------------------------------------
    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _ in self.requests if m in {"POST", "PUT", "DELETE"}]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeMetabase

    def log_message(self, *args):  # quiet
        pass

    def _serve(self, method: str):
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw.decode(errors="replace")
        with self.fake.lock:
            status, payload = self.fake.handle(method, parts.path.rstrip("/") or "/", parse_qs(parts.query), body,
                                               self.headers.get("X-Metabase-Session"))
        data = json.dumps(payload).encode() if not isinstance(payload, str) else payload.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(payload, str) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PUT(self):
        self._serve("PUT")


class FakeServer:
    """``with FakeServer(fake) as url:`` serves ``fake`` on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, fake: FakeMetabase):
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
