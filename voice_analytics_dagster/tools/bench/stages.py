"""Pure helpers: which bench stage a Dagster step belongs to, stage times from step events, and
the split of a dbt step into dbt's start, its command and Dagster's handling of its events."""

from __future__ import annotations

import json
import statistics

from voice_analytics_dagster.lib.contract import TABLES

FILES = tuple(f"{t.name}.csv" for t in TABLES)
SAMPLE_SECONDS = 0.2
RUN_DATABASE = "voice_analytics_bench_run"


# -- pure helpers (unit-tested) ---------------------------------------------------------------

STAGES = ("ingestion", "dbt", "checks", "model", "publish", "report")


def stage_of_step(step_key: str) -> str:
    """The bench stage a Dagster step of the pipeline job belongs to.

    Step keys are Dagster's: ``source_adapters`` (the sources/* assets: a platform's logs
    converted onto the contract), ``raw_export`` (the five raw assets; ``raw__<table>`` when they were
    one step each), ``voice_dbt_session_models`` (the session-day models),
    ``voice_dbt_models`` and ``voice_dbt_models_2`` (the rest, split in two steps around the model,
    whose export table dbt builds after it), ``<asset>_<check>`` for Python asset checks, ``abandonment_model``,
    ``publish_certified_schema``, ``reports__voice_analytics_report``."""
    from voice_analytics_dagster.defs.automation.freshness import freshness_checks
    from voice_analytics_dagster.defs.transform.checks import asset_checks

    check_names = set()
    for c in [*asset_checks, *freshness_checks]:
        for spec in getattr(c, "check_specs", ()):
            check_names.add(spec.name)
    if any(step_key.endswith("_" + name) for name in check_names) or step_key.startswith("freshness_check"):
        return "checks"
    if step_key in ("source_adapters", "raw_export") or step_key.startswith("raw__"):
        return "ingestion"
    if step_key.startswith("voice_dbt_"):
        return "dbt"
    if step_key == "abandonment_model":
        return "model"
    if step_key == "publish_certified_schema":
        return "publish"
    if "report" in step_key:
        return "report"
    return "other"


def step_intervals(events: list[tuple[float, str, str]]) -> dict[str, tuple[float, float]]:
    """(start, end) per step key from (timestamp, event type, step key) triples."""
    starts: dict[str, float] = {}
    out: dict[str, tuple[float, float]] = {}
    for ts, kind, key in sorted(events):
        if kind == "STEP_START":
            starts[key] = ts
        elif kind in ("STEP_SUCCESS", "STEP_FAILURE") and key in starts:
            out[key] = (starts[key], ts)
    return out


def stage_seconds(intervals: dict[str, tuple[float, float]]) -> dict[str, float]:
    totals = {s: 0.0 for s in STAGES}
    for key, (a, b) in intervals.items():
        stage = stage_of_step(key)
        totals[stage] = totals.get(stage, 0.0) + (b - a)
    return totals


def peak_in(timeline: list[tuple[float, int]], start: float, end: float) -> int | None:
    """Largest sampled RSS (bytes) within [start, end] (the sample just before counts too: the
    step may have started from it)."""
    inside = [rss for t, rss in timeline if start <= t <= end]
    before = [rss for t, rss in timeline if t < start]
    if before:
        inside.append(before[-1])
    return max(inside) if inside else None


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None




def dbt_node_times(run_id: str) -> list[tuple[str, float]]:
    """Per-node execution times from the run_results.json of this run's dbt steps (dagster-dbt
    writes each invocation to dbt/target/<step>-<run id prefix>-<hash>/)."""
    from voice_analytics_dagster.lib.settings import DBT_TARGET_DIR

    out = []
    for path in DBT_TARGET_DIR.glob(f"*-{run_id[:7]}-*/run_results.json"):
        for r in json.loads(path.read_text()).get("results", []):
            out.append((r["unique_id"], float(r.get("execution_time") or 0.0)))
    return sorted(out, key=lambda x: -x[1])


def _iso(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def dbt_invocations(run_id: str) -> list[dict]:
    """Where each dbt step's time goes, from its dbt.log: the whole dbt command, the project
    load (start to "Concurrency: N threads", i.e. parsing), and the nodes' execution
    (run_results.json elapsed_time); split_dbt_step adds what the step spent before dbt's first
    and after its last log line (the dbt process starting is not Dagster's share)."""
    from voice_analytics_dagster.lib.settings import DBT_TARGET_DIR

    out = []
    for folder in sorted(DBT_TARGET_DIR.glob(f"*-{run_id[:7]}-*")):
        log, results = folder / "dbt.log", folder / "run_results.json"
        if not log.exists():
            continue
        first = threads = last = None
        partial = True
        for line in log.read_text(errors="replace").splitlines():
            try:
                info = json.loads(line)["info"]
            except (ValueError, KeyError):
                continue
            first = first or info["ts"]
            last = info["ts"]
            if info.get("code") == "Q027" and threads is None:
                threads = info["ts"]
            if "Unable to do partial parsing" in info.get("msg", ""):
                partial = False
        item = {"step": folder.name.rsplit("-", 2)[0], "partial_parse": partial,
                "command_s": _iso(last) - _iso(first) if first else None,
                "load_s": _iso(threads) - _iso(first) if threads else None,
                "first_ts": _iso(first) if first else None, "last_ts": _iso(last) if last else None}
        if results.exists():
            item["execute_s"] = json.loads(results.read_text()).get("elapsed_time")
        out.append(item)
    return out


def split_dbt_step(invocation: dict, interval: tuple[float, float] | None) -> dict:
    """The dbt step's time around dbt's command: ``startup_s`` from the step's start to dbt's first
    log line (dagster-dbt preparing the invocation and the dbt process importing dbt), ``after_s``
    from dbt's last log line to the step's end (Dagster storing the step's events). Pure."""
    out = dict(invocation)
    if interval is not None and invocation.get("first_ts") is not None and invocation.get("last_ts") is not None:
        out["startup_s"] = invocation["first_ts"] - interval[0]
        out["after_s"] = interval[1] - invocation["last_ts"]
    return out


