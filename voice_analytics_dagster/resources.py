"""Dagster resources: the warehouse, the export source and dbt."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dagster as dg
from dagster_dbt import DbtCliResource
from pydantic import PrivateAttr

from voice_analytics_dagster.dbt_support import dbt_env, dbt_executable
from voice_analytics_dagster.project import dbt_project
from voice_analytics_dagster.settings import get_settings
from voice_analytics_dagster.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse of this environment (settings come from the environment)."""

    def get(self) -> Warehouse:
        return Warehouse(get_settings())

    @contextlib.contextmanager
    def dbt_environment(self) -> Iterator[None]:
        """Export the dbt connection variables for the dbt subprocess, restoring them after."""
        settings = get_settings()
        env = dbt_env(settings, Warehouse(settings).conninfo())
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class WarehouseLockResource(dg.ConfigurableResource):
    """The warehouse run lock (runlock.py), held from the start of a run to its end.

    Dagster initialises a run's resources once, before its first step, when the job runs in one
    process (every job here uses the in-process executor), and tears them down after the last
    step: the lock covers the whole run. When ``voice-analytics run`` already holds the lock in
    this process, the resource uses that one. Required by every asset that writes the warehouse
    (ingestion, dbt, publication), so any selection of them takes it."""

    # None: VOICE_ANALYTICS_RUN_LOCK_WAIT; 0: refuse at once when another run holds the lock
    wait_seconds: float | None = None

    _lock = PrivateAttr(default=None)
    _owned: bool = PrivateAttr(default=False)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        from voice_analytics_dagster.runlock import DATABASE_TAG, LOCK_TAG, RunLock, fail_orphaned_runs, held_by_this_process

        settings = get_settings()
        wh = Warehouse(settings)
        wh.ensure_databases()
        existing = held_by_this_process(wh.url())
        if existing is not None:
            self._lock, self._owned = existing, False
            return
        run_id = getattr(context, "run_id", None) or "unknown"
        lock = RunLock(wh.url(), owner=f"run={run_id[:8]}")
        wait = settings.run_lock_wait_seconds if self.wait_seconds is None else self.wait_seconds
        log = context.log.warning if context.log is not None else None
        lock.acquire(wait, on_wait=log)
        self._lock, self._owned = lock, True
        instance = getattr(context, "instance", None)
        if instance is not None and run_id != "unknown":
            database = wh.conninfo().dbname
            instance.add_run_tags(run_id, {DATABASE_TAG: database, LOCK_TAG: "held"})
            for dead in fail_orphaned_runs(instance, database, run_id):
                if context.log is not None:
                    context.log.warning(f"run {dead} had died holding the warehouse run lock: marked failed")

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._owned and self._lock is not None:
            self._lock.release()
        self._lock, self._owned = None, False

    def verify(self) -> None:
        """Before publishing: the lock is still this run's (see RunLock.verify)."""
        if self._lock is not None:
            self._lock.verify()


class ExportSourceResource(dg.ConfigurableResource):
    """Where exports come from: an export folder (five CSV files) or a landing folder of dated
    deliveries. Unset: the configured landing folder (VOICE_ANALYTICS_LANDING_DIR)."""

    source_dir: str | None = None

    def folder(self):
        from pathlib import Path

        if self.source_dir:
            return Path(self.source_dir).expanduser().resolve()
        landing = get_settings().landing_dir
        if landing is None:
            raise dg.Failure(
                "no export source: pass --source DIR (run config resources.export_source.config.source_dir) "
                "or set VOICE_ANALYTICS_LANDING_DIR"
            )
        return landing


class LeanDbtCliResource(DbtCliResource):
    """dagster-dbt's DbtCliResource without two costs it pays on every ``cli()`` call that this
    project has no use for (measured with cProfile on a run of the real sample, 30 Nov):

    - an in-process dbt adapter (loads the profile, project and macros: 2.7 s per call), used only
      by ``fetch_column_metadata`` / ``fetch_row_counts``, which no asset here calls;
    - ``dbt --version`` in a subprocess (2.3 s, once per process) to learn the version of the dbt
      it runs: that is the dbt-core installed with this package (``dbt_executable()``), whose
      version the package metadata gives.

    A run has two dbt steps: ~7.5 s less per run, whatever the data size."""

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 - dagster-dbt's signature
        return None

    @property
    def _cli_version(self):
        from importlib.metadata import version as installed

        from packaging import version

        return version.parse(installed("dbt-core"))


def dbt_resource() -> DbtCliResource:
    return LeanDbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
