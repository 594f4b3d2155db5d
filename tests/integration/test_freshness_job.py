"""The hourly freshness job evaluates only the two freshness checks; on a warehouse that never
loaded or published anything both fail with warn severity, and the run itself succeeds."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.integration]


def test_freshness_job_warns_on_a_warehouse_that_never_loaded(fresh_db, dbt_manifest):
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import FRESHNESS_JOB

    result = defs.resolve_job_def(FRESHNESS_JOB).execute_in_process(raise_on_error=False)
    evaluations = {e.event_specific_data.check_name: e.event_specific_data
                   for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}
    assert set(evaluations) == {"raw_load_fresh", "publication_fresh"}
    for evaluation in evaluations.values():
        assert not evaluation.passed and evaluation.severity.value == "WARN"
        assert any(v.value == "never" for v in evaluation.metadata.values())
    assert result.success  # warn checks never fail a run
    materialized = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    assert materialized == []
