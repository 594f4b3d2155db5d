"""Dagster's PostgreSQL storages (runs, event log, schedules) with their connections kept open.

dagster-postgres opens a new PostgreSQL connection for every storage call (SQLAlchemy's NullPool;
only the webserver swaps in a pool, ``optimize_for_webserver``). A run stores each of its events
through such a call: a 10,000-session run opened 1,559 connections to the ``dagster`` database
(pg_stat_database.sessions before and after, 1 Dec), at 2.3 ms each against 0.4 ms for a pooled
connection checked with a ping (200 of each, idle server): ~3 s of every run, the same at any
data size, plus a backend started and torn down per event on a 2-core machine busy with dbt.

These subclasses keep one connection per storage (more while calls overlap, closed when they
return) and ping it before each use (``pool_pre_ping``): after a server restart the stale
connection is replaced instead of failing the call, as a fresh connection per call did not
(tests/e2e/test_faults.py restarts the server twice during a run). dagster.yaml names them
(instance.render_dagster_yaml), so the CLI, the daemon's runs and the webserver all use them.
"""

from __future__ import annotations

from typing import Any

from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

# Extra connections while calls overlap (the in-process executor makes them one at a time; a
# sensor or the webserver's pages may not). The webserver's own default is 20.
MAX_OVERFLOW = 10
# Connections older than this are replaced at checkout (the webserver's default: 1 hour).
POOL_RECYCLE_SECONDS = 3600

MODULE = __name__


def pooled_engine(storage) -> Any:
    """A pooled engine for ``storage``'s URL, as dagster-postgres creates its NullPool one."""
    return create_pg_engine(
        storage.postgres_url, storage._token_provider, isolation_level="AUTOCOMMIT",
        pool_size=1, max_overflow=MAX_OVERFLOW, pool_recycle=POOL_RECYCLE_SECONDS, pool_pre_ping=True,
    )


class _Pooled:
    """The engine swap shared by the three storages (each builds its NullPool engine, checks its
    tables with it, then this replaces it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._engine.dispose()
        self._engine = pooled_engine(self)

    @classmethod
    def from_config_value(cls, inst_data, config_value):
        return cls(
            inst_data=inst_data,
            postgres_url=pg_url_from_config(config_value),
            should_autocreate_tables=config_value.get("should_autocreate_tables", True),
            token_provider=get_token_provider_from_config(config_value),
        )

    def dispose(self) -> None:
        super().dispose()
        self._engine.dispose()  # the pool's open connections (the base class held none)


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    pass


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    pass


class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    pass


STORAGE_CLASSES = {
    "run_storage": PooledPostgresRunStorage.__name__,
    "event_log_storage": PooledPostgresEventLogStorage.__name__,
    "schedule_storage": PooledPostgresScheduleStorage.__name__,
}
