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
