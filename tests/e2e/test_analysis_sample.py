"""The analysis on the real sample, end to end (one pipeline run shared by the module): every new
certified table is published and readable by the BI role; rates, intervals, percentiles and tests
agree with independent computations over the certified fact; small cells are suppressed; the
abandonment model claims no driver; the report is written and linked; the model's history is
kept across trainings."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import psycopg
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from tests.e2e.analysis_reference import (
    exactly_one_suppressed_sets,
    fact,
    frame,
    newcombe_by_hand,
    ratio_estimate,
    segment_cells,
    wilson,
)
from tests.e2e.test_certification_gate import bi_connect

pytestmark = [pytest.mark.e2e]

NEW_CERTIFIED = [
    "fct_accessibility_by_segment", "fct_segment_outcome_tests", "fct_efficiency_by_period", "fct_adoption_by_period",
    "fct_application_channels", "fct_error_rates", "fct_error_rate_comparisons", "fct_voice_kpis",
    "fct_voice_session_export", "fct_abandonment_drivers", "fct_abandonment_model_metrics",
    "fct_abandonment_model_history", "fct_abandonment_calibration",
]


@pytest.fixture(scope="module")
def published(published_sample):
    """The real sample as `voice-analytics run` published it (conftest: one run per test session)."""
    return published_sample


@pytest.fixture
def db(published, use_db):
    return use_db(published.db)


def test_every_new_table_is_published_and_readable_by_bi(published, db):
    published_tables = db.scalar("select tables from analytics.publication_log where run_id = %s",
                                 (published.run_id,))
    assert set(NEW_CERTIFIED) <= set(published_tables)
    with bi_connect(db) as conn:
        for t in NEW_CERTIFIED:
            assert conn.execute(f"select count(*) from analytics.{t}").fetchone()[0] >= 1, t
        for working in ("analysis.abandonment_session_scores", "analysis.abandonment_drivers",
                        "marts.fct_accessibility_by_segment"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f"select 1 from {working} limit 1")


def test_the_model_tables_have_their_primary_keys(db):
    """store.replace_table adds each key after the rows are loaded: the key is still there."""
    from voice_analytics_dagster.analysis.store import PRIMARY_KEYS, SCHEMA

    for table, key in PRIMARY_KEYS.items():
        columns = db.rows(
            "select a.attname from pg_index i join pg_attribute a on a.attrelid = i.indrelid "
            "and a.attnum = any(i.indkey) where i.indisprimary and i.indrelid = %s::regclass "
            "order by array_position(i.indkey::int2[], a.attnum)", (f"{SCHEMA}.{table}",))
        assert [c for (c,) in columns] == key, table


def test_accessibility_rates_and_gaps_match_an_independent_computation(db):
    f = fact(db)
    seg = frame(db, "select * from analytics.fct_accessibility_by_segment").set_index("segment_key")
    cells = segment_cells(f, [[], ["region"], ["has_disability"], ["is_first_time_digital_user"],
                              ["region", "has_disability"], ["region", "has_disability", "is_first_time_digital_user"]])
    assert len(cells) == 1 + 2 + 2 + 2 + 4 + 8
    for c in cells.itertuples():
        row = seg.loc[c.segment_key]
        assert not row.suppressed and row.n_sessions == c.n, c.segment_key
        for outcome, k in (("completion", c.completed), ("abandonment", c.abandoned), ("transfer", c.transferred)):
            low, high = wilson(k, c.n)
            assert row[f"{outcome}_sessions"] == k
            assert row[f"{outcome}_rate"] == pytest.approx(k / c.n, abs=1e-12)
            assert row[f"{outcome}_rate_ci_low"] == pytest.approx(low, abs=1e-10)
            assert row[f"{outcome}_rate_ci_high"] == pytest.approx(high, abs=1e-10)
    # the gap of the disabled against the non-disabled, by hand and by statsmodels
    dis, ref = seg.loc["disability=true"], seg.loc["disability=false"]
    assert dis.reference_segment_key == "disability=false" and ref.is_reference
    k1, n1, k2, n2 = int(dis.abandonment_sessions), int(dis.n_sessions), int(ref.abandonment_sessions), int(ref.n_sessions)
    assert dis.abandonment_gap == pytest.approx(k1 / n1 - k2 / n2, abs=1e-12)
    low, high = newcombe_by_hand(k1, n1, k2, n2)
    assert (dis.abandonment_gap_ci_low, dis.abandonment_gap_ci_high) == (pytest.approx(low, abs=1e-10), pytest.approx(high, abs=1e-10))
    sm_low, sm_high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
    assert dis.abandonment_gap_ci_low == pytest.approx(sm_low, abs=1e-10)
    # mean ASR confidence of the rural segment with its t interval
    rural = f[f.region == "rural"].avg_asr_confidence
    from scipy import stats

    half = stats.t.ppf(0.975, len(rural) - 1) * rural.std(ddof=1) / math.sqrt(len(rural))
    assert seg.loc["region=rural"].mean_asr_confidence == pytest.approx(rural.mean(), abs=1e-12)
    assert seg.loc["region=rural"].mean_asr_confidence_ci_high == pytest.approx(rural.mean() + half, rel=1e-6)


def test_segment_tests_match_statsmodels_and_holm(db):
    tests = frame(db, "select * from analytics.fct_segment_outcome_tests")
    tested = tests[tests.tested]
    assert len(tested) == tested.family_size.iloc[0] == 57  # 19 non-reference segments x 3 outcomes
    for r in tested.sample(12, random_state=0).itertuples():
        z, p = proportions_ztest([r.events, r.reference_events], [r.n_sessions, r.reference_n_sessions])
        assert r.z_statistic == pytest.approx(z, rel=1e-9) and r.p_value == pytest.approx(p, rel=1e-9)
    expected = multipletests(tested.p_value.to_numpy(), method="holm")[1]
    np.testing.assert_allclose(tested.p_value_holm.to_numpy(), expected, rtol=1e-9)
    assert (tested.is_significant == (expected < 0.05)).all()
    # on the real sample no segment differs after the correction (smallest raw p about 0.04)
    assert not tested.is_significant.any()
    assert tested.p_value.min() < 0.05  # ... although raw p-values under 5% exist: the correction matters


def test_efficiency_percentiles_and_error_rate_match_pandas(db):
    f = fact(db)
    eff = frame(db, "select * from analytics.fct_efficiency_by_period where period_grain = 'week'")
    for r in eff.itertuples():
        g = f[f.session_week == r.period_start]
        assert r.n_sessions == len(g) and r.n_turns == g.turn_count.sum()
        assert r.turns_per_session_median == pytest.approx(g.turn_count.median())
        assert r.turns_per_session_p90 == pytest.approx(g.turn_count.quantile(0.9))  # linear = percentile_cont
        assert r.duration_sec_p90 == pytest.approx(g.turn_duration_sec_total.quantile(0.9))
        assert r.reported_duration_sec_median == pytest.approx(g.reported_duration_sec.median())
        rate, se = ratio_estimate(g.turn_count, g.error_turn_count)
        assert r.error_turn_rate == pytest.approx(rate, abs=1e-12)
        from scipy import stats

        assert r.error_turn_rate_ci_low == pytest.approx(rate - stats.t.ppf(0.975, len(g) - 1) * se, rel=1e-6)
        done = g[g.is_completed]
        if not r.time_to_completion_suppressed:
            assert r.n_completed_sessions == len(done)
            assert r.time_to_completion_sec_median == pytest.approx(done.turn_duration_sec_total.median())
            assert r.time_to_completion_sec_p90 == pytest.approx(done.turn_duration_sec_total.quantile(0.9))
        else:  # weeks have no sibling family for completion times: suppressed only when small
            assert len(done) < 10 or r.suppressed
            assert pd.isna(r.time_to_completion_sec_median) and pd.isna(r.n_completed_sessions)


def test_adoption_matches_pandas(db):
    f = fact(db)
    adoption = frame(db, "select * from analytics.fct_adoption_by_period where period_grain = 'month'")
    first = f.groupby("user_key").session_date.min()
    for r in adoption.itertuples():
        g = f[f.session_month == r.period_start]
        users = g.groupby("user_key").size()
        new = (first.loc[users.index] >= r.period_start).sum()
        repeat = ((first.loc[users.index] < r.period_start) | (users >= 2)).sum()
        assert (r.n_sessions, r.active_users, r.new_users, r.repeat_users) == (len(g), len(users), new, repeat)
        assert r.repeat_usage_rate_ci_low == pytest.approx(wilson(repeat, len(users))[0], abs=1e-10)
        assert r.sessions_per_user == pytest.approx(users.mean())


def test_kpis_match_pandas(db):
    f = fact(db)
    kpis = frame(db, "select * from analytics.fct_voice_kpis where period_grain = 'overall'").set_index("kpi")
    contained = int((~f.is_transferred).sum())
    assert kpis.loc["containment_rate", "numerator"] == contained
    assert kpis.loc["containment_rate", "ci_low"] == pytest.approx(wilson(contained, len(f))[0], abs=1e-10)
    transferred = f[f.is_transferred]
    unspecified = int(transferred.transfer_reason.isna().sum())
    assert kpis.loc["transfer_reason_share:unspecified", "numerator"] == unspecified
    assert kpis.loc["transfer_reason_share:unspecified", "denominator"] == len(transferred)
    for kpi, col in (("no_match_rate", "misunderstanding_turn_count"), ("no_input_rate", "silence_turn_count"),
                     ("low_asr_confidence_turn_share", "low_asr_confidence_turn_count")):
        rate, se = ratio_estimate(f.turn_count, f[col])
        assert kpis.loc[kpi, "value"] == pytest.approx(rate, abs=1e-12)
        assert kpis.loc[kpi, "ci_high"] - kpis.loc[kpi, "value"] == pytest.approx(1.9623 * se, rel=1e-3)
    detected = f.turn_count - f.unknown_intent_turn_count
    assert kpis.loc["intent_detection_rate", "value"] == pytest.approx(detected.sum() / f.turn_count.sum())
    assert set(kpis.kpi_group) == {"industry", "platform"} and kpis.definition.str.len().min() > 20


def test_error_comparisons_are_consistent_with_the_rates(db):
    f = fact(db)
    comp = frame(db, "select * from analytics.fct_error_rate_comparisons where comparison_type = 'month_over_month'")
    assert len(comp) == 3 * 4  # 4 months, 4 error types; the sample has no asr_model_version
    r = comp[(comp.baseline_group == "2025-01-01") & (comp.error_type == "misunderstanding")].iloc[0]
    a = f[f.session_month == pd.Timestamp("2025-01-01").date()]
    b = f[f.session_month == pd.Timestamp("2025-02-01").date()]
    ra, sa = ratio_estimate(a.turn_count, a.misunderstanding_turn_count)
    rb, sb = ratio_estimate(b.turn_count, b.misunderstanding_turn_count)
    assert r.difference == pytest.approx(rb - ra, abs=1e-12)
    assert r.difference_ci_high == pytest.approx(rb - ra + 1.959963984540054 * math.hypot(sa, sb), rel=1e-9)
    z, p = proportions_ztest([b.misunderstanding_turn_count.sum(), a.misunderstanding_turn_count.sum()],
                             [b.turn_count.sum(), a.turn_count.sum()])
    assert r.p_value_turns_independent == pytest.approx(p, rel=1e-9)
    assert 0.5 < r.design_effect < 2 and 0 < r.standardisation_turn_coverage <= 1


def test_small_days_are_suppressed_with_their_complements(db):
    from voice_analytics_dagster.settings import get_settings

    k = get_settings().min_cell_size
    f = fact(db)
    per_day = f.groupby("session_date").size()
    days = frame(db, "select * from analytics.fct_adoption_by_period where period_grain = 'day'").set_index("period_start")
    small = per_day[per_day < k]
    assert len(small) > 0, "the sample has small days"
    for day in small.index:
        row = days.loc[day]
        assert row.suppressed and row.suppression == "primary"
        assert pd.isna(row.n_sessions) and pd.isna(row.active_users) and pd.isna(row.repeat_usage_rate)
    assert (days.loc[per_day[per_day >= k].index, "suppression"] != "primary").all()
    day_index = pd.to_datetime(pd.Series(days.index, index=days.index))
    for family in (day_index.dt.to_period("W").astype(str), day_index.dt.to_period("M").astype(str)):
        assert not exactly_one_suppressed_sets(days.reset_index(drop=True), family.reset_index(drop=True))
    # every period table withholds the same days
    eff = frame(db, "select period_start, suppressed from analytics.fct_efficiency_by_period where period_grain = 'day'")
    assert dict(zip(eff.period_start, eff.suppressed, strict=True)) == days.suppressed.to_dict()


def test_the_model_claims_no_driver_on_the_sample(db):
    metrics = frame(db, "select * from analytics.fct_abandonment_model_metrics").iloc[0]
    drivers = frame(db, "select * from analytics.fct_abandonment_drivers order by rank")
    assert metrics.status == "fitted" and metrics.n_sessions == 1196 and metrics.n_sessions_dropped == 0
    assert pd.isna(metrics.strongest_driver) and metrics.n_significant_drivers == 0
    assert metrics.conclusion.startswith("No driver of abandonment is significant")
    assert not drivers.is_significant.any() and (drivers.p_value_adjusted >= drivers.p_value).all()
    assert metrics.auc_ci_low <= metrics.auc <= metrics.auc_ci_high and metrics.auc_ci_low < 0.5 < metrics.auc_ci_high
    assert "asr_model_version" in metrics.unused_features  # not in the real export
    assert drivers.feature.tolist()[:1] and len(drivers) == metrics.n_features
    export = frame(db, "select abandonment_risk, abandonment_risk_decile from analytics.fct_voice_session_export")
    assert len(export) == 1196 and export.abandonment_risk.notna().all() and set(export.abandonment_risk_decile) == set(range(1, 11))
    folds = frame(db, "select cv_fold, count(*) n from analysis.abandonment_session_scores group by 1")
    assert set(folds.cv_fold) == set(range(5)) and folds.n.sum() == 1196


def test_the_report_is_written_and_linked(published, db):
    from dagster import AssetKey

    from voice_analytics_dagster.instance import open_instance
    from voice_analytics_dagster.settings import get_settings

    settings = get_settings()
    path = settings.report_dir / "voice_analytics_report.html"
    assert path.is_file() and settings.report_dir.is_relative_to(settings.home)
    text = path.read_text()
    assert len(re.findall(r'<img src="data:image/png;base64,', text)) == 4
    assert "No driver of abandonment is significant" in text
    event = open_instance(settings).get_latest_materialization_event(AssetKey(["reports", "voice_analytics_report"]))
    assert event.run_id == published.run_id
    assert event.asset_materialization.metadata["path"].value == str(path)


def test_history_is_kept_across_trainings(published, db):
    from voice_analytics_dagster.assets.abandonment import abandonment_model
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.instance import open_instance
    from voice_analytics_dagster.jobs import PIPELINE_JOB
    from voice_analytics_dagster.settings import get_settings

    before = frame(db, "select training_id from analysis.abandonment_model_history")
    job = defs.resolve_job_def(PIPELINE_JOB).get_subset(asset_selection=set(abandonment_model.keys))
    result = job.execute_in_process(instance=open_instance(get_settings()), raise_on_error=False)
    assert result.success
    after = frame(db, "select training_id, auc from analysis.abandonment_model_history order by trained_at")
    assert len(after) == len(before) + 1 and after.training_id.is_unique
    assert after.auc.iloc[-1] == pytest.approx(after.auc.iloc[0])  # same data, same seed: same model
    assert len(frame(db, "select * from analysis.abandonment_drivers")) == 9  # replaced, not appended


def test_every_metabase_card_runs_as_the_bi_role(db):
    """The dashboards' SQL (metabase/) on this module's published run, as the read-only BI role:
    the expected columns, the suppressed flag beside withheld values, NULL (never 0) in them."""
    from tests.e2e.metabase_cards import check_every_card

    with bi_connect(db) as conn:
        suppressed = check_every_card(conn)
    assert sum(suppressed.values()) >= 1  # the sample withholds one week's time to completion
