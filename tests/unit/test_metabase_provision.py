"""The provisioning client against a local fake of Metabase's REST API (tests/metabase_fake.py, on
127.0.0.1): it sets up a fresh Metabase, connects the warehouse as the BI role limited to
analytics, creates the collection, every card and every dashboard with valid bodies, and a second
run creates and changes nothing. Never run against a real Metabase (none can be downloaded here)."""

from __future__ import annotations

import json

import pytest

from tests.metabase_fake import FakeMetabase, FakeServer, violations_of
from voice_analytics_dagster.metabase import client
from voice_analytics_dagster.metabase.spec import load_collection, selected_columns, tables_read

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


def test_the_fake_refuses_bodies_that_break_the_documented_api():
    # the checks that make the tests above meaningful
    assert violations_of("POST /api/card", {"name": "x", "display": "table", "visualization_settings": {}}) == [
        "POST /api/card: missing 'dataset_query'"]
    assert violations_of("dashcard", {"id": -1, "card_id": 3, "row": 0, "col": 0, "size_x": 0, "size_y": 4}) == [
        "dashcard: bad 'size_x': 0"]
    assert violations_of("POST /api/collection", {"name": "x", "colour": "#fff"}) == [
        "POST /api/collection: unknown key 'colour'"]


def test_native_sql_reads_both_query_shapes():
    assert client.native_sql({"type": "native", "native": {"query": "select 1"}}) == "select 1"
    assert client.native_sql({"stages": [{"lib/type": "mbql.stage/native", "native": "select 2"}]}) == "select 2"
    assert client.native_sql({"type": "query", "query": {"source-table": 1}}) is None


def test_the_cli_provisions_with_the_configured_bi_role(fresh, monkeypatch, capsys):
    from voice_analytics_dagster.cli import main
    from voice_analytics_dagster.settings import get_settings, reset_settings_cache

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
