"""The hourly freshness job evaluates only Dagster's freshness checks (the raw sessions and the
certified fact); on an instance where neither was ever materialized both fail with warn
severity, and the run itself succeeds."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration]


def test_freshness_job_warns_when_nothing_was_ever_loaded_or_published(fresh_db, dbt_manifest):
    import dagster as dg

    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.freshness import FRESHNESS_JOB

    # an instance of its own: the test session's instance holds other tests' materializations
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def(FRESHNESS_JOB).execute_in_process(instance=instance, raise_on_error=False)
    evaluations = {e.event_specific_data.asset_key.to_user_string(): e.event_specific_data
                   for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert set(evaluations) == {"raw/voice_sessions", "analytics/fact_voice_ai_sessions"}
    for evaluation in evaluations.values():
        assert evaluation.check_name == "freshness_check"
        assert not evaluation.passed and evaluation.severity.value == "WARN"
    assert result.success  # warn checks never fail a run
    materialized = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert materialized == []
