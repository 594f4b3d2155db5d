"""The abandonment model as Dagster assets, downstream of the fact.

One step reads the fact's model columns, fits the model (fit.py) and writes five tables into the
working schema ``analysis`` in one transaction; dbt reads them as sources (mapped to these assets'
keys) into the certified marts fct_abandonment_* and fct_voice_session_export. The blocking check
``abandonment_model_is_sound`` verifies what the tables claim before publication.
"""

import datetime as dt
import time

import dagster as dg
import numpy as np
import psycopg

from voice_analytics_dagster.defs.model import store
from voice_analytics_dagster.defs.model.features import FEATURES, OUTCOME, build_design, model_columns
from voice_analytics_dagster.defs.model.fit import (
    ALPHA,
    BOOTSTRAP_REPLICATES,
    FOLDS,
    ModelResult,
    fit_abandonment_model,
    markdown_drivers,
    markdown_metrics,
)
from voice_analytics_dagster.defs.model.privacy import suppress_small_cells
from voice_analytics_dagster.defs.transform import relations
from voice_analytics_dagster.defs.transform.assets import dbt_model_key
from voice_analytics_dagster.lib.resources import WarehouseResource
from voice_analytics_dagster.lib.settings import get_settings

GROUP = "analysis"
FACT = dbt_model_key("fact_voice_ai_sessions")
CHECK = "abandonment_model_is_sound"


def analysis_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([store.SCHEMA, table])


DRIVERS = analysis_key("abandonment_drivers")
METRICS = analysis_key("abandonment_model_metrics")
HISTORY = analysis_key("abandonment_model_history")
CALIBRATION = analysis_key("abandonment_calibration")
SCORES = analysis_key("abandonment_session_scores")


def metric_row(result: ModelResult, training_id: str, trained_at: dt.datetime, fit_seconds: float,
               data: store.TrainingData) -> list:
    def opt(v):
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else v

    return [
        training_id, result.model_version, trained_at.isoformat(), result.status, result.message or None,
        result.n_input, result.n_sessions, result.n_input - result.n_sessions,
        "; ".join(f"{c}: {n}" for c, n in sorted(result.dropped_null.items())) or None,
        "; ".join(f"{c}: {why}" for c, why in sorted(result.unused_features.items())) or None,
        len(result.drivers), result.n_events, opt(result.event_rate), FOLDS,
        opt(result.auc), opt(result.auc_ci_low), opt(result.auc_ci_high),
        BOOTSTRAP_REPLICATES if result.auc is not None else None, result.bootstrap_sessions,
        opt(result.gbm_auc), opt(result.gbm_auc_ci_low), opt(result.gbm_auc_ci_high), result.gbm_sessions,
        opt(result.logit_auc_on_gbm_sessions), opt(result.gbm_minus_logit_auc_ci_low),
        opt(result.gbm_minus_logit_auc_ci_high), opt(result.brier_score), opt(result.calibration_intercept),
        opt(result.calibration_slope), len(result.significant), result.strongest_driver, result.conclusion,
        fit_seconds, *data.values(),
    ]


def calibration_rows(result: ModelResult, k: int) -> list[list]:
    """Decile bins with Wilson intervals; bins under k sessions suppressed, and complementary
    suppression among the bins (they partition n_sessions, published in the metrics)."""
    from statsmodels.stats.proportion import proportion_confint

    bins = {str(b.bin): b for b in result.calibration}
    status = suppress_small_cells({key: b.n_sessions for key, b in bins.items()}, [dict.fromkeys(bins, "all")], k)
    rows = []
    for key, b in bins.items():
        if status[key] is not None:
            rows.append([result.model_version, b.bin, True, status[key]] + [None] * 8)
            continue
        low, high = proportion_confint(b.events, b.n_sessions, alpha=ALPHA, method="wilson")
        rows.append([result.model_version, b.bin, False, None, b.n_sessions, b.events, b.mean_predicted,
                     b.observed_rate, float(low), float(high), b.min_predicted, b.max_predicted])
    return rows


def soundness_problems(result: ModelResult, fact_sessions: int, scored: int) -> list[str]:
    """What would make the published model tables wrong. Pure; empty when sound. A model that is
    not fitted may publish NULL (NaN) figures, but no significant driver."""
    problems = []
    fitted = result.status == "fitted"
    for d in result.drivers:
        figures = [v for k, v in d.__dict__.items() if isinstance(v, float)]
        if any(np.isinf(v) or (fitted and np.isnan(v)) for v in figures):
            problems.append(f"{d.feature}: a figure is {'infinite or missing' if fitted else 'infinite'}")
        if fitted and not (d.ci_low <= d.coefficient <= d.ci_high):
            problems.append(f"{d.feature}: interval does not contain the coefficient")
        if fitted and not (0 <= d.p_value <= d.p_value_adjusted + 1e-12 and d.p_value_adjusted <= 1):
            problems.append(f"{d.feature}: p-value or Holm adjustment out of order")
        if d.is_significant != (fitted and d.p_value_adjusted < ALPHA):
            problems.append(f"{d.feature}: is_significant disagrees with its adjusted p-value")
    strongest = result.strongest_driver
    if strongest is not None and not any(d.feature == strongest and d.is_significant for d in result.drivers):
        problems.append("strongest_driver is not a significant driver")
    if strongest is None and result.significant:
        problems.append("a driver is significant but no strongest driver is named")
    if result.auc is not None and not (result.auc_ci_low <= result.auc <= result.auc_ci_high):
        problems.append("AUC outside its interval")
    if scored + (result.n_input - result.n_sessions) != fact_sessions:
        problems.append(f"{fact_sessions} fact sessions, {scored} scored, {result.n_input - result.n_sessions} dropped")
    return problems


@dg.multi_asset(
    name="abandonment_model",
    group_name=GROUP,
    specs=[
        dg.AssetSpec(DRIVERS, deps=[FACT], kinds={"python", "statsmodels", "postgres"},
                     description="Drivers of abandonment: standardised logistic regression, Holm-corrected significance."),
        dg.AssetSpec(METRICS, deps=[FACT], kinds={"python", "scikit-learn", "postgres"},
                     description="The current model: cross-validated AUC with a bootstrap interval, GBM comparison, calibration."),
        dg.AssetSpec(HISTORY, deps=[FACT], kinds={"python", "postgres"},
                     description="One row per training, kept across runs: the model's quality over time."),
        dg.AssetSpec(CALIBRATION, deps=[FACT], kinds={"python", "postgres"},
                     description="Observed against predicted abandonment by decile of out-of-fold risk (small cells suppressed)."),
        dg.AssetSpec(SCORES, deps=[FACT], kinds={"python", "postgres"},
                     description="Out-of-fold abandonment risk of every session (read by dbt's fct_voice_session_export)."),
    ],
    check_specs=[dg.AssetCheckSpec(CHECK, asset=DRIVERS, blocking=True,
                                   description="Intervals, Holm adjustment, significance flags and session coverage agree.")],
    can_subset=False,
)
def abandonment_model(context: dg.AssetExecutionContext, warehouse: WarehouseResource):
    """Read the fact (model columns only, COPY), fit, write the model tables in one transaction."""
    settings = get_settings()
    wh = warehouse.get()
    started = time.perf_counter()
    booleans = [OUTCOME] + [f.column for f in FEATURES if f.kind == "boolean"]
    categories = [f.column for f in FEATURES if f.kind == "categorical"]
    with wh.connect() as conn:
        # the input and what it came from, read in one snapshot
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        frame = store.read_model_input(conn, model_columns(), booleans, categories, relations.FACT)
        data = store.training_data(conn, relations.FACT)
        conn.rollback()
    read_seconds = time.perf_counter() - started

    design = build_design(frame)
    del frame
    result = fit_abandonment_model(design)
    del design
    fit_seconds = time.perf_counter() - started - read_seconds
    trained_at = dt.datetime.now(dt.UTC)
    training_id = f"{context.run_id}:{trained_at.isoformat()}"
    context.log.info(f"abandonment model: {result.status}, {result.n_sessions} sessions "
                     f"({data.dataset or 'unrecorded'} data), read {read_seconds:.1f}s, fit {fit_seconds:.1f}s; "
                     f"{result.conclusion}")

    driver_rows = [
        [result.model_version, trained_at.isoformat(), d.feature, d.kind, d.reference_level, d.feature_mean,
         d.feature_sd, d.coefficient, d.std_error, d.ci_low, d.ci_high, d.odds_ratio, d.odds_ratio_ci_low,
         d.odds_ratio_ci_high, d.coefficient_per_unit, d.p_value, d.p_value_adjusted, d.is_significant, d.rank]
        for d in result.drivers
    ]
    metrics = metric_row(result, training_id, trained_at, fit_seconds, data)
    t = time.perf_counter()
    with wh.connect() as conn:  # the five tables in one transaction
        conn.execute(f"create schema if not exists {store.SCHEMA}")
        store.replace_table(conn, "abandonment_session_scores",
                            store.score_chunks(result.session_ids, result.oof_risk, result.fold, result.model_version))
        store.replace_table(conn, "abandonment_drivers", store.rows_to_csv(driver_rows))
        store.replace_table(conn, "abandonment_model_metrics", store.rows_to_csv([metrics]))
        store.append_history(conn, metrics)
        store.replace_table(conn, "abandonment_calibration",
                            store.rows_to_csv(calibration_rows(result, settings.min_cell_size)))
        fact_sessions = conn.execute(f"select count(*) from {relations.FACT}").fetchone()[0]
        scored = conn.execute(f"select count(*) from {store.SCHEMA}.abandonment_session_scores").fetchone()[0]
        history_rows = conn.execute(f"select count(*) from {store.SCHEMA}.abandonment_model_history").fetchone()[0]
        conn.commit()
    write_seconds = time.perf_counter() - t

    common = {"model_version": result.model_version, "status": result.status}
    trained_on = dg.MetadataValue.json({
        "dataset": data.dataset, "source_folders": data.source_folders, "input_files": data.input_files,
        "input_sha256": data.input_sha256, "sessions": result.n_input,
        "session_dates": [str(data.first_session_date), str(data.last_session_date)]})
    yield dg.MaterializeResult(asset_key=DRIVERS, metadata={
        **common,
        "drivers": dg.MetadataValue.md(markdown_drivers(result)),
        "strongest_driver": result.strongest_driver or "none significant",
        "significant_drivers": [d.feature for d in result.significant],
        "conclusion": result.conclusion,
        "dagster/row_count": len(result.drivers),
    })
    yield dg.MaterializeResult(asset_key=METRICS, metadata={
        **common,
        "metrics": dg.MetadataValue.md(markdown_metrics(result)),
        "auc": result.auc if result.auc is not None else float("nan"),
        "sessions_used": result.n_sessions,
        "sessions_dropped_null_feature": result.n_input - result.n_sessions,
        "dropped_by_feature": dg.MetadataValue.json(result.dropped_null),
        "unused_features": dg.MetadataValue.json(result.unused_features),
        "feature_policy": dg.MetadataValue.md(
            "Allowed (known during the session, not derived from its end):\n\n"
            + "\n".join(f"- `{f.column}`: {f.why}" for f in FEATURES)
            + "\n\nEverything else in the fact is excluded (voice_analytics_dagster/defs/model/features.py: EXCLUDED)."),
        "seconds": dg.MetadataValue.json({"read": round(read_seconds, 2), "fit": round(fit_seconds, 2),
                                          "write": round(write_seconds, 2),
                                          **{k: round(v, 2) for k, v in result.seconds.items()}}),
        "trained_on": trained_on,
        "dagster/row_count": 1,
    })
    yield dg.MaterializeResult(asset_key=HISTORY, metadata={
        "dagster/row_count": history_rows, "training_id": training_id, "trained_on": trained_on})
    yield dg.MaterializeResult(asset_key=CALIBRATION, metadata={
        "brier_score": result.brier_score if result.brier_score is not None else float("nan"),
        "calibration_slope": result.calibration_slope if result.calibration_slope is not None else float("nan"),
        "dagster/row_count": len(result.calibration),
    })
    yield dg.MaterializeResult(asset_key=SCORES, metadata={"dagster/row_count": scored,
                                                           "scored_out_of_fold": True})
    problems = soundness_problems(result, fact_sessions, scored)
    yield dg.AssetCheckResult(
        asset_key=DRIVERS, check_name=CHECK, passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failing_count": len(problems), "problems": problems[:5]},
    )
