"""The code location: assembles the stages; no logic here."""

import dagster as dg

from .assets.dbt import voice_dbt_models
from .assets.ingestion import raw_assets
from .assets.publish import publish_certified_schema
from .checks import asset_checks
from .jobs import pipeline_job
from .resources import ExportSourceResource, WarehouseResource, dbt_resource

defs = dg.Definitions(
    assets=[*raw_assets, voice_dbt_models, publish_certified_schema],
    asset_checks=asset_checks,
    jobs=[pipeline_job],
    resources={
        "warehouse": WarehouseResource(),
        "export_source": ExportSourceResource(),
        "dbt": dbt_resource(),
    },
    executor=dg.in_process_executor,
)
