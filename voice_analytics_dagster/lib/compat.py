"""The one place that reaches into a framework's internals, because a gap in the framework forces it.

dagster-postgres opens a new PostgreSQL connection for every storage call (SQLAlchemy's NullPool;
only the webserver swaps in a pool, without a ping). A run stores each of its events through such
a call: a 10,000-session run opened 1,559 connections, each a backend started and torn down on a
2-core machine busy with dbt (docs/PERFORMANCE.md). Upstream: dagster-io/dagster#20325 (the
connections Dagster opens) and #33935 (pool settings in dagster.yaml, not configurable today).

These storages are dagster-postgres's, with the engine replaced by a pooled one that pings a
connection before use (so that a restarted server's stale connection is replaced, not failed).
Two lines touch a private member (``_engine``); tests/integration/test_instance_storage.py proves
on the pinned versions that they still do what they say. Remove this module when dagster-postgres
takes pool settings from dagster.yaml.
"""

from __future__ import annotations

from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, get_token_provider_from_config, pg_url_from_config

# Extra connections while calls overlap (the in-process executor makes them one at a time; a
# sensor or the webserver's pages may not). The webserver's own default is 20.
MAX_OVERFLOW = 10
# Connections older than this are replaced at checkout (the webserver's default: 1 hour).
POOL_RECYCLE_SECONDS = 3600

MODULE = __name__


class _Pooled:
    """The engine swap shared by the three storages: each builds its NullPool engine and checks its
    tables with it; then this replaces the engine with a pooled one on the same URL."""

    def __init__(self, *args, token_provider=None, **kwargs):
        super().__init__(*args, token_provider=token_provider, **kwargs)
        pooled = create_pg_engine(self.postgres_url, token_provider, isolation_level="AUTOCOMMIT", pool_size=1,
                                  max_overflow=MAX_OVERFLOW, pool_recycle=POOL_RECYCLE_SECONDS, pool_pre_ping=True)
        unpooled, self._engine = self._engine, pooled  # private member 1 of 2
        unpooled.dispose()

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
        self._engine.dispose()  # private member 2 of 2: the pool's open connections


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
