"""The embedded server is set up for bulk analytics when its data folder is new
(warehouse.EMBEDDED_SERVER_SETTINGS, with the measurements behind each setting)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

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


def test_without_xdg_runtime_dir_starting_and_stopping_print_no_warning():
    """Containers and CI have no XDG_RUNTIME_DIR; platformdirs' warning about it (raised inside
    pgserver) printed on every command that touched the server, `db-stop` included."""
    home = tempfile.mkdtemp(prefix="va-xdg-")  # short: the server's socket path must stay under 108 bytes
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_RUNTIME_DIR", "VOICE_ANALYTICS_DATABASE")}
    env["VOICE_ANALYTICS_HOME"] = home
    try:
        for command in ("db-url", "db-stop"):
            done = subprocess.run([sys.executable, "-m", "voice_analytics_dagster.tools.cli", command], env=env,
                                  capture_output=True, text=True, timeout=180, check=False)
            assert done.returncode == 0, done.stderr
            assert "XDG_RUNTIME_DIR" not in done.stderr, done.stderr
        assert "stopped" in done.stdout + done.stderr  # the server did run, and db-stop stopped it
    finally:
        subprocess.run([sys.executable, "-m", "voice_analytics_dagster.tools.cli", "db-stop"], env=env,
                       capture_output=True, check=False, timeout=180)
        shutil.rmtree(home, ignore_errors=True)
