"""The report asset: an HTML report of what was certified, written to ``settings.report_dir``.

It runs after publication and reads only ``analytics`` (what BI sees, small cells already
suppressed), so it never shows a figure that did not pass the gate. The file is
``<report_dir>/voice_analytics_report.html`` (default ``$VOICE_ANALYTICS_HOME/reports``),
replaced on every run and linked from the asset's metadata.
"""

import datetime as dt
import os
from pathlib import Path

import dagster as dg
import pandas as pd

from voice_analytics_dagster.defs.publish.assets import published_key
from voice_analytics_dagster.defs.report.render import ReportData, asr_bin_sql, build_report, sections
from voice_analytics_dagster.lib.resources import WarehouseResource
from voice_analytics_dagster.lib.settings import get_settings

REPORT_FILE = "voice_analytics_report.html"
REPORT_KEY = dg.AssetKey(["reports", "voice_analytics_report"])
READS = ("fct_accessibility_by_segment", "fct_efficiency_by_period", "fct_adoption_by_period",
         "fct_application_channels", "fct_error_rates", "fct_error_rate_comparisons", "fct_voice_kpis",
         "fact_voice_ai_sessions", "fct_abandonment_drivers", "fct_abandonment_model_metrics")


def report_path(settings) -> Path:
    return settings.report_dir / REPORT_FILE


def _frame(conn, query: str) -> pd.DataFrame:
    cur = conn.execute(query)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


@dg.asset(
    key=REPORT_KEY,
    deps=[published_key(t) for t in READS],
    group_name="reports",
    kinds={"html", "matplotlib"},
    description="HTML report of the certified schema in VOICE_ANALYTICS_HOME/reports: the five questions "
                "(accessibility, efficiency, adoption and channels, error reduction, abandonment), each a plot "
                "with 95% intervals and a sentence computed from the data.",
)
def voice_analytics_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    settings = get_settings()
    with warehouse.get().connect(autocommit=True) as conn:
        data = ReportData(
            generated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") + f" (run {context.run_id[:8]})",
            segments=_frame(conn, "select * from analytics.fct_accessibility_by_segment"),
            efficiency=_frame(conn, "select * from analytics.fct_efficiency_by_period where period_grain = 'week'"),
            adoption=_frame(conn, "select * from analytics.fct_adoption_by_period where period_grain in ('week', 'month')"),
            channels=_frame(conn, "select * from analytics.fct_application_channels"),
            error_rates=_frame(conn, "select * from analytics.fct_error_rates"),
            error_comparisons=_frame(conn, "select * from analytics.fct_error_rate_comparisons order by comparison_key, error_type"),
            kpis=_frame(conn, "select * from analytics.fct_voice_kpis where period_grain = 'overall' order by kpi_group, kpi"),
            asr_bins=_frame(conn, asr_bin_sql()),
            drivers=_frame(conn, "select * from analytics.fct_abandonment_drivers order by rank"),
            metrics=_frame(conn, "select * from analytics.fct_abandonment_model_metrics"),
            min_cell_size=settings.min_cell_size,
        )
    answers = sections(data)
    text = build_report(data, answers)
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    path = report_path(settings)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a report
    summary = data.metrics["conclusion"].iloc[0] if len(data.metrics) else "no model"
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "url": dg.MetadataValue.url(path.as_uri()),
        "bytes": len(text.encode()),
        "summary": summary,
        **{f"answer: {s.key}": s.answer for s in answers},
    })
