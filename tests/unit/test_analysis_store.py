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
    hashes = rng.integers(-(2 ** 63), 2 ** 63 - 1, len(risk), dtype=np.int64)
    rows = _parse(score_chunks(ids, risk, fold, "abandonment-logit-r1-abc", hashes, chunk=128))
    assert [r[0] for r in rows] == list(ids)
    back = np.array([float(r[1]) if r[1] else np.nan for r in rows])
    assert np.array_equal(back, risk, equal_nan=True)  # to the bit, NaN as an empty field (NULL)
    assert [int(r[2]) for r in rows] == fold.tolist()
    assert {r[3] for r in rows} == {"abandonment-logit-r1-abc"}
    assert [int(r[4]) for r in rows] == hashes.tolist()
    # the same values as DataFrame.to_csv wrote them before
    old = pd.DataFrame({"s": ids, "r": risk, "f": fold, "m": "abandonment-logit-r1-abc"}).to_csv(
        index=False, header=False, na_rep="", float_format="%.17g")
    old_rows = list(csv.reader(io.StringIO(old)))
    assert [(a[0], float(a[1]) if a[1] else None, a[2]) for a in old_rows] == \
        [(b[0], float(b[1]) if b[1] else None, b[2]) for b in rows]


def test_ids_that_need_quoting_are_quoted_and_no_fold_is_null():
    ids = np.array(["plain", "a,b", 'say "hi"', "two\nlines", "cr\rhere", ""], dtype=object)
    raw = b"".join(score_chunks(ids, np.full(len(ids), 0.5), None, "v,1", np.zeros(len(ids), dtype=np.int64))).decode()
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


def test_the_input_fingerprint_is_the_sha256_of_the_sorted_checksums():
    import hashlib

    from voice_analytics_dagster.defs.model.store import input_fingerprint

    sums = [hashlib.sha256(name.encode()).hexdigest() for name in ("users", "sessions", "turns")]
    expected = hashlib.sha256("\n".join(sorted(sums)).encode()).hexdigest()
    assert input_fingerprint(sums) == input_fingerprint(reversed(sums)) == expected
    assert input_fingerprint(sums[:2]) != expected and input_fingerprint([]) is None


def test_source_folders_are_written_as_a_text_array_copy_reads_back():
    """A list becomes one CSV field holding a PostgreSQL array literal: each element quoted,
    its quotes and backslashes escaped, so commas and braces in a folder name survive."""
    from voice_analytics_dagster.defs.model.store import array_literal, rows_to_csv

    folders = ["/data/plain", "/data/a,b {x}", 'say "hi"', "back\\slash"]
    literal = array_literal(folders)
    assert literal == '{"/data/plain","/data/a,b {x}","say \\"hi\\"","back\\\\slash"}'
    [[field]] = _parse([rows_to_csv([[folders]])])
    assert field == literal
    assert rows_to_csv([[[]]]) == b"{}\n"


def test_the_metrics_record_what_the_model_was_trained_on_and_old_histories_gain_it():
    from voice_analytics_dagster.defs.model.store import (
        METRIC_COLUMNS,
        TABLES,
        TrainingData,
        add_missing_columns_sql,
    )

    provenance = ["dataset", "source_folders", "input_files", "input_sha256", "first_session_date", "last_session_date"]
    # last, in the order of TrainingData.values(), then the scoring state and the fact's size: an
    # existing history table gains them at its end
    assert [c for c, _, _ in METRIC_COLUMNS[-len(provenance) - 2:]] == [*provenance, "scoring_state",
                                                                          "n_fact_sessions"]
    assert len(TrainingData(None, [], 0, None, None, None).values()) == len(provenance)
    assert TABLES["abandonment_model_history"][0] is METRIC_COLUMNS
    ddl = add_missing_columns_sql("abandonment_model_history", METRIC_COLUMNS)
    assert "alter table if exists analysis.abandonment_model_history add column if not exists source_folders text[];" in ddl
    assert "add column if not exists first_session_date date;" in ddl


def test_the_training_sample_is_a_share_of_the_hash_range_only_above_the_cap():
    from voice_analytics_dagster.defs.model.sample import SAMPLE_HASH_RANGE, sample_hash, sample_threshold

    assert sample_threshold(1_000_000, 1_000_000) is None and sample_threshold(1_000_000, 10) is None
    assert sample_threshold(1_000_000, 10_000_000) == SAMPLE_HASH_RANGE // 10
    assert sample_threshold(2_500, 5_000) == SAMPLE_HASH_RANGE // 2
    # md5("abc") begins 900150983cd24fb0...: its first 32 bits
    assert sample_hash("abc") == 0x90015098
    rng = np.random.default_rng(3)
    share = np.mean([sample_hash(f"S-{i}") < SAMPLE_HASH_RANGE // 4 for i in rng.integers(0, 10**9, 20_000)])
    assert abs(share - 0.25) < 0.015  # md5 spreads ids evenly: the sample is a quarter of them


def test_the_model_input_copy_filters_and_orders_as_asked():
    from psycopg import sql

    from voice_analytics_dagster.defs.model.sample import rest_where, sample_where
    from voice_analytics_dagster.defs.model.store import read_model_input_sql

    whole = read_model_input_sql(["session_id", "region"], "marts.fact").as_string()
    assert whole.endswith('from "marts"."fact" f order by session_id) to stdout with (format csv, header true)')
    rest = read_model_input_sql(["session_id", "region"], "marts.fact", where=rest_where(7, {"region": ["a", "b'c"]}),
                                ordered=False).as_string()
    assert "order by" not in rest
    assert " where (('x' || left(md5(\"f\".\"session_id\"), 8))::bit(32)::bigint >= 7 and not " \
           "(coalesce(\"f\".\"region\"::text <> all('{a,b''c}'::text[]), false)))" in rest
    both = read_model_input_sql(["session_id"], "marts.fact", changed_only=True, where=sample_where(5)).as_string()
    assert " where (s.session_id is null or s.features_hash is distinct from " in both
    assert "::bit(32)::bigint < 5) order by session_id" in both
    assert isinstance(sample_where(5), sql.Composed)


def test_the_sample_levels_come_from_its_complete_sessions_only():
    from voice_analytics_dagster.defs.model.features import FEATURES, OUTCOME
    from voice_analytics_dagster.defs.model.sample import sample_levels

    n = 4
    frame = pd.DataFrame({"session_id": [f"S{i}" for i in range(n)], OUTCOME: [True, False, True, False]})
    for f in FEATURES:
        frame[f.column] = [0.5] * n if f.kind == "numeric" else [True] * n if f.kind == "boolean" else ["x"] * n
    frame["region"] = ["urban", "rural", "island", None]
    frame.loc[2, "avg_asr_confidence"] = np.nan  # the island session is incomplete: build_design drops it
    frame["asr_model_version"] = None  # a column without values is not a feature the design uses
    frame["region"] = frame["region"].astype("category")
    levels = sample_levels(frame)
    assert levels["region"] == ["rural", "urban"] and "asr_model_version" not in levels
