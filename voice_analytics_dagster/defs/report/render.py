"""The HTML report: what the certified tables say, as plots a person can look at.

One self-contained HTML file (plots embedded as PNG data URIs, no network, no JavaScript):
outcome rates by segment with their 95% intervals, the error rate over time, abandonment against
ASR confidence, a forest plot of the abandonment model's drivers, and the tables behind them.
Pure: it takes data frames (read from ``analytics`` by assets/report.py) and returns HTML.
Matplotlib's object API (Figure, no pyplot): no global state, no display backend.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUTCOME_COLOURS = {"completion": "#2b8a3e", "abandonment": "#c92a2a", "transfer": "#1864ab"}


@dataclass
class ReportData:
    generated_at: str
    segments: pd.DataFrame  # fct_accessibility_by_segment
    segment_tests: pd.DataFrame  # fct_segment_outcome_tests
    error_rates: pd.DataFrame  # fct_error_rates
    error_comparisons: pd.DataFrame  # fct_error_rate_comparisons
    kpis: pd.DataFrame  # fct_voice_kpis, overall rows
    asr_bins: pd.DataFrame  # abandonment by ASR confidence bin (asr_bin_sql)
    drivers: pd.DataFrame  # abandonment_drivers
    metrics: pd.DataFrame  # abandonment_model_metrics (one row)
    min_cell_size: int


def asr_bin_sql(bins: int = 10) -> str:
    """Abandonment by equal-count bins of session ASR confidence, from the certified fact, with
    Wilson intervals computed in Python (bins are large: n / bins sessions each)."""
    return f"""
        with binned as (
            select avg_asr_confidence, is_abandoned, ntile({int(bins)}) over (order by avg_asr_confidence, session_id) as bin
            from analytics.fact_voice_ai_sessions
        )
        select bin, count(*) as n_sessions, count(*) filter (where is_abandoned) as abandoned,
               avg(avg_asr_confidence) as mean_asr, min(avg_asr_confidence) as min_asr, max(avg_asr_confidence) as max_asr
        from binned group by bin order by bin
    """


def _figure(**kwargs) -> Figure:
    # imported when a report is drawn, not when the code location loads (a third of a second)
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def plot_outcomes_by_segment(segments: pd.DataFrame) -> str | None:
    """Dot plot with 95% Wilson intervals of the three outcome rates, one-attribute segments."""
    rows = segments[(~segments["suppressed"]) & (segments["segment_dimension"].isin(
        ["all", "region", "disability", "first_time_digital_user", "language"]))].copy()
    if rows.empty:
        return None
    order = {"all": 0, "region": 1, "disability": 2, "first_time_digital_user": 3, "language": 4}
    rows["o"] = rows["segment_dimension"].map(order)
    rows = rows.sort_values(["o", "segment_label"], ascending=[False, False]).reset_index(drop=True)
    fig = _figure(figsize=(9, 0.45 * len(rows) + 1.2))
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
    return _png(fig)


def plot_error_rates(error_rates: pd.DataFrame) -> str | None:
    weeks = error_rates[(error_rates["breakdown"] == "week") & (~error_rates["suppressed"])].sort_values("period_start")
    if weeks.empty:
        return None
    fig = _figure(figsize=(9, 4))
    ax = fig.subplots()
    x = pd.to_datetime(weeks["period_start"])
    for col, label, colour in (("error_turn_rate", "any error", "#212529"),
                               ("misunderstanding_rate", "no-match (misunderstanding)", "#e8590c"),
                               ("silence_rate", "no-input (silence)", "#1971c2"),
                               ("noise_rate", "noise", "#868e96")):
        ax.plot(x, weeks[col].astype(float), marker="o", label=label, color=colour)
        ax.fill_between(x, weeks[f"{col}_ci_low"].astype(float), weeks[f"{col}_ci_high"].astype(float),
                        color=colour, alpha=0.12)
    ax.set_ylabel("share of turns (95% CI, sessions as unit)")
    ax.set_title("Error rate by ISO week")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    return _png(fig)


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
    fig = _figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.errorbar(bins["mean_asr"].astype(float), rate, yerr=[rate - lo, hi - rate], fmt="o-", color="#c92a2a", capsize=3)
    ax.set_xlabel("mean ASR confidence of the session (bin mean; equal-count bins)")
    ax.set_ylabel("abandonment rate (95% Wilson CI)")
    ax.set_title("Abandonment against ASR confidence")
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_forest(drivers: pd.DataFrame) -> str | None:
    if drivers.empty:
        return None
    d = drivers.sort_values("rank", ascending=False).reset_index(drop=True)
    fig = _figure(figsize=(7, 0.4 * len(d) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(d))
    colour = np.where(d["is_significant"].astype(bool), "#c92a2a", "#868e96")
    coef = d["coefficient"].astype(float)
    for i in range(len(d)):
        ax.plot([d["ci_low"].iloc[i], d["ci_high"].iloc[i]], [y[i], y[i]], color=colour[i])
        ax.plot(coef.iloc[i], y[i], "o", color=colour[i])
    ax.axvline(0, color="#212529", linewidth=1)
    ax.set_yticks(y, d["feature"])
    ax.set_xlabel("log-odds of abandonment per SD (95% CI); red = significant after Holm")
    ax.set_title("Drivers of abandonment")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


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


def build_report(data: ReportData) -> str:
    m = data.metrics.iloc[0] if len(data.metrics) else None
    significant = data.segment_tests[data.segment_tests["is_significant"].astype(bool)] if len(data.segment_tests) else data.segment_tests
    family = int(data.segment_tests["family_size"].dropna().max()) if data.segment_tests["family_size"].notna().any() else 0
    seg_text = (f"{len(significant)} of {family} segment comparisons differ significantly after Holm's correction."
                if family else "No segment comparison could be tested.")
    model_text = html.escape(m["conclusion"]) if m is not None else "No model."
    auc_text = (f"Cross-validated AUC {m['auc']:.3f} (95% CI {m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f}) on "
                f"{int(m['n_sessions']):,} sessions; gradient boosting {m['gbm_auc']:.3f} on {int(m['gbm_sessions']):,}."
                if m is not None and pd.notna(m["auc"]) else "")
    versions = data.error_comparisons[data.error_comparisons["comparison_type"] == "asr_model_version"]
    css = ("body{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#212529}"
           "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #dee2e6;padding:3px 6px}"
           "th{background:#f1f3f5}img{max-width:100%}h2{border-bottom:1px solid #dee2e6}.note{color:#495057;font-size:14px}")
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>Voice AI analytics report</title><style>{css}</style></head><body>",
        "<h1>Voice AI analytics: what the certified data say</h1>",
        f"<p class='note'>Generated {html.escape(data.generated_at)} from the certified schema <code>analytics</code>. "
        f"Every rate has its n and a 95% interval; segments built from fewer than {data.min_cell_size} sessions are "
        "suppressed.</p>",
        "<h2>Summary</h2><ul>",
        f"<li>{html.escape(seg_text)}</li>",
        f"<li>{model_text}</li>",
        f"<li>{html.escape(auc_text)}</li>" if auc_text else "",
        "</ul>",
        "<h2>Industry KPIs (whole period)</h2>",
        _table(data.kpis, ["kpi", "kpi_group", "numerator", "denominator", "value", "ci_low", "ci_high"]),
        "<h2>Outcome by segment</h2>",
        _img(plot_outcomes_by_segment(data.segments), "outcome rates by segment"),
        "<h3>Segments that differ significantly (Holm)</h3>",
        _table(significant, ["segment_label", "outcome", "n_sessions", "rate", "reference_rate", "difference",
                             "difference_ci_low", "difference_ci_high", "p_value_holm"]) if len(significant)
        else f"<p>None of the {family} comparisons is significant after Holm's correction.</p>",
        "<h2>Errors over time</h2>",
        _img(plot_error_rates(data.error_rates), "error rate by week"),
        "<h3>ASR model versions</h3>",
        _table(versions, ["compared_group", "baseline_group", "error_type", "baseline_rate", "compared_rate",
                          "difference", "difference_ci_low", "difference_ci_high", "p_value", "standardised_difference",
                          "standardised_p_value"]) if len(versions) else "<p>The export does not carry asr_model_version.</p>",
        "<h2>Abandonment and ASR confidence</h2>",
        _img(plot_asr_vs_abandonment(data.asr_bins, data.min_cell_size), "abandonment by ASR confidence"),
        "<h2>The abandonment model</h2>",
        _img(plot_forest(data.drivers), "forest plot of the drivers"),
        _table(data.drivers, ["rank", "feature", "coefficient", "ci_low", "ci_high", "odds_ratio", "p_value",
                              "p_value_adjusted", "is_significant"]),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)
