"""The dbt project as Dagster assets: staging -> intermediate -> marts, dbt tests as asset checks.

Error-severity tests are blocking checks: a failing one fails the dbt step, and nothing
downstream (publication included) runs in that run. Per-model behaviour lives in dbt ``meta``
(``certified``, ``grain``), read by the translator's small named rules below.
"""


import json
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets, get_asset_key_for_model
from pydantic import Field

from voice_analytics_dagster.defs.transform.dbt_cli import dbt_build_args, wait_for_dbt_parse
from voice_analytics_dagster.defs.transform.incremental import plan_build, record_build
from voice_analytics_dagster.defs.transform.project import dbt_project
from voice_analytics_dagster.defs.transform.resources import dbt_environment
from voice_analytics_dagster.defs.transform.translator import metadata_queries, translator
from voice_analytics_dagster.lib.resources import WarehouseLockResource, WarehouseResource
from voice_analytics_dagster.lib.retry import MAX_RETRIES, backoff_seconds, dbt_failure_is_transient
from voice_analytics_dagster.lib.settings import get_settings


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


def dbt_build_with_retry(context: dg.AssetExecutionContext, dbt: DbtCliResource, args: list[str],
                         warehouse) -> Iterator[Any]:
    """``dbt build``, run again (up to MAX_RETRIES times, exponential backoff) when it failed
    because the warehouse connection was lost; never when a test failed or SQL was wrong
    (retry.dbt_failure_is_transient).

    An attempt's events are held until dbt has finished and yielded only from the attempt that
    counts. Why: Dagster's own storage lives on the same server, and an event stored while the
    server restarts fails the step with a framework error that no retry policy catches
    (measured: a restart during dbt lost the whole run that way before this change)."""
    for attempt in range(MAX_RETRIES + 1):
        invocation = dbt.cli(args, context=context, raise_on_error=False)
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
    """Run configuration of the dbt step (ops: {voice_dbt_models: {config: ...}}); the defaults
    are the daily incremental run."""

    full_refresh: bool = Field(
        default=False, description="Rebuild every incremental model from scratch (dbt build --full-refresh).")
    from_date: str | None = Field(
        default=None, description="Backfill: also rebuild the session days from this day (YYYY-MM-DD) ...")
    to_date: str | None = Field(
        default=None, description="... to this day, inclusive (either end may be omitted).")
    lookback_days: int | None = Field(
        default=None, description="Days before the latest affected day rebuilt too (default: "
                                  "VOICE_ANALYTICS_LOOKBACK_DAYS, 3).")


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project, dagster_dbt_translator=translator)
def voice_dbt_models(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource,
                     warehouse_lock: WarehouseLockResource, config: DbtBuildConfig):
    """Build and test the dbt models (dbt build) against the warehouse: incrementally, the session
    days touched by new load batches (voice_analytics_dagster/defs/transform/incremental.py), unless configured
    to rebuild everything or a date range."""
    wh = warehouse.get()
    settings = get_settings()
    plan = build_id = None
    if FACT_KEY in context.selected_asset_keys:
        lookback = settings.lookback_days if config.lookback_days is None else config.lookback_days
        with wh.connect() as conn:
            plan, build_id = plan_build(conn, lookback, config.full_refresh, context.run_id,
                                        config.from_date, config.to_date)
        context.log.info(f"dbt build: {plan.mode} ({plan.reason})"
                         + (f"; session days rebuilt: {len(plan.session_days)}" if plan.session_days is not None else ""))
    args = dbt_build_args(settings, full_refresh=plan.full_refresh if plan else config.full_refresh)
    wait_for_dbt_parse()  # `voice-analytics run` parses in the background during ingestion
    succeeded = False
    try:
        with dbt_environment(wh):
            for event in dbt_build_with_retry(context, dbt, args, wh):
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


def dbt_model_key(model_name: str) -> dg.AssetKey:
    return get_asset_key_for_model([voice_dbt_models], model_name)
