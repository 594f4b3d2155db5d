"""The model's scores as CSV for COPY (analysis/store.py): every value reads back exactly."""

from __future__ import annotations

import csv
import io

import numpy as np
import pandas as pd

from voice_analytics_dagster.defs.model.store import csv_field, score_chunks


def _parse(chunks) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(chunks).decode()), strict=True))


def test_scores_read_back_to_the_same_doubles_ids_folds_and_nulls():
    rng = np.random.default_rng(7)
    risk = np.concatenate([rng.random(997), [np.nan, 1e-300, 0.1 + 0.2]])
    ids = np.array([f"S-{i:06d}" for i in range(len(risk))], dtype=object)
    fold = rng.integers(0, 5, len(risk))
    rows = _parse(score_chunks(ids, risk, fold, "abandonment-logit-r1-abc", chunk=128))
    assert [r[0] for r in rows] == list(ids)
    back = np.array([float(r[1]) if r[1] else np.nan for r in rows])
    assert np.array_equal(back, risk, equal_nan=True)  # to the bit, NaN as an empty field (NULL)
    assert [int(r[2]) for r in rows] == fold.tolist()
    assert {r[3] for r in rows} == {"abandonment-logit-r1-abc"}
    # the same values as DataFrame.to_csv wrote them before
    old = pd.DataFrame({"s": ids, "r": risk, "f": fold, "m": "abandonment-logit-r1-abc"}).to_csv(
        index=False, header=False, na_rep="", float_format="%.17g")
    old_rows = list(csv.reader(io.StringIO(old)))
    assert [(a[0], float(a[1]) if a[1] else None, a[2]) for a in old_rows] == \
        [(b[0], float(b[1]) if b[1] else None, b[2]) for b in rows]


def test_ids_that_need_quoting_are_quoted_and_no_fold_is_null():
    ids = np.array(["plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", ""], dtype=object)
    raw = b"".join(score_chunks(ids, np.full(len(ids), 0.5), None, "v,1")).decode()
    rows = _parse([raw.encode()])
    assert [r[0] for r in rows] == list(ids) and {r[3] for r in rows} == {"v,1"}
    assert all(r[2] == "" for r in rows)  # unquoted empty: NULL for COPY
    assert raw.splitlines()[-1].startswith('"",')  # an empty id stays a text, not NULL
    assert csv_field("x") == "x" and csv_field("") == '""' and csv_field('a"b') == '"a""b"'


def test_the_copy_reader_gives_the_stream_byte_for_byte_whatever_the_buffer_sizes():
    """COPY sends one message per row; the reader fills each buffer from many rows and keeps the
    tail of a row that did not fit."""
    from voice_analytics_dagster.defs.model.store import _CopyReader

    rng = np.random.default_rng(7)
    rows = [bytes(rng.integers(32, 127, int(n)).astype(np.uint8)) + b"\n" for n in rng.integers(0, 300, 2000)]
    rows[5] = b""  # an empty message
    expected = b"".join(rows)
    for buffer_size in (1, 7, 64, 4096, 1 << 20):
        reader = io.BufferedReader(_CopyReader(iter(memoryview(r) for r in rows)), buffer_size=buffer_size)
        got = bytearray()
        while block := reader.read(int(rng.integers(1, 5000))):
            got += block
        assert bytes(got) == expected, buffer_size
    raw = _CopyReader(iter([memoryview(b"abc"), memoryview(b"defgh")]))
    buf = bytearray(4)
    assert raw.readinto(buf) == 4 and bytes(buf) == b"abcd"
    assert raw.readinto(buf) == 4 and bytes(buf) == b"efgh"
    assert raw.readinto(buf) == 0


def test_tables_are_created_without_their_key_when_it_is_added_after_the_load():
    from voice_analytics_dagster.defs.model.store import TABLES, create_table_sql, primary_key_sql

    columns, description = TABLES["abandonment_session_scores"]
    with_key = create_table_sql("abandonment_session_scores", columns, description)
    without = create_table_sql("abandonment_session_scores", columns, description, primary_key=False)
    assert "primary key (session_id)" in with_key and "primary key" not in without
    assert without.replace("\n);", ",\n    primary key (session_id)\n);", 1) == with_key
    assert primary_key_sql("abandonment_session_scores") == (
        "alter table analysis.abandonment_session_scores add primary key (session_id);")
