"""The report's five sections, one per question the team asks: is the voice channel accessible to
everyone, how smooth is it, is it used (and through which channels are applications made), are
errors going down, and why are sessions abandoned. Each section is a plot with 95% intervals and
one plain sentence computed from the certified tables (never written by hand), so the sentence
changes when the data do.

Pure: data frames in (read from ``analytics`` by assets/report.py), HTML pieces out. A withheld
small cell is NULL in the tables; the plots keep its row, so a line breaks and a segment shows
"suppressed" instead of a value: a gap, never a zero.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUTCOMES = ("completion", "abandonment", "transfer")
VERDICT_COLOURS = {"significant": "#c92a2a", "no meaningful difference": "#2b8a3e",
                   "not significant, inconclusive": "#868e96", "not tested": "#ced4da"}
ERROR_TYPES = (("error_turn_rate", "any error", "#212529"), ("misunderstanding_rate", "no-match (misunderstanding)", "#e8590c"),
               ("silence_rate", "no-input (silence)", "#1971c2"), ("noise_rate", "noise", "#868e96"))


@dataclass(frozen=True)
class Section:
    key: str  # the HTML id of the section
    question: str  # its heading
    answer: str  # one plain sentence computed from the data
    images: tuple[tuple[str | None, str], ...]  # (PNG data URI, or None when nothing is published; alt text)


def figure(**kwargs) -> Figure:
    # imported when a report is drawn, not when the code location loads (a third of a second)
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def points(x: float) -> str:
    """A difference of proportions in signed percentage points: 0.144 -> '+14.4'."""
    return f"{100 * x:+.1f}"


def percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def values(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A column as floats, a withheld (NULL) value as NaN: matplotlib breaks the line there."""
    return pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)


def _flag(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].fillna(False).astype(bool)


# -- 1. Accessibility ---------------------------------------------------------------------------

def segment_gaps(segments: pd.DataFrame) -> pd.DataFrame:
    """One row per compared segment and outcome: the gap, its interval and its verdict."""
    compared = segments[~_flag(segments, "is_reference") & segments["reference_segment_key"].notna()]
    rows = []
    for outcome in OUTCOMES:
        for r in compared.itertuples(index=False):
            rows.append({
                "segment_label": r.segment_label, "segment_dimension": r.segment_dimension, "outcome": outcome,
                "suppressed": bool(r.suppressed), "gap": getattr(r, f"{outcome}_gap"),
                "ci_low": getattr(r, f"{outcome}_gap_ci_low"), "ci_high": getattr(r, f"{outcome}_gap_ci_high"),
                "p_value": getattr(r, f"{outcome}_gap_p_value"), "p_value_holm": getattr(r, f"{outcome}_gap_p_value_holm"),
                "mdd": getattr(r, f"{outcome}_gap_mdd"), "verdict": getattr(r, f"{outcome}_gap_verdict"),
            })
    columns = ["segment_label", "segment_dimension", "outcome", "suppressed", "gap", "ci_low", "ci_high",
               "p_value", "p_value_holm", "mdd", "verdict"]
    gaps = pd.DataFrame(rows, columns=columns)
    for c in ("gap", "ci_low", "ci_high", "p_value", "p_value_holm", "mdd"):
        gaps[c] = pd.to_numeric(gaps[c], errors="coerce")
    return gaps


def accessibility_answer(gaps: pd.DataFrame, family_size: int, margin: float) -> str:
    if family_size == 0:
        return "No segment could be compared with its reference: the segments are too small or show no variation."
    significant = gaps[gaps["verdict"] == "significant"].sort_values("p_value_holm")
    if len(significant):
        named = "; ".join(f"{r.segment_label}, {r.outcome} {points(r.gap)} points (95% CI {points(r.ci_low)} to "
                          f"{points(r.ci_high)})" for r in significant.head(3).itertuples())
        more = f", and {len(significant) - 3} more in the tables" if len(significant) > 3 else ""
        return (f"{len(significant)} of {family_size} segment comparisons differ significantly after Holm's correction: "
                f"{named}{more}.")
    equivalent = int((gaps["verdict"] == "no meaningful difference").sum())
    inconclusive = gaps[gaps["verdict"] == "not significant, inconclusive"]
    smallest = gaps["p_value"].min()
    parts = [f"No segment differs significantly from its reference after Holm's correction over {family_size} "
             f"comparisons (the smallest unadjusted p-value, {smallest:.3f}, is not a finding)"]
    if equivalent:
        parts.append(f"{equivalent} gap{'s are' if equivalent > 1 else ' is'} within ±{100 * margin:g} points "
                     "(no meaningful difference)")
    if len(inconclusive):
        parts.append(f"{len(inconclusive)} {'are' if len(inconclusive) > 1 else 'is'} inconclusive: these n cannot "
                     f"detect differences under {100 * inconclusive['mdd'].min():.1f} to "
                     f"{100 * inconclusive['mdd'].max():.1f} points")
    return "; ".join(parts) + "."


def plot_segment_gaps(gaps: pd.DataFrame, margin: float) -> str | None:
    """Each compared segment's gap to its reference with its 95% interval, coloured by verdict,
    the equivalence margin shaded; a suppressed segment keeps its row, marked, without a value."""
    if gaps.empty:
        return None
    labels = list(dict.fromkeys(gaps.sort_values(["segment_dimension", "segment_label"], ascending=False)["segment_label"]))
    y = {label: i for i, label in enumerate(labels)}
    fig = figure(figsize=(10, 0.32 * len(labels) + 1.6))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, outcome in zip(axes, OUTCOMES, strict=True):
        rows = gaps[gaps["outcome"] == outcome]
        ax.axvspan(-100 * margin, 100 * margin, color="#2b8a3e", alpha=0.08, linewidth=0)
        ax.axvline(0, color="#212529", linewidth=0.8)
        for r in rows.itertuples():
            if pd.isna(r.gap):
                ax.text(0, y[r.segment_label], "suppressed" if r.suppressed else "not tested",
                        ha="center", va="center", fontsize=7, color="#868e96")
                continue
            colour = VERDICT_COLOURS.get(r.verdict, "#868e96")
            ax.plot([100 * r.ci_low, 100 * r.ci_high], [y[r.segment_label]] * 2, color=colour)
            ax.plot(100 * r.gap, y[r.segment_label], "o", color=colour, markersize=4)
        ax.set_title(f"{outcome} gap")
        ax.set_xlabel("points vs reference (95% CI)")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(list(y.values()), labels, fontsize=8)
    handles = [axes[0].plot([], [], "o-", color=c, label=v)[0] for v, c in VERDICT_COLOURS.items() if v != "not tested"]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.suptitle(f"Gap to the reference segment (shaded: ±{100 * margin:g} points, no meaningful difference)")
    return png(fig)


def accessibility_section(segments: pd.DataFrame) -> Section:
    gaps = segment_gaps(segments)
    family = int(pd.to_numeric(segments["holm_family_size"], errors="coerce").max()) if len(segments) else 0
    margin = float(segments["equivalence_margin"].iloc[0]) if len(segments) else 0.05
    return Section("accessibility", "Is the voice channel accessible to everyone?",
                   accessibility_answer(gaps, family, margin),
                   ((plot_segment_gaps(gaps, margin), "gaps between segments with their verdicts"),))


# -- 2. Efficiency ------------------------------------------------------------------------------

EFFICIENCY = (("turns_per_session", "turns per session", "turns_per_session_mean", "turns_per_session_ci_low",
               "turns_per_session_ci_high", "suppressed", " turns"),
              ("duration", "session duration", "duration_sec_mean", "duration_sec_ci_low", "duration_sec_ci_high",
               "suppressed", " s"),
              ("time_to_completion", "time to completion", "time_to_completion_sec_mean", "time_to_completion_sec_ci_low",
               "time_to_completion_sec_ci_high", "time_to_completion_suppressed", " s"))


def efficiency_answer(weeks: pd.DataFrame) -> str:
    full = weeks[~_flag(weeks, "is_partial_period") & ~_flag(weeks, "suppressed")].sort_values("period_start")
    if len(full) < 2:
        return "Fewer than two full weeks are published: efficiency over time cannot be read yet."
    first, last = full.iloc[0], full.iloc[-1]
    moves, changed = [], []
    for _, label, mean, low, high, flag, unit in EFFICIENCY:
        if bool(first[flag]) or bool(last[flag]) or pd.isna(first[mean]) or pd.isna(last[mean]):
            continue
        moves.append(f"{label} {first[mean]:g} to {last[mean]:g}{unit}")
        if float(first[high]) < float(last[low]) or float(last[high]) < float(first[low]):
            changed.append(label)
    if not moves:
        return "The first and last full weeks withhold their efficiency measures (small cells)."
    verdict = ("none of them moved beyond the two weeks' 95% intervals" if not changed
               else f"{' and '.join(changed)} moved beyond the two weeks' 95% intervals")
    return (f"From the first full week ({first['period_start']}) to the last ({last['period_start']}): "
            f"{', '.join(moves)}; {verdict}.")


def plot_efficiency(weeks: pd.DataFrame) -> str | None:
    if weeks.empty:
        return None
    weeks = weeks.sort_values("period_start")
    x = pd.to_datetime(weeks["period_start"])
    partial = _flag(weeks, "is_partial_period").to_numpy()
    fig = figure(figsize=(9, 7))
    axes = fig.subplots(3, 1, sharex=True)
    for ax, (_, label, mean, low, high, _flag_column, unit) in zip(axes, EFFICIENCY, strict=True):
        m, lo, hi = values(weeks, mean), values(weeks, low), values(weeks, high)
        ax.plot(x, m, "o-", color="#1864ab", markersize=4)
        ax.fill_between(x, lo, hi, color="#1864ab", alpha=0.15)
        ax.plot(x[partial], m[partial], "o", color="white", markeredgecolor="#1864ab", markersize=4)
        ax.set_ylabel(f"{label} ({unit.strip()})")
        ax.grid(alpha=0.3)
    axes[0].set_title("Weekly means with 95% intervals (hollow: partial week; gaps: withheld small cells)")
    fig.autofmt_xdate()
    return png(fig)


def efficiency_section(weeks: pd.DataFrame) -> Section:
    return Section("efficiency", "How smooth is it?", efficiency_answer(weeks),
                   ((plot_efficiency(weeks), "turns, duration and time to completion by week"),))


# -- 3. Adoption and channels ---------------------------------------------------------------------

def adoption_answer(segments: pd.DataFrame, months: pd.DataFrame, channels: pd.DataFrame) -> str:
    total = segments[segments["segment_key"] == "all"]
    parts = []
    if len(total) and not bool(total["suppressed"].iloc[0]):
        parts.append(f"{int(total['n_sessions'].iloc[0]):,} sessions from {int(total['n_users'].iloc[0]):,} users")
    published = months[~_flag(months, "suppressed")].sort_values("period_start")
    clear = published[~_flag(published, "horizon_affected")]
    horizon = pd.to_numeric(months["horizon_days"], errors="coerce").max() if len(months) else np.nan
    if len(clear):
        r = clear.iloc[-1]
        parts.append(f"in {pd.Timestamp(r['period_start']):%B %Y} {percent(r['repeat_usage_rate'])} of active users had "
                     f"used the channel more than once (95% CI {percent(r['repeat_usage_rate_ci_low'])}-"
                     f"{percent(r['repeat_usage_rate_ci_high'])}), while the months starting within "
                     f"{horizon:.0f} days of the data's first day understate repeat usage (the data horizon)")
    elif len(published):
        parts.append("every published month lies within the data horizon, so repeat usage cannot be read yet")
    overall = channels[(channels["period_grain"] == "overall") & ~_flag(channels, "suppressed")].set_index("channel")
    if "voice" in overall.index and pd.notna(overall.loc["voice", "channel_share"]):
        v = overall.loc["voice"]
        others = ", ".join(f"{c if c == 'web' else c.upper()} {percent(overall.loc[c, 'completion_rate'])}"
                           for c in ("web", "ussd") if c in overall.index)
        parts.append(f"voice carried {percent(v['channel_share'])} (95% CI {percent(v['channel_share_ci_low'])}-"
                     f"{percent(v['channel_share_ci_high'])}) of {int(v['period_applications']):,} applications and "
                     f"completed {percent(v['completion_rate'])} of them" + (f" ({others})" if others else ""))
    if not parts:
        return "Nothing is published about adoption yet."
    sentence = "; ".join(parts)
    return sentence[0].upper() + sentence[1:] + "."


def plot_adoption(weeks: pd.DataFrame, months: pd.DataFrame, channels: pd.DataFrame) -> str | None:
    if weeks.empty and months.empty:
        return None
    fig = figure(figsize=(11, 3.8))
    ax_use, ax_repeat, ax_channels = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1.4, 1, 1]})
    weeks = weeks.sort_values("period_start")
    x = pd.to_datetime(weeks["period_start"])
    ax_use.plot(x, values(weeks, "n_sessions"), "o-", label="sessions", color="#1864ab", markersize=3)
    ax_use.plot(x, values(weeks, "active_users"), "o-", label="active users", color="#2b8a3e", markersize=3)
    ax_use.plot(x, values(weeks, "new_users"), "o--", label="new users", color="#868e96", markersize=3)
    ax_use.set_title("Use by week (counts: every session)")
    ax_use.legend(fontsize=7)
    ax_use.grid(alpha=0.3)
    from matplotlib.dates import DateFormatter, MonthLocator

    ax_use.xaxis.set_major_locator(MonthLocator())
    ax_use.xaxis.set_major_formatter(DateFormatter("%b %Y"))
    ax_use.tick_params(axis="x", labelsize=7)
    months = months.sort_values("period_start").reset_index(drop=True)
    rate, lo, hi = values(months, "repeat_usage_rate"), values(months, "repeat_usage_rate_ci_low"), values(months, "repeat_usage_rate_ci_high")
    affected = _flag(months, "horizon_affected").to_numpy()
    for i in range(len(months)):
        colour = "#adb5bd" if affected[i] else "#1864ab"
        if not np.isnan(rate[i]):
            ax_repeat.errorbar([i], [100 * rate[i]], yerr=[[100 * (rate[i] - lo[i])], [100 * (hi[i] - rate[i])]],
                               fmt="o", color=colour, capsize=3)
    ax_repeat.set_xticks(range(len(months)),
                         [f"{pd.Timestamp(p):%b %Y}" + ("\n(horizon)" if a else "")
                          for p, a in zip(months["period_start"], affected, strict=True)], fontsize=7)
    ax_repeat.set_ylabel("repeat-usage rate, % (95% CI)")
    ax_repeat.set_title("Repeat usage by month (grey: data horizon)")
    ax_repeat.grid(axis="y", alpha=0.3)
    overall = channels[channels["period_grain"] == "overall"]
    overall = overall[overall["channel"] != "all"].sort_values("channel").reset_index(drop=True)
    for j, (col, colour, offset) in enumerate((("channel_share", "#1864ab", -0.12), ("completion_rate", "#2b8a3e", 0.12))):
        v, low, high = values(overall, col), values(overall, f"{col}_ci_low"), values(overall, f"{col}_ci_high")
        ax_channels.errorbar(np.arange(len(overall)) + offset, 100 * v, yerr=[100 * (v - low), 100 * (high - v)], fmt="o",
                             color=colour, capsize=3, label=["share of applications", "applications completed"][j])
    ax_channels.set_xticks(range(len(overall)), overall["channel"].tolist())
    ax_channels.set_ylabel("% (95% CI)")
    ax_channels.set_title("Applications by channel")
    ax_channels.legend(fontsize=7)
    ax_channels.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return png(fig)


def adoption_section(segments: pd.DataFrame, adoption: pd.DataFrame, channels: pd.DataFrame) -> Section:
    weeks = adoption[adoption["period_grain"] == "week"]
    months = adoption[adoption["period_grain"] == "month"]
    return Section("adoption", "Is it used, and through which channels?", adoption_answer(segments, months, channels),
                   ((plot_adoption(weeks, months, channels), "use by week, repeat usage by month, applications by channel"),))


# -- 4. Error reduction ---------------------------------------------------------------------------

def errors_answer(comparisons: pd.DataFrame) -> str:
    errors = comparisons[comparisons["error_type"] == "error"]
    span = errors[errors["comparison_type"] == "latest_month_vs_first"]
    steps = errors[errors["comparison_type"] == "month_over_month"].sort_values("compared_group")
    row = span.iloc[0] if len(span) else (steps.iloc[-1] if len(steps) else None)
    if row is None:
        return "Fewer than two published months: the error rate cannot be compared over time yet."
    if bool(row["suppressed"]):
        head = f"The error-turn rate of {row['baseline_group']} or {row['compared_group']} is withheld (small cell)"
    else:
        head = (f"The error-turn rate went from {percent(row['baseline_rate'])} in {pd.Timestamp(row['baseline_group']):%B %Y} "
                f"to {percent(row['compared_rate'])} in {pd.Timestamp(row['compared_group']):%B %Y}: {row['verdict_text']}")
    tested = comparisons[comparisons["verdict"] != "not tested"]
    significant = int((tested["verdict"] == "significant").sum())
    kinds = ("month over month, latest against first"
             + (", model versions" if (comparisons["comparison_type"] == "asr_model_version").any() else "")
             + ", by error type")
    tail = (f"; none of the {len(tested)} comparisons ({kinds}) is significant after Holm's correction" if significant == 0
            else f"; {significant} of the {len(tested)} comparisons ({kinds}) are significant after Holm's correction")
    return head + tail + "."


def plot_error_rates(error_rates: pd.DataFrame) -> str | None:
    months = error_rates[error_rates["breakdown"] == "month"].sort_values("period_start").reset_index(drop=True)
    versions = error_rates[error_rates["breakdown"] == "asr_model_version"].sort_values("group_label").reset_index(drop=True)
    if months.empty and versions.empty:
        return None
    panels = [(months, [f"{pd.Timestamp(p):%b %Y}" for p in months["period_start"]], "by month")]
    if len(versions):
        panels.append((versions, versions["group_label"].tolist(), "by ASR model version"))
    fig = figure(figsize=(5 * len(panels) + 2, 4))
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (frame, labels, title) in zip(axes, panels, strict=True):
        for k, (col, label, colour) in enumerate(ERROR_TYPES):
            v, lo, hi = values(frame, col), values(frame, f"{col}_ci_low"), values(frame, f"{col}_ci_high")
            ax.errorbar(np.arange(len(frame)) + (k - 1.5) * 0.08, 100 * v, yerr=[100 * (v - lo), 100 * (hi - v)],
                        fmt="o-", color=colour, capsize=3, label=label, markersize=4)
        ax.set_xticks(range(len(frame)), labels, fontsize=8)
        ax.set_title(f"Error rates {title}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("% of turns (95% CI, sessions as the unit)")
    axes[0].set_ylim(bottom=0)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.06))
    return png(fig)


def errors_section(error_rates: pd.DataFrame, comparisons: pd.DataFrame) -> Section:
    return Section("errors", "Are errors going down?", errors_answer(comparisons),
                   ((plot_error_rates(error_rates), "error rates by month"),))


# -- 5. Abandonment ------------------------------------------------------------------------------

def abandonment_answer(metrics: pd.DataFrame) -> str:
    if metrics.empty:
        return "No abandonment model has been trained."
    m = metrics.iloc[0]
    if m["status"] != "fitted" or pd.isna(m["auc"]):
        return str(m["conclusion"])
    chance = m["auc_ci_low"] <= 0.5
    return (f"{m['conclusion']} The model's cross-validated AUC is {m['auc']:.3f} (95% CI {m['auc_ci_low']:.3f}-"
            f"{m['auc_ci_high']:.3f}): " + ("it ranks abandoned sessions no better than chance." if chance
                                             else "it ranks abandoned sessions better than chance."))


def plot_forest(drivers: pd.DataFrame, metrics: pd.DataFrame) -> str | None:
    if drivers.empty:
        return None
    d = drivers.sort_values("rank", ascending=False).reset_index(drop=True)
    fig = figure(figsize=(7, 0.4 * len(d) + 1.4))
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
    auc = ""
    if len(metrics) and pd.notna(metrics["auc"].iloc[0]):
        m = metrics.iloc[0]
        auc = f" (AUC {m['auc']:.3f}, 95% CI {m['auc_ci_low']:.3f}-{m['auc_ci_high']:.3f})"
    ax.set_title("Drivers of abandonment" + auc)
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def abandonment_section(drivers: pd.DataFrame, metrics: pd.DataFrame, asr_plot: str | None) -> Section:
    return Section("abandonment", "Why are sessions abandoned?", abandonment_answer(metrics),
                   ((plot_forest(drivers, metrics), "forest plot of the drivers"),
                    (asr_plot, "abandonment by ASR confidence")))
