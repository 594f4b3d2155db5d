"""Dagster resources shared by the stages: the warehouse, its run lock and the export source."""

from __future__ import annotations

import dagster as dg
from pydantic import PrivateAttr

from voice_analytics_dagster.lib.settings import get_settings
from voice_analytics_dagster.lib.warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse of this environment (settings come from the environment)."""

    def get(self) -> Warehouse:
        return Warehouse(get_settings())


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
        from voice_analytics_dagster.lib.runlock import (
            DATABASE_TAG,
            LOCK_TAG,
            RunLock,
            fail_orphaned_runs,
            held_by_this_process,
        )

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
    """Where exports come from: an export folder (five CSV files, or the logs of Amazon Lex V2,
    Dialogflow CX or Rasa) or a landing folder of dated deliveries. Unset: the configured
    landing folder (VOICE_ANALYTICS_LANDING_DIR). ``format``: csv, lex-v2, dialogflow-cx or
    rasa; unset: detected from the files (defs/ingestion/sources.py)."""

    source_dir: str | None = None
    format: str | None = None

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
