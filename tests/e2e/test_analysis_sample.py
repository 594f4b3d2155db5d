"""The analysis on the real sample, end to end (one pipeline run shared by the module): every new
certified table is published and readable by the BI role; rates, intervals, percentiles and tests
agree with independent computations over the certified fact; small cells are suppressed; the
abandonment model claims no driver and records the data it was trained on; the report is written
and linked; the model's history is kept across trainings, also in a history table an older
version created."""

from __future__ import annotations

import hashlib
import math
import re
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

from tests.e2e.analysis_reference import (
    exactly_one_suppressed_sets,
    fact,
    frame,
    newcombe_by_hand,
    outward,
    ratio_estimate,
    rounded,
    rounded_sig,
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
    from voice_analytics_dagster.defs.model.store import PRIMARY_KEYS, SCHEMA

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
            assert row[f"{outcome}_rate"] == rounded(k / c.n)  # computed in full, rounded for reading
            assert outward(row[f"{outcome}_rate_ci_low"], row[f"{outcome}_rate_ci_high"], low, high)
    # the gap of the disabled against the non-disabled, by hand and by statsmodels
    dis, ref = seg.loc["disability=true"], seg.loc["disability=false"]
    assert dis.reference_segment_key == "disability=false" and ref.is_reference
    k1, n1, k2, n2 = int(dis.abandonment_sessions), int(dis.n_sessions), int(ref.abandonment_sessions), int(ref.n_sessions)
    assert dis.abandonment_gap == rounded(k1 / n1 - k2 / n2)
    low, high = newcombe_by_hand(k1, n1, k2, n2)
    assert outward(dis.abandonment_gap_ci_low, dis.abandonment_gap_ci_high, low, high)
    sm_low, sm_high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
    assert outward(dis.abandonment_gap_ci_low, dis.abandonment_gap_ci_high, sm_low, sm_high)
    # mean ASR confidence of the rural segment with its t interval
    rural = f[f.region == "rural"].avg_asr_confidence
    from scipy import stats

    half = stats.t.ppf(0.975, len(rural) - 1) * rural.std(ddof=1) / math.sqrt(len(rural))
    assert seg.loc["region=rural"].mean_asr_confidence == rounded(rural.mean())
    assert outward(seg.loc["region=rural"].mean_asr_confidence_ci_low, seg.loc["region=rural"].mean_asr_confidence_ci_high,
                   rural.mean() - half, rural.mean() + half, slack=1e-6)


def test_segment_tests_match_statsmodels_and_holm(db):
    tests = frame(db, "select * from analytics.fct_segment_outcome_tests")
    tested = tests[tests.tested]
    assert len(tested) == tested.family_size.iloc[0] == 57  # 19 non-reference segments x 3 outcomes
    exact = []
    for r in tested.itertuples():
        z, p = proportions_ztest([r.events, r.reference_events], [r.n_sessions, r.reference_n_sessions])
        assert r.z_statistic == rounded(z, 2) and r.p_value == rounded_sig(p)
        exact.append(p)
    expected = multipletests(exact, method="holm")[1]
    assert tested.p_value_holm.tolist() == [rounded_sig(p) for p in expected]
    assert (tested.is_significant == (expected < 0.05)).all()
    # on the real sample no segment differs after the correction (smallest raw p about 0.04)
    assert not tested.is_significant.any()
    assert tested.p_value.min() < 0.05  # ... although raw p-values under 5% exist: the correction matters


def test_every_gap_carries_its_verdict_and_the_issue_case_is_not_a_finding(db):
    """With disability, experienced digital user: completion +14.4 points (95% CI 0.5 to 25.7,
    which excludes 0), p = 0.042, Holm-adjusted 1.0: in the same row, "not significant,
    inconclusive" with the minimum detectable difference, never shown as a finding. The gap's
    verdict columns are the tests table's, row for row (one family: the 57 comparisons)."""
    seg = frame(db, "select * from analytics.fct_accessibility_by_segment").set_index("segment_key")
    row = seg.loc["disability=true|first_time=false"]
    assert (row.completion_gap, row.completion_gap_ci_low, row.completion_gap_ci_high) == (0.144, 0.0051, 0.2575)
    assert row.completion_gap_p_value == 0.04223 and row.completion_gap_p_value_holm == 1.0
    assert row.completion_gap_verdict == "not significant, inconclusive"
    n1, n2 = int(row.n_sessions), int(seg.loc[row.reference_segment_key].n_sessions)
    k = int(row.completion_sessions) + int(seg.loc[row.reference_segment_key].completion_sessions)
    pooled = k / (n1 + n2)
    effect = NormalIndPower().solve_power(nobs1=n1, ratio=n2 / n1, alpha=0.05 / 57, power=0.8)
    mdd = effect * math.sqrt(pooled * (1 - pooled))
    assert mdd <= row.completion_gap_mdd < mdd + 1e-4 + 1e-6  # rounded up to 4 decimals
    assert row.completion_gap_verdict_text == (
        "not significant after Holm's correction over 57 comparisons (p = 0.0422, adjusted = 1.0000); inconclusive: "
        f"differences under {math.ceil(Decimal(str(float(row.completion_gap_mdd))) * 1000) / 10:.1f} points cannot be "
        "detected with these n")
    tests = frame(db, "select * from analytics.fct_segment_outcome_tests")
    for t in tests.itertuples():
        s = seg.loc[t.segment_key]
        assert (t.difference, t.p_value, t.p_value_holm, t.verdict, t.verdict_text) == (
            s[f"{t.outcome}_gap"], s[f"{t.outcome}_gap_p_value"], s[f"{t.outcome}_gap_p_value_holm"],
            s[f"{t.outcome}_gap_verdict"], s[f"{t.outcome}_gap_verdict_text"]) or pd.isna(t.p_value)
        assert t.minimum_detectable_difference == s[f"{t.outcome}_gap_mdd"] or pd.isna(t.minimum_detectable_difference)
    assert tests.verdict.value_counts().to_dict() == {"not significant, inconclusive": 55, "no meaningful difference": 2}
    assert (seg.holm_family_size == 57).all() and (seg.equivalence_margin == 0.05).all()
    # a verdict only where a gap is compared: not on the references nor on all sessions
    compared = ~seg.is_reference.fillna(False).astype(bool) & seg.reference_segment_key.notna()
    assert seg.completion_gap_verdict.notna().eq(compared).all()


def test_values_meant_for_reading_are_rounded(db):
    """No float noise in a published mart (81.80000000000001 printed as the p90 of a week):
    proportions have at most 4 decimals, seconds 1, p-values 4 significant digits."""
    eff = frame(db, "select * from analytics.fct_efficiency_by_period")
    for column in ("duration_sec_mean", "duration_sec_p90", "time_to_completion_sec_p90", "reported_duration_sec_p90"):
        values = eff[column].dropna()
        assert len(values) and (values == values.map(lambda v: rounded(v, 1))).all(), column
    assert 81.80000000000001 not in set(eff.duration_sec_p90)
    for table, columns in (("fct_voice_kpis", ["value", "ci_low", "ci_high"]),
                           ("fct_accessibility_by_segment", ["completion_rate", "abandonment_gap_ci_high", "transfer_gap_mdd"]),
                           ("fct_error_rate_comparisons", ["difference", "standardised_difference_ci_low"]),
                           ("dq_source_validation", ["agreement_rate", "agreement_ci_low"])):
        published = frame(db, f"select {', '.join(columns)} from analytics.{table}")
        for c in columns:
            values = published[c].dropna()
            assert len(values) and (values == values.map(rounded)).all(), (table, c)
    p = frame(db, "select p_value from analytics.fct_segment_outcome_tests where p_value is not null").p_value
    assert (p == p.map(rounded_sig)).all()


def test_efficiency_percentiles_and_error_rate_match_pandas(db):
    f = fact(db)
    eff = frame(db, "select * from analytics.fct_efficiency_by_period where period_grain = 'week'")
    for r in eff.itertuples():
        g = f[f.session_week == r.period_start]
        assert r.n_sessions == len(g) and r.n_turns == g.turn_count.sum()
        assert r.turns_per_session_median == rounded(g.turn_count.median(), 2)
        assert r.turns_per_session_p90 == rounded(g.turn_count.quantile(0.9), 2)  # linear = percentile_cont
        assert r.duration_sec_p90 == rounded(g.turn_duration_sec_total.quantile(0.9), 1)  # seconds: 1 decimal
        assert r.reported_duration_sec_median == rounded(g.reported_duration_sec.median(), 1)
        rate, se = ratio_estimate(g.turn_count, g.error_turn_count)
        assert r.error_turn_rate == rounded(rate)
        from scipy import stats

        half = stats.t.ppf(0.975, len(g) - 1) * se
        assert outward(r.error_turn_rate_ci_low, r.error_turn_rate_ci_high, rate - half, rate + half, slack=1e-6)
        done = g[g.is_completed]
        if not r.time_to_completion_suppressed:
            assert r.n_completed_sessions == len(done)
            assert r.time_to_completion_sec_median == rounded(done.turn_duration_sec_total.median(), 1)
            assert r.time_to_completion_sec_p90 == rounded(done.turn_duration_sec_total.quantile(0.9), 1)
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
        assert outward(r.repeat_usage_rate_ci_low, r.repeat_usage_rate_ci_high, *wilson(repeat, len(users)))
        assert r.sessions_per_user == rounded(users.mean(), 2)


def test_adoption_flags_the_periods_the_data_horizon_distorts(db):
    """The rule restated in pandas: the 90th percentile (linear, as percentile_cont) of the days
    between a user's consecutive days of use, rounded up; a period is affected when it starts
    before the first day plus that many days. On the sample: January to March, not April."""
    f = fact(db)
    days = f[["user_key", "session_date"]].drop_duplicates().sort_values(["user_key", "session_date"])
    gaps = pd.to_datetime(days.session_date).groupby(days.user_key).diff().dt.days.dropna()
    horizon = math.ceil(gaps.quantile(0.9))
    first = f.session_date.min()
    adoption = frame(db, "select * from analytics.fct_adoption_by_period")
    assert (adoption.horizon_days == horizon).all() and horizon == 61
    expected = adoption.period_start.map(lambda d: (d - first).days < horizon)
    assert (adoption.horizon_affected == expected).all()
    assert (adoption.horizon_note.notna() == adoption.horizon_affected).all()
    months = adoption[adoption.period_grain == "month"].sort_values("period_start").horizon_affected
    assert months.tolist() == [True, True, True, False]


def test_kpis_match_pandas(db):
    f = fact(db)
    kpis = frame(db, "select * from analytics.fct_voice_kpis where period_grain = 'overall'").set_index("kpi")
    contained = int((~f.is_transferred).sum())
    assert kpis.loc["containment_rate", "numerator"] == contained
    assert outward(kpis.loc["containment_rate", "ci_low"], kpis.loc["containment_rate", "ci_high"], *wilson(contained, len(f)))
    transferred = f[f.is_transferred]
    unspecified = int(transferred.transfer_reason.isna().sum())
    assert kpis.loc["transfer_reason_share:unspecified", "numerator"] == unspecified
    assert kpis.loc["transfer_reason_share:unspecified", "denominator"] == len(transferred)
    for kpi, col in (("no_match_rate", "misunderstanding_turn_count"), ("no_input_rate", "silence_turn_count"),
                     ("low_asr_confidence_turn_share", "low_asr_confidence_turn_count")):
        rate, se = ratio_estimate(f.turn_count, f[col])
        assert kpis.loc[kpi, "value"] == rounded(rate)
        assert outward(kpis.loc[kpi, "ci_low"], kpis.loc[kpi, "ci_high"], rate - 1.9623 * se, rate + 1.9623 * se, slack=1e-5)
    detected = f.turn_count - f.unknown_intent_turn_count
    assert kpis.loc["intent_detection_rate", "value"] == rounded(detected.sum() / f.turn_count.sum())
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
    assert r.difference == rounded(rb - ra)
    half = 1.959963984540054 * math.hypot(sa, sb)
    assert outward(r.difference_ci_low, r.difference_ci_high, rb - ra - half, rb - ra + half)
    z, p = proportions_ztest([b.misunderstanding_turn_count.sum(), a.misunderstanding_turn_count.sum()],
                             [b.turn_count.sum(), a.turn_count.sum()])
    assert r.p_value_turns_independent == rounded_sig(p)
    assert 0.5 < r.design_effect < 2 and 0 < r.standardisation_turn_coverage <= 1
    # Holm over every tested row of the table (16 on the sample), and the verdicts: flat errors
    every = frame(db, "select * from analytics.fct_error_rate_comparisons")
    assert len(every) == 16 and (every.family_size == 16).all()
    np.testing.assert_allclose(every.p_value_holm, multipletests(every.p_value, method="holm")[1], rtol=2e-3)
    assert set(every.verdict) == {"no meaningful difference", "not significant, inconclusive"}
    span = every[(every.comparison_type == "latest_month_vs_first") & (every.error_type == "error")].iloc[0]
    assert span.verdict == "no meaningful difference" and span.difference_ci_low > -0.05 and span.difference_ci_high < 0.05
    assert span.verdict_text.startswith("no meaningful difference: +0.7 points, and its 95% CI (-2.6 to +4.1) lies within")


def test_small_days_are_suppressed_with_their_complements(db):
    from voice_analytics_dagster.lib.settings import get_settings

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


def test_the_model_records_the_data_it_was_trained_on(db, sample_dir):
    """The sample's five files, by their own SHA-256 (computed here from the files), the folder,
    the dataset kind, the sessions and their dates, in the metrics and the history alike."""
    metrics = frame(db, "select * from analytics.fct_abandonment_model_metrics").iloc[0]
    history = frame(db, "select * from analytics.fct_abandonment_model_history")
    files = sorted(sample_dir.glob("*.csv"))
    assert len(files) == 5 and len(history) == 1
    checksums = sorted(hashlib.sha256(f.read_bytes()).hexdigest() for f in files)
    expected = hashlib.sha256("\n".join(checksums).encode()).hexdigest()
    sessions, first, last = db.rows("select count(*), min(session_date), max(session_date) "
                                    "from analytics.fact_voice_ai_sessions")[0]
    for row in (metrics, history.iloc[0]):
        assert row.dataset == "real" and row.input_files == 5 and row.input_sha256 == expected
        assert [Path(f).resolve() for f in row.source_folders] == [sample_dir.resolve()]
        assert row.n_sessions_read == sessions == 1196
        assert (row.first_session_date, row.last_session_date) == (first, last)


def test_the_report_is_written_and_linked(published, db):
    from dagster import AssetKey

    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings

    settings = get_settings()
    path = settings.report_dir / "voice_analytics_report.html"
    assert path.is_file() and settings.report_dir.is_relative_to(settings.home)
    text = path.read_text()
    # the five questions, each a section with a plot and one sentence saying what the sample says
    sections = dict(re.findall(r"<section id='(\w+)'>(.*?)</section>", text, flags=re.S))
    assert list(sections) == ["accessibility", "efficiency", "adoption", "errors", "abandonment"]
    answers = {}
    for key, body in sections.items():
        assert re.search(r'<img src="data:image/png;base64,', body), key
        [answers[key]] = re.findall(r"<p class='answer'>(.*?)</p>", body)
    assert answers["accessibility"].startswith("No segment differs significantly from its reference after Holm&#x27;s "
                                               "correction over 57 comparisons (the smallest unadjusted p-value, 0.042, "
                                               "is not a finding)")
    assert "2 gaps are within ±5 points (no meaningful difference); 55 are inconclusive" in answers["accessibility"]
    assert answers["efficiency"].endswith("none of them moved beyond the two weeks&#x27; 95% intervals.")
    assert answers["adoption"].startswith("1,196 sessions from 447 users; in April 2025 90.9% of active users had used "
                                          "the channel more than once")
    assert "within 61 days of the data&#x27;s first day understate repeat usage" in answers["adoption"]
    assert "voice carried 46.2%" in answers["adoption"] and "of 900 applications" in answers["adoption"]
    assert answers["errors"].startswith("The error-turn rate went from 39.2% in January 2025 to 39.9% in April 2025: "
                                        "no meaningful difference")
    assert "none of the 16 comparisons" in answers["errors"]
    assert answers["abandonment"].startswith("No driver of abandonment is significant")
    assert answers["abandonment"].endswith("it ranks abandoned sessions no better than chance.")
    event = open_instance(settings).get_latest_materialization_event(AssetKey(["reports", "voice_analytics_report"]))
    assert event.run_id == published.run_id
    assert event.asset_materialization.metadata["path"].value == str(path)
    assert event.asset_materialization.metadata["answer: errors"].value.startswith("The error-turn rate went from")


def test_history_is_kept_across_trainings(published, db):
    """A retraining appends to the history. The history here is first made as an older version
    left it, without the columns on the training data: it gains them, its old row NULL in them."""
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB
    from voice_analytics_dagster.defs.model.assets import abandonment_model
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings

    provenance = ["dataset", "source_folders", "input_files", "input_sha256", "first_session_date",
                  "last_session_date"]
    with db.connect() as conn:
        for column in provenance:
            conn.execute(f"alter table analysis.abandonment_model_history drop column {column} cascade")  # and dbt's view on it
        conn.commit()
    before = frame(db, "select training_id from analysis.abandonment_model_history")
    job = defs.resolve_job_def(PIPELINE_JOB).get_subset(asset_selection=set(abandonment_model.keys))
    # the same data: the model is not due for training (defs/model/scoring.py), so it is asked for
    result = job.execute_in_process(run_config={"ops": {"abandonment_model": {"config": {"refit": True}}}},
                                    instance=open_instance(get_settings()), raise_on_error=False)
    assert result.success
    after = frame(db, "select * from analysis.abandonment_model_history order by trained_at")
    assert len(after) == len(before) + 1 and after.training_id.is_unique
    assert after.auc.iloc[-1] == pytest.approx(after.auc.iloc[0])  # same data, same seed: same model
    assert after[provenance].iloc[0].isna().all() and after[provenance].iloc[-1].notna().all()
    assert after.input_sha256.iloc[-1] == frame(db, "select input_sha256 from analytics.fct_abandonment_model_metrics").input_sha256[0]
    assert len(frame(db, "select * from analysis.abandonment_drivers")) == 9  # replaced, not appended


def test_every_metabase_card_runs_as_the_bi_role(db):
    """The dashboards' SQL (metabase/) on this module's published run, as the read-only BI role:
    the expected columns, the suppressed flag beside withheld values, NULL (never 0) in them."""
    from tests.e2e.metabase_cards import check_every_card

    with bi_connect(db) as conn:
        suppressed = check_every_card(conn)
    assert sum(suppressed.values()) >= 1  # the sample withholds one week's time to completion
