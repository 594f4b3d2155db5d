"""Freshness: Dagster's own last-update checks on the raw sessions and on the certified fact, and
the hourly job that evaluates them alone, so that a stalled export is noticed even on days when
the pipeline does not run (the alert sensor reports their failures). Warn severity: the data that
did arrive are still correct."""

import datetime as dt
import warnings

import dagster as dg

from voice_analytics_dagster.defs.ingestion.assets import raw_asset_key
from voice_analytics_dagster.defs.publish.assets import published_key

# A daily delivery schedule: nothing loaded or published for 36 h means a delivery was missed.
FRESHNESS_HOURS = 36
FRESHNESS_JOB = "voice_analytics_freshness"

# Checks, not the newer freshness policies: those are a preview in open-source Dagster (off by
# default, alerts in Dagster+ only), while check evaluations reach this project's alert sensor.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.SupersessionWarning)
    freshness_checks = dg.build_last_update_freshness_checks(
        assets=[raw_asset_key("voice_sessions"), published_key("fact_voice_ai_sessions")],
        lower_bound_delta=dt.timedelta(hours=FRESHNESS_HOURS),
        severity=dg.AssetCheckSeverity.WARN,
    )

freshness_job = dg.define_asset_job(
    FRESHNESS_JOB,
    selection=dg.AssetSelection.checks(*freshness_checks),
    description=f"Evaluate the freshness checks (warn after {FRESHNESS_HOURS} h without a load or a publication).",
    executor_def=dg.in_process_executor,
)
