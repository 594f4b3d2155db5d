"""The loader's pure parts: header comparison and the SQL it builds (no database here)."""

from __future__ import annotations

import dataclasses

import pytest

from voice_analytics_dagster.defs.ingestion import reader
from voice_analytics_dagster.defs.ingestion.reader import Padding, compare_header, data_chunks, has_date_words
from voice_analytics_dagster.defs.ingestion.sql import (
    attach_batch_sql,
    batch_table_ddl,
    column_rule,
    copy_sql,
    duplicate_candidates_sql,
    padding_check_sql,
    quarantine_duplicates_sql,
    quarantine_rules_sql,
    reason_expr,
    recent_days_sql,
)
from voice_analytics_dagster.lib.contract import USERS, VOICE_SESSIONS, VOICE_TURNS

TURN_COLUMNS = VOICE_TURNS.column_names


def test_exact_header_is_ok():
    r = compare_header(VOICE_TURNS, TURN_COLUMNS)
    assert r.ok and not r.reordered and r.problems() == []


def test_reordered_columns_load_by_name():
    r = compare_header(VOICE_TURNS, tuple(reversed(TURN_COLUMNS)))
    assert r.ok and r.reordered


def test_missing_new_and_renamed_columns_are_drift():
    cols = list(TURN_COLUMNS)
    cols[6] = "asr_conf"
    r = compare_header(VOICE_TURNS, tuple(cols) + ("extra",))
    assert not r.ok
    problems = "; ".join(r.problems())
    assert "'asr_conf' found where 'asr_confidence' was expected" in problems
    assert "unexpected new column(s): extra" in problems


def test_duplicated_column_is_drift():
    r = compare_header(VOICE_TURNS, TURN_COLUMNS + ("speaker",))
    assert not r.ok and r.duplicated == ("speaker",)


def test_optional_column_may_be_absent_or_present():
    without = tuple(c for c in VOICE_SESSIONS.column_names if c != "asr_model_version")
    assert compare_header(VOICE_SESSIONS, without).ok
    assert compare_header(VOICE_SESSIONS, VOICE_SESSIONS.column_names).ok


def test_rules_follow_the_contract():
    assert column_rule(VOICE_TURNS.column("asr_confidence")) == (
        "\"asr_confidence\" is not null and (\"asr_confidence\" > '-Infinity' and \"asr_confidence\" < 'Infinity') "
        "and \"asr_confidence\" >= 0 and \"asr_confidence\" <= 1")
    # an optional column accepts NULL explicitly (a CHECK would, a WHERE ... IS NOT TRUE would not)
    assert column_rule(VOICE_TURNS.column("error_type")).startswith('("error_type" is null or (')
    assert "'misunderstanding', 'silence', 'noise'" in column_rule(VOICE_TURNS.column("error_type"))
    assert "date '2000-01-01'" in column_rule(VOICE_TURNS.column("created_at"))


def test_enum_rule_is_membership_when_the_accepted_values_are_canonical():
    # 'user' is in the list only as itself: trimmed, lower case, non-empty, short are implied
    assert column_rule(VOICE_TURNS.column("speaker")) == "\"speaker\" is not null and \"speaker\" in ('user', 'system')"
    # an accepted value that is not canonical keeps every text rule
    odd = dataclasses.replace(VOICE_TURNS.column("speaker"), accepted=("User", "system"))
    assert "btrim" in column_rule(odd) and 'lower("speaker")' in column_rule(odd)


def test_the_fast_path_leaves_the_trim_rules_to_a_check_made_only_for_suspect_bytes():
    assert "btrim" in column_rule(VOICE_TURNS.column("turn_id"))
    assert "btrim" not in column_rule(VOICE_TURNS.column("turn_id"), trim=False)
    assert column_rule(VOICE_TURNS.column("speaker"), trim=False) == column_rule(VOICE_TURNS.column("speaker"))
    fast = batch_table_ddl(VOICE_TURNS, 42, constrained=True, trim=False)
    assert "btrim" not in fast and fast.count('constraint "rule_') == len(VOICE_TURNS.columns)
    check = padding_check_sql(VOICE_TURNS, 'raw."t"')
    assert check is not None and check.startswith('alter table raw."t" add constraint rule_trimmed check (')
    # every text column with a trim rule, and no column whose rule is membership of canonical values
    assert [c.name for c in VOICE_TURNS.columns if f'btrim("{c.name}"' in check] == [
        "turn_id", "session_id", "detected_intent"]


def test_text_length_is_read_off_the_bytes_before_the_characters_are_counted():
    rule = column_rule(VOICE_TURNS.column("detected_intent"))
    assert '(octet_length("detected_intent") <= 200 or length("detected_intent") <= 200)' in rule


@pytest.mark.parametrize(("data", "suspect"), [
    (b"T1,S1,user\nT2,S1,system\n", False),
    (b"T1,S 1,user\n", True),  # a space anywhere: a value could start or end with it
    (b"T1,\tS1,user\n", True),
    (b"T1,S1\r,user\n", True),  # a carriage return that is not part of a CRLF line end
    (b'T1,"S1",user\n', True),  # a quote: a field could hold a line feed
])
def test_padding_is_suspected_from_whitespace_and_quote_bytes(data, suspect):
    padding = Padding()
    padding.see(data)
    assert padding.seen is suspect


def test_padding_is_looked_for_in_the_bytes_copy_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "CHUNK", 3)
    f = tmp_path / "f.csv"
    f.write_bytes(b"id,x\r\n1,a\r\n2,b\r\n")  # CRLF line ends become LF before COPY reads them
    padding = Padding()
    assert b"".join(data_chunks(f, padding=padding, chunk_size=3)) == b"id,x\n1,a\n2,b\n"
    assert not padding.seen
    f.write_bytes(b"id,x\n1,a\n2,b \n")
    padding = Padding()
    list(data_chunks(f, padding=padding, chunk_size=3))
    assert padding.seen


def test_date_words_are_found_across_reads(tmp_path, monkeypatch):
    monkeypatch.setattr(reader, "CHUNK", 8)
    f = tmp_path / "f.csv"
    for text, found in [("id,created_at\n1,2025-01-01\n2,YesterDay\n", True),
                        ("id,created_at\n1,2025-01-01\n2,2025-01-02\n", False),
                        ("id,x\n1,snow\n", False),  # 'now' only as a whole field
                        ("id,x\n1,\"now\"\n", True)]:
        f.write_text(text)
        assert has_date_words(f) is found, text


def test_only_batches_with_recent_days_are_searched_for_date_words():
    sql = recent_days_sql(VOICE_TURNS, 7)
    assert sql == ('select exists (select 1 from raw."voice_turns__b7" where "created_at" >= current_date - 1)')
    assert recent_days_sql(dataclasses.replace(VOICE_TURNS, columns=VOICE_TURNS.columns[:3]), 7) is None


def test_clean_files_are_validated_during_copy():
    constrained = batch_table_ddl(VOICE_TURNS, 42, constrained=True)
    plain = batch_table_ddl(VOICE_TURNS, 42, constrained=False)
    assert constrained.count("constraint \"rule_") == len(VOICE_TURNS.columns)
    assert "constraint" not in plain
    for ddl in (constrained, plain):
        assert 'raw."voice_turns__b42"' in ddl
        assert "check (_batch_id = 42)" in ddl  # lets ATTACH PARTITION skip its scan
        assert "identity (start with 2" in ddl  # record n sits on line n + 1
    assert "on_error ignore" in copy_sql(VOICE_TURNS, 42, TURN_COLUMNS, soft_errors=True)
    assert "freeze true" in copy_sql(VOICE_TURNS, 42, TURN_COLUMNS, soft_errors=True)  # created in the same transaction
    assert "on_error" not in copy_sql(VOICE_TURNS, 42, TURN_COLUMNS, soft_errors=False)
    with pytest.raises(ValueError):
        copy_sql(VOICE_TURNS, 42, ('x"; drop table raw.users; --',), soft_errors=True)


def test_reasons_withhold_personal_data():
    assert "quote_literal" not in reason_expr(VOICE_SESSIONS.column("user_id"))
    assert "quote_literal" in reason_expr(VOICE_TURNS.column("asr_confidence"))
    # a duplicated user id is reported without its value
    assert "' (value withheld: personal data)'" in quarantine_duplicates_sql(USERS, 1)
    assert "quote_literal(m._dup_turn_id)" in quarantine_duplicates_sql(VOICE_TURNS, 1)


def test_fallback_moves_rule_breakers_into_quarantine_in_one_statement():
    sql = quarantine_rules_sql(VOICE_TURNS, 7)
    assert sql.count("delete from raw.\"voice_turns__b7\"") == 1
    assert sql.count("insert into raw.quarantine") == 1
    dup = quarantine_duplicates_sql(VOICE_TURNS, 7)
    assert "hashtextextended" in dup and "having count(*) > 1" in dup and "%(hashes)s" in dup


def test_duplicate_candidates_are_found_by_a_read_only_query_over_key_hashes():
    sql = duplicate_candidates_sql(VOICE_TURNS, 7)
    assert sql.startswith("select array_agg(h)") and 'from raw."voice_turns__b7" group by 1 having count(*) > 1' in sql
    assert "delete" not in sql and "insert" not in sql


def test_the_batch_table_becomes_the_partition_of_its_batch():
    sql = attach_batch_sql(VOICE_TURNS, 7)
    assert 'alter table raw."voice_turns__b7" alter column _source_line drop identity' in sql
    assert sql.endswith('alter table raw."voice_turns" attach partition raw."voice_turns__b7" for values in (7)')
