"""The real pipeline on a synthetic export with no planted effect (generator.NO_EFFECT): the model
reports that no driver is significant and names none. The same run exercises small-cell
suppression with a threshold k = 30 (VOICE_ANALYTICS_MIN_CELL_SIZE): at 5,000 sessions some
language x disability segments hold 15-25 sessions, so primary and complementary suppression
both happen, and are checked against the fact independently."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.conftest import setting
from tests.e2e.analysis_reference import ATTRIBUTES, exactly_one_suppressed_sets, fact, frame, segment_cells
from tests.e2e.test_certification_gate import bi_connect

pytestmark = [pytest.mark.e2e]

SESSIONS = 5_000
SEED = 3
K = 30


@pytest.fixture(scope="module")
def no_effect(module_db, tmp_path_factory, dbt_manifest):
    from voice_analytics_dagster.tools.generator import NO_EFFECT, generate_export
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    out = tmp_path_factory.mktemp("no_effect")
    generate_export(out, SESSIONS, seed=SEED, effects=NO_EFFECT, progress=False)
    with setting("VOICE_ANALYTICS_MIN_CELL_SIZE", str(K)):
        outcome = run_pipeline(out)
    assert outcome.published, outcome.report()
    return module_db


@pytest.fixture
def db(no_effect, use_db):
    return use_db(no_effect)


def test_no_driver_is_named_when_none_is_planted(db):
    metrics = frame(db, "select * from analytics.fct_abandonment_model_metrics").iloc[0]
    drivers = frame(db, "select * from analytics.fct_abandonment_drivers")
    assert metrics.status == "fitted" and metrics.n_sessions == SESSIONS
    assert pd.isna(metrics.strongest_driver) and metrics.n_significant_drivers == 0
    assert not drivers.is_significant.any()
    assert metrics.conclusion.startswith("No driver of abandonment is significant after Holm's correction")
    assert metrics.auc_ci_low < 0.55


def test_small_segments_are_suppressed_with_a_complementary_sibling(db):
    f = fact(db)
    published = frame(db, "select * from analytics.fct_accessibility_by_segment")
    assert (published.min_cell_size == K).all()
    dims = [["has_disability", "language"], ["region", "language"], ["is_first_time_digital_user", "language"],
            ["region", "has_disability", "is_first_time_digital_user"]]
    cells = segment_cells(f, dims).merge(published, on="segment_key", suffixes=("", "_published"))
    small = cells[cells.n < K]
    assert len(small) >= 1, "the export was meant to have small segments"
    for c in small.itertuples():  # primary: NULL measures and the flag, never 0
        assert c.suppressed and c.suppression == "primary"
        assert pd.isna(c.n_sessions) and pd.isna(c.abandonment_rate) and pd.isna(c.mean_asr_confidence)
    # a small cell's siblings (same dimension, one attribute differs): at least one more is suppressed,
    # else the published row of the other attributes minus the siblings would give the small cell back
    witnessed = 0
    for c in small.itertuples():
        for attribute in c.dim:
            others = [a for a in c.dim if a != attribute]
            siblings = cells[(cells.dim == c.dim) & (cells[others] == pd.Series({a: getattr(c, a) for a in others})).all(axis=1)]
            assert siblings.suppressed.sum() >= 2, (c.segment_key, attribute)
            witnessed += int(((siblings.suppression == "complementary") & (siblings.n >= K)).any())
    assert witnessed >= 1, "a complementary suppression of a cell with k or more sessions"
    # the parents stay published
    assert not published.set_index("segment_key").loc[["disability=true", "language=FRENCH"], "suppressed"].any()
    # completeness over every family, recomputed from the published identifiers
    for attribute in ATTRIBUTES:
        others = [a for a in ATTRIBUTES if a != attribute]
        family = published.apply(
            lambda r, a=attribute, o=others: None if pd.isna(r[a]) else
            r.segment_dimension + "|" + "|".join(str(r[x]) for x in o), axis=1)
        assert not exactly_one_suppressed_sets(published, family), attribute
    # the BI role sees the suppressed rows as NULL too
    with bi_connect(db) as conn:
        key = small.segment_key.iloc[0]
        row = conn.execute("select suppressed, n_sessions, abandonment_rate from analytics.fct_accessibility_by_segment "
                           "where segment_key = %s", (key,)).fetchone()
        assert row == (True, None, None)


def test_suppressed_segments_are_not_tested(db):
    tests = frame(db, "select * from analytics.fct_segment_outcome_tests")
    suppressed = tests[tests.suppressed]
    assert len(suppressed) >= 3 and not suppressed.tested.any() and suppressed.p_value.isna().all()
    tested = tests[tests.tested]
    assert (tested.family_size == len(tested)).all()
