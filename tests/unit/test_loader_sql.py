"""The loader's pure parts: header comparison and the SQL it builds (no database here)."""

from __future__ import annotations

import pytest

from voice_analytics_dagster.contract import USERS, VOICE_SESSIONS, VOICE_TURNS
from voice_analytics_dagster.loader import (
    compare_header,
    copy_sql,
    landing_ddl,
    reason_expr,
    validate_and_insert_sql,
)

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


def test_landing_and_copy_quote_identifiers_and_refuse_others():
    assert '"turn_id" text' in landing_ddl(TURN_COLUMNS)
    assert copy_sql(("a", "b")) == (
        'copy _landing ("a", "b") from stdin with (format csv, header false, encoding \'UTF8\')')
    with pytest.raises(ValueError):
        landing_ddl(('x"; drop table raw.users; --',))


def test_reasons_withhold_personal_data():
    uid = VOICE_SESSIONS.column("user_id")
    assert "quote_literal" not in reason_expr(uid, "v")
    conf = VOICE_TURNS.column("asr_confidence")
    assert "quote_literal" in reason_expr(conf, "v")
    # a duplicated user id is reported without its value
    users_sql = validate_and_insert_sql(USERS, USERS.column_names, quoted=False)
    assert "'duplicate user_id ' || ' (value withheld: personal data)'" in users_sql


def test_line_numbers_are_counted_only_when_a_field_can_span_lines():
    plain = validate_and_insert_sql(VOICE_TURNS, TURN_COLUMNS, quoted=False)
    quoted = validate_and_insert_sql(VOICE_TURNS, TURN_COLUMNS, quoted=True)
    assert "_rn + 1 as _line" in plain and "over (order by _rn" not in plain
    assert "over (order by _rn rows between unbounded preceding and 1 preceding)" in quoted


def test_one_statement_inserts_good_rows_and_quarantines_the_rest():
    sql = validate_and_insert_sql(VOICE_TURNS, TURN_COLUMNS, quoted=False)
    assert sql.count("insert into raw.voice_turns") == 1
    assert sql.count("insert into raw.quarantine") == 1
    assert "group by n_turn_id" in sql and "having count(*) > 1" in sql
