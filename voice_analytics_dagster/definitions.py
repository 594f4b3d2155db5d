"""The code location: assembles the stages in the order data flows through them; no logic here."""

import dagster as dg

from voice_analytics_dagster.defs.automation.alerts import check_failure_alerts, run_failure_alerts
from voice_analytics_dagster.defs.automation.freshness import freshness_checks, freshness_job
from voice_analytics_dagster.defs.automation.jobs import pipeline_job
from voice_analytics_dagster.defs.automation.schedules import (
    freshness_schedule,
    landing_sensor,
    voice_analytics_daily,
)
from voice_analytics_dagster.defs.bi.assets import dashboard_specs
from voice_analytics_dagster.defs.ingestion.assets import raw_assets
from voice_analytics_dagster.defs.ingestion.source_assets import source_assets
from voice_analytics_dagster.defs.model.assets import abandonment_model
from voice_analytics_dagster.defs.publish.assets import publish_certified_schema
from voice_analytics_dagster.defs.report.assets import voice_analytics_report
from voice_analytics_dagster.defs.transform.assets import voice_dbt_models, voice_dbt_session_models
from voice_analytics_dagster.defs.transform.checks import asset_checks as fact_checks
from voice_analytics_dagster.defs.transform.resources import dbt_resource
from voice_analytics_dagster.lib.resources import (
    ExportSourceResource,
    WarehouseLockResource,
    WarehouseResource,
)

defs = dg.Definitions(
    assets=[
        *source_assets,              # ingestion: sources/ (platform logs converted onto the contract)
        *raw_assets,                 # ingestion: raw/<table>
        voice_dbt_session_models,    # transform: the session-day partitions, raw -> fact
        voice_dbt_models,            # transform: staging/, intermediate/, marts/, snapshots/
        abandonment_model,           # model: analysis/
        publish_certified_schema,    # publish: analytics/
        voice_analytics_report,      # report: reports/
        *dashboard_specs(),          # bi: metabase/<dashboard>
    ],
    asset_checks=[*fact_checks, *freshness_checks],
    jobs=[pipeline_job, freshness_job],
    schedules=[voice_analytics_daily, freshness_schedule],
    sensors=[landing_sensor, check_failure_alerts, run_failure_alerts],
    resources={
        "warehouse": WarehouseResource(),
        "warehouse_lock": WarehouseLockResource(),
        "export_source": ExportSourceResource(),
        "dbt": dbt_resource(),
    },
    executor=dg.in_process_executor,
)
