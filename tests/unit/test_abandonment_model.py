"""The abandonment model's pure functions, without a database: the feature policy, the planted
effect recovered with honest intervals, the family-wise false-positive rate over many seeds,
out-of-fold scoring, designs that cannot name a driver, the bootstrap AUC, Holm, and small-cell
suppression of its outputs."""

from __future__ import annotations

import dataclasses
import gc
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats
from sklearn.metrics import roc_auc_score

from voice_analytics_dagster.defs.model import fit as a
from voice_analytics_dagster.defs.model.assets import metric_row, soundness_problems
from voice_analytics_dagster.defs.model.features import (
    EXCLUDED,
    FEATURES,
    KEY,
    OUTCOME,
    Feature,
    build_design,
    frame_from_simulation,
)
from voice_analytics_dagster.defs.model.privacy import suppress_small_cells
from voice_analytics_dagster.defs.model.store import TrainingData
from voice_analytics_dagster.tools import generator as g

MARTS = Path(__file__).resolve().parents[2] / "dbt" / "models" / "marts"
SEEDS = 200
SESSIONS_PER_SEED = 2_000


def fact_columns() -> list[str]:
    spec = yaml.safe_load((MARTS / "fact_voice_ai_sessions.yml").read_text())
    return [c["name"] for c in spec["models"][0]["columns"]]


def design_of(sessions: int, seed: int, effects=g.PLANTED):
    sim = g.simulate_sessions(sessions, seed, effects)
    return sim, build_design(frame_from_simulation(sim))


# -- the feature policy ----------------------------------------------------------------------------

def test_every_fact_column_is_a_feature_or_excluded_with_a_reason():
    features = {f.column for f in FEATURES}
    assert not features & set(EXCLUDED), "a column is both a feature and excluded"
    unclassified = set(fact_columns()) - features - set(EXCLUDED)
    assert not unclassified, f"fact columns without a policy decision: {sorted(unclassified)}"
    assert all(reason.strip() for reason in EXCLUDED.values())
    # what the brief forbids, explicitly
    for leak in ("final_outcome", "turn_count", "reported_duration_sec", "turn_duration_sec_total", "transfer_reason",
                 "escalation_flag", "recovery_success", "application_count", "is_transferred", "is_completed"):
        assert leak in EXCLUDED and leak not in features


def test_a_leaking_feature_is_refused():
    frame = frame_from_simulation(g.simulate_sessions(200, 1)).assign(turn_count=5)
    with pytest.raises(ValueError, match="leak"):
        build_design(frame, (*FEATURES, Feature("turn_count", "numeric", "tempting")))


def test_null_features_drop_sessions_with_a_count_and_absent_columns_are_not_used():
    frame = frame_from_simulation(g.simulate_sessions(500, 2))
    frame.loc[[3, 10, 11], "avg_asr_confidence"] = np.nan
    frame.loc[[10, 20], "region"] = None
    frame["asr_model_version"] = None  # an export without the column
    design = build_design(frame)
    assert design.n_input == 500 and len(design.y) == 500 - 4  # sessions 3, 10, 11, 20
    assert design.dropped_null == {"avg_asr_confidence": 3, "region": 2}
    assert design.unused["asr_model_version"].startswith("not in this export")
    assert "channel" in design.unused  # a single level
    assert not any(name.startswith("asr_model_version") for name in design.feature_names)
    assert list(design.session_ids[:3]) == ["S2000", "S2001", "S2002"] and "S2003" not in design.session_ids


def test_design_is_standardised_with_reference_levels():
    _, design = design_of(3_000, 4)
    assert np.allclose(design.Z.mean(), 0, atol=1e-12) and np.allclose(design.Z.std(ddof=1), 1)
    assert design.reference_levels["language=ENGLISH"] == "KINYARWANDA"
    assert design.kinds["avg_asr_confidence"] == "numeric" and design.kinds["has_disability"] == "indicator"


def test_categorical_columns_give_the_same_design_as_text():
    """The model step reads the categorical features as pandas categoricals (store.read_model_input);
    the design is the same to the bit as from text, unused categories and rare levels included."""
    sim = g.simulate_sessions(4_000, 5, g.PLANTED)
    text = frame_from_simulation(sim)
    text.loc[text.index[:3], "asr_model_version"] = "rare"  # a level under MIN_INDICATOR_SESSIONS
    text.loc[text.index[3], "region"] = None  # dropped for a NULL, counted
    cat = text.copy()
    for c in ("region", "language", "channel", "asr_model_version"):
        cat[c] = cat[c].astype("category").cat.add_categories(["never-seen"])
    a_, b_ = build_design(text), build_design(cat)
    assert a_.Z.columns.tolist() == b_.Z.columns.tolist()
    assert np.array_equal(a_.Z.to_numpy(), b_.Z.to_numpy()) and np.array_equal(a_.y, b_.y)
    assert (a_.reference_levels, a_.unused, a_.dropped_null, a_.kinds) == (
        b_.reference_levels, b_.unused, b_.dropped_null, b_.kinds)
    assert "asr_model_version=rare" in a_.unused and a_.dropped_null == {"region": 1}
    assert not any("never-seen" in name for name in b_.Z.columns)


# -- the planted effect, one data set ---------------------------------------------------------------

@pytest.fixture(scope="module")
def planted_fit():
    sim, design = design_of(5_000, 11)
    return sim, design, a.fit_abandonment_model(design)


def test_planted_strongest_driver_with_honest_interval(planted_fit):
    sim, _, result = planted_fit
    assert result.status == "fitted"
    assert result.strongest_driver == "avg_asr_confidence"
    top = result.drivers[0]
    planted = g.PLANTED.b_asr * sim["avg_asr_confidence"].std()
    assert top.feature == "avg_asr_confidence" and top.rank == 1
    assert top.ci_low <= planted <= top.ci_high, (planted, top.ci_low, top.ci_high)
    assert math.isclose(top.odds_ratio, math.exp(top.coefficient))
    significant = {d.feature for d in result.significant}
    assert {"avg_asr_confidence", "silence_rate", "is_first_time_digital_user"} <= significant
    assert "region=urban" not in significant and "avg_intent_confidence" not in significant
    assert "strongest significant driver" in result.conclusion
    assert 0.65 < result.auc < 0.76 and result.auc_ci_low < result.auc < result.auc_ci_high
    assert result.gbm_auc is not None and result.logit_auc_on_gbm_sessions is not None
    assert result.gbm_minus_logit_auc_ci_low <= result.gbm_minus_logit_auc_ci_high
    assert 0 < result.brier_score < 0.25 and 0.8 < result.calibration_slope < 1.2
    assert sum(b.n_sessions for b in result.calibration) == result.n_sessions
    assert not soundness_problems(result, full_coverage(result))


def test_scores_are_out_of_fold(planted_fit):
    """A session's score comes from a model that never saw it: refitting without its fold
    reproduces it, and changing its own outcome does not change it."""
    _, design, result = planted_fit
    fold, risk = result.fold, result.oof_risk
    assert set(np.unique(fold)) == set(range(a.FOLDS))
    Z, y = design.Z.to_numpy(), design.y.copy()
    k = 2
    held = np.flatnonzero(fold == k)
    again = a.out_of_fold_logit(Z, y, np.where(fold == k, 0, 1))
    np.testing.assert_allclose(again[held], risk[held], atol=1e-6)
    y[held[:200]] = 1 - y[held[:200]]  # the held-out sessions' own outcomes flipped
    flipped = a.out_of_fold_logit(Z, y, np.where(fold == k, 0, 1))
    np.testing.assert_allclose(flipped[held], risk[held], atol=1e-6)


def test_out_of_fold_risk_equals_statsmodels_fitted_on_the_other_folds(planted_fit):
    """scikit-learn's fits at OOF_TOLERANCE reach statsmodels' maximum-likelihood estimates: the
    out-of-fold risk equals statsmodels' Logit fitted on the other folds (scikit-learn's default
    tolerance stops about 1e-4 short at 1,000,000 sessions)."""
    import statsmodels.api as sm
    from scipy.special import expit

    _, design, result = planted_fit
    Z, y, fold = design.Z.to_numpy(), design.y, result.fold
    for k in range(a.FOLDS):
        test = fold == k
        params = sm.Logit(y[~test], sm.add_constant(Z[~test], has_constant="add")).fit(method="newton", disp=0).params
        np.testing.assert_allclose(result.oof_risk[test], expit(params[0] + Z[test] @ params[1:]), rtol=0, atol=1e-9)


def _with_feature(design, name: str, z: np.ndarray):
    """The design with one more standardised feature."""
    return dataclasses.replace(
        design, Z=design.Z.assign(**{name: z}), kinds={**design.kinds, name: "numeric"},
        reference_levels={**design.reference_levels, name: None},
        mean=pd.concat([design.mean, pd.Series({name: 0.0})]), sd=pd.concat([design.sd, pd.Series({name: 1.0})]))


def _published_figures_are_finite_or_null(result) -> None:
    row = metric_row(result, "t", pd.Timestamp("2026-01-01", tz="UTC"), 1.0,
                     TrainingData(None, [], 0, None, None, None))
    assert all(v is None or not isinstance(v, float) or math.isfinite(v) for v in row)
    for d in result.drivers:
        assert all(not isinstance(v, float) or not math.isinf(v) for v in d.__dict__.values()), d


def test_a_rank_deficient_design_claims_no_driver(planted_fit):
    """Two copies of a feature: their effects are not identified. No driver is claimed, the
    collinear features are named, every published figure is finite or NULL, and the out-of-fold
    risk (identified: it does not depend on how the effect is split between the copies) is the
    one of the design without the copy."""
    _, design, reference = planted_fit
    name = design.feature_names[0]
    broken = _with_feature(design, f"{name} (copy)", design.Z[name].to_numpy())
    assert a.collinear_features(broken.Z.to_numpy(), broken.feature_names) == [name, f"{name} (copy)"]
    assert a.collinear_features(design.Z.to_numpy(), design.feature_names) == []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scikit-learn's notice of a singular Hessian
        result = a.fit_abandonment_model(broken, replicates=50)
    assert result.status == "rank_deficient" and name in result.message and f"{name} (copy)" in result.message
    assert not result.drivers and result.strongest_driver is None
    assert result.conclusion.startswith("no model:")
    np.testing.assert_allclose(result.oof_risk, reference.oof_risk, atol=1e-4)
    _published_figures_are_finite_or_null(result)
    assert not soundness_problems(result, full_coverage(result))


def test_a_design_the_fit_cannot_converge_on_claims_no_driver():
    """A feature that almost separates the outcomes: the maximum likelihood is at infinity, the
    fit does not converge, no driver is claimed, and the overflowing odds ratios are NULL."""
    _, design = design_of(2_000, 11)
    x = np.where(design.y == 1, 1.0, -1.0) + np.random.default_rng(0).normal(0, 0.01, len(design.y))
    separated = _with_feature(design, "separates", (x - x.mean()) / x.std(ddof=1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels' and scikit-learn's separation notices
        result = a.fit_abandonment_model(separated, replicates=50)
    assert result.status == "not_converged" and result.strongest_driver is None and not result.significant
    top = result.drivers[0]
    assert top.feature == "separates" and math.isnan(top.odds_ratio_ci_high)  # exp() overflowed
    _published_figures_are_finite_or_null(result)
    assert not soundness_problems(result, full_coverage(result))


def test_the_fit_is_deterministic(planted_fit):
    """Same data, same seed: the same result, field by field (the history compares trainings)."""
    _, design, reference = planted_fit
    result = a.fit_abandonment_model(design)
    for f in dataclasses.fields(result):
        if f.name != "seconds":
            x, y = getattr(result, f.name), getattr(reference, f.name)
            assert np.array_equal(x, y) if isinstance(x, np.ndarray) else x == y, f.name


# -- many seeds: interval coverage and the family-wise false-positive rate --------------------------

def test_interval_coverage_and_family_wise_error_over_seeds():
    """Over SEEDS seeds of SESSIONS_PER_SEED sessions:

    - PLANTED: the 95% interval of the standardised ASR coefficient covers the planted value
      (b_asr x SD of avg_asr_confidence in that data) in about 95% of the seeds. If the true
      coverage were 95%, fewer than 179 of 200 would happen with probability < 0.1%
      (scipy.stats.binom.ppf(0.001, 200, 0.95) = 179).
    - NO_EFFECT: a seed is a false positive when any driver is significant after Holm; Holm
      controls this family-wise rate at 5%. If it were exactly 5%, more than 21 of 200 would
      happen with probability < 0.1% (binom.sf(21, 200, 0.05) = 0.0005), so 21 is the bound.
    """
    covered = false_positive_seeds = 0
    # statsmodels' Holm runs gc.collect() on every call: frozen, the objects alive before the loop
    # are not scanned again 400 times (the results do not depend on it)
    gc.freeze()
    try:
        for seed in range(SEEDS):
            sim, design = design_of(SESSIONS_PER_SEED, 1_000 + seed, g.PLANTED)
            drivers, status, _, _ = a.fit_drivers(design)
            assert status == "fitted"
            asr = next(d for d in drivers if d.feature == "avg_asr_confidence")
            covered += asr.ci_low <= g.PLANTED.b_asr * sim["avg_asr_confidence"].std() <= asr.ci_high
            _, null = design_of(SESSIONS_PER_SEED, 5_000 + seed, g.NO_EFFECT)
            drivers, status, _, _ = a.fit_drivers(null)
            assert status == "fitted"
            false_positive_seeds += any(d.is_significant for d in drivers)
    finally:
        gc.unfreeze()
    assert stats.binom.ppf(0.001, SEEDS, 0.95) == 179 and stats.binom.sf(21, SEEDS, 0.05) < 0.001
    assert covered >= 179, f"coverage {covered}/{SEEDS}"
    assert false_positive_seeds <= 21, f"family-wise false positives {false_positive_seeds}/{SEEDS}"


def test_no_effect_reports_no_driver():
    _, design = design_of(5_000, 21, g.NO_EFFECT)
    result = a.fit_abandonment_model(design, replicates=200)
    assert result.strongest_driver is None and not result.significant
    assert result.conclusion.startswith("No driver of abandonment is significant")
    assert "none significant" in a.markdown_metrics(result)
    assert result.auc_ci_low < 0.5 + 0.05  # nothing to discriminate


def test_too_little_data_fits_nothing_and_claims_nothing():
    _, design = design_of(40, 3)
    result = a.fit_abandonment_model(design)
    assert result.status == "insufficient_data" and result.strongest_driver is None and not result.drivers
    assert np.isnan(result.oof_risk).all() and result.conclusion.startswith("no model")


# -- building blocks against independent implementations ------------------------------------------

def test_holm_matches_a_hand_computation():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    expected_by_hand = np.array([0.03, 0.06, 0.06, 0.02])  # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1, cummax
    np.testing.assert_allclose(a.holm(p), expected_by_hand)
    np.testing.assert_allclose(a.holm(np.array([0.3, 0.6, 0.9])), [0.9, 1.0, 1.0])  # 0.9, 1.2, 0.9: running maximum, capped at 1
    assert len(a.holm(np.array([]))) == 0


def test_weighted_bootstrap_auc_equals_the_auc_of_the_resampled_data():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(float)
    scores = np.round(rng.random(400) + 0.3 * y, 2)  # rounded: ties on purpose
    group, n_groups = a._weighted_auc_setup(scores)
    assert math.isclose(a._weighted_auc(group, n_groups, y, np.ones(400)), roc_auc_score(y, scores))
    draw = rng.integers(0, 400, 400)
    w = np.bincount(draw, minlength=400).astype(float)
    assert math.isclose(a._weighted_auc(group, n_groups, y, w), roc_auc_score(y[draw], scores[draw]))
    boots = a.bootstrap_auc(y, [scores, -scores], replicates=50)
    np.testing.assert_allclose(boots[:, 0] + boots[:, 1], 1.0)  # paired: same draws for both


def test_suppression_primary_and_complementary():
    sizes = {"a": 4, "b": 30, "c": 12, "d": 50}
    status = suppress_small_cells(sizes, [dict.fromkeys(sizes, "all")], k=10)
    assert status == {"a": "primary", "b": None, "c": "complementary", "d": None}
    # two suppressed already: nothing to add
    status = suppress_small_cells({"a": 4, "b": 5, "c": 12}, [dict.fromkeys("abc", "all")], k=10)
    assert status == {"a": "primary", "b": "primary", "c": None}
    # a 2 x 2 table with both margins published: one small cell suppresses all four
    cells = {"r1c1": 3, "r1c2": 40, "r2c1": 50, "r2c2": 60}
    rows = {k: k[:2] for k in cells}
    cols = {k: k[2:] for k in cells}
    status = suppress_small_cells(cells, [rows, cols], k=10)
    assert all(v is not None for v in status.values())


def full_coverage(result, extra_fact_sessions: int = 0) -> tuple[int, int, int, int]:
    """store.coverage_sql's row for a training that scored every session it used (and
    ``extra_fact_sessions`` that it did not read)."""
    dropped = result.n_input - result.n_sessions
    return result.n_input + extra_fact_sessions, dropped, result.n_sessions, result.n_sessions


def test_soundness_check_catches_inconsistent_output(planted_fit):
    _, _, result = planted_fit
    import copy

    bad = copy.deepcopy(result)
    bad.drivers[0].is_significant = False
    bad.drivers[1].ci_low = bad.drivers[1].coefficient + 1
    problems = soundness_problems(bad, full_coverage(bad, extra_fact_sessions=3))
    assert any("is_significant" in p for p in problems)
    assert any("interval" in p for p in problems)
    assert any("scored" in p for p in problems)


def test_export_yaml_repeats_every_fact_column():
    spec = yaml.safe_load((MARTS / "fct_voice_session_export.yml").read_text())["models"][0]
    fact = yaml.safe_load((MARTS / "fact_voice_ai_sessions.yml").read_text())["models"][0]
    export_cols = [(c["name"], c["data_type"]) for c in spec["columns"]]
    fact_cols = [(c["name"], c["data_type"]) for c in fact["columns"]]
    assert export_cols[:len(fact_cols)] == fact_cols
    assert [c for c, _ in export_cols[len(fact_cols):]] == [
        "abandonment_risk", "abandonment_risk_decile", "abandonment_risk_model_version"]


def test_model_input_reads_only_the_policy_columns():
    from voice_analytics_dagster.defs.model.features import model_columns
    from voice_analytics_dagster.defs.model.store import read_model_input_sql

    cols = model_columns()
    assert cols[:2] == [KEY, OUTCOME] and not set(cols) & (set(EXCLUDED) - {KEY, OUTCOME})
    text = read_model_input_sql(cols, "marts.fact_voice_ai_sessions").as_string(None)
    assert text.startswith("copy (select ") and "to stdout" in text and '"turn_count"' not in text


def test_metrics_csv_round_trip_keeps_nulls_and_quotes():
    from voice_analytics_dagster.defs.model.store import rows_to_csv

    text = rows_to_csv([["a,b", None, float("nan"), True, 0.1, 'say "hi"', ""]]).decode()
    assert text == '"a,b",,,t,0.1,"say ""hi""",""\n'


def test_fit_time_is_reported(planted_fit):
    _, _, result = planted_fit
    assert {"drivers", "cross_validation", "bootstrap", "gbm", "calibration"} <= set(result.seconds)
    frame = pd.DataFrame([d.__dict__ for d in result.drivers])
    assert list(frame["rank"]) == list(range(1, len(frame) + 1))
