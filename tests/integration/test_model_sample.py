"""The model's training sample on the real server (defs/model/sample.py, store.py): the hash in SQL is the
hash in Python, the sample, the sessions added for a level it lacks and the rest split the fact
exactly, and reading in chunks gives the frame read whole."""

from __future__ import annotations

import pandas as pd
import pytest

from voice_analytics_dagster.defs.model import sample as sampling
from voice_analytics_dagster.defs.model import store

pytestmark = [pytest.mark.integration]

COLUMNS = ["session_id", "is_abandoned", "region", "avg_asr_confidence"]
N = 3_000


@pytest.fixture
def fact(fresh_db):
    """A fact-shaped table: 3,000 sessions, a rare region on three of them that a third's sample
    does not draw, NULLs in region and in the numeric column."""
    with fresh_db.connect(autocommit=True) as conn:
        conn.execute("create schema marts")
        conn.execute("create table marts.f (session_id text primary key, is_abandoned boolean, region text, "
                     "avg_asr_confidence double precision)")
        conn.execute(
            "insert into marts.f select 'S-' || i, i %% 3 = 0, "
            "case when i in (2, 4, 9) then 'island' when i %% 97 = 0 then null "
            "when i %% 2 = 0 then 'urban' else 'rural' end, "
            "case when i %% 89 = 0 then null else (i %% 100) / 100.0 end from generate_series(1, %s) i", (N,))
    return fresh_db


def _read(conn, where=None) -> pd.DataFrame:
    return store.read_model_input(conn, COLUMNS, ["is_abandoned"], ["region"], "marts.f", where=where)


def test_the_sql_hash_is_the_python_hash(fact):
    rows = fact.rows(f"select session_id, {sampling.sample_hash_sql().as_string()} from marts.f f")
    assert len(rows) == N and all(sampling.sample_hash(s) == h for s, h in rows)
    assert all(0 <= h < sampling.SAMPLE_HASH_RANGE for _, h in rows)


def test_sample_added_sessions_and_rest_split_the_fact_exactly(fact):
    threshold = sampling.sample_threshold(1_000, N)
    with fact.connect() as conn:
        sample = _read(conn, sampling.sample_where(threshold))
        levels = {"region": sorted(sample.region.dropna().astype(str).unique())}
        added = _read(conn, sampling.unseen_outside_sample_where(threshold, levels))
        rest = pd.concat(store.iter_model_input(conn, COLUMNS, ["is_abandoned"], ["region"], "marts.f",
                                                sampling.rest_where(threshold, levels), chunk_rows=400))
        whole = _read(conn)
    ids = {s for s in whole.session_id}
    drawn = {s for s in ids if sampling.sample_hash(s) < threshold}
    assert set(sample.session_id) == drawn and abs(len(drawn) - 1_000) < 5 * (N * (1 / 3) * (2 / 3)) ** 0.5
    # the island sessions are outside the sample: read for the training all the same; NULL is no level
    island = {f"S-{i}" for i in (2, 4, 9)}
    assert not island & drawn and levels == {"region": ["rural", "urban"]}
    assert set(added.session_id) == island
    parts = [set(sample.session_id), set(added.session_id), set(rest.session_id)]
    assert sum(map(len, parts)) == N and set.union(*parts) == ids
    # chunks read the same values as the frame read whole, NULLs and booleans included
    rest = rest.sort_values("session_id", ignore_index=True)
    expected = whole[whole.session_id.isin(rest.session_id)].sort_values("session_id", ignore_index=True)
    pd.testing.assert_frame_equal(rest.astype({"region": object}), expected.astype({"region": object}))
    assert rest.avg_asr_confidence.isna().any() and rest.region.isna().any()
    assert rest.is_abandoned.map(type).eq(bool).all()

