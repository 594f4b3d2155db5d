"""The real pipeline on an export too small to fit the model (40 sessions): the model claims
nothing, every session still gets its (NULL) score row in the same transaction as the other model
tables, the training still records the data it read, and the run publishes."""

from __future__ import annotations

import pytest

from tests.e2e.analysis_reference import frame

pytestmark = [pytest.mark.e2e]

SESSIONS = 40


@pytest.fixture(scope="module")
def too_few(module_db, tmp_path_factory, dbt_manifest):
    from voice_analytics_dagster.tools.generator import generate_export
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("too_few")
    generate_export(out, SESSIONS, seed=5, progress=False)
    outcome = run_pipeline(out)
    assert outcome.published, outcome.report()
    return module_db


def test_too_few_sessions_claim_nothing_and_every_session_has_a_null_score(too_few, use_db):
    db = use_db(too_few)
    metrics = frame(db, "select * from analytics.fct_abandonment_model_metrics").iloc[0]
    assert metrics.status == "insufficient_data" and metrics.strongest_driver is None
    assert frame(db, "select * from analytics.fct_abandonment_drivers").empty
    scores = frame(db, "select s.session_id, s.abandonment_risk from analysis.abandonment_session_scores s "
                       "join marts.fact_voice_ai_sessions f using (session_id)")
    fact_sessions = db.scalar("select count(*) from marts.fact_voice_ai_sessions")
    assert len(scores) == fact_sessions > 0 and scores.abandonment_risk.isna().all()
    assert db.scalar("select count(*) from analytics.fct_abandonment_model_history") == 1
    history = frame(db, "select * from analytics.fct_abandonment_model_history").iloc[0]
    assert history.dataset == "synthetic" and history.n_sessions_read == SESSIONS and history.input_files == 5
