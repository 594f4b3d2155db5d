"""Running the pipeline from the command line (``voice-analytics run`` / ``demo``). The run goes
through the real Dagster instance, so it shows in the UI's run history like a scheduled one."""

from __future__ import annotations

import contextlib
import datetime as dt
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from voice_analytics_dagster.defs.transform.parse import start_dbt_parse
from voice_analytics_dagster.lib.contract import LOAD_ORDER
from voice_analytics_dagster.lib.settings import get_settings
from voice_analytics_dagster.lib.warehouse import Warehouse


@dataclass
class RunOutcome:
    run_id: str
    success: bool
    published: bool
    tables: dict[str, int] = field(default_factory=dict)
    blocked_by: list[str] = field(default_factory=list)
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    # files this run loaded: (file, delivery, read, loaded, quarantined); loaded + quarantined = read
    loads: list[tuple[str, str | None, int, int, int]] = field(default_factory=list)
    read: str = ""  # what the publication was computed from (lib/provenance.py: Inputs.summary)
    report_path: Path | None = None
    log_path: Path | None = None

    def report(self) -> str:
        lines = []
        if self.published:
            lines.append(f"run {self.run_id}: published {len(self.tables)} certified tables to schema analytics")
            if self.read:
                lines.append(f"  read: {self.read}")
            width = max((len(t) for t in self.tables), default=10)
            for name, rows in sorted(self.tables.items()):
                lines.append(f"  analytics.{name:<{width}} {rows:>12,} rows")
        else:
            lines.append(f"run {self.run_id}: NOT published; the certified schema analytics is unchanged.")
            lines.append("Blocked by:")
            lines += ["  " + line for line in (self.message or "unknown").splitlines()]
        if self.loads:
            lines.append("Rows of the files loaded by this run (read = loaded + quarantined):")
            for file, delivery, read, loaded, quarantined in self.loads:
                name = f"{delivery}/{file}" if delivery else file
                lines.append(f"  {name:<32} read {read:>10,} = loaded {loaded:>10,} + quarantined {quarantined:>8,}")
        if self.warnings:
            lines.append("Warnings (did not block):")
            lines += [f"  {w}" for w in self.warnings]
        if self.report_path is not None:
            lines.append(f"Report: {self.report_path}")
        if self.log_path is not None:
            lines.append(f"Full log (Dagster events, dbt output, stack traces): {self.log_path}")
        return "\n".join(lines)


def _say(message: str) -> None:
    print(f"voice-analytics: {message}", file=sys.stderr, flush=True)


DBT_OPS = ("voice_dbt_session_models", "voice_dbt_models")


def dbt_ops_config(node_names: list[str], full_refresh: bool = False, lookback_days: int | None = None) -> dict:
    """Run config of the dbt steps for every node of the dbt assets in a job (Dagster splits
    voice_dbt_models into voice_dbt_models, voice_dbt_models_2, ... around the abandonment model).
    Pure."""
    config: dict = {"full_refresh": True} if full_refresh else {}
    # "is not None": a lookback of 0 days is a setting, not an absence
    if lookback_days is not None:
        config["lookback_days"] = lookback_days
    if not config:
        return {}
    nodes = [n for n in node_names if any(n == op or n.startswith(op + "_") for op in DBT_OPS)]
    return {n: {"config": config} for n in sorted(nodes)}


def session_day_range(from_date: str | None, to_date: str | None, delivered: tuple | None,
                      partitions: tuple[str, str]) -> tuple[dt.date, dt.date] | None:
    """The session days of a backfill (inclusive), or None without one. An omitted end is the
    earliest / latest session day delivered (``delivered``: (first, last) or None), else the
    first / last partition. Both ends must have a partition. Pure."""
    from voice_analytics_dagster.defs.transform.incremental import parse_day

    start, end = parse_day(from_date, "from_date"), parse_day(to_date, "to_date")
    if start is None and end is None:
        return None
    first, last = (dt.date.fromisoformat(p) for p in partitions)
    start = start or (delivered[0] if delivered else first)
    end = end or (delivered[1] if delivered else last)
    if start > end:
        raise ValueError(f"from_date {start} is after to_date {end}")
    for name, day in (("from_date", start), ("to_date", end)):
        if not first <= day <= last:
            raise ValueError(f"{name} {day} has no session-day partition: they run from {first} "
                             f"(VOICE_ANALYTICS_FIRST_SESSION_DAY) to {last}")
    return start, end


def _delivered_days(wh: Warehouse) -> tuple | None:
    if not wh.scalar("select to_regclass('raw.voice_sessions') is not null"):
        return None
    row = wh.fetchall("select min(created_at), max(created_at) from raw.voice_sessions")[0]
    return None if row[0] is None else (row[0], row[1])


def run_pipeline(source: Path, verbose: bool = False, full_refresh: bool = False,
                 extra_run_config: dict | None = None, wait_seconds: float | None = None,
                 from_date: str | None = None, to_date: str | None = None,
                 lookback_days: int | None = None, accept_shrink: bool = False,
                 source_format: str | None = None, refit_model: bool = False) -> RunOutcome:
    """Materialize every asset from ``source``; publish iff every blocking check passed.
    ``source_format``: csv, lex-v2, dialogflow-cx or rasa; None: detected by the run.

    The run holds the warehouse run lock from before the Dagster run starts to the end
    (runlock.py): a concurrent run waits up to ``wait_seconds`` (default
    VOICE_ANALYTICS_RUN_LOCK_WAIT; 0 = refuse at once), then raises RunLockBusy."""
    from voice_analytics_dagster.lib import runlock

    settings = get_settings()
    wh = Warehouse(settings)
    wh.ensure_databases()
    wait = settings.run_lock_wait_seconds if wait_seconds is None else wait_seconds
    options = RunOptions(full_refresh=full_refresh, from_date=from_date, to_date=to_date,
                         lookback_days=lookback_days, accept_shrink=accept_shrink, source_format=source_format,
                         refit_model=refit_model)
    with runlock.hold(wh.url(), "cli", wait, on_wait=_say):
        return _run_locked(settings, wh, Path(source).resolve(), verbose, extra_run_config, options)


@dataclass(frozen=True)
class RunOptions:
    full_refresh: bool = False
    from_date: str | None = None
    to_date: str | None = None
    lookback_days: int | None = None
    accept_shrink: bool = False
    source_format: str | None = None  # None: detected by the run's sources step
    refit_model: bool = False  # train the abandonment model now (as a full refresh does)


def run_config(source: Path, job_nodes: list[str], options: RunOptions, verbose: bool,
               extra: dict | None = None) -> dict:
    """The Dagster run config of a CLI run. Pure."""
    source_config = {"source_dir": str(source)}
    if options.source_format is not None:
        source_config["format"] = options.source_format
    config: dict = {
        "resources": {"export_source": {"config": source_config}},
        # the event log goes to the run's log file (and the instance); the terminal gets a summary
        "loggers": {"console": {"config": {"log_level": "DEBUG" if verbose else "INFO"}}},
    }
    ops = dbt_ops_config(job_nodes, full_refresh=options.full_refresh, lookback_days=options.lookback_days)
    if options.accept_shrink:
        ops[PUBLISH_OP] = {"config": {"accept_shrink": True}}
    if (options.refit_model or options.full_refresh) and MODEL_OP in job_nodes:
        ops[MODEL_OP] = {"config": {"refit": True}}
    if ops:
        config["ops"] = ops
    for key, value in (extra or {}).items():
        config.setdefault(key, {}).update(value)
    return config


PUBLISH_OP = "publish_certified_schema"
MODEL_OP = "abandonment_model"


def _run_locked(settings, wh: Warehouse, source: Path, verbose: bool, extra_run_config: dict | None,
                options: RunOptions) -> RunOutcome:
    from voice_analytics_dagster.defs.transform import parse

    # also the build step when the project changed; the parse itself overlaps the ingestion, and
    # the run's dbt step (this process: in-process executor) waits for it
    pending = parse.pending_parse = start_dbt_parse(settings, wh.conninfo())
    try:
        return _execute(settings, wh, source, verbose, extra_run_config, options)
    finally:
        parse.pending_parse = None
        with contextlib.suppress(subprocess.CalledProcessError):
            pending.wait()  # a run that failed before dbt still leaves a finished parse


def launch_tags(source: Path, source_format: str | None = None) -> dict[str, str]:
    """What the run reads, as run tags, known before it starts (a source that cannot be read is
    reported by the run's sources or ingestion step, with its file, line and column). The
    dataset of platform records is known once they are converted: that step adds it."""
    from voice_analytics_dagster.defs.ingestion.batches import discover_deliveries
    from voice_analytics_dagster.defs.ingestion.sources import resolve_format
    from voice_analytics_dagster.lib.provenance import (
        CSV_FORMAT,
        FORMAT_TAG,
        SOURCE_TAG,
        dataset_of_source,
        run_tags,
    )

    try:
        fmt = resolve_format(source, source_format).format
        if fmt != CSV_FORMAT:
            return {SOURCE_TAG: str(source), FORMAT_TAG: fmt}
        dataset = dataset_of_source([d.folder for d in discover_deliveries(source)])
    except Exception:  # noqa: BLE001 - the run's sources and ingestion steps report it properly
        return {}
    return run_tags(source, CSV_FORMAT, dataset)


def _execute(settings, wh: Warehouse, source: Path, verbose: bool, extra_run_config: dict | None,
             options: RunOptions) -> RunOutcome:
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB
    from voice_analytics_dagster.defs.publish.blocks import record_unpublished_run
    from voice_analytics_dagster.defs.report.assets import report_path
    from voice_analytics_dagster.defs.transform.partitions import day_that_ended, range_tags, session_days
    from voice_analytics_dagster.defs.transform.partitions import launch_tags as launch_partition_tags
    from voice_analytics_dagster.lib.eventlog import failed_checks
    from voice_analytics_dagster.lib.instance import WAREHOUSE_TAG, open_instance
    from voice_analytics_dagster.lib.runlock import DATABASE_TAG, LOCK_TAG, fail_orphaned_runs

    instance = open_instance(settings, wh)
    database = wh.conninfo().dbname
    for dead in fail_orphaned_runs(instance, database):
        _say(f"run {dead} had died holding the warehouse run lock: marked failed")

    job = defs.resolve_job_def(PIPELINE_JOB)
    config = run_config(source, [n.name for n in job.graph.nodes], options, verbose, extra_run_config)
    # Dagster's event log, dbt's output and any stack trace go to the log file; the terminal gets
    # the outcome in plain lines (and the file's name)
    log_dir = settings.home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / "last-run.log"
    tags = {WAREHOUSE_TAG: "write", DATABASE_TAG: database, LOCK_TAG: "held",
            **launch_tags(source, options.source_format)}
    # a backfill is a run over a range of session-day partitions, as the UI's backfill launches it
    one_end_omitted = (options.from_date is None) != (options.to_date is None)
    backfill = session_day_range(options.from_date, options.to_date, _delivered_days(wh) if one_end_omitted else None,
                                 (session_days.get_first_partition_key(), session_days.get_last_partition_key()))
    # otherwise the day that ended, as the daily schedule runs it; the run reports every other
    # day it rebuilt (defs/transform/partitions.py)
    tags.update(range_tags(*backfill) if backfill else launch_partition_tags(day_that_ended(settings.schedule_timezone)))
    with open(log_path, "w") as log:
        with contextlib.redirect_stdout(sys.stdout if verbose else log), \
                contextlib.redirect_stderr(sys.stderr if verbose else log):
            result = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False, tags=tags)
    run_id = result.run_id
    loads = _loads_of_run(wh, run_id)

    checks = failed_checks(instance, run_id)
    row = wh.fetchall(
        "select status, tables, sources, formats, dataset, generator_seeds, inputs from analytics.publication_log "
        "where run_id = %s", (run_id,)
    ) if _has_publication_log(wh) else []
    published = bool(row) and row[0][0] == "published"
    warnings = [f"{c.name} (severity {c.severity})" for c in checks if not c.blocking]
    shown_log = None if verbose else log_path
    if published:
        from voice_analytics_dagster.lib.provenance import Inputs

        read = Inputs(row[0][6] or []).summary() if row[0][6] else ""
        report = report_path(settings)
        return RunOutcome(run_id, result.success, True, dict(row[0][1]), warnings=warnings, loads=loads, read=read,
                          report_path=report if report.exists() else None, log_path=shown_log)
    names, message = record_unpublished_run(instance, wh, run_id)
    return RunOutcome(run_id, result.success, False, blocked_by=names, message=message, warnings=warnings,
                      loads=loads, log_path=shown_log)


def _loads_of_run(wh: Warehouse, run_id: str) -> list[tuple[str, str | None, int, int, int]]:
    if not wh.scalar("select to_regclass('raw.load_batches') is not null"):
        return []
    return [tuple(r) for r in wh.fetchall(
        "select file_name, delivery, rows_read, rows_loaded, rows_quarantined from raw.load_batches "
        "where dagster_run_id = %s and status = 'loaded' "
        "order by delivery nulls first, array_position(%s::text[], table_name), batch_id",
        (run_id, list(LOAD_ORDER)))]


def _has_publication_log(wh: Warehouse) -> bool:
    return bool(wh.scalar("select to_regclass('analytics.publication_log') is not null"))
