"""The dbt project as Dagster assets: staging -> intermediate -> marts, dbt tests as asset checks.

Error-severity tests are blocking checks: a failing one fails the dbt step, and nothing
downstream (publication included) runs in that run. Per-model behaviour lives in dbt ``meta``
(``certified``, ``grain``), read by the translator's small named rules below.
"""


import time
from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
    get_asset_key_for_model,
)
from pydantic import Field

from .. import warmup
from ..dbt_support import dbt_build_args, wait_for_dbt_parse
from ..incremental import plan_build, record_build
from ..project import dbt_project
from ..resources import WarehouseLockResource, WarehouseResource
from ..retry import MAX_RETRIES, backoff_seconds, dbt_failure_is_transient
from ..settings import get_settings
from .ingestion import raw_asset_key


def _is_source(props: Mapping[str, Any]) -> bool:
    return props.get("resource_type") == "source"


def _schema_of(props: Mapping[str, Any]) -> str:
    return (props.get("config") or {}).get("schema") or props.get("schema") or "marts"


def _meta(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**(props.get("meta") or {}), **((props.get("config") or {}).get("meta") or {})}


def is_certified(props: Mapping[str, Any]) -> bool:
    return bool(_meta(props).get("certified"))


def _meta_asset_key(props: Mapping[str, Any]) -> dg.AssetKey | None:
    """An explicit key in dbt meta (``meta: {dagster: {asset_key: [...]}}``), e.g. for a source
    written by a Python asset."""
    key = (_meta(props).get("dagster") or {}).get("asset_key")
    return dg.AssetKey(key) if key else None


class VoiceDbtTranslator(DagsterDbtTranslator):
    """dbt sources are the assets that write them (the raw ingestion assets unless their meta
    names another key); models are keyed and grouped by their schema."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        explicit = _meta_asset_key(dbt_resource_props)
        if explicit is not None:
            return explicit
        if _is_source(dbt_resource_props):
            return raw_asset_key(dbt_resource_props["name"])
        return dg.AssetKey([_schema_of(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if _is_source(dbt_resource_props):
            return None  # the asset that writes the source owns its group
        return _schema_of(dbt_resource_props)

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        if is_certified(dbt_resource_props):
            tags["certified"] = ""
        return tags

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        metadata = dict(super().get_metadata(dbt_resource_props))
        grain = _meta(dbt_resource_props).get("grain")
        if grain:
            metadata["grain"] = grain
        metadata["certified"] = is_certified(dbt_resource_props)
        return metadata


translator = VoiceDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))


def _markdown_table(columns: list[str], rows: list[tuple]) -> str:
    def fmt(v):
        if isinstance(v, float):
            return f"{v:.4f}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _enrich(event, key: dg.AssetKey, warehouse) -> Any:
    """Measurements and exclusion counts as materialization metadata of the models that own them."""
    if key == dg.AssetKey(["marts", "dq_source_validation"]):
        rows = warehouse.fetchall(
            "select measurement, n_checked, n_agree, agreement_rate, threshold, decision "
            "from marts.dq_source_validation order by gate nulls last, measurement"
        )
        return event.with_metadata({
            **event.metadata,
            "measurements": dg.MetadataValue.md(
                _markdown_table(["measurement", "n_checked", "n_agree", "agreement", "threshold", "decision"], rows)
            ),
            "gates_open": [r[0] for r in rows if r[5].startswith("supports")],
            "gates_closed": [r[0] for r in rows if r[5].startswith("blocks")],
        })
    if key == dg.AssetKey(["marts", "fact_voice_ai_sessions"]):
        n_fact = warehouse.scalar("select count(*) from marts.fact_voice_ai_sessions")
        reasons = warehouse.fetchall(
            "select exclusion_reason, count(*) from intermediate.int_session_exclusions group by 1 order by 2 desc"
        )
        return event.with_metadata({
            **event.metadata,
            "dagster/row_count": n_fact,
            "sessions_excluded": sum(n for _, n in reasons),
            "exclusions_by_reason": {r: n for r, n in reasons},
        })
    return event


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
        messages = list(getattr(invocation, "_error_messages", []))
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
    days touched by new load batches (voice_analytics_dagster/incremental.py), unless configured
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
    warmup.start(context.job_def.asset_layer.selected_asset_keys)  # later steps' imports, while dbt runs
    succeeded = False
    try:
        with warehouse.dbt_environment():
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
