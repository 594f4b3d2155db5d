"""The dbt project as Dagster assets: staging -> intermediate -> marts, dbt tests as asset checks.

Error-severity tests are blocking checks: a failing one fails the dbt step, and nothing
downstream (publication included) runs in that run. Per-model behaviour lives in dbt ``meta``
(``certified``, ``grain``), read by the translator's small named rules below.
"""


import contextlib
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets, get_asset_key_for_model
from pydantic import Field

from voice_analytics_dagster.defs.transform.dbt_cli import (
    INVOCATION_FOLDER,
    PARSE_STATE_FOLDER,
    dbt_build_args,
    invocation_folder_name,
    stale_invocation_folders,
)
from voice_analytics_dagster.defs.transform.incremental import plan_build, record_build
from voice_analytics_dagster.defs.transform.parse import ensure_dbt_parse, parse_states_dir
from voice_analytics_dagster.defs.transform.partitions import (
    SESSION_DAY_TAG,
    days_outside,
    run_window,
    session_days,
    subset_backfill_vars,
)
from voice_analytics_dagster.defs.transform.project import dbt_project
from voice_analytics_dagster.defs.transform.relations import FACT
from voice_analytics_dagster.defs.transform.resources import dbt_environment
from voice_analytics_dagster.defs.transform.translator import metadata_queries, translator
from voice_analytics_dagster.lib.resources import WarehouseLockResource, WarehouseResource
from voice_analytics_dagster.lib.retry import MAX_RETRIES, backoff_seconds, dbt_failure_is_transient
from voice_analytics_dagster.lib.settings import DBT_TARGET_DIR, get_settings


def _markdown_table(columns: list[str], rows: list[tuple]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _declared_metadata() -> dict[dg.AssetKey, dict[str, tuple[str, str]]]:
    """Per asset key, the metadata its dbt model declares (translator.metadata_queries)."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    models = {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] == "model"}
    out = {}
    for node in models.values():
        queries = metadata_queries(node, models)
        if queries:
            out[translator.get_asset_key(node)] = queries
    return out


DECLARED_METADATA = _declared_metadata()


def _day_replaced_keys() -> frozenset[dg.AssetKey]:
    """The models a build rebuilds day by day (dbt tag ``session_day``), whose rebuilt days are
    reported as partitions."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    return frozenset(translator.get_asset_key(n) for n in manifest["nodes"].values()
                     if n["resource_type"] in ("model", "snapshot") and SESSION_DAY_TAG in n.get("tags", []))


DAY_REPLACED_KEYS = _day_replaced_keys()


def _metadata_value(kind: str, cursor) -> Any:
    rows = cursor.fetchall()
    if kind == "scalar":
        return rows[0][0] if rows else None
    if kind == "list":
        return [r[0] for r in rows]
    if kind == "mapping":
        return {str(r[0]): r[1] for r in rows}
    return dg.MetadataValue.md(_markdown_table([c.name for c in cursor.description], rows))


def _enrich(event, key: dg.AssetKey, warehouse) -> Any:
    """The metadata a model declares in its dbt meta, computed after it was built."""
    queries = DECLARED_METADATA.get(key)
    if not queries:
        return event
    with warehouse.connect(autocommit=True) as conn:
        extra = {name: _metadata_value(kind, conn.execute(sql)) for name, (kind, sql) in queries.items()}
    return event.with_metadata({**event.metadata, **extra})


def _run_results(invocation) -> dict | None:
    try:
        return invocation.get_artifact("run_results.json")
    except (OSError, ValueError):
        return None


# dagster-dbt's per-invocation target folders kept for inspection (two per run: a few days of
# daily runs, and every folder of a bench's runs)
KEEP_INVOCATION_FOLDERS = 20


def prune_invocation_folders() -> None:
    """Delete all but the newest dagster-dbt invocation folders under dbt's target, and all but
    the newest partial-parse states (dbt_cli.stale_invocation_folders says which and why)."""
    for parent, pattern in ((DBT_TARGET_DIR, INVOCATION_FOLDER), (parse_states_dir(), PARSE_STATE_FOLDER)):
        folders = [(p.name, p.stat().st_mtime) for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
        for name in stale_invocation_folders(folders, time.time(), KEEP_INVOCATION_FOLDERS, min_age_s=3600,
                                             pattern=pattern):
            shutil.rmtree(parent / name, ignore_errors=True)


def invocation_target(context: dg.AssetExecutionContext, parse_state: Path) -> Path:
    """A new target folder for one dbt invocation, holding a copy of the run's partial-parse state:
    dagster-dbt copies target/partial_parse.msgpack (a state for whichever connection parsed last)
    only into a folder that has none. A state pruned meanwhile by another run is not copied: dbt
    then parses the whole project, slower but the same build."""
    folder = DBT_TARGET_DIR / invocation_folder_name(context.op_execution_context.op.name, context.run_id,
                                                uuid.uuid4().hex[:7])
    folder.mkdir(parents=True)
    with contextlib.suppress(FileNotFoundError):
        shutil.copy(parse_state, folder / parse_state.name)
    return folder


def dbt_build_with_retry(context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str],
                         warehouse, parse_state: Path) -> Iterator[Any]:
    """``dbt build``, run again (up to MAX_RETRIES times, exponential backoff) when it failed
    because the warehouse connection was lost; never when a test failed or SQL was wrong
    (retry.dbt_failure_is_transient).

    An attempt's events are held until dbt has finished and yielded only from the attempt that
    counts. Why: Dagster's own storage lives on the same server, and an event stored while the
    server restarts fails the step with a framework error that no retry policy catches
    (measured: a restart during dbt lost the whole run that way before this change)."""
    for attempt in range(MAX_RETRIES + 1):
        invocation = dbt.cli(args, context=context, raise_on_error=False,
                             target_path=invocation_target(context, parse_state))
        events = list(invocation.stream())
        if invocation.is_successful():
            yield from events
            return
        messages = [str(invocation.get_error())]  # dagster-dbt's error names dbt's error lines
        if attempt < MAX_RETRIES and dbt_failure_is_transient(_run_results(invocation), messages):
            wait = backoff_seconds(attempt)
            time.sleep(wait)
            try:  # wait for the server (connect retries with backoff) rather than spend an attempt
                warehouse.connect().close()
            except Exception:  # noqa: BLE001 - the next attempt reports it
                pass
            # logged once the server answers again (Dagster's event log lives on it too)
            context.log.warning(
                f"dbt build lost the warehouse connection; retry {attempt + 1}/{MAX_RETRIES} after {wait:g} s")
            continue
        yield from events
        raise invocation.get_error()


FACT_KEY = dg.AssetKey(["marts", "fact_voice_ai_sessions"])


class DbtBuildConfig(dg.Config):
    """Run configuration of the dbt steps (ops: {voice_dbt_session_models: {config: ...}}, the same
    for voice_dbt_models); the defaults are the daily incremental run. A date range is a partition
    range of the session-day models, not configuration (partitions.py)."""

    full_refresh: bool = Field(
        default=False, description="Rebuild every incremental model from scratch (dbt build --full-refresh).")
    lookback_days: int | None = Field(
        default=None, description="Days before the latest affected day rebuilt too (default: "
                                  "VOICE_ANALYTICS_LOOKBACK_DAYS, 3).")


def _session_days_built(wh, plan) -> list[str]:
    """The session days a successful build wrote: the plan's, or every day of the fact after a
    full build."""
    if plan.session_days is not None:
        return list(plan.session_days)
    return [str(r[0]) for r in wh.fetchall(f"select distinct session_date from {FACT} "
                                           "where session_date is not null order by 1")]


def _materialized_days(context: dg.AssetExecutionContext, wh, plan, window) -> Iterator[dg.AssetMaterialization]:
    """Each session day the build rebuilt outside the run's window, reported as a materialization
    of that day's partition of every session-day model built (a late turn for 1 May in 3 May's
    run shows 1 May as materialized again)."""
    report, unpartitioned = days_outside(_session_days_built(wh, plan), window, session_days)
    if unpartitioned:
        context.log.warning(f"{len(unpartitioned)} session day(s) rebuilt have no partition "
                            f"(first {unpartitioned[0]}, last {unpartitioned[-1]}); partitions start on "
                            f"{session_days.get_first_partition_key()} (VOICE_ANALYTICS_FIRST_SESSION_DAY)")
    keys = context.selected_asset_keys & DAY_REPLACED_KEYS
    for key in sorted(keys, key=lambda k: k.to_user_string()):
        for day in report:
            yield dg.AssetMaterialization(asset_key=key, partition=day,
                                          metadata={"rebuilt_by": f"{plan.mode} build ({plan.reason})"})


def _build(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource,
           config: DbtBuildConfig) -> Iterator[Any]:
    """One dbt step: ``dbt build`` of the step's models; the session-day step first decides which
    session days to rebuild (incremental.py) and reports each one it rebuilt."""
    wh = warehouse.get()
    settings = get_settings()
    plan = build_id = None
    window = run_window(context)
    extra_vars = None
    if FACT_KEY in context.selected_asset_keys:
        lookback = settings.lookback_days if config.lookback_days is None else config.lookback_days
        with wh.connect() as conn:
            plan, build_id = plan_build(conn, lookback, config.full_refresh, context.run_id,
                                        *(window or (None, None)))
        context.log.info(f"dbt build: {plan.mode} ({plan.reason})"
                         + (f"; session days rebuilt: {len(plan.session_days)}" if plan.session_days is not None else ""))
    elif window is not None:
        # a subset without the fact (the UI's backfill of some session models): no plan is made
        # (the batches stay unbuilt for the fact), so the models rebuild the window's days, named
        # as vars (dbt/macros/incremental.sql), not the last plan's
        extra_vars = subset_backfill_vars(context.assets_def.partitions_def is not None, context.partition_keys)
    args = dbt_build_args(settings, full_refresh=plan.full_refresh if plan else config.full_refresh,
                          extra_vars=extra_vars)
    prune_invocation_folders()
    parse_state = ensure_dbt_parse(settings, wh.conninfo())
    succeeded = False
    try:
        with dbt_environment(wh):
            for event in dbt_build_with_retry(context, dbt, args, wh, parse_state):
                if isinstance(event, dg.Output):
                    key = context.assets_def.keys_by_output_name[event.output_name]
                    event = _enrich(event, key, wh)
                    if plan is not None and key == FACT_KEY:
                        event = event.with_metadata({
                            **event.metadata, "build_mode": plan.mode, "build_reason": plan.reason,
                            "session_days_rebuilt": len(plan.session_days) if plan.session_days is not None else -1,
                        })
                yield event
        succeeded = True
    finally:
        if plan is not None:
            with wh.connect() as conn:
                record_build(conn, plan, build_id, succeeded, context.run_id)
    if plan is not None:
        yield from _materialized_days(context, wh, plan, window)


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            select=f"+tag:{SESSION_DAY_TAG}", partitions_def=session_days,
            backfill_policy=dg.BackfillPolicy.single_run())
def voice_dbt_session_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource,
                             warehouse_lock: WarehouseLockResource, config: DbtBuildConfig):
    """Build and test the fact, partitioned by session day, and what it is built from: the
    session-grain models (dbt tag ``session_day``: staged sessions, turns and AI metrics, the
    session intermediates, the fact, the outcome snapshot) rebuild the days touched by new load
    batches (incremental.py) and the run's partition range, or everything on a full build; the
    whole-history inputs of the fact (staged users and applications, source validation, the join
    gates) are rebuilt whole by every run."""
    yield from _build(context, dbt, warehouse, config)


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator,
            exclude=f"+tag:{SESSION_DAY_TAG}")
def voice_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource,
                     warehouse_lock: WarehouseLockResource, config: DbtBuildConfig):
    """Build and test the models downstream of the fact, over the whole history: the KPI marts,
    data quality, the model's views and the session export (dbt build)."""
    yield from _build(context, dbt, warehouse, config)


def dbt_model_key(model_name: str) -> dg.AssetKey:
    # both dbt assets read one manifest through one translator: a model's key does not depend on
    # which of the two builds it (dagster-dbt takes one assets definition here)
    return get_asset_key_for_model([voice_dbt_models], model_name)
