"""The embedded server is set up for bulk analytics when its data folder is new
(warehouse.EMBEDDED_SERVER_SETTINGS, with the measurements behind each setting)."""

from __future__ import annotations

import psycopg


def test_a_new_embedded_server_writes_minimal_wal_and_sorts_text_by_bytes(server):
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.lib.warehouse import Warehouse

    with psycopg.connect(server.url(dbname="postgres"), autocommit=True) as conn:
        assert conn.execute("show wal_level").fetchone()[0] == "minimal"
        assert conn.execute("show max_wal_senders").fetchone()[0] == "0"
        providers = dict(conn.execute("select datname, datlocprovider from pg_database").fetchall())
    warehouse_db = Warehouse(get_settings()).conninfo().dbname
    # every database made after the set-up (the warehouse, Dagster's, each test's) is builtin
    assert providers["template1"] == providers[warehouse_db] == providers["dagster"] == "b"
    with psycopg.connect(server.url(dbname=warehouse_db)) as conn:
        # byte order, as libc's C.UTF-8 sorted: upper case before lower, 'é' after 'z'
        got = [r[0] for r in conn.execute("select v from unnest(array['é', 'b', 'Z', 'a']) v order by v")]
        assert got == ["Z", "a", "b", "é"]
        assert conn.execute("select upper('é')").fetchone()[0] == "É"  # case mapping is Unicode's


def test_an_existing_cluster_is_left_as_it_is(server):
    from voice_analytics_dagster.lib.warehouse import _configure_new_cluster

    # the test session's server has databases already: nothing to change, no restart
    assert _configure_new_cluster(server) is False
