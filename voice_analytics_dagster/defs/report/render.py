"""The HTML report: what the certified tables say, as plots a person can look at.

One self-contained HTML file (plots embedded as PNG data URIs, no network, no JavaScript) that
answers the five questions, each in a section with a plot with 95% intervals and one plain
sentence computed from the data (defs/report/sections.py): accessibility (the segments' gaps
with their verdicts), efficiency, adoption with the application channels, error reduction and
abandonment; then the tables behind them.
Pure: it takes data frames (read from ``analytics`` by assets/report.py) and returns HTML.
Matplotlib's object API (Figure, no pyplot): no global state, no display backend.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from voice_analytics_dagster.defs.report.sections import (
    Section,
    abandonment_section,
    accessibility_section,
    adoption_section,
    efficiency_section,
    errors_section,
    figure,
    png,
    segment_gaps,
)

OUTCOME_COLOURS = {"completion": "#2b8a3e", "abandonment": "#c92a2a", "transfer": "#1864ab"}


@dataclass
class ReportData:
    generated_at: str
    segments: pd.DataFrame  # fct_accessibility_by_segment
    efficiency: pd.DataFrame  # fct_efficiency_by_period, weeks
    adoption: pd.DataFrame  # fct_adoption_by_period, weeks and months
    channels: pd.DataFrame  # fct_application_channels
    error_rates: pd.DataFrame  # fct_error_rates
    error_comparisons: pd.DataFrame  # fct_error_rate_comparisons
    kpis: pd.DataFrame  # fct_voice_kpis, overall rows
    asr_bins: pd.DataFrame  # abandonment by ASR confidence bin (asr_bin_sql)
    drivers: pd.DataFrame  # abandonment_drivers
    metrics: pd.DataFrame  # abandonment_model_metrics (one row)
    min_cell_size: int


def asr_bin_sql(bins: int = 10) -> str:
    """Abandonment by equal-count bins of session ASR confidence, from the certified fact, with
    Wilson intervals computed in Python (bins are large: n / bins sessions each). Sessions without
    an ASR confidence (typed text, a platform that does not record it) are in no bin: no rows, no
    plot, when none has one."""
    return f"""
        with binned as (
            select avg_asr_confidence, is_abandoned, ntile({int(bins)}) over (order by avg_asr_confidence, session_id) as bin
            from analytics.fact_voice_ai_sessions
            where avg_asr_confidence is not null
        )
        select bin, count(*) as n_sessions, count(*) filter (where is_abandoned) as abandoned,
               avg(avg_asr_confidence) as mean_asr, min(avg_asr_confidence) as min_asr, max(avg_asr_confidence) as max_asr
        from binned group by bin order by bin
    """


def plot_outcomes_by_segment(segments: pd.DataFrame) -> str | None:
    """Dot plot with 95% Wilson intervals of the three outcome rates, one-attribute segments."""
    rows = segments[(~segments["suppressed"]) & (segments["segment_dimension"].isin(
        ["all", "region", "disability", "first_time_digital_user", "language"]))].copy()
    if rows.empty:
        return None
    order = {"all": 0, "region": 1, "disability": 2, "first_time_digital_user": 3, "language": 4}
    rows["o"] = rows["segment_dimension"].map(order)
    rows = rows.sort_values(["o", "segment_label"], ascending=[False, False]).reset_index(drop=True)
    fig = figure(figsize=(9, 0.45 * len(rows) + 1.2))
    axes = fig.subplots(1, 3, sharey=True)
    y = np.arange(len(rows))
    for ax, outcome in zip(axes, ("completion", "abandonment", "transfer"), strict=True):
        rate = rows[f"{outcome}_rate"].astype(float)
        lo = rows[f"{outcome}_rate_ci_low"].astype(float)
        hi = rows[f"{outcome}_rate_ci_high"].astype(float)
        ax.errorbar(rate, y, xerr=[rate - lo, hi - rate], fmt="o", color=OUTCOME_COLOURS[outcome], capsize=3)
        overall = rows.loc[rows["segment_dimension"] == "all", f"{outcome}_rate"]
        if len(overall):
            ax.axvline(float(overall.iloc[0]), color="#868e96", linestyle=":", linewidth=1)
        ax.set_title(f"{outcome} rate")
        ax.set_xlabel("share of sessions (95% Wilson CI)")
        ax.grid(axis="x", alpha=0.3)
    labels = [f"{label} (n={int(n)})" for label, n in zip(rows["segment_label"], rows["n_sessions"], strict=True)]
    axes[0].set_yticks(y, labels)
    fig.suptitle("Outcome by segment")
    return png(fig)


def wilson(k: np.ndarray, n: np.ndarray, z: float = 1.959963984540054) -> tuple[np.ndarray, np.ndarray]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def plot_asr_vs_abandonment(bins: pd.DataFrame, min_cell_size: int) -> str | None:
    bins = bins[bins["n_sessions"] >= min_cell_size]
    if bins.empty:
        return None
    n = bins["n_sessions"].to_numpy(float)
    k = bins["abandoned"].to_numpy(float)
    lo, hi = wilson(k, n)
    rate = k / n
    fig = figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.errorbar(bins["mean_asr"].astype(float), rate, yerr=[rate - lo, hi - rate], fmt="o-", color="#c92a2a", capsize=3)
    ax.set_xlabel("mean ASR confidence of the session (bin mean; equal-count bins)")
    ax.set_ylabel("abandonment rate (95% Wilson CI)")
    ax.set_title("Abandonment against ASR confidence")
    ax.grid(alpha=0.3)
    return png(fig)


def _table(frame: pd.DataFrame, columns: list[str], digits: int = 3) -> str:
    if frame.empty:
        return "<p><em>no rows</em></p>"

    def cell(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return ""
        if isinstance(v, float):
            return f"{v:.{digits}f}"
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r[c])}</td>" for c in columns) + "</tr>"
                   for _, r in frame[columns].iterrows())
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(uri: str | None, alt: str) -> str:
    return f'<img src="{uri}" alt="{html.escape(alt)}">' if uri else f"<p><em>{html.escape(alt)}: no published data</em></p>"


def sections(data: ReportData) -> list[Section]:
    return [
        accessibility_section(data.segments),
        efficiency_section(data.efficiency[data.efficiency["period_grain"] == "week"]),
        adoption_section(data.segments, data.adoption, data.channels),
        errors_section(data.error_rates, data.error_comparisons),
        abandonment_section(data.drivers, data.metrics, plot_asr_vs_abandonment(data.asr_bins, data.min_cell_size)),
    ]


def _details(section: Section, data: ReportData) -> str:
    """The table behind a section's sentence, where one helps to read it."""
    if section.key == "accessibility":
        gaps = segment_gaps(data.segments)
        return ("<h3>Every gap with its verdict</h3>"
                + _table(gaps[~gaps["suppressed"]], ["segment_label", "outcome", "gap", "ci_low", "ci_high", "p_value",
                                                     "p_value_holm", "mdd", "verdict"], digits=4)
                + _img(plot_outcomes_by_segment(data.segments), "outcome rates by segment"))
    if section.key == "errors":
        return ("<h3>Comparisons with their verdicts</h3>"
                + _table(data.error_comparisons, ["comparison_type", "baseline_group", "compared_group", "error_type",
                                                  "difference", "difference_ci_low", "difference_ci_high", "p_value_holm",
                                                  "verdict"], digits=4))
    if section.key == "abandonment":
        return _table(data.drivers, ["rank", "feature", "coefficient", "ci_low", "ci_high", "odds_ratio", "p_value",
                                     "p_value_adjusted", "is_significant"])
    return ""


def build_report(data: ReportData, answers: list[Section] | None = None) -> str:
    """The report's HTML; ``answers``: the sections, when the caller has drawn them already."""
    answers = sections(data) if answers is None else answers
    css = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#212529}"
           "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #dee2e6;padding:3px 6px}"
           "th{background:#f1f3f5}img{max-width:100%}h2{border-bottom:1px solid #dee2e6}.note{color:#495057;font-size:14px}"
           ".answer{font-size:16px;background:#f8f9fa;border-left:4px solid #1864ab;padding:0.5em 1em}")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Voice AI analytics report</title><style>{css}</style></head><body>",
        "<h1>Voice AI analytics: what the certified data say</h1>",
        f"<p class='note'>Generated {html.escape(data.generated_at)} from the certified schema <code>analytics</code>. "
        f"Every rate has its n and a 95% interval; cells built from fewer than {data.min_cell_size} sessions are "
        "withheld and appear as gaps. A difference is called significant only after Holm's correction for the number "
        "of comparisons.</p>",
        "<h2>The five questions</h2><ol>",
        *(f"<li><a href='#{s.key}'>{html.escape(s.question)}</a> {html.escape(s.answer)}</li>" for s in answers),
        "</ol>",
        "<h2>Industry KPIs (whole period)</h2>",
        _table(data.kpis, ["kpi", "kpi_group", "numerator", "denominator", "value", "ci_low", "ci_high"], digits=4),
    ]
    for number, section in enumerate(answers, start=1):
        parts += [
            f"<section id='{section.key}'><h2>{number}. {html.escape(section.question)}</h2>",
            f"<p class='answer'>{html.escape(section.answer)}</p>",
            *(_img(uri, alt) for uri, alt in section.images),
            _details(section, data),
            "</section>",
        ]
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)
