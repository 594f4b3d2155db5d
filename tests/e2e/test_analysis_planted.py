"""The real pipeline on a synthetic export with the planted effects (voice_analytics_dagster/
generator.py): the abandonment model names the planted strongest driver with an interval that
covers the planted coefficient, and the error marts find the planted improvement under ASR model
v2, also after standardising the user mix. 5,000 sessions: the planted standardised ASR effect
(-0.76) is then about 19 standard errors from zero and 12 from the next driver (silence, +0.26).
The fixed seed's interval covering the planted value is one draw of a 95% event; the coverage
itself is tested over 200 seeds in tests/unit/test_abandonment_model.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import setting
from tests.e2e.analysis_reference import frame

pytestmark = [pytest.mark.e2e]

SESSIONS = 5_000
SEED = 2


@pytest.fixture(scope="module")
def planted_export(tmp_path_factory):
    from voice_analytics_dagster.tools.generator import PLANTED, generate_export

    out = tmp_path_factory.mktemp("planted")
    generate_export(out, SESSIONS, seed=SEED, effects=PLANTED, progress=False)
    return out


@pytest.fixture(scope="module")
def planted(module_db, planted_export, dbt_manifest):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    outcome = run_pipeline(planted_export)
    assert outcome.published, outcome.report()
    return module_db


@pytest.fixture
def db(planted, use_db):
    return use_db(planted)


def test_the_model_names_the_planted_driver_and_covers_its_coefficient(db):
    from voice_analytics_dagster.tools.generator import PLANTED

    metrics = frame(db, "select * from analytics.fct_abandonment_model_metrics").iloc[0]
    drivers = frame(db, "select * from analytics.fct_abandonment_drivers order by rank").set_index("feature")
    sd = frame(db, "select stddev_samp(avg_asr_confidence) sd from analytics.fact_voice_ai_sessions").sd.iloc[0]
    assert metrics.n_sessions == SESSIONS and metrics.status == "fitted"
    assert metrics.strongest_driver == "avg_asr_confidence"
    asr = drivers.loc["avg_asr_confidence"]
    planted = PLANTED.b_asr * sd
    assert asr["rank"] == 1 and asr.is_significant and asr.feature_sd == pytest.approx(sd)
    assert asr.ci_low <= planted <= asr.ci_high, (planted, asr.ci_low, asr.ci_high)
    assert asr.odds_ratio_ci_high < 1  # better recognition, fewer abandonments
    assert {"silence_rate", "is_first_time_digital_user"} <= set(drivers.index[drivers.is_significant])
    assert not drivers.loc[["region=urban", "avg_intent_confidence", "misunderstanding_rate"], "is_significant"].any()
    assert 0.65 < metrics.auc < 0.76 and metrics.auc_ci_low < metrics.auc < metrics.auc_ci_high
    assert metrics.gbm_auc is not None and metrics.gbm_sessions == SESSIONS
    history = frame(db, "select strongest_driver, dataset from analytics.fct_abandonment_model_history")
    assert history.strongest_driver.tolist() == ["avg_asr_confidence"] and history.dataset.tolist() == ["synthetic"]


def test_the_error_marts_find_the_planted_v2_improvement(db):
    comp = frame(db, """select * from analytics.fct_error_rate_comparisons
                        where comparison_type = 'asr_model_version'""").set_index("error_type")
    assert set(comp.baseline_group) == {"v1"} and set(comp.compared_group) == {"v2"}
    mis = comp.loc["misunderstanding"]
    # planted: 24.1% of turns under v1, 16.5% under v2 (generator docstring)
    assert -0.11 < mis.difference < -0.05 and mis.difference_ci_high < 0 and mis.p_value < 1e-6
    assert mis.standardised_difference_ci_high < 0 and mis.standardised_p_value < 1e-6
    assert mis.standardisation_turn_coverage > 0.95
    # silence and noise are not planted to change
    assert comp.loc["silence", "p_value"] > 0.001 and comp.loc["noise", "p_value"] > 0.001
    rates = frame(db, "select * from analytics.fct_error_rates where breakdown = 'asr_model_version'").set_index("group_label")
    # each published rate is rounded to 4 decimals, the difference computed before rounding
    assert mis.difference == pytest.approx(rates.loc["v2", "misunderstanding_rate"] - rates.loc["v1", "misunderstanding_rate"],
                                           abs=1.5e-4)
    # the planted improvement survives Holm's correction over the table, and says the caller mix does not explain it
    assert mis.verdict == "significant" and mis.p_value_holm < 0.05
    assert mis.verdict_text.startswith("significant: ") and mis.verdict_text.endswith("excludes 0 too")
    # the session is the unit: per-session recognition quality clusters no-match turns
    assert mis.design_effect > 1.05


def test_the_bi_export_carries_an_out_of_fold_score_for_every_session(db):
    export = frame(db, """select session_id, abandonment_risk, abandonment_risk_decile, abandonment_risk_model_version,
                                 is_abandoned from analytics.fct_voice_session_export""")
    scores = frame(db, "select session_id, abandonment_risk, cv_fold from analysis.abandonment_session_scores")
    assert len(export) == SESSIONS and export.abandonment_risk.notna().all()
    merged = export.merge(scores, on="session_id", suffixes=("", "_scored"))
    assert (merged.abandonment_risk == merged.abandonment_risk_scored).all()
    assert merged.cv_fold.value_counts().between(SESSIONS / 5 - 5, SESSIONS / 5 + 5).all()
    by_decile = export.groupby("abandonment_risk_decile").is_abandoned.mean()
    assert list(by_decile.index) == list(range(1, 11)) and by_decile.iloc[-1] > 2 * by_decile.iloc[0]
    calibration = frame(db, "select * from analytics.fct_abandonment_calibration order by bin")
    assert (~calibration.suppressed).all() and calibration.n_sessions.sum() == SESSIONS
    assert (calibration.observed_ci_low <= calibration.observed_rate).all()
    assert pd.Series(calibration.mean_predicted).is_monotonic_increasing


def test_language_combinations_are_published_when_the_export_has_several_languages(db):
    seg = frame(db, "select segment_key, suppressed from analytics.fct_accessibility_by_segment")
    assert {"language=ENGLISH", "language=FRENCH", "region=rural|language=FRENCH"} <= set(seg.segment_key)


# Last in the module: it trains the model again, on a sample (the tests above read the first training).
def test_a_training_above_the_cap_reads_a_hashed_sample_and_the_fitted_model_scores_the_rest(db, planted_export):
    """VOICE_ANALYTICS_MODEL_MAX_TRAINING_SESSIONS below the fact's size: the training reads the
    sessions whose md5 hash falls below the share (recomputed here), the fitted model scores every
    other session, and the planted driver is still found on half the sessions."""
    from scipy.special import expit

    from voice_analytics_dagster.defs.model.sample import sample_hash
    from voice_analytics_dagster.defs.model.scoring import ScoringState
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    cap = SESSIONS // 2
    with setting("VOICE_ANALYTICS_MODEL_MAX_TRAINING_SESSIONS", str(cap)):
        outcome = run_pipeline(planted_export, refit_model=True)
    assert outcome.published, outcome.report()

    metrics = frame(db, "select * from analytics.fct_abandonment_model_metrics").iloc[0]
    ids = [r[0] for r in db.rows("select session_id from analytics.fact_voice_ai_sessions")]
    sample = {s for s in ids if sample_hash(s) < cap * 2 ** 32 // SESSIONS}
    assert len(ids) == SESSIONS and abs(len(sample) - cap) < 5 * (SESSIONS * 0.25) ** 0.5
    # every level of the planted export is in the sample: no session outside it was added
    assert metrics.n_fact_sessions == SESSIONS and metrics.n_sessions_read == metrics.n_sessions == len(sample)
    assert metrics.status == "fitted" and metrics.strongest_driver == "avg_asr_confidence"
    history = frame(db, "select n_sessions_read, n_fact_sessions from analytics.fct_abandonment_model_history "
                        "order by trained_at")
    assert history.values.tolist() == [[SESSIONS, SESSIONS], [len(sample), SESSIONS]]

    scores = frame(db, "select session_id, abandonment_risk, cv_fold, model_version "
                       "from analysis.abandonment_session_scores").set_index("session_id")
    assert set(scores.index) == set(ids) and scores.abandonment_risk.notna().all()
    assert set(scores.index[scores.cv_fold.notna()]) == sample  # out-of-fold: the sample only
    assert set(scores.model_version) == {metrics.model_version}

    # the rest: the fitted model's risk, recomputed from its certified coefficients
    state = ScoringState.from_json(metrics.scoring_state)
    rest = frame(db, "select * from analytics.fact_voice_ai_sessions").set_index("session_id")
    rest = rest.loc[sorted(set(ids) - sample)]
    eta = np.full(len(rest), state.intercept)
    for f in state.features:
        x = (rest[f.column].astype(str) == f.level) if f.level is not None else rest[f.column]
        eta += f.coefficient * (x.astype(float).to_numpy() - f.mean) / f.sd
    np.testing.assert_allclose(scores.loc[rest.index, "abandonment_risk"].to_numpy(), expit(eta), rtol=1e-10)
    exported = frame(db, "select session_id, abandonment_risk from analytics.fct_voice_session_export")
    assert len(exported) == SESSIONS and exported.abandonment_risk.notna().all()
