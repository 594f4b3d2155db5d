"""The bench's figures summarised (medians, ratios) and rendered as a table."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from voice_analytics_dagster.tools.bench.stages import FILES, STAGES, median, ratio

if TYPE_CHECKING:  # the runner imports this module
    from voice_analytics_dagster.tools.bench.runner import Repeat

# -- report ------------------------------------------------------------------------------------

def export_size(export: Path) -> tuple[dict[str, int], int]:
    rows, total = {}, 0
    for name in FILES:
        path = export / name
        total += path.stat().st_size
        with open(path, "rb") as f:
            rows[name] = sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 22), b"")) - 1
    return rows, total


def ingestion_over_copy_by_repeat(repeats: list[Repeat]) -> list[float | None]:
    """Each repeat's ingestion over the \\copy taken just before it."""
    return [ratio(r.stages.get("ingestion"), r.copy_seconds) for r in repeats]


def summarise(repeats: list[Repeat], rows: int, size: int) -> dict:
    def med(get):
        return median([get(r) for r in repeats])

    stages = {s: med(lambda r, s=s: r.stages.get(s)) for s in STAGES}
    run = med(lambda r: r.run_seconds)
    copy = med(lambda r: r.copy_seconds)
    pandas = med(lambda r: r.pandas_seconds)
    ingestion = stages["ingestion"]
    mem_labels = sorted({k for r in repeats for k in r.run_peaks})
    return {
        "seconds": {**stages, "run": run, "psql_copy": copy, "pandas_to_sql": pandas},
        "throughput": {
            "ingestion_rows_per_s": ratio(rows, ingestion), "ingestion_mb_per_s": ratio(size / 1e6, ingestion),
            "psql_copy_rows_per_s": ratio(rows, copy), "psql_copy_mb_per_s": ratio(size / 1e6, copy),
            "pandas_rows_per_s": ratio(rows, pandas), "pandas_mb_per_s": ratio(size / 1e6, pandas),
        },
        "ratios": {
            "ingestion_over_psql_copy": ratio(ingestion, copy),
            "ingestion_over_psql_copy_paired": median(ingestion_over_copy_by_repeat(repeats)),
            "ingestion_over_pandas": ratio(ingestion, pandas),
            "run_over_pandas_plus_dbt": ratio(run, pandas + (stages["dbt"] or 0)) if pandas is not None else None,
        },
        "peak_mb": {
            **{f"run stage {s}": med(lambda r, s=s: (r.stage_peaks.get(s) or 0) / 1e6) for s in STAGES},
            **{f"process {k}": med(lambda r, k=k: r.run_peaks.get(k, 0) / 1e6) for k in mem_labels},
            "process tree of run (ru_maxrss)": med(lambda r: r.run_tree_peak / 1e6),
            "psql \\copy": med(lambda r: r.copy_peak and r.copy_peak / 1e6),
            "pandas loader": med(lambda r: r.pandas_peak and r.pandas_peak / 1e6),
            "postgres backend private (RssAnon)": med(lambda r: r.pg_backend_anon_peak / 1e6),
        },
    }


def _f(v, fmt="{:,.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def render(result: dict) -> str:
    s, t, r, m = (result["summary"][k] for k in ("seconds", "throughput", "ratios", "peak_mb"))
    lines = [
        f"voice-analytics bench: {result['sessions']:,} sessions, {result['rows']:,} rows, "
        f"{result['bytes'] / 1e6:,.0f} MB of CSV; median of {result['repeat']} repeat(s); "
        f"{result['machine']['cpus']} CPUs, load average at start {result['machine']['loadavg_start']}",
        "",
        f"{'stage':<34}{'median s':>10}{'rows/s':>13}{'MB/s':>8}{'peak MB':>9}",
    ]

    def row(name, sec, rows_s=None, mb_s=None, peak=None):
        lines.append(f"{name:<34}{_f(sec, '{:,.2f}'):>10}{_f(rows_s, '{:,.0f}'):>13}{_f(mb_s):>8}{_f(peak, '{:,.0f}'):>9}")

    row("ingestion (raw/* steps)", s["ingestion"], t["ingestion_rows_per_s"], t["ingestion_mb_per_s"],
        m["run stage ingestion"])
    for stage, label in (("dbt", "dbt build (dbt steps)"), ("checks", "checks (Python asset checks)"),
                         ("model", "model fit (abandonment_model)"), ("publish", "publish"), ("report", "report")):
        row(label, s[stage], peak=m[f"run stage {stage}"])
    row("run end-to-end (whole command)", s["run"], peak=m["process tree of run (ru_maxrss)"])
    row(f"reference: {result['copy_tool']}", s["psql_copy"], t["psql_copy_rows_per_s"], t["psql_copy_mb_per_s"],
        m["psql \\copy"])
    row("reference: pandas read_csv+to_sql", s["pandas_to_sql"], t["pandas_rows_per_s"], t["pandas_mb_per_s"],
        m["pandas loader"])
    lines += [
        "",
        f"ingestion / psql \\copy          {_f(r['ingestion_over_psql_copy'], '{:.2f}x')}   (target <= 1.3x)",
        f"  the same, repeat by repeat     {_f(r.get('ingestion_over_psql_copy_paired'), '{:.2f}x')}   (median of "
        + ", ".join(_f(x, "{:.2f}") for x in result.get("ingestion_over_psql_copy_by_repeat", [])) + ")",
        f"ingestion / pandas              {_f(r['ingestion_over_pandas'], '{:.3f}x')}",
        f"run / (pandas load + dbt build) {_f(r['run_over_pandas_plus_dbt'], '{:.2f}x')}   (target <= 0.40x)",
        "",
        "peak memory per process (MB, VmHWM): "
        + ", ".join(f"{k[len('process '):]} {v:,.0f}" for k, v in m.items() if k.startswith("process ") and v),
        f"PostgreSQL server: shared_buffers {result['shared_buffers']} (shared, not counted above); "
        f"largest backend private memory {_f(m['postgres backend private (RssAnon)'], '{:,.0f}')} MB",
    ]
    parsed = result.get("dbt_parsed_by_repeat")
    if parsed:
        lines.append("dbt project parsed during the run (beside ingestion), by repeat: "
                     + ", ".join("yes" if p else "no" for p in parsed))
    if result.get("dbt_top_nodes"):
        lines += ["", "slowest dbt nodes (run_results.json, median repeat):"]
        lines += [f"  {sec:7.2f} s  {node}" for node, sec in result["dbt_top_nodes"]]
    for inv in result.get("dbt_invocations", []):
        step = result.get("step_seconds", {}).get(inv["step"])
        lines.append(
            f"  dbt step {inv['step']}: step {_f(step, '{:.1f}')} s = dbt start {_f(inv.get('startup_s'), '{:.1f}')} s "
            f"(to dbt's first log line) + dbt command {_f(inv['command_s'], '{:.1f}')} s "
            f"(project load {_f(inv['load_s'], '{:.1f}')} s, {'partial' if inv['partial_parse'] else 'FULL'} parse; "
            f"nodes {_f(inv.get('execute_s'), '{:.1f}')} s) + Dagster after dbt {_f(inv.get('after_s'), '{:.1f}')} s "
            f"(storing the step's events)")
    inc = result.get("incremental")
    if inc:
        lines += ["", *render_incremental(inc)]
    return "\n".join(lines)


def render_incremental(inc: dict) -> list[str]:
    """The incremental figures: the daily run against the full run, and the run with nothing new
    (the part of a daily run that does not depend on what was delivered). Pure."""
    def stages(d: dict) -> str:
        return ", ".join(f"{k} {v:.1f}" for k, v in d.items() if v)

    lines = [f"incremental: full run on {inc['history_days']} days {inc['full_run_s']:.1f} s; "
             f"one more day {inc['one_more_day_run_s']:.1f} s = {inc['ratio']:.0%} of it",
             f"  one more day, by stage (s): {stages(inc['one_more_day_stages_s'])}"]
    if "nothing_new_run_s" in inc:
        lines += [f"  nothing new delivered: {inc['nothing_new_run_s']:.1f} s = {inc['nothing_new_ratio']:.0%} "
                  f"of the full run (what every daily run pays, whatever it brings)",
                  f"  nothing new, by stage (s): {stages(inc['nothing_new_stages_s'])}"]
    if "day_alone_run_s" in inc:
        lines += [f"  the same day alone on a new warehouse: {inc['day_alone_run_s']:.1f} s; the day onto the history "
                  f"costs {inc['day_over_alone']:.2f}x it (target <= 1.5x)",
                  f"  the day alone, by stage (s): {stages(inc['day_alone_stages_s'])}"]
    if inc.get("peak_mb"):
        lines.append("  largest process, by run (MB): "
                     + ", ".join(f"{k.replace('_', ' ')} {v:,.0f}" for k, v in inc["peak_mb"].items()))
    return lines


