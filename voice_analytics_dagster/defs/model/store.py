"""The abandonment model's tables: its input read from the fact with COPY, what it was trained on,
and its outputs written into the working schema ``analysis``, which dbt reads as sources. The DDL
is declared here once (TABLES; tests/unit/test_dbt_layout.py keeps dbt's declarations in
agreement); SQL is built by pure functions. The history keeps one row per training across runs;
the other tables are replaced.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from voice_analytics_dagster.lib.provenance import inputs

SCHEMA = "analysis"

Column = tuple[str, str, str]  # name, PostgreSQL type, description

DRIVER_COLUMNS: list[Column] = [
    ("model_version", "text", "The model (name, revision, hash of the feature set)."),
    ("trained_at", "timestamptz", "When the model was trained."),
    ("feature", "text", "The feature: a fact column, or column=level for a level of a category (against reference_level)."),
    ("feature_kind", "text", "numeric or indicator (0/1)."),
    ("reference_level", "text", "For an indicator: the level it is compared with (false, or the most frequent level)."),
    ("feature_mean", "double precision", "Mean of the feature over the sessions used."),
    ("feature_sd", "double precision", "Standard deviation of the feature (the unit of the standardised coefficient)."),
    ("coefficient", "double precision", "Log-odds of abandonment per standard deviation of the feature, other features held fixed."),
    ("std_error", "double precision", "Standard error of the coefficient."),
    ("ci_low", "double precision", "Wald 95% interval of the coefficient, lower bound (log-odds per SD)."),
    ("ci_high", "double precision", "Wald 95% interval of the coefficient, upper bound."),
    ("odds_ratio", "double precision", "exp(coefficient): the factor on the odds of abandonment per SD."),
    ("odds_ratio_ci_low", "double precision", "95% interval of the odds ratio, lower bound."),
    ("odds_ratio_ci_high", "double precision", "95% interval of the odds ratio, upper bound."),
    ("coefficient_per_unit", "double precision", "Log-odds per unit of the feature (coefficient / feature_sd)."),
    ("p_value", "double precision", "Two-sided Wald p-value, before correction."),
    ("p_value_adjusted", "double precision", "Holm-adjusted p-value over all features of the model."),
    ("is_significant", "boolean", "p_value_adjusted < 0.05 (and the fit converged)."),
    ("rank", "integer", "Rank by the size of the standardised coefficient (1 = largest)."),
]

METRIC_COLUMNS: list[Column] = [
    ("training_id", "text", "Identifier of the training (the Dagster run id and the time)."),
    ("model_version", "text", "The model (name, revision, hash of the feature set)."),
    ("trained_at", "timestamptz", "When the model was trained."),
    ("status", "text", "fitted, insufficient_data, not_converged or rank_deficient (no driver is claimed unless fitted)."),
    ("message", "text", "Why a model was not fitted, if it was not."),
    ("n_sessions_read", "bigint", "Sessions read from the fact."),
    ("n_sessions", "bigint", "Sessions used (read minus those with a NULL feature)."),
    ("n_sessions_dropped", "bigint", "Sessions left out because a feature was NULL (by column in dropped_by_feature)."),
    ("dropped_by_feature", "text", "NULL features that left sessions out, as column: count."),
    ("unused_features", "text", "Features not estimable in this data, as feature: reason."),
    ("n_features", "integer", "Features in the model (the Holm family)."),
    ("n_events", "bigint", "Abandoned sessions among those used."),
    ("event_rate", "double precision", "n_events / n_sessions."),
    ("cv_folds", "integer", "Folds of the stratified cross-validation."),
    ("auc", "double precision", "AUC of the logistic model's out-of-fold risk over every session used."),
    ("auc_ci_low", "double precision", "Percentile bootstrap 95% interval of auc, lower bound."),
    ("auc_ci_high", "double precision", "Percentile bootstrap 95% interval of auc, upper bound."),
    ("bootstrap_replicates", "integer", "Bootstrap replicates."),
    ("bootstrap_sessions", "bigint", "Sessions resampled (m of an m-out-of-n bootstrap above 50,000 sessions)."),
    ("gbm_auc", "double precision", "Out-of-fold AUC of a gradient-boosted model on the same folds (on gbm_sessions)."),
    ("gbm_auc_ci_low", "double precision", "Bootstrap 95% interval of gbm_auc, lower bound."),
    ("gbm_auc_ci_high", "double precision", "Bootstrap 95% interval of gbm_auc, upper bound."),
    ("gbm_sessions", "bigint", "Sessions of the GBM comparison (a stratified subsample above 30,000)."),
    ("logit_auc_on_gbm_sessions", "double precision", "The logistic model's out-of-fold AUC on the GBM's sessions."),
    ("gbm_minus_logit_auc_ci_low", "double precision", "Paired bootstrap 95% interval of gbm_auc - logit AUC, lower bound."),
    ("gbm_minus_logit_auc_ci_high", "double precision", "Paired bootstrap 95% interval of gbm_auc - logit AUC, upper bound."),
    ("brier_score", "double precision", "Mean squared error of the out-of-fold risk."),
    ("calibration_intercept", "double precision", "Calibration intercept (0 = calibrated in the large)."),
    ("calibration_slope", "double precision", "Calibration slope (1 = calibrated; below 1 = overconfident)."),
    ("n_significant_drivers", "integer", "Drivers significant after Holm's correction."),
    ("strongest_driver", "text", "The strongest driver significant after Holm's correction; NULL when none is."),
    ("conclusion", "text", "The result in a sentence."),
    ("fit_seconds", "double precision", "Seconds the fit took."),
    # what the model was trained on (at the end: an existing history table gains them as columns)
    ("dataset", "text", "real or synthetic: the kind of export the training data came from; NULL when no load batch is recorded."),
    ("source_folders", "text[]", "The export or landing folders of the load batches the fact was built from."),
    ("input_files", "integer", "Input files (active load batches) the fact was built from."),
    ("input_sha256", "text", "SHA-256 over the sorted SHA-256 checksums of those files: the same files give the same value."),
    ("first_session_date", "date", "Earliest session date in the fact the model read."),
    ("last_session_date", "date", "Latest session date in the fact the model read."),
    ("scoring_state", "jsonb", "What scoring a session with this model needs (intercept, coefficients, "
     "standardisation, the levels seen); NULL when no model was fitted."),
    ("n_fact_sessions", "bigint", "Sessions in the fact when the model was trained. Above "
     "VOICE_ANALYTICS_MODEL_MAX_TRAINING_SESSIONS the training reads a sample of them (n_sessions_read), chosen by "
     "a hash of session_id, and the fitted model scores the others; NULL for a training older than this column."),
]

CALIBRATION_COLUMNS: list[Column] = [
    ("model_version", "text", "The model."),
    ("bin", "integer", "Decile of out-of-fold risk (1 = lowest risk)."),
    ("suppressed", "boolean", "Small-cell suppression: the bin's figures are withheld (fewer than min_cell_size sessions, or complementary)."),
    ("suppression", "text", "primary or complementary; NULL when published."),
    ("n_sessions", "bigint", "Sessions in the bin."),
    ("events", "bigint", "Abandoned sessions in the bin."),
    ("mean_predicted", "double precision", "Mean out-of-fold risk of the bin."),
    ("observed_rate", "double precision", "events / n_sessions."),
    ("observed_ci_low", "double precision", "Wilson 95% interval of observed_rate, lower bound."),
    ("observed_ci_high", "double precision", "Wilson 95% interval of observed_rate, upper bound."),
    ("min_predicted", "double precision", "Lowest risk in the bin."),
    ("max_predicted", "double precision", "Highest risk in the bin."),
]

SCORE_COLUMNS: list[Column] = [
    ("session_id", "text", "The session."),
    ("abandonment_risk", "double precision", "Probability of abandonment from a model that never saw the session as "
     "it is: out-of-fold for the sessions of the training, the last trained model for the sessions outside its "
     "sample and those delivered or changed since."),
    ("cv_fold", "integer", "The fold the session was held out in; NULL when the last trained model scored it."),
    ("model_version", "text", "The model."),
    ("features_hash", "bigint", "Hash of the session's model columns when it was scored: a session whose columns "
     "changed is scored again."),
]

TABLES: dict[str, tuple[list[Column], str]] = {
    "abandonment_drivers": (DRIVER_COLUMNS, "One row per feature of the current abandonment model (grain: feature)."),
    "abandonment_model_metrics": (METRIC_COLUMNS, "One row: the current abandonment model's quality (grain: model)."),
    "abandonment_model_history": (METRIC_COLUMNS, "One row per training of the abandonment model, kept across runs (grain: training_id)."),
    "abandonment_calibration": (CALIBRATION_COLUMNS, "One row per decile of out-of-fold abandonment risk (grain: bin)."),
    "abandonment_session_scores": (SCORE_COLUMNS, "One row per scored session: its out-of-fold abandonment risk (grain: session_id)."),
}
PRIMARY_KEYS = {
    "abandonment_drivers": ["feature"],
    "abandonment_model_metrics": ["model_version"],
    "abandonment_model_history": ["training_id"],
    "abandonment_calibration": ["bin"],
    "abandonment_session_scores": ["session_id"],
}


def features_hash_sql(columns: Sequence[str], alias: str = "f") -> sql.Composed:
    """A 64-bit hash (the first half of an MD5) of a row's model columns but the key."""
    row = sql.SQL(", ").join(sql.Identifier(alias, c) for c in columns if c != "session_id")
    return sql.SQL("('x' || left(md5(row({})::text), 16))::bit(64)::bigint").format(row)


def read_model_input_sql(columns: Sequence[str], relation: str, changed_only: bool = False,
                         where: sql.Composable | None = None, ordered: bool = True) -> sql.Composed:
    """COPY of the fact's ``columns`` and their hash (``features_hash``); ``changed_only``: only
    the sessions without a score or whose columns changed since they were scored; ``where``: only
    the fact's rows (alias ``f``) it holds for; ``ordered``: by session_id (the training's order;
    scoring in chunks needs none, and no sort)."""
    schema, table = relation.split(".")
    conditions = []
    join = sql.SQL("")
    if changed_only:
        join = sql.SQL(" left join {} s using (session_id)").format(
            sql.Identifier(SCHEMA, "abandonment_session_scores"))
        conditions.append(sql.SQL("(s.session_id is null or s.features_hash is distinct from {})").format(
            features_hash_sql(columns)))
    if where is not None:
        conditions.append(sql.SQL("({})").format(where))
    filtered = sql.SQL(" where ") + sql.SQL(" and ").join(conditions) if conditions else sql.SQL("")
    order = sql.SQL(" order by session_id") if ordered else sql.SQL("")
    return sql.SQL("copy (select {}, {} as features_hash from {} f{}{}{}) "
                   "to stdout with (format csv, header true)").format(
        sql.SQL(", ").join(sql.Identifier("f", c) for c in columns), features_hash_sql(columns),
        sql.Identifier(schema, table), join, filtered, order)


class _CopyReader(io.RawIOBase):
    """A file object over a COPY TO STDOUT stream, so that pandas parses while it streams.

    PostgreSQL sends one message per row: each ``readinto`` fills the caller's whole buffer from
    as many rows as fit (one row per call would send pandas through the buffered reader per row)."""

    def __init__(self, chunks: Iterator[memoryview]):
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        out = memoryview(buffer).cast("B")
        size, pos = len(out), 0
        pending = self._pending
        while pos < size:
            if not pending:
                chunk = next(self._chunks, None)
                if chunk is None:
                    break
                pending = memoryview(chunk).cast("B")
            n = min(size - pos, len(pending))
            out[pos:pos + n] = pending[:n]
            pending = pending[n:]
            pos += n
        # a row's tail that did not fit is kept as a copy: psycopg may reuse its buffer
        self._pending = memoryview(bytes(pending)) if pending else memoryview(b"")
        return pos


def _input_dtypes(columns: Sequence[str], booleans: Sequence[str], categories: Sequence[str], key: str) -> dict:
    # numbers parsed by the CSV reader itself (quicker than text then pd.to_numeric, same values);
    # the categorical features (a handful of levels) as categoricals: a small integer per session
    # instead of a Python string each.
    dtypes = {c: ("str" if c == key else "category" if c in categories else "float64")
              for c in columns if c not in booleans}
    dtypes["features_hash"] = "int64"
    return dtypes


def _with_booleans(frame: pd.DataFrame, booleans: Sequence[str]) -> pd.DataFrame:
    for c in booleans:
        if c in frame.columns:
            frame[c] = frame[c].map({"t": True, "f": False})
    return frame


def read_model_input(conn: psycopg.Connection, columns: Sequence[str], booleans: Sequence[str],
                     categories: Sequence[str], relation: str, key: str = "session_id",
                     changed_only: bool = False, where: sql.Composable | None = None) -> pd.DataFrame:
    """The fact's ``columns`` and ``features_hash`` (int64), streamed with COPY into pandas (no
    intermediate copy of the text: memory is the parsed frame plus a 1 MB buffer): ``key`` as
    text, ``categories`` as pandas categoricals, ``booleans`` as True/False, the rest as float64.
    ``changed_only``, ``where``: see read_model_input_sql."""
    dtypes = _input_dtypes(columns, booleans, categories, key)
    statement = read_model_input_sql(columns, relation, changed_only, where)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        reader = io.BufferedReader(_CopyReader(iter(copy)), buffer_size=1 << 20)
        frame = pd.read_csv(reader, dtype=dtypes, keep_default_na=False, na_values=[""])
    return _with_booleans(frame, booleans)


def iter_model_input(conn: psycopg.Connection, columns: Sequence[str], booleans: Sequence[str],
                     categories: Sequence[str], relation: str, where: sql.Composable, chunk_rows: int,
                     key: str = "session_id") -> Iterator[pd.DataFrame]:
    """read_model_input's frame in chunks of ``chunk_rows`` sessions, from one unordered COPY:
    memory is one chunk, whatever the fact's size. The connection is busy until the last chunk."""
    dtypes = _input_dtypes(columns, booleans, categories, key)
    statement = read_model_input_sql(columns, relation, where=where, ordered=False)
    with conn.cursor() as cur, cur.copy(statement) as copy:
        reader = io.BufferedReader(_CopyReader(iter(copy)), buffer_size=1 << 20)
        with pd.read_csv(reader, dtype=dtypes, keep_default_na=False, na_values=[""], chunksize=chunk_rows) as chunks:
            for chunk in chunks:
                yield _with_booleans(chunk, booleans)


def create_table_sql(name: str, columns: Sequence[Column], description: str, if_not_exists: bool = False,
                     primary_key: bool = True) -> str:
    """The table with its comments; ``primary_key=False`` leaves the key to primary_key_sql, added
    after the rows are loaded."""
    cols = ",\n    ".join(f"{c} {t}" for c, t, _ in columns)
    pk = ", ".join(PRIMARY_KEYS[name])
    create = "create table if not exists" if if_not_exists else "create table"
    key = f",\n    primary key ({pk})" if primary_key else ""
    lines = [f"{create} {SCHEMA}.{name} (\n    {cols}{key}\n);"]
    lines.append(f"comment on table {SCHEMA}.{name} is {_literal(description)};")
    lines += [f"comment on column {SCHEMA}.{name}.{c} is {_literal(d)};" for c, _, d in columns]
    return "\n".join(lines)


def add_missing_columns_sql(name: str, columns: Sequence[Column]) -> str:
    """The history table outlives code changes: new metric columns are added, never dropped (a
    no-op when the table does not exist yet)."""
    return "\n".join(f"alter table if exists {SCHEMA}.{name} add column if not exists {c} {t};" for c, t, _ in columns)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_CSV_SPECIAL = (",", '"', "\n", "\r")


def csv_field(text: str) -> str:
    """One text field as COPY's CSV reads it back: quoted when it holds a comma, quote or line
    break, or is empty (COPY reads an unquoted empty field as NULL)."""
    if text == "" or any(c in text for c in _CSV_SPECIAL):
        return '"' + text.replace('"', '""') + '"'
    return text


def array_literal(values: Sequence) -> str:
    """A PostgreSQL array literal of texts: every element quoted, quotes and backslashes escaped."""
    return "{" + ",".join('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


def _csv_value(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, list | tuple):
        return csv_field(array_literal(v))
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return "t" if v else "f"
    if isinstance(v, float):
        return repr(v)
    return csv_field(str(v))


def rows_to_csv(rows: Sequence[Sequence]) -> bytes:
    """CSV for COPY ... (format csv): empty unquoted field = NULL, "" = empty string."""
    return "".join(",".join(_csv_value(v) for v in row) + "\n" for row in rows).encode()


def copy_rows(conn: psycopg.Connection, name: str, columns: Sequence[Column], payload: Iterator[bytes] | bytes) -> None:
    statement = sql.SQL("copy {} ({}) from stdin with (format csv)").format(
        sql.Identifier(SCHEMA, name), sql.SQL(", ").join(sql.Identifier(c) for c, _, _ in columns))
    with conn.cursor() as cur, cur.copy(statement) as copy:
        if isinstance(payload, bytes):
            copy.write(payload)
        else:
            for part in payload:
                copy.write(part)


def primary_key_sql(name: str) -> str:
    return f"alter table {SCHEMA}.{name} add primary key ({', '.join(PRIMARY_KEYS[name])});"


def replace_table(conn: psycopg.Connection, name: str, payload) -> None:
    """Drop, recreate and fill a table (inside the caller's transaction). The primary key is
    added after the rows: one sorted index build instead of an index insertion per row."""
    columns, description = TABLES[name]
    # cascade: dbt's staging views on this table (dbt/models/staging/analysis) go with it; the dbt
    # step after the model creates them again
    conn.execute(sql.SQL("drop table if exists {} cascade").format(sql.Identifier(SCHEMA, name)))
    conn.execute(create_table_sql(name, columns, description, primary_key=False))
    copy_rows(conn, name, columns, payload)
    conn.execute(primary_key_sql(name))


def append_history(conn: psycopg.Connection, row: Sequence) -> None:
    name = "abandonment_model_history"
    columns, description = TABLES[name]
    # the columns first: the DDL's comments name every column, the new ones included
    conn.execute(add_missing_columns_sql(name, columns))
    conn.execute(create_table_sql(name, columns, description, if_not_exists=True))
    copy_rows(conn, name, columns, rows_to_csv([row]))


def _csv_texts(values: list[str]) -> list[str]:
    joined = "\x1f".join(values)
    if "" in values or any(c in joined for c in _CSV_SPECIAL):
        return [csv_field(v) for v in values]
    return values  # the common case: ids need no quoting (checked in one pass over the chunk)


def score_chunks(session_ids: np.ndarray, risk: np.ndarray, fold: np.ndarray | None, model_version: str,
                 hashes: np.ndarray, chunk: int = 200_000) -> Iterator[bytes]:
    """The scores as CSV, in chunks (memory: one chunk). Floats as Python's repr, the shortest
    text that reads back to the same double; NaN as NULL. Joined as strings: about twice as quick
    as DataFrame.to_csv, the same values to the bit (tests/unit/test_analysis_store.py)."""
    n = len(session_ids)
    version = csv_field(model_version)
    for start in range(0, n, chunk):
        sl = slice(start, min(n, start + chunk))
        ids = _csv_texts([str(v) for v in session_ids[sl].tolist()])
        # _csv_value's rule for floats, inline (a function call per value would add about a fifth)
        risks = ["" if r != r else repr(r) for r in risk[sl].astype(float).tolist()]
        folds = [str(int(f)) for f in fold[sl].tolist()] if fold is not None else [""] * len(ids)
        hashed = [str(h) for h in hashes[sl].tolist()]
        lines = "\n".join([",".join(row) for row in zip(ids, risks, folds, [version] * len(ids), hashed,
                                                         strict=True)])
        yield (lines + "\n").encode()


@dataclass(frozen=True)
class TrainingData:
    """What a training read: the export behind the fact and the sessions' date range."""

    dataset: str | None
    source_folders: list[str]
    input_files: int
    input_sha256: str | None
    first_session_date: dt.date | None
    last_session_date: dt.date | None

    def values(self) -> list:
        """In the order of the provenance columns of METRIC_COLUMNS."""
        return [self.dataset, self.source_folders, self.input_files, self.input_sha256,
                self.first_session_date, self.last_session_date]


def input_fingerprint(checksums: Iterable[str]) -> str | None:
    """SHA-256 over the sorted file checksums, one per line: independent of the order the files
    were loaded in; None without files. Pure."""
    ordered = sorted(checksums)
    return hashlib.sha256("\n".join(ordered).encode()).hexdigest() if ordered else None


def session_range_sql(relation: str) -> sql.Composed:
    schema, table = relation.split(".")
    return sql.SQL("select min(session_date), max(session_date) from {}").format(sql.Identifier(schema, table))


def training_data(conn: psycopg.Connection, relation: str) -> TrainingData:
    """The active load batches (lib/provenance.py) and the fact's session dates, on ``conn``."""
    files = inputs(conn).files
    kinds = sorted({f["dataset"] for f in files})
    first, last = conn.execute(session_range_sql(relation)).fetchone()
    return TrainingData(
        dataset="+".join(kinds) or None, source_folders=sorted({f["source"] for f in files if f["source"]}),
        input_files=len(files), input_sha256=input_fingerprint(f["sha256"] for f in files),
        first_session_date=first, last_session_date=last)


def last_training(conn: psycopg.Connection):
    """The current model's row of abandonment_model_metrics as scoring.LastTraining, or None
    when no model was trained in this warehouse (read whole as JSON: a table written by an older
    revision may lack a column, which then reads as missing)."""
    from voice_analytics_dagster.defs.model.scoring import LastTraining, ScoringState

    if conn.execute("select to_regclass(%s)", (f"{SCHEMA}.abandonment_model_metrics",)).fetchone()[0] is None:
        return None
    row = conn.execute(f"select to_jsonb(m) from {SCHEMA}.abandonment_model_metrics m").fetchone()
    if row is None:
        return None
    m = row[0]
    state = m.get("scoring_state")
    scores_have_hash = conn.execute(
        "select count(*) from information_schema.columns where table_schema = %s and table_name = %s "
        "and column_name = 'features_hash'", (SCHEMA, "abandonment_session_scores")).fetchone()[0] == 1
    last = m.get("last_session_date")
    fact_sessions = m.get("n_fact_sessions")
    return LastTraining(
        model_version=m["model_version"], status=m["status"], n_sessions_read=int(m["n_sessions_read"]),
        n_fact_sessions=int(fact_sessions) if fact_sessions is not None else None,
        last_session_date=dt.date.fromisoformat(last) if last else None,
        state=ScoringState.from_json(state) if state and scores_have_hash else None)


def gone_sql(relation: str) -> sql.Composed:
    """The scores of sessions the fact no longer holds."""
    schema, table = relation.split(".")
    return sql.SQL("select count(*) from {} s where not exists (select 1 from {} f where f.session_id = s.session_id)"
                   ).format(sql.Identifier(SCHEMA, "abandonment_session_scores"), sql.Identifier(schema, table))


def rescore(conn: psycopg.Connection, relation: str, read_ids: Sequence[str], scores: Iterator[bytes]) -> int:
    """Inside the caller's transaction: drop the scores of sessions the fact no longer holds and of
    ``read_ids`` (read because new or changed: scored again below, or now unscored), then append
    ``scores``. Returns the scores deleted."""
    schema, table = relation.split(".")
    scores_table = sql.Identifier(SCHEMA, "abandonment_session_scores")
    gone = conn.execute(sql.SQL(
        "delete from {} s where not exists (select 1 from {} f where f.session_id = s.session_id)").format(
        scores_table, sql.Identifier(schema, table))).rowcount
    changed = conn.execute(sql.SQL("delete from {} s where s.session_id = any(%s)").format(scores_table),
                           (list(read_ids),)).rowcount
    copy_rows(conn, "abandonment_session_scores", SCORE_COLUMNS, scores)
    return gone + changed


def coverage_sql(relation: str, used_columns: Sequence[str]) -> sql.Composed:
    """(fact sessions, of them with a NULL in a used column, scores, scores of sessions in the fact)."""
    schema, table = relation.split(".")
    fact = sql.Identifier(schema, table)
    nulls = sql.SQL(" or ").join(sql.SQL("{} is null").format(sql.Identifier(c)) for c in used_columns) \
        if used_columns else sql.SQL("false")
    scores_table = sql.Identifier(SCHEMA, "abandonment_session_scores")
    return sql.SQL("select (select count(*) from {fact}), (select count(*) from {fact} where {nulls}), "
                   "(select count(*) from {scores}), "
                   "(select count(*) from {scores} s where exists (select 1 from {fact} f where f.session_id = s.session_id))"
                   ).format(fact=fact, nulls=nulls, scores=scores_table)
