"""A stand-in for the handful of Metabase REST endpoints the provisioning client calls, served by
the standard library on 127.0.0.1 in a thread. It keeps state like Metabase (ids, a setup token
that disappears after setup, masked passwords, dashboard cards with negative ids on creation) and
checks every request body against Metabase's documented API: required keys and their types
(docs/api pages and the OpenAPI request models of metabase/metabase, as of v0.5x). A body that
breaks them is answered 400 like Metabase would, and recorded in ``violations``.

It is not Metabase: it cannot tell whether a card renders or a query runs there (README)."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")


def _is_pos_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _is_nonneg_int(v):
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _is_str(v):
    return isinstance(v, str) and v.strip() != ""


# endpoint -> {key: (required, predicate)}; keys outside the map are refused (a typo would be
# silently ignored by Metabase, so the fake is stricter than the real thing on purpose)
SCHEMAS: dict[str, dict[str, tuple[bool, Any]]] = {
    "POST /api/setup": {"token": (True, _is_str), "user": (True, lambda v: isinstance(v, dict)),
                        "prefs": (True, lambda v: isinstance(v, dict)), "database": (False, lambda v: True)},
    "setup.user": {"email": (True, lambda v: isinstance(v, str) and EMAIL.match(v)), "password": (True, _is_str),
                   "first_name": (False, _is_str), "last_name": (False, _is_str), "site_name": (False, _is_str)},
    "setup.prefs": {"site_name": (True, _is_str), "site_locale": (False, lambda v: re.fullmatch(r"[a-z]{2}(_[A-Z]{2})?", v)),
                    "allow_tracking": (False, lambda v: isinstance(v, bool))},
    "POST /api/session": {"username": (True, _is_str), "password": (True, _is_str)},
    "POST /api/database": {"name": (True, _is_str), "engine": (True, _is_str), "details": (True, lambda v: isinstance(v, dict)),
                           "is_full_sync": (False, lambda v: isinstance(v, bool)),
                           "auto_run_queries": (False, lambda v: isinstance(v, bool))},
    "PUT /api/database/:id": {"name": (False, _is_str), "engine": (False, _is_str),
                              "details": (False, lambda v: isinstance(v, dict))},
    "postgres.details": {"host": (True, _is_str), "port": (True, _is_pos_int), "dbname": (True, _is_str),
                         "user": (True, _is_str), "password": (False, lambda v: isinstance(v, str)),
                         "ssl": (False, lambda v: isinstance(v, bool)),
                         "schema-filters-type": (False, lambda v: v in {"inclusion", "exclusion", "all"}),
                         "schema-filters-patterns": (False, lambda v: isinstance(v, str))},
    "POST /api/collection": {"name": (True, _is_str), "description": (False, lambda v: isinstance(v, str)),
                             "parent_id": (False, _is_pos_int)},
    "PUT /api/collection/:id": {"name": (False, _is_str), "description": (False, lambda v: isinstance(v, str))},
    "POST /api/card": {"name": (True, _is_str), "dataset_query": (True, lambda v: isinstance(v, dict)),
                       "display": (True, _is_str), "visualization_settings": (True, lambda v: isinstance(v, dict)),
                       "collection_id": (False, _is_pos_int), "description": (False, lambda v: isinstance(v, str))},
    "native.dataset_query": {"type": (True, lambda v: v == "native"), "database": (True, _is_pos_int),
                             "native": (True, lambda v: isinstance(v, dict) and _is_str(v.get("query"))
                                        and isinstance(v.get("template-tags", {}), dict))},
    "POST /api/dashboard": {"name": (True, _is_str), "collection_id": (False, _is_pos_int),
                            "description": (False, lambda v: isinstance(v, str)),
                            "parameters": (False, lambda v: isinstance(v, list))},
    "PUT /api/dashboard/:id": {"name": (False, _is_str), "description": (False, lambda v: isinstance(v, str)),
                               "collection_id": (False, _is_pos_int), "dashcards": (False, lambda v: isinstance(v, list))},
    "dashcard": {"id": (True, lambda v: isinstance(v, int) and not isinstance(v, bool)), "card_id": (False, _is_pos_int),
                 "row": (True, _is_nonneg_int), "col": (True, _is_nonneg_int), "size_x": (True, _is_pos_int),
                 "size_y": (True, _is_pos_int), "parameter_mappings": (False, lambda v: isinstance(v, list)),
                 "visualization_settings": (False, lambda v: isinstance(v, dict)), "series": (False, lambda v: isinstance(v, list))},
    "PUT /api/table/:id": {"description": (True, lambda v: isinstance(v, str))},
    "PUT /api/field/:id": {"description": (True, lambda v: isinstance(v, str))},
}
SCHEMAS["PUT /api/card/:id"] = {k: (False, p) for k, (_, p) in SCHEMAS["POST /api/card"].items()}


def violations_of(schema: str, body: Any) -> list[str]:
    if not isinstance(body, dict):
        return [f"{schema}: body is not a JSON object"]
    rules = SCHEMAS[schema]
    out = [f"{schema}: unknown key {k!r}" for k in body if k not in rules]
    for key, (required, ok) in rules.items():
        if key not in body:
            if required:
                out.append(f"{schema}: missing {key!r}")
        elif not ok(body[key]):
            out.append(f"{schema}: bad {key!r}: {body[key]!r}")
    return out


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
        if path == "/api/health":
            return 200, {"status": "ok"}
        if path == "/api/session/properties" and method == "GET":
            return 200, {"setup-token": self.setup_token, "has-user-setup": bool(self.users)}
        if path == "/api/setup" and method == "POST":
            return self._setup(body)
        if path == "/api/session" and method == "POST":
            errors = violations_of("POST /api/session", body)
            if errors:
                return self._bad(errors)
            if self.users.get(body["username"]) != body["password"]:
                return 401, {"errors": {"password": "did not match stored password"}}
            return 200, {"id": self._session()}
        if session not in self.sessions:
            return 401, "Unauthenticated"
        route = re.sub(r"/\d+", "/:id", path)
        ids = [int(x) for x in re.findall(r"/(\d+)", path)]
        handler = getattr(self, "_" + method.lower() + route.replace("/api", "").replace("/:id", "_id").replace("/", "_"), None)
        if handler is None:
            return 404, f"no fake for {method} {route}"
        return handler(*ids, query=query, body=body)

    def _bad(self, errors: list[str]) -> tuple[int, Any]:
        self.violations += errors
        return 400, {"errors": errors}

    def _session(self) -> str:
        token = f"session-{len(self.sessions) + 1}"
        self.sessions.add(token)
        return token

    def _setup(self, body) -> tuple[int, Any]:
        errors = violations_of("POST /api/setup", body)
        if not errors:
            errors += violations_of("setup.user", body["user"]) + violations_of("setup.prefs", body["prefs"])
        if errors:
            return self._bad(errors)
        if self.setup_token is None or body["token"] != self.setup_token:
            return 403, "Token does not match the setup token."
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

    def _check_db(self, schema, body):
        errors = violations_of(schema, body)
        if not errors and "details" in body and body.get("engine", "postgres") == "postgres":
            errors += violations_of("postgres.details", body["details"])
        return errors

    def _post_database(self, query, body):
        errors = self._check_db("POST /api/database", body)
        if errors:
            return self._bad(errors)
        db = {"id": self._id(), "name": body["name"], "engine": body["engine"], "details": body["details"],
              "is_full_sync": body.get("is_full_sync", True)}
        self.databases[db["id"]] = db
        return 200, self._public_db(db)

    def _get_database_id(self, db_id, query, body):
        return (200, self._public_db(self.databases[db_id])) if db_id in self.databases else (404, "Not found.")

    def _put_database_id(self, db_id, query, body):
        errors = self._check_db("PUT /api/database/:id", body)
        if errors:
            return self._bad(errors)
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
        errors = violations_of("PUT /api/table/:id", body)
        if errors:
            return self._bad(errors)
        self.tables[tid]["description"] = body["description"]
        return 200, self.tables[tid]

    def _put_field_id(self, fid, query, body):
        errors = violations_of("PUT /api/field/:id", body)
        if errors:
            return self._bad(errors)
        self.fields[fid]["description"] = body["description"]
        return 200, self.fields[fid]

    # collections
    def _get_collection(self, query, body):
        return 200, [{"id": "root", "name": "Our analytics"}, *self.collections.values()]

    def _post_collection(self, query, body):
        errors = violations_of("POST /api/collection", body)
        if errors:
            return self._bad(errors)
        c = {"id": self._id(), "name": body["name"], "description": body.get("description"), "location": "/",
             "archived": False}
        self.collections[c["id"]] = c
        return 200, c

    def _put_collection_id(self, cid, query, body):
        errors = violations_of("PUT /api/collection/:id", body)
        if errors:
            return self._bad(errors)
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
    def _check_card(self, schema, body):
        errors = violations_of(schema, body)
        if not errors and "dataset_query" in body:
            errors += violations_of("native.dataset_query", body["dataset_query"])
        return errors

    def _post_card(self, query, body):
        errors = self._check_card("POST /api/card", body)
        if errors:
            return self._bad(errors)
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
        errors = self._check_card("PUT /api/card/:id", body)
        if errors:
            return self._bad(errors)
        self.cards[card_id].update(body)
        return 200, self.cards[card_id]

    # dashboards
    def _post_dashboard(self, query, body):
        errors = violations_of("POST /api/dashboard", body)
        if errors:
            return self._bad(errors)
        d = {"id": self._id(), "name": body["name"], "description": body.get("description"),
             "collection_id": body.get("collection_id"), "dashcards": [], "archived": False}
        self.dashboards[d["id"]] = d
        return 200, d

    def _get_dashboard_id(self, dash_id, query, body):
        return 200, self.dashboards[dash_id]

    def _put_dashboard_id(self, dash_id, query, body):
        errors = violations_of("PUT /api/dashboard/:id", body)
        for dc in body.get("dashcards", []) if isinstance(body, dict) else []:
            errors += violations_of("dashcard", dc)
        if isinstance(body, dict) and "dashcards" in body:
            ids = [dc.get("id") for dc in body["dashcards"]]
            if len(ids) != len(set(ids)):
                errors.append("PUT /api/dashboard/:id: dashcards ids are not unique")
            unknown = [dc.get("card_id") for dc in body["dashcards"] if dc.get("card_id") not in self.cards]
            if unknown:
                errors.append(f"PUT /api/dashboard/:id: unknown card ids {unknown}")
        if errors:
            return self._bad(errors)
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
