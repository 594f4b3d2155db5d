"""The code location: assembles the stages; no logic here."""

import dagster as dg

from .assets.abandonment import abandonment_model
from .assets.dbt import voice_dbt_models
from .assets.ingestion import raw_assets
from .assets.publish import publish_certified_schema
from .assets.report import voice_analytics_report
from .checks import asset_checks
from .jobs import pipeline_job
from .resources import ExportSourceResource, WarehouseResource, dbt_resource

defs = dg.Definitions(
    assets=[*raw_assets, voice_dbt_models, abandonment_model, publish_certified_schema,
            voice_analytics_report],
    asset_checks=asset_checks,
    jobs=[pipeline_job],
    resources={
        "warehouse": WarehouseResource(),
        "export_source": ExportSourceResource(),
        "dbt": dbt_resource(),
    },
    executor=dg.in_process_executor,
)
