"""The Dagster instance's storages keep their PostgreSQL connections (storage.py), on the real
server: storage calls reuse one backend, and dispose() closes it."""

import pytest
import sqlalchemy as sa

pytestmark = [pytest.mark.integration]


def _backend_pids(storage, calls: int) -> set[int]:
    pids = set()
    for _ in range(calls):
        with storage._engine.connect() as conn:
            pids.add(conn.execute(sa.text("select pg_backend_pid()")).scalar_one())
    return pids


def _alive(admin, pids: set[int]) -> set[int]:
    rows = admin.execute("select pid from pg_stat_activity where pid = any(%s)", (sorted(pids),)).fetchall()
    return {pid for (pid,) in rows}


def test_storage_calls_reuse_one_connection_and_dispose_closes_it(server):
    import time

    import psycopg

    from voice_analytics_dagster.lib.compat import (
        PooledPostgresEventLogStorage,
        PooledPostgresRunStorage,
        PooledPostgresScheduleStorage,
    )
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.lib.warehouse import Warehouse

    settings = get_settings()
    instance = open_instance(settings)
    storages = (instance.run_storage, instance.event_log_storage, instance.schedule_storage)
    assert [type(s) for s in storages] == [
        PooledPostgresRunStorage, PooledPostgresEventLogStorage, PooledPostgresScheduleStorage]
    pids: set[int] = set()
    for storage in storages:
        assert isinstance(storage._engine.pool, sa.pool.QueuePool)
        # one backend for 20 calls (dagster-postgres's NullPool: 20 backends, one per call)
        used = _backend_pids(storage, 20)
        assert len(used) == 1
        pids |= used
    # public calls go through the same pools: the same backends afterwards
    for _ in range(10):
        instance.get_runs(limit=1)
        instance.get_asset_keys()
    assert set().union(*(_backend_pids(s, 1) for s in storages)) == pids
    with psycopg.connect(Warehouse(settings).conninfo().url(dbname="postgres"), autocommit=True) as admin:
        assert _alive(admin, pids) == pids
        instance.dispose()
        instance.schedule_storage.dispose()  # DagsterInstance.dispose leaves the schedule storage
        # a backend ends shortly after its client closes the connection
        deadline = time.monotonic() + 10
        while _alive(admin, pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive(admin, pids) == set()
