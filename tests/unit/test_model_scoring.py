"""Between trainings (defs/model/scoring.py): the last model's scores of new sessions equal the
fitted model's own predictions; what it cannot score (a NULL, a level it never saw) is counted or
sends the run back to training; when a run trains again, and why."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from voice_analytics_dagster.defs.model import fit as a
from voice_analytics_dagster.defs.model.assets import coverage_problems
from voice_analytics_dagster.defs.model.features import build_design, frame_from_simulation
from voice_analytics_dagster.defs.model.scoring import (
    HASH_COLUMN,
    LastTraining,
    ScoringState,
    change_reason,
    refit_reason,
    score,
    state_of,
)
from voice_analytics_dagster.tools import generator as g


@pytest.fixture(scope="module")
def trained():
    sim = g.simulate_sessions(4_000, 3, g.PLANTED)
    frame = frame_from_simulation(sim)
    frame["asr_model_version"] = frame["asr_model_version"].astype("category")
    design = build_design(frame)
    drivers, status, _, intercept = a.fit_drivers(design)
    state = state_of(design, "abandonment-logit-r1-x", status, intercept, {d.feature: d.coefficient for d in drivers})
    return frame, design, state


def _with_hash(frame):
    return frame.assign(**{HASH_COLUMN: np.arange(len(frame), dtype=np.int64)})


def test_the_last_model_scores_a_session_as_the_fitted_model_predicts_it(trained):
    import statsmodels.api as sm

    frame, design, state = trained
    fit = sm.Logit(design.y, sm.add_constant(design.Z.to_numpy(), has_constant="add")).fit(disp=0, method="newton")
    scored = score(_with_hash(frame), state)
    assert scored.unseen == {} and scored.dropped == 0
    assert list(scored.session_ids) == list(design.session_ids)
    np.testing.assert_allclose(scored.risk, fit.predict(), rtol=1e-9, atol=1e-12)
    assert scored.hashes.tolist() == list(range(len(frame)))
    # the state survives its JSON (kept in the metrics table)
    assert ScoringState.from_json(state.to_json()) == state


def test_a_null_model_column_leaves_a_session_unscored_and_a_new_level_asks_for_training(trained):
    frame, _, state = trained
    some = _with_hash(frame.head(50)).copy()
    some.loc[some.index[:3], "avg_asr_confidence"] = np.nan
    scored = score(some, state)
    assert scored.dropped == 3 and len(scored.session_ids) == 47
    assert set(scored.session_ids) == set(some[some["avg_asr_confidence"].notna()]["session_id"])
    newer = _with_hash(frame.head(50)).copy()
    newer["asr_model_version"] = newer["asr_model_version"].cat.add_categories(["v9"])
    newer.loc[newer.index[0], "asr_model_version"] = "v9"
    scored = score(newer, state)
    assert scored.unseen == {"asr_model_version": ["v9"]} and len(scored.session_ids) == 0


def test_no_state_without_a_fitted_model(trained):
    _, design, _ = trained
    assert state_of(design, "v", "rank_deficient", None, {}) is None
    assert state_of(design, "v", "not_converged", -1.0, {}) is None


PREFIX = "abandonment-logit-r1-"
LAST = LastTraining(model_version=PREFIX + "abc", status="fitted", n_sessions_read=100_000,
                    last_session_date=dt.date(2025, 3, 10), state=object())


@pytest.mark.parametrize(("last", "last_day", "requested", "expected"), [
    (LAST, dt.date(2025, 3, 10), True, "requested by the run"),
    (None, dt.date(2025, 3, 10), False, "no model trained yet"),
    (LastTraining(PREFIX + "abc", "insufficient_data", 40, None, None), dt.date(2025, 3, 10), False,
     "the last training fitted no model (insufficient_data)"),
    (LastTraining(PREFIX + "abc", "fitted", 40, None, None), dt.date(2025, 3, 10), False,
     "the last training's scoring state or scores are missing"),
    (LastTraining("abandonment-logit-r0-abc", "fitted", 100_000, dt.date(2025, 3, 10), object()),
     dt.date(2025, 3, 10), False, "the model's code changed"),
    (LAST, dt.date(2025, 3, 17), False, "the sessions reach 2025-03-17, 7 or more days past"),
    (LAST, dt.date(2025, 3, 16), False, None),  # six days: not due before reading the sessions
])
def test_when_the_model_is_trained_again(last, last_day, requested, expected):
    reason = refit_reason(last, last_day, refit_days=7, requested=requested, version_prefix=PREFIX)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None and reason.startswith(expected), reason
    # VOICE_ANALYTICS_MODEL_REFIT_DAYS=0 trains on every run
    assert refit_reason(LAST, dt.date(2025, 3, 10), refit_days=0, requested=False, version_prefix=PREFIX) is not None


def test_a_new_export_in_place_of_the_last_trains_again_a_day_does_not():
    assert change_reason(800, 0, 100_000, 0.1) is None  # a day of 120
    assert change_reason(6_000, 4_001, 100_000, 0.1) == (
        "6,000 sessions new or changed and 4,001 gone since the last training: 10.0% of the 100,000 it had "
        "(VOICE_ANALYTICS_MODEL_REFIT_GROWTH 10%)")
    assert change_reason(100_000, 100_000, 100_000, 0.1) is not None  # another export of the same size
    assert change_reason(0, 0, 100_000, 0.0) is None and change_reason(1, 0, 100_000, 0.0) is not None


def test_between_trainings_every_session_is_scored_or_has_a_null_and_no_score_is_orphaned():
    assert coverage_problems(100, 3, 97, 97) == []
    assert coverage_problems(100, 3, 99, 97) == ["2 scores of sessions the fact no longer holds"]
    assert coverage_problems(100, 3, 90, 90) == ["100 fact sessions, 90 scored, 3 with a NULL model column"]
