"""The report asset: an HTML report of what was certified, written to ``settings.report_dir``.

It runs after publication and reads only ``analytics`` (what BI sees, small cells already
suppressed), so it never shows a figure that did not pass the gate. The file is
``<report_dir>/voice_analytics_report.html`` (default ``$VOICE_ANALYTICS_HOME/reports``),
replaced on every run and linked from the asset's metadata.
"""

import datetime as dt
import os

import dagster as dg
import pandas as pd

from .. import warmup
from ..analysis.report import ReportData, asr_bin_sql, build_report
from ..resources import WarehouseResource
from ..settings import get_settings
from .publish import published_key

REPORT_FILE = "voice_analytics_report.html"
REPORT_KEY = dg.AssetKey(["reports", "voice_analytics_report"])
# matplotlib (imported by analysis/report.py when it draws): imported while dbt runs (warmup.py)
warmup.register(REPORT_KEY, ("matplotlib.figure", "matplotlib.backends.backend_agg"))
READS = ("fct_accessibility_by_segment", "fct_segment_outcome_tests", "fct_error_rates",
         "fct_error_rate_comparisons", "fct_voice_kpis", "fact_voice_ai_sessions", "fct_abandonment_drivers",
         "fct_abandonment_model_metrics")


def _frame(conn, query: str) -> pd.DataFrame:
    cur = conn.execute(query)
    return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


@dg.asset(
    key=REPORT_KEY,
    deps=[published_key(t) for t in READS],
    group_name="reports",
    kinds={"html", "matplotlib"},
    description="HTML report (plots and tables) of the certified schema, in VOICE_ANALYTICS_HOME/reports.",
)
def voice_analytics_report(context: dg.AssetExecutionContext, warehouse: WarehouseResource) -> dg.MaterializeResult:
    settings = get_settings()
    with warehouse.get().connect(autocommit=True) as conn:
        data = ReportData(
            generated_at=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") + f" (run {context.run_id[:8]})",
            segments=_frame(conn, "select * from analytics.fct_accessibility_by_segment"),
            segment_tests=_frame(conn, "select * from analytics.fct_segment_outcome_tests order by p_value_holm nulls last"),
            error_rates=_frame(conn, "select * from analytics.fct_error_rates"),
            error_comparisons=_frame(conn, "select * from analytics.fct_error_rate_comparisons order by comparison_key, error_type"),
            kpis=_frame(conn, "select * from analytics.fct_voice_kpis where period_grain = 'overall' order by kpi_group, kpi"),
            asr_bins=_frame(conn, asr_bin_sql()),
            drivers=_frame(conn, "select * from analytics.fct_abandonment_drivers order by rank"),
            metrics=_frame(conn, "select * from analytics.fct_abandonment_model_metrics"),
            min_cell_size=settings.min_cell_size,
        )
    text = build_report(data)
    settings.report_dir.mkdir(parents=True, exist_ok=True)
    path = settings.report_dir / REPORT_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # a reader never sees half a report
    summary = data.metrics["conclusion"].iloc[0] if len(data.metrics) else "no model"
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(str(path)),
        "url": dg.MetadataValue.url(path.as_uri()),
        "bytes": len(text.encode()),
        "summary": summary,
    })
