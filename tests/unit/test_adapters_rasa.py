"""Rasa trackers -> contract: sessions split by session_started and restart, turns, outcomes,
NULL for what Rasa does not record, quarantine of bad records and events."""

from __future__ import annotations

import hashlib

import pytest

from tests.unit.adapters_support import FIXTURES, folder_of, run
from voice_analytics_dagster.defs.ingestion.adapters import AdapterError, AdapterSettings

RASA = FIXTURES / "rasa"
CALLER = "+250788000001"
WEB = "web-5f2c"


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return run(RASA / "conversations", tmp_path_factory.mktemp("rasa"))


def test_sessions_split_by_session_started_and_restart(out):
    sessions = out.table("voice_sessions", "session_id")
    assert sorted(sessions) == [CALLER, CALLER + "#2", WEB, WEB + "#2"]
    assert {s["user_id"] for s in sessions.values()} == {CALLER, WEB}  # the sender id


def test_outcomes(out):
    s = out.table("voice_sessions", "session_id")
    assert (s[CALLER]["final_outcome"], s[CALLER]["transfer_reason"]) == ("completed", "")  # form completed
    assert (s[CALLER + "#2"]["final_outcome"], s[CALLER + "#2"]["transfer_reason"]) == ("transferred", "repeated_errors")
    assert (s[WEB]["final_outcome"], s[WEB]["transfer_reason"]) == ("transferred", "user_request")
    assert s[WEB + "#2"]["final_outcome"] == "abandoned"


def test_turns_errors_and_confidences(out):
    turns = out.turns(CALLER)
    assert [(t["speaker"], t["detected_intent"], t["error_type"]) for t in turns] == [
        ("system", "unknown", ""),  # the greeting answers the call's start, no caller words
        ("user", "renew_id", ""), ("system", "renew_id", ""),
        ("user", "unknown", "silence"), ("system", "renew_id", ""),  # vaig_event_noUserInput; the re-prompt
        ("user", "inform", ""), ("system", "inform", "")]
    assert turns[1]["intent_confidence"] == "0.91" and turns[3]["intent_confidence"] == ""
    fallback = out.turns(CALLER + "#2")
    assert [t["error_type"] for t in fallback if t["speaker"] == "user"] == ["misunderstanding", "misunderstanding"]
    assert all(t["intent_confidence"] == "" for t in fallback)  # a fallback's confidence is its threshold


def test_asr_confidence_is_never_invented(out):
    assert {t["asr_confidence"] for t in out.rows("voice_turns.csv")} == {""}
    assert {m["avg_asr_confidence"] for m in out.rows("voice_ai_metrics.csv")} == {""}


def test_channel_from_the_input_channel(out):
    s = out.table("voice_sessions", "session_id")
    assert s[CALLER]["channel"] == "voice"  # audiocodes
    assert s[WEB]["channel"] == "voice"  # typed turns, then one spoken turn
    assert s[WEB + "#2"]["channel"] == "text"  # rest channel only


def test_conversation_split_across_files_is_ordered_by_time(out):
    turns = out.turns(WEB)
    assert [t["detected_intent"] for t in turns if t["speaker"] == "user"] == ["greet", "check_status", "human_handoff"]
    assert [t["turn_number"] for t in turns] == [str(i) for i in range(1, len(turns) + 1)]


def test_caller_attributes_from_slots(out):
    users = out.table("users", "user_id")
    assert users[CALLER] == {"user_id": CALLER, "region": "rural", "disability_flag": "no",
                             "first_time_digital_user": "yes"}
    assert users[WEB] == {"user_id": WEB, "region": "", "disability_flag": "", "first_time_digital_user": ""}


def test_metrics(out):
    m = out.table("voice_ai_metrics", "session_id")
    assert m[CALLER]["recovery_success"] == "yes" and m[CALLER]["escalation_flag"] == "no"
    assert float(m[CALLER]["silence_rate"]) == pytest.approx(1 / 7)
    assert m[CALLER + "#2"]["escalation_flag"] == "yes" and m[CALLER + "#2"]["recovery_success"] == "no"


def test_manifest_counts_ignored_and_duplicates(out):
    man = out.manifest
    assert man["format"] == "rasa" and man["records_quarantined"] == 0 and out.quarantine == []
    assert man["duplicate_events_skipped"] == 1  # the SQL row delivered twice
    assert man["events_ignored"] == {"action": 6, "slot": 2, "user (channel event)": 2}
    assert man["rows"] == {"users": 2, "voice_sessions": 4, "voice_turns": 20, "voice_ai_metrics": 4,
                           "applications": 0}
    assert "asr_confidence" in man["columns_not_recorded"]["voice_turns"]
    assert man["empty_values"]["voice_turns"]["asr_confidence"] == 20
    assert [i["path"] for i in man["inputs"]] == sorted(i["path"] for i in man["inputs"])
    for i in man["inputs"]:
        data = (RASA / "conversations" / i["path"]).read_bytes()
        assert (i["sha256"], i["bytes"]) == (hashlib.sha256(data).hexdigest(), len(data))
        assert i["lines"] == data.count(b"\n") and i["records"] > 0
    assert [i["records"] for i in man["inputs"]] == [5, 7, 2, 1]  # the tracker is one record


def test_bad_records_are_quarantined_with_file_line_field(tmp_path):
    out = run(folder_of(tmp_path, RASA / "bad_records.jsonl"), tmp_path, "rasa")
    q = [(r["source_file"], r["line"], r["field"]) for r in out.quarantine]
    assert q == [("bad_records.jsonl", "1", "parse_data.intent.confidence"),
                 ("bad_records.jsonl", "2", "timestamp"),
                 ("bad_records.jsonl", "3", "sender_id"),
                 ("bad_records.jsonl", "4", "event"),
                 ("bad_records.jsonl", "5", "value")]
    reasons = [r["reason"] for r in out.quarantine]
    assert "got 'high'" in reasons[0] and "yesterday at noon" in reasons[1]
    assert reasons[2].startswith("missing") and reasons[3] == "unknown Rasa event type 'dance'"
    assert "expected rural or urban, got 'north'" in reasons[4] and "value not used" in reasons[4]
    assert all(0 < len(r["excerpt"]) <= 1000 and r["excerpt"].startswith("{") for r in out.quarantine)
    assert out.manifest["events_ignored"] == {"reminder": 1}
    assert [t["detected_intent"] for t in out.rows("voice_turns.csv")] == ["apply"]  # the one good record


def test_an_event_inside_a_tracker_is_quarantined_alone(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "t.json").write_text('{"sender_id": "s", "events": [\n'
                                '{"event": "user", "timestamp": 1740992401, "parse_data": {"intent": {"name": "greet", "confidence": 0.9}}},\n'
                                '{"event": "user", "timestamp": 1740992402, "parse_data": {"intent": {"name": "x", "confidence": "high"}}},\n'
                                '{"event": "teleport", "timestamp": 1740992403}]}\n')
    out = run(src, tmp_path, "rasa")
    assert [(r["line"], r["field"]) for r in out.quarantine] == [
        ("1", "events[1].parse_data.intent.confidence"), ("1", "events[2].event")]
    assert len(out.rows("voice_turns.csv")) == 1


def test_truncated_file_is_an_error_naming_line_and_column(tmp_path):
    with pytest.raises(AdapterError) as info:
        run(folder_of(tmp_path, RASA / "truncated.jsonl"), tmp_path, "rasa")
    err = info.value
    assert err.path.endswith("truncated.jsonl") and err.line == 2 and err.column.startswith("58")
    assert "truncated file?" in str(err)
    assert not (tmp_path / "out" / "voice_sessions.csv").exists()  # nothing written


def test_goal_and_handoff_names_are_settings(tmp_path):
    settings = AdapterSettings(rasa_goal_forms=("another_form",), rasa_handoff_actions=())
    out = run(RASA / "conversations", tmp_path, "rasa", settings)
    s = out.table("voice_sessions", "session_id")
    assert s[CALLER]["final_outcome"] == "abandoned"  # renew_id_form is not a goal then
    assert s[WEB]["final_outcome"] == "abandoned" and s[CALLER + "#2"]["final_outcome"] == "abandoned"
