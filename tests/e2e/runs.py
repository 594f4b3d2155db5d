"""Helpers for the fault and concurrency tests: real `voice-analytics run` processes, watched
through pg_stat_activity and killed with SIGKILL (their whole process group, dbt included)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUN_ID = re.compile(r"^run ([0-9a-f-]{36}):", re.M)


class Run:
    """`python -m voice_analytics_dagster.tools.cli run` in its own session (process group), with the
    test session's environment (VOICE_ANALYTICS_HOME, VOICE_ANALYTICS_DATABASE, ...)."""

    def __init__(self, source: Path, log: Path, *args: str, env: dict | None = None):
        self.log_path = log
        environ = {**os.environ, **(env or {})}
        environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), environ.get("PYTHONPATH")]))
        self._log = open(log, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "voice_analytics_dagster.tools.cli", "run", "--source", str(source), *args],
            stdout=self._log, stderr=subprocess.STDOUT, env=environ, cwd=PROJECT_ROOT, start_new_session=True,
        )

    @property
    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    @property
    def run_id(self) -> str | None:
        m = RUN_ID.search(self.output)
        return m.group(1) if m else None

    def wait(self, timeout: float = 300) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._log.close()

    def kill(self) -> None:
        """SIGKILL to the whole process group (the CLI and the dbt it started), then reap."""
        pgid = self.proc.pid
        os.killpg(pgid, signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()
        deadline = time.time() + 10
        while time.time() < deadline and _live_members(pgid):
            time.sleep(0.1)
        assert not _live_members(pgid), f"processes of the killed run survive: {_live_members(pgid)}"


def _live_members(pgid: int) -> list[str]:
    out = []
    for p in psutil.process_iter(["pid", "name", "status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {p.info['name']}")
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return out


def wait_for_backend(db, where: str, run: Run, timeout: float = 240) -> list[tuple]:
    """Poll pg_stat_activity of ``db`` until a backend matches the SQL condition ``where``
    (columns of pg_stat_activity); fail with the run's output if the run ends first."""
    deadline = time.time() + timeout
    query = ("select pid, application_name, wait_event_type, left(query, 200) from pg_stat_activity "
             f"where datname = current_database() and pid <> pg_backend_pid() and ({where})")
    while time.time() < deadline:
        rows = db.rows(query)
        if rows:
            return rows
        if run.proc.poll() is not None:
            raise AssertionError(f"the run ended (exit {run.proc.returncode}) before the phase was reached:\n"
                                 + run.output[-3000:])
        time.sleep(0.1)
    raise AssertionError(f"phase not reached in {timeout} s ({where}):\n" + run.output[-3000:])


def fingerprint(db, lineage: bool = True) -> dict[str, str]:
    """Content fingerprint of every certified table (the logs aside) and the publication log's
    row count. The logs grow by design: publication_log, fct_abandonment_model_history (one row
    per training) and fct_session_outcome_history (one row per version of a session's outcome,
    with the build times that saw it); the training's own identity and clock (training_id, trained_at, fit_seconds)
    are left out of the model tables, whose figures are deterministic for the same data.
    ``lineage=False`` also leaves out the lineage columns (``*batch_id``, and the model's record of
    the files and folders it was trained on): the same rows delivered in another file have other
    batch ids and checksums and the same content otherwise."""
    tables = [r[0] for r in db.rows(
        "select table_name from information_schema.tables where table_schema = 'analytics' "
        "and table_name not in ('publication_log', 'fct_abandonment_model_history', 'fct_session_outcome_history') "
        "order by 1")]
    out = {}
    for t in tables:
        # lineage: the load batches a row came from, and the files and folders a training read
        lineage_clause = "" if lineage else (" or column_name like '%%batch_id' or column_name in "
                                             "('source_folders', 'input_files', 'input_sha256')")
        drop = [r[0] for r in db.rows(
            "select column_name from information_schema.columns where table_schema = 'analytics' "
            "and table_name = %s and (column_name in ('training_id', 'trained_at', 'fit_seconds')"
            + lineage_clause + ")", (t,))]
        out[t] = db.scalar(
            f"select md5(coalesce(string_agg(r, '|' order by r), '')) from "
            f"(select (to_jsonb(x) - %s::text[])::text as r from analytics.\"{t}\" x) s", (drop,))
    out["publication_log rows"] = str(db.scalar("select count(*) from analytics.publication_log"))
    return out


def content(fp: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fp.items() if k != "publication_log rows"}


def incomplete_batches(db) -> list[tuple]:
    """Loaded batches whose rows in raw / quarantine differ from their counts, and rejected or
    vanished batches that left rows behind. Empty when no half-loaded batch counts as loaded."""
    from voice_analytics_dagster.lib.contract import TABLES

    bad = []
    for t in TABLES:
        bad += db.rows(
            f"""select b.batch_id, b.table_name, b.status, b.rows_read, b.rows_loaded, b.rows_quarantined,
                       (select count(*) from raw.{t.name} r where r._batch_id = b.batch_id) as in_raw,
                       (select count(*) from raw.quarantine q where q.batch_id = b.batch_id) as in_quarantine
                from raw.load_batches b
                where b.table_name = %s
                  and ((b.status = 'loaded' and (b.rows_read <> b.rows_loaded + b.rows_quarantined
                        or b.rows_loaded <> (select count(*) from raw.{t.name} r where r._batch_id = b.batch_id)
                        or b.rows_quarantined <> (select count(*) from raw.quarantine q where q.batch_id = b.batch_id)))
                    or (b.status = 'rejected' and (exists (select from raw.{t.name} r where r._batch_id = b.batch_id)
                        or exists (select from raw.quarantine q where q.batch_id = b.batch_id))))""",
            (t.name,))
    return bad


def batches_of(db, folder: Path) -> dict[str, tuple]:
    """file name -> (batch_id, status, rows_read) of the batches loaded from ``folder``."""
    return {r[0]: tuple(r[1:]) for r in db.rows(
        "select file_name, batch_id, status, rows_read from raw.load_batches where file_path like %s",
        (str(Path(folder).resolve()) + "/%",))}


def run_events(run_id: str, event_type: str | None = None) -> list:
    """The Dagster event log of a run (from the test session's instance)."""
    from dagster._core.events import DagsterEventType

    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings

    instance = open_instance(get_settings())
    kind = getattr(DagsterEventType, event_type) if event_type else None
    return list(instance.all_logs(run_id, of_type=kind) if kind else instance.all_logs(run_id))


def runs_in_progress(database: str) -> list[str]:
    """Dagster runs of a warehouse database that show as in progress."""
    import dagster as dg

    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.runlock import DATABASE_TAG
    from voice_analytics_dagster.lib.settings import get_settings

    instance = open_instance(get_settings())
    return [r.run_id for r in instance.get_runs(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED], tags={DATABASE_TAG: database}))]


def run_status(run_id: str) -> str:
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings

    return open_instance(get_settings()).get_run_by_id(run_id).status.value
