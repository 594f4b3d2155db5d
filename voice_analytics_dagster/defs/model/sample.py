"""The abandonment model's training sample: which sessions a training reads when the fact holds more
than VOICE_ANALYTICS_MODEL_MAX_TRAINING_SESSIONS, as SQL conditions on the fact (alias ``f``) for
store.read_model_input, and the sample's levels. Pure.
"""

from __future__ import annotations

import hashlib

import pandas as pd
from psycopg import sql

from voice_analytics_dagster.defs.model.features import FEATURES, complete_rows

# A training reads at most VOICE_ANALYTICS_MODEL_MAX_TRAINING_SESSIONS sessions (about: a sample is
# a share of the sessions, by a hash of their id), so its memory does not grow with the history;
# the fitted model scores the rest in chunks. The hash is the first 32 bits of md5(session_id):
# the same sessions are drawn on every run, and anyone can recompute it.
SAMPLE_HASH_RANGE = 1 << 32


def sample_hash_sql(alias: str = "f") -> sql.Composed:
    """The sample's hash of a session: the first 32 bits of md5(session_id), in [0, 2^32)."""
    return sql.SQL("('x' || left(md5({}), 8))::bit(32)::bigint").format(sql.Identifier(alias, "session_id"))


def sample_hash(session_id: str) -> int:
    """sample_hash_sql in Python. Pure."""
    return int(hashlib.md5(session_id.encode()).hexdigest()[:8], 16)


def sample_threshold(max_sessions: int, fact_sessions: int) -> int | None:
    """The training's sample: the sessions whose hash is below the returned value, about
    ``max_sessions`` of the ``fact_sessions``; None: the fact is small enough to read whole. Pure."""
    if fact_sessions <= max_sessions:
        return None
    return max_sessions * SAMPLE_HASH_RANGE // fact_sessions


def _unseen_level_sql(levels: dict[str, list[str]]) -> sql.Composable:
    """True for a session with a level outside ``levels`` in one of its columns (NULL is not a level)."""
    if not levels:
        return sql.SQL("false")
    return sql.SQL(" or ").join(
        sql.SQL("coalesce({}::text <> all({}::text[]), false)").format(sql.Identifier("f", c), sql.Literal(sorted(v)))
        for c, v in sorted(levels.items()))


def sample_where(threshold: int) -> sql.Composed:
    return sql.SQL("{} < {}").format(sample_hash_sql(), sql.Literal(threshold))


def unseen_outside_sample_where(threshold: int, levels: dict[str, list[str]]) -> sql.Composed:
    """The sessions outside the sample with a level it lacks: the training reads them too, so that
    the model has seen every level of the sessions it scores."""
    return sql.SQL("{} >= {} and ({})").format(sample_hash_sql(), sql.Literal(threshold), _unseen_level_sql(levels))


def rest_where(threshold: int, levels: dict[str, list[str]]) -> sql.Composed:
    """The sessions the training did not read (the complement of the two conditions above)."""
    return sql.SQL("{} >= {} and not ({})").format(sample_hash_sql(), sql.Literal(threshold),
                                                   _unseen_level_sql(levels))


def sample_levels(sample: pd.DataFrame) -> dict[str, list[str]]:
    """The levels of each categorical feature among the sample's sessions without a NULL in a
    feature column that has a value in the sample: build_design's levels include them, whichever
    columns it uses. Pure."""
    present = [f.column for f in FEATURES if not sample[f.column].isna().all()]
    complete = sample.loc[complete_rows(sample, present)]
    return {f.column: sorted(complete[f.column].dropna().astype(str).unique().tolist())
            for f in FEATURES if f.kind == "categorical" and f.column in present}
