"""The report's five sections as pure functions of the certified tables' rows: the sentence says
what the rows say (a significant gap is named, an equivalence and an inconclusive result are
told apart, the data horizon is respected), and a withheld cell stays a gap in the plots.
The real path (the published sample, end to end) is tests/e2e/test_analysis_sample.py."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from voice_analytics_dagster.defs.report import sections as rs


def segment_row(key, label, dimension, reference, suppressed=False, **gaps):
    row = {"segment_key": key, "segment_label": label, "segment_dimension": dimension,
           "is_reference": reference is None and key != "all", "reference_segment_key": reference,
           "suppressed": suppressed, "n_sessions": None if suppressed else 100, "n_users": None if suppressed else 80,
           "holm_family_size": 6, "equivalence_margin": 0.05}
    for outcome in rs.OUTCOMES:
        gap, low, high, p, p_holm, mdd, verdict = gaps.get(outcome, (None,) * 6 + ("not tested",))
        row.update({f"{outcome}_gap": gap, f"{outcome}_gap_ci_low": low, f"{outcome}_gap_ci_high": high,
                    f"{outcome}_gap_p_value": p, f"{outcome}_gap_p_value_holm": p_holm, f"{outcome}_gap_mdd": mdd,
                    f"{outcome}_gap_verdict": verdict if reference else None})
    return row


def segments(with_significant: bool) -> pd.DataFrame:
    inconclusive = (0.03, -0.05, 0.11, 0.4, 1.0, 0.12, "not significant, inconclusive")
    equivalent = (0.004, -0.03, 0.04, 0.8, 1.0, 0.07, "no meaningful difference")
    significant = (-0.12, -0.19, -0.05, 0.0004, 0.0024, 0.08, "significant")
    return pd.DataFrame([
        segment_row("all", "all sessions", "all", None),
        segment_row("region=urban", "urban", "region", None),
        segment_row("region=rural", "rural", "region", "region=urban", completion=equivalent,
                    abandonment=significant if with_significant else inconclusive, transfer=inconclusive),
        segment_row("disability=true", "with disability", "disability", "disability=false", suppressed=True),
        segment_row("disability=false", "without disability", "disability", None),
    ])


def test_accessibility_names_a_significant_gap_and_only_then():
    found = rs.accessibility_section(segments(with_significant=True))
    assert found.answer == ("1 of 6 segment comparisons differ significantly after Holm's correction: "
                            "rural, abandonment -12.0 points (95% CI -19.0 to -5.0).")
    none = rs.accessibility_section(segments(with_significant=False)).answer
    assert none.startswith("No segment differs significantly from its reference after Holm's correction over 6 "
                           "comparisons (the smallest unadjusted p-value, 0.400, is not a finding)")
    assert "1 gap is within ±5 points (no meaningful difference)" in none
    assert "2 are inconclusive: these n cannot detect differences under 12.0 to 12.0 points" in none
    assert found.images[0][0].startswith("data:image/png;base64,")


def test_a_suppressed_segment_keeps_its_row_without_a_value():
    gaps = rs.segment_gaps(segments(with_significant=False))
    withheld = gaps[gaps["segment_label"] == "with disability"]
    assert len(withheld) == 3 and withheld["suppressed"].all() and withheld["gap"].isna().all()
    assert set(gaps["segment_label"]) == {"rural", "with disability"}  # references and 'all' have no gap


def week(start, turns, low, high, suppressed=False, partial=False, ttc_suppressed=False):
    return {"period_start": start, "is_partial_period": partial, "suppressed": suppressed,
            "time_to_completion_suppressed": ttc_suppressed or suppressed,
            "turns_per_session_mean": None if suppressed else turns, "turns_per_session_ci_low": None if suppressed else low,
            "turns_per_session_ci_high": None if suppressed else high,
            **{f"{m}_sec_{s}": (None if suppressed else v) for m in ("duration", "time_to_completion")
               for s, v in (("mean", 40.0), ("ci_low", 35.0), ("ci_high", 45.0))}}


def test_efficiency_compares_the_first_and_last_full_weeks():
    weeks = pd.DataFrame([week(dt.date(2025, 1, 6), 5.0, 4.5, 5.5, partial=True), week(dt.date(2025, 1, 13), 5.2, 4.8, 5.6),
                          week(dt.date(2025, 1, 20), 0, 0, 0, suppressed=True), week(dt.date(2025, 1, 27), 6.4, 5.9, 6.9)])
    answer = rs.efficiency_answer(weeks)
    assert answer.startswith("From the first full week (2025-01-13) to the last (2025-01-27): turns per session 5.2 to 6.4 turns")
    assert answer.endswith("turns per session moved beyond the two weeks' 95% intervals.")
    weeks.loc[3, "turns_per_session_mean"] = 5.3
    weeks.loc[3, "turns_per_session_ci_low"] = 4.9
    assert rs.efficiency_answer(weeks).endswith("none of them moved beyond the two weeks' 95% intervals.")
    # the withheld week is a gap (NaN) in the plotted series, not a zero
    assert np.isnan(rs.values(weeks, "turns_per_session_mean")[2])
    assert rs.efficiency_section(weeks).images[0][0].startswith("data:image/png")


def adoption_months(affected: list[bool]) -> pd.DataFrame:
    return pd.DataFrame([{"period_grain": "month", "period_start": dt.date(2025, i + 1, 1), "suppressed": False,
                          "horizon_affected": a, "horizon_days": 61, "repeat_usage_rate": 0.3 + 0.2 * i,
                          "repeat_usage_rate_ci_low": 0.25 + 0.2 * i, "repeat_usage_rate_ci_high": 0.35 + 0.2 * i,
                          "n_sessions": 100, "active_users": 80, "new_users": 20}
                         for i, a in enumerate(affected)])


CHANNELS = pd.DataFrame([
    {"period_grain": "overall", "channel": c, "suppressed": False, "channel_share": share, "channel_share_ci_low": share - 0.03,
     "channel_share_ci_high": share + 0.03, "period_applications": 900, "completion_rate": done,
     "completion_rate_ci_low": done - 0.05, "completion_rate_ci_high": done + 0.05}
    for c, share, done in (("voice", 0.462, 0.558), ("web", 0.338, 0.628), ("ussd", 0.2, 0.628), ("all", 1.0, 0.6))])


def test_adoption_reads_repeat_usage_outside_the_data_horizon_only():
    seg = segments(with_significant=False)
    answer = rs.adoption_answer(seg, adoption_months([True, True, False]), CHANNELS)
    assert answer.startswith("100 sessions from 80 users; in March 2025 70.0% of active users had used the channel "
                             "more than once (95% CI 65.0%-75.0%), while the months starting within 61 days")
    assert "voice carried 46.2% (95% CI 43.2%-49.2%) of 900 applications and completed 55.8% of them (web 62.8%, USSD 62.8%)" in answer
    assert "cannot be read yet" in rs.adoption_answer(seg, adoption_months([True, True]), CHANNELS)
    adoption = pd.concat([adoption_months([True, False]), adoption_months([True, False]).assign(period_grain="week")])
    assert rs.adoption_section(seg, adoption, CHANNELS).images[0][0].startswith("data:image/png")


def comparison(kind, base, compared, verdict, text, error_type="error"):
    return {"comparison_type": kind, "baseline_group": base, "compared_group": compared, "error_type": error_type,
            "suppressed": False, "baseline_rate": 0.392, "compared_rate": 0.399, "verdict": verdict, "verdict_text": text}


def test_errors_answer_the_latest_month_against_the_first_with_its_verdict():
    rows = [comparison("month_over_month", "2025-01-01", "2025-02-01", "not significant, inconclusive", "x"),
            comparison("latest_month_vs_first", "2025-01-01", "2025-03-01", "no meaningful difference",
                       "no meaningful difference: +0.7 points"),
            comparison("month_over_month", "2025-02-01", "2025-03-01", "significant", "significant: -3.0 points",
                       error_type="noise")]
    answer = rs.errors_answer(pd.DataFrame(rows))
    assert answer == ("The error-turn rate went from 39.2% in January 2025 to 39.9% in March 2025: no meaningful "
                      "difference: +0.7 points; 1 of the 3 comparisons (month over month, latest against first, by "
                      "error type) are significant after Holm's correction.")
    assert "none of the 2 comparisons" in rs.errors_answer(pd.DataFrame(rows[:2]))
    assert "cannot be compared" in rs.errors_answer(pd.DataFrame(rows[:0], columns=list(rows[0])))


@pytest.mark.parametrize("low,expected", [(0.444, "): it ranks abandoned sessions no better than chance."),
                                          (0.61, "): it ranks abandoned sessions better than chance.")])
def test_abandonment_states_the_model_and_its_auc(low, expected):
    metrics = pd.DataFrame([{"status": "fitted", "conclusion": "No driver of abandonment is significant.",
                             "auc": low + 0.04, "auc_ci_low": low, "auc_ci_high": low + 0.08}])
    answer = rs.abandonment_answer(metrics)
    assert answer.startswith("No driver of abandonment is significant. The model's cross-validated AUC is")
    assert answer.endswith(expected)
    assert rs.abandonment_answer(metrics.iloc[:0]) == "No abandonment model has been trained."
