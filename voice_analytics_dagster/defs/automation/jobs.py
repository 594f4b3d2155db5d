"""Jobs: the whole pipeline, in one process (on 2 cores the multiprocess executor costs a Python
start per step: a 5-step job took 53 s against 16 s in-process, TOOLCHAIN-NOTES.md)."""

import dagster as dg

from voice_analytics_dagster.lib.instance import WAREHOUSE_TAG

PIPELINE_JOB = "voice_analytics_pipeline"

pipeline_job = dg.define_asset_job(
    PIPELINE_JOB,
    selection=dg.AssetSelection.all(),
    description="Load new deliveries, build and test every model, fit the model, publish the certified schema.",
    executor_def=dg.in_process_executor,
    tags={WAREHOUSE_TAG: "write"},
)

FRESHNESS_JOB = "voice_analytics_freshness"


def build_freshness_job():
    """Evaluates the freshness checks alone, hourly: a stalled export is noticed even on days
    when the pipeline does not run (the alert sensor reports their failures)."""
    from voice_analytics_dagster.defs.checks import publication_fresh, raw_load_fresh

    return dg.define_asset_job(
        FRESHNESS_JOB,
        selection=dg.AssetSelection.checks(raw_load_fresh, publication_fresh),
        description="Evaluate the raw-load and publication freshness checks (warn).",
        executor_def=dg.in_process_executor,
    )


freshness_job = build_freshness_job()
