"""The abandonment model as Dagster assets, downstream of the fact.

When the model is due for training (scoring.py: its cadence), one step reads the fact's model
columns, fits the model (fit.py) and writes five tables into the working schema ``analysis`` in
one transaction; between trainings it scores only the sessions delivered or changed since, with
the last model. dbt reads the tables as sources (mapped to these assets' keys) into the certified
marts fct_abandonment_* and fct_voice_session_export. The blocking check
``abandonment_model_is_sound`` verifies what the tables claim before publication.
"""

import datetime as dt
import functools
import itertools
import time

import dagster as dg
import numpy as np
import pandas as pd
import psycopg
from pydantic import Field

from voice_analytics_dagster.defs.model import sample, store
from voice_analytics_dagster.defs.model.features import (
    FEATURES,
    KEY,
    OUTCOME,
    build_design,
    complete_rows,
    model_columns,
)
from voice_analytics_dagster.defs.model.fit import (
    ALPHA,
    BOOTSTRAP_REPLICATES,
    FOLDS,
    MODEL_NAME,
    MODEL_REVISION,
    ModelResult,
    fit_abandonment_model,
    markdown_drivers,
    markdown_metrics,
)
from voice_analytics_dagster.defs.model.privacy import suppress_small_cells
from voice_analytics_dagster.defs.model.scoring import (
    HASH_COLUMN,
    LastTraining,
    Scored,
    ScoringState,
    change_reason,
    refit_reason,
    score,
    state_of,
)
from voice_analytics_dagster.defs.transform import relations
from voice_analytics_dagster.defs.transform.assets import dbt_model_key
from voice_analytics_dagster.lib.resources import WarehouseResource
from voice_analytics_dagster.lib.settings import get_settings

GROUP = "analysis"
FACT = dbt_model_key("fact_voice_ai_sessions")
CHECK = "abandonment_model_is_sound"


BOOLEANS = [OUTCOME] + [f.column for f in FEATURES if f.kind == "boolean"]
CATEGORIES = [f.column for f in FEATURES if f.kind == "categorical"]


class ModelConfig(dg.Config):
    """Run configuration of the model step (ops: {abandonment_model: {config: ...}})."""

    refit: bool = Field(default=False, description="Train the model now, whether or not it is "
                                                   "due (voice-analytics run --refit-model or --full-refresh).")


def analysis_key(table: str) -> dg.AssetKey:
    return dg.AssetKey([store.SCHEMA, table])


DRIVERS = analysis_key("abandonment_drivers")
METRICS = analysis_key("abandonment_model_metrics")
HISTORY = analysis_key("abandonment_model_history")
CALIBRATION = analysis_key("abandonment_calibration")
SCORES = analysis_key("abandonment_session_scores")


def metric_row(result: ModelResult, training_id: str, trained_at: dt.datetime, fit_seconds: float,
               data: store.TrainingData, state: ScoringState | None = None, fact_sessions: int | None = None) -> list:
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
        fit_seconds, *data.values(), state.to_json() if state is not None else None, fact_sessions,
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


def soundness_problems(result: ModelResult, coverage: tuple[int, int, int, int]) -> list[str]:
    """What would make the published model tables wrong. Pure; empty when sound. A model that is
    not fitted may publish NULL (NaN) figures, but no significant driver. ``coverage``: see
    coverage_problems (store.coverage_sql's row)."""
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
    return problems + coverage_problems(*coverage)


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
                     description="Abandonment risk of every session: out-of-fold for the sessions of the last "
                                 "training, the last model for those since (read by dbt's fct_voice_session_export)."),
    ],
    check_specs=[dg.AssetCheckSpec(CHECK, asset=DRIVERS, blocking=True,
                                   description="Intervals, Holm adjustment, significance flags and session coverage agree.")],
    can_subset=False,
)
def abandonment_model(context: dg.AssetExecutionContext, warehouse: WarehouseResource, config: ModelConfig):
    """Train the model when it is due (scoring.refit_reason), on every session or a bounded sample;
    otherwise score the sessions delivered or changed since with the last model."""
    settings = get_settings()
    wh = warehouse.get()
    started = time.perf_counter()
    with wh.connect() as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        last = store.last_training(conn)
        last_day = conn.execute(store.session_range_sql(relations.FACT)).fetchone()[1]
        reason = refit_reason(last, last_day, refit_days=settings.model_refit_days, requested=config.refit,
                              version_prefix=f"{MODEL_NAME}-r{MODEL_REVISION}-")
        frame = None
        if reason is None:
            frame = store.read_model_input(conn, model_columns(), BOOLEANS, CATEGORIES, relations.FACT,
                                           changed_only=True)
            gone = conn.execute(store.gone_sql(relations.FACT)).fetchone()[0]
            reason = change_reason(len(frame), gone, last.fact_sessions, settings.model_refit_growth)
        conn.rollback()
    if reason is None:
        scored = score(frame, last.state)
        if scored.unseen:
            reason = "levels the last model has not seen: " + "; ".join(
                f"{c} {', '.join(v)}" for c, v in sorted(scored.unseen.items()))
        else:
            yield from _score_changed(context, wh, last, frame, scored, time.perf_counter() - started)
            return
    context.log.info(f"abandonment model: trained again ({reason})")
    del frame
    yield from _train(context, wh, settings, reason)


def _train(context: dg.AssetExecutionContext, wh, settings, reason: str):
    """Read the fact's model columns (COPY; a sample above VOICE_ANALYTICS_MODEL_MAX_TRAINING_SESSIONS),
    fit, write the model tables in one transaction, the sessions outside the sample scored by the
    fitted model in chunks on the way."""
    started = time.perf_counter()
    # the input, what it came from and the rest of the sessions, read in one snapshot (kept open
    # until the rest is scored)
    with wh.connect() as reader:
        reader.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        fact_sessions = reader.execute(f"select count(*) from {relations.FACT}").fetchone()[0]
        threshold = sample.sample_threshold(settings.model_max_training_sessions, fact_sessions)
        frame, levels = _read_training_input(reader, threshold)
        data = store.training_data(reader, relations.FACT)
        read_seconds = time.perf_counter() - started

        hashes = frame.pop(HASH_COLUMN).to_numpy()
        design = build_design(frame)
        hashes = hashes[complete_rows(frame, design.used_columns)]  # the design's sessions, in its order
        del frame
        result = fit_abandonment_model(design)
        state = state_of(design, result.model_version, result.status, result.intercept,
                         {d.feature: d.coefficient for d in result.drivers})
        used_columns = list(design.used_columns)
        del design
        fit_seconds = time.perf_counter() - started - read_seconds
        trained_at = dt.datetime.now(dt.UTC)
        training_id = f"{context.run_id}:{trained_at.isoformat()}"
        read_what = (f"a sample of {result.n_input:,} of the fact's {fact_sessions:,} sessions "
                  f"(VOICE_ANALYTICS_MODEL_MAX_TRAINING_SESSIONS {settings.model_max_training_sessions:,})"
                  if threshold is not None else f"all {fact_sessions:,} sessions of the fact")
        context.log.info(f"abandonment model: {result.status}, trained on {read_what}, {result.n_sessions} used "
                         f"({data.dataset or 'unrecorded'} data), read {read_seconds:.1f}s, fit {fit_seconds:.1f}s; "
                         f"{result.conclusion}")

        driver_rows = [
            [result.model_version, trained_at.isoformat(), d.feature, d.kind, d.reference_level, d.feature_mean,
             d.feature_sd, d.coefficient, d.std_error, d.ci_low, d.ci_high, d.odds_ratio, d.odds_ratio_ci_low,
             d.odds_ratio_ci_high, d.coefficient_per_unit, d.p_value, d.p_value_adjusted, d.is_significant, d.rank]
            for d in result.drivers
        ]
        metrics = metric_row(result, training_id, trained_at, fit_seconds, data, state, fact_sessions)
        rest = RestScoring()
        scores = store.score_chunks(result.session_ids, result.oof_risk, result.fold, result.model_version, hashes)
        if threshold is not None:
            scores = itertools.chain(scores, _score_rest(reader, sample.rest_where(threshold, levels), state,
                                                         used_columns, result.model_version, rest))
        t = time.perf_counter()
        with wh.connect() as conn:  # the five tables in one transaction
            conn.execute(f"create schema if not exists {store.SCHEMA}")
            store.replace_table(conn, "abandonment_session_scores", scores)
            store.replace_table(conn, "abandonment_drivers", store.rows_to_csv(driver_rows))
            store.replace_table(conn, "abandonment_model_metrics", store.rows_to_csv([metrics]))
            store.append_history(conn, metrics)
            store.replace_table(conn, "abandonment_calibration",
                                store.rows_to_csv(calibration_rows(result, settings.min_cell_size)))
            coverage = conn.execute(store.coverage_sql(relations.FACT, used_columns)).fetchone()
            history_rows = conn.execute(f"select count(*) from {store.SCHEMA}.abandonment_model_history").fetchone()[0]
            conn.commit()
        reader.rollback()
    write_seconds = time.perf_counter() - t
    scored = coverage[2]

    common = {"model_version": result.model_version, "status": result.status, "trained": True,
              "trained_because": reason}
    trained_on = dg.MetadataValue.json({
        "dataset": data.dataset, "source_folders": data.source_folders, "input_files": data.input_files,
        "input_sha256": data.input_sha256, "sessions": result.n_input, "fact_sessions": fact_sessions,
        "sample": None if threshold is None else
        f"md5(session_id)'s first 32 bits below {threshold} (of 2^32), and the sessions with a level outside it",
        "session_dates": [str(data.first_session_date), str(data.last_session_date)]})
    yield dg.MaterializeResult(asset_key=DRIVERS, metadata={
        **common,
        "drivers": dg.MetadataValue.md(markdown_drivers(result)),
        "strongest_driver": result.strongest_driver or "none significant",
        "significant_drivers": [d.feature for d in result.significant],
        "conclusion": result.conclusion,
        "trained_on_sessions": result.n_input,
        "fact_sessions": fact_sessions,
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
                                          "write_and_score_rest": round(write_seconds, 2),
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
    yield dg.MaterializeResult(asset_key=SCORES, metadata={
        "dagster/row_count": scored, "trained": True, "scored_out_of_fold": int(len(hashes)),
        "scored_by_the_model": rest.scored, "outside_sample_with_null_model_column": rest.dropped})
    problems = soundness_problems(result, coverage)
    yield dg.AssetCheckResult(
        asset_key=DRIVERS, check_name=CHECK, passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failing_count": len(problems), "problems": problems[:5]},
    )


def _read_training_input(reader: psycopg.Connection, threshold: int | None) -> tuple[pd.DataFrame, dict]:
    """The training's sessions, ordered by session_id: the whole fact, or the sample below
    ``threshold`` plus the sessions outside it with a level the sample lacks (so the model has a
    coefficient, or a reference, for every level of the sessions it scores). Also the sample's
    levels per categorical column, which sample.rest_where needs to exclude those sessions."""
    read = functools.partial(store.read_model_input, reader, model_columns(), BOOLEANS, CATEGORIES, relations.FACT)
    if threshold is None:
        return read(), {}
    drawn = read(where=sample.sample_where(threshold))
    levels = sample.sample_levels(drawn)
    extra = read(where=sample.unseen_outside_sample_where(threshold, levels))
    if len(extra):
        drawn = pd.concat([drawn, extra], ignore_index=True)
        for c in CATEGORIES:  # concat of categoricals with different levels gives object columns
            drawn[c] = drawn[c].astype("category")
        drawn = drawn.sort_values(KEY, ignore_index=True)
    return drawn, levels


class RestScoring:
    """The sessions outside a training's sample: scored, and left unscored for a NULL model column."""

    def __init__(self):
        self.scored = 0
        self.dropped = 0


def _score_rest(reader: psycopg.Connection, where, state: ScoringState | None, used_columns: list[str],
                model_version: str, counts: RestScoring, chunk_rows: int = 250_000):
    """The score rows of the sessions outside the training's sample, by the fitted model, chunk by
    chunk (memory: one chunk). Without a fitted model their risk is NULL, as for the sample."""
    for chunk in store.iter_model_input(reader, model_columns(), BOOLEANS, CATEGORIES, relations.FACT, where,
                                        chunk_rows):
        if state is not None:
            scored = score(chunk, state)
            if scored.unseen:  # _read_training_input read every session with a level the sample lacks
                raise RuntimeError(f"a session outside the training's sample has a level the model has not seen: "
                                   f"{scored.unseen}")
            ids, risk, hashes, dropped = scored.session_ids, scored.risk, scored.hashes, scored.dropped
        else:
            keep = complete_rows(chunk, used_columns)
            ids = chunk.loc[keep, KEY].astype(str).to_numpy()
            risk, hashes, dropped = np.full(len(ids), np.nan), chunk.loc[keep, HASH_COLUMN].to_numpy(), int((~keep).sum())
        counts.scored += len(ids)
        counts.dropped += dropped
        yield from store.score_chunks(ids, risk, None, model_version, hashes)


def _score_changed(context: dg.AssetExecutionContext, wh, last: LastTraining, frame: pd.DataFrame, scored: Scored,
                   read_seconds: float):
    """Between trainings: the scores of the sessions read (new, or changed since scored) replaced
    by the last model's, the scores of sessions the fact no longer holds dropped; the other model
    tables stay as the last training wrote them."""
    state = last.state
    t = time.perf_counter()
    with wh.connect() as conn:
        deleted = store.rescore(conn, relations.FACT, frame[KEY].astype(str).tolist(),
                                store.score_chunks(scored.session_ids, scored.risk, None, state.model_version,
                                                   scored.hashes))
        fact_sessions, with_null, scores, scores_in_fact = conn.execute(
            store.coverage_sql(relations.FACT, state.used_columns)).fetchone()
        rows = {name: conn.execute(f"select count(*) from {store.SCHEMA}.{name}").fetchone()[0]
                for name in ("abandonment_drivers", "abandonment_model_metrics", "abandonment_model_history",
                             "abandonment_calibration")}
        conn.commit()
    write_seconds = time.perf_counter() - t
    context.log.info(f"abandonment model: not due for training; {len(scored.session_ids)} new or changed sessions "
                     f"scored with {state.model_version} (trained on {last.n_sessions_read:,} of {last.fact_sessions:,} sessions up to "
                     f"{last.last_session_date}), {scored.dropped} with a NULL model column left unscored")
    common = {"model_version": state.model_version, "trained": False,
              "trained_because": "not due: the last model scores the new and changed sessions",
              "last_training_sessions": last.n_sessions_read,
              "last_training_fact_sessions": last.fact_sessions,
              "last_training_last_day": str(last.last_session_date)}
    for key, name in ((DRIVERS, "abandonment_drivers"), (METRICS, "abandonment_model_metrics"),
                      (HISTORY, "abandonment_model_history"), (CALIBRATION, "abandonment_calibration")):
        yield dg.MaterializeResult(asset_key=key, metadata={**common, "dagster/row_count": rows[name]})
    yield dg.MaterializeResult(asset_key=SCORES, metadata={
        **common, "dagster/row_count": scores, "scored_now": len(scored.session_ids),
        "scores_replaced_or_dropped": deleted,
        "seconds": dg.MetadataValue.json({"read": round(read_seconds, 2), "write": round(write_seconds, 2)})})
    problems = coverage_problems(fact_sessions, with_null, scores, scores_in_fact)
    yield dg.AssetCheckResult(
        asset_key=DRIVERS, check_name=CHECK, passed=not problems, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"failing_count": len(problems), "problems": problems[:5], "trained": False},
    )


def coverage_problems(fact_sessions: int, with_null: int, scores: int, scores_in_fact: int) -> list[str]:
    """Between trainings, what the check verifies: every session of the fact is scored or has a
    NULL model column, and no score is of a session the fact no longer holds. Pure."""
    problems = []
    if scores != scores_in_fact:
        problems.append(f"{scores - scores_in_fact} scores of sessions the fact no longer holds")
    if scores_in_fact + with_null != fact_sessions:
        problems.append(f"{fact_sessions} fact sessions, {scores_in_fact} scored, {with_null} with a NULL model column")
    return problems
