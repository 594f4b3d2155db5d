"""`voice-analytics doctor --source` on platform logs: the format and why, the adapter's conversion
(into a temporary folder: nothing is left behind), the converted files checked as the loader
would load them (not-recorded columns accepted as empty), and bad input named by file, line and
field."""

from __future__ import annotations

import shutil

import pytest

from tests.integration.test_doctor import _doctor, _schema_state
from tests.unit.adapters_support import FIXTURES

pytestmark = [pytest.mark.integration]


def test_platform_logs_are_detected_converted_and_checked_without_side_effects(fresh_db, capsys, dbt_manifest):
    from voice_analytics_dagster.lib.settings import get_settings

    source = FIXTURES / "lex-v2" / "text-logs"
    before = _schema_state(fresh_db)
    converted = get_settings().home / "converted"
    existing = sorted(converted.iterdir()) if converted.exists() else []

    code, out = _doctor(capsys, "--source", str(source))

    assert code == 0, out
    assert "format lex-v2 (detected: lex-v2: 3 file(s) hold Lex V2 log entries" in out
    assert "text-logs: lex-v2 adapter read " in out and "quarantined 0" in out
    assert "lex-v2 does not record every contract column (not recorded: " in out
    assert "voice_turns.turn_duration_sec" in out and "they load as NULL" in out
    # the converted files load whole: the columns Lex does not record are accepted as empty
    assert "voice_turns.csv: read 22 = would load 22 + quarantine 0" in out
    assert "voice_sessions.csv: read 5 = would load 5 + quarantine 0" in out
    assert "applications.csv: header only, no rows (the platform does not record this table)" in out
    assert _schema_state(fresh_db) == before
    assert (sorted(converted.iterdir()) if converted.exists() else []) == existing  # nothing converted in the home


def test_unmappable_records_and_a_truncated_file_are_named(fresh_db, tmp_path, capsys, dbt_manifest):
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(FIXTURES / "rasa" / "bad_records.jsonl", bad)
    code, out = _doctor(capsys, "--source", str(bad), "--format", "rasa")
    assert code == 1, out
    assert "format rasa (given)" in out
    assert "more than VOICE_ANALYTICS_QUARANTINE_TOLERANCE=0 allows (publication would be blocked)" in out
    assert "bad_records.jsonl line 1, field parse_data.intent.confidence: expected a number" in out

    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(FIXTURES / "dialogflow-cx" / "truncated.jsonl", cut)
    code, out = _doctor(capsys, "--source", str(cut))
    assert code == 1, out
    assert f"{cut / 'truncated.jsonl'}, line 2, column " in out and "truncated file?" in out
