"""The loader's nullable columns (an adapter's not-recorded columns), in the SQL it builds and in
the Python reasons of rows COPY skipped; and which columns a manifest makes nullable. No database."""

from __future__ import annotations

import pytest

from voice_analytics_dagster.defs.ingestion.copy_errors import python_reasons
from voice_analytics_dagster.defs.ingestion.sources import nullable_columns
from voice_analytics_dagster.defs.ingestion.sql import (
    batch_table_ddl,
    column_rule,
    quarantine_rules_sql,
    reason_expr,
)
from voice_analytics_dagster.lib.contract import APPLICATIONS, USERS, VOICE_SESSIONS, VOICE_TURNS

RELAXED = VOICE_TURNS.with_nullable({"asr_confidence", "turn_duration_sec"})


def test_with_nullable_relaxes_only_the_named_columns():
    assert not RELAXED.column("asr_confidence").required and not RELAXED.column("turn_duration_sec").required
    assert [c.name for c in RELAXED.columns if c.required] == [
        c.name for c in VOICE_TURNS.columns if c.required and c.name not in ("asr_confidence", "turn_duration_sec")]
    # the rest of each column's rule is kept: range, type
    assert RELAXED.column("asr_confidence").maximum == 1 and RELAXED.column("asr_confidence").type == "decimal"
    assert VOICE_TURNS.with_nullable(()) is VOICE_TURNS
    assert VOICE_TURNS.column("asr_confidence").required  # the contract itself is unchanged
    with pytest.raises(KeyError, match="no column"):
        VOICE_TURNS.with_nullable({"asr_conf"})


def test_a_nullable_column_rule_accepts_null_and_keeps_its_range():
    strict = column_rule(VOICE_TURNS.column("asr_confidence"))
    relaxed = column_rule(RELAXED.column("asr_confidence"))
    assert strict.startswith('"asr_confidence" is not null and ')
    assert relaxed.startswith('("asr_confidence" is null or (') and '"asr_confidence" <= 1' in relaxed
    assert "is not null" not in relaxed


def test_the_batch_table_checks_follow():
    strict = batch_table_ddl(VOICE_TURNS, 7, constrained=True)
    relaxed = batch_table_ddl(RELAXED, 7, constrained=True)
    assert 'check ("turn_duration_sec" is not null and' in strict
    assert 'check (("turn_duration_sec" is null or (' in relaxed
    # columns not named stay required
    assert 'check ("intent_confidence" is not null and' in relaxed


def test_the_careful_path_quarantines_nothing_for_an_empty_nullable_value():
    sql = quarantine_rules_sql(RELAXED, 7, text_dates=True)
    assert '("asr_confidence" is null or (' in sql and '"intent_confidence" is not null' in sql
    assert "expected a number between 0 and 1 or empty" in reason_expr(RELAXED.column("asr_confidence"))


def test_python_reasons_of_a_skipped_row_honour_it():
    row = {"turn_id": "t1", "session_id": "s1", "turn_number": "1", "speaker": "system", "detected_intent": "x",
           "intent_confidence": "", "asr_confidence": "", "error_type": "", "turn_duration_sec": "",
           "created_at": "2025-03-03"}
    strict = dict(python_reasons(VOICE_TURNS, row))
    assert set(strict) == {"intent_confidence", "asr_confidence", "turn_duration_sec"}
    assert strict["asr_confidence"].endswith("got nothing")
    assert dict(python_reasons(RELAXED, row)) == {"intent_confidence": strict["intent_confidence"]}
    # a bad value is still a bad value
    assert "asr_confidence" in dict(python_reasons(RELAXED, {**row, "asr_confidence": "1.5"}))


MANIFEST = {
    "columns_not_recorded": {"voice_turns": {"turn_duration_sec": "never"}, "applications": {"*": "no rows"},
                             "voice_sessions": {"asr_model_version": "never"}},
    "columns_partly_recorded": {"voice_turns": {"asr_confidence": "spoken turns"},
                                "users": {"region": "when set", "disability_flag": "when set"}},
}


def test_the_manifest_names_the_nullable_columns():
    assert nullable_columns(MANIFEST, VOICE_TURNS) == {"turn_duration_sec", "asr_confidence"}
    assert nullable_columns(MANIFEST, USERS) == {"region", "disability_flag"}
    assert nullable_columns(MANIFEST, VOICE_SESSIONS) == {"asr_model_version"}
    assert nullable_columns(MANIFEST, APPLICATIONS) == set(APPLICATIONS.column_names)  # "*": no rows at all
    assert nullable_columns({}, VOICE_TURNS) == frozenset()


def test_a_manifest_naming_an_unknown_column_is_refused():
    with pytest.raises(ValueError, match="asr_conf"):
        nullable_columns({"columns_not_recorded": {"voice_turns": {"asr_conf": "?"}}}, VOICE_TURNS)
