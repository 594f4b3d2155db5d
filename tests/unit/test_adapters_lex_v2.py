"""Amazon Lex V2 text logs -> contract: one entry is a caller turn and a bot turn; outcomes from
the intent's state and the handoff intent; ASR confidence only for spoken input."""

from __future__ import annotations

import pytest

from tests.unit.adapters_support import FIXTURES, folder_of, run
from voice_analytics_dagster.defs.ingestion.adapters import AdapterError, AdapterSettings

LEX = FIXTURES / "lex-v2"
A, B, C, D = (f"a1b2c3d4-000{i}" for i in range(1, 5))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return run(LEX / "text-logs", tmp_path_factory.mktemp("lex"))


def test_sessions_and_idle_split(out):
    s = out.table("voice_sessions", "session_id")
    assert sorted(s) == [A, B, C, D, D + "#2"]  # D came back after Lex's idle session TTL
    assert s[A]["language"] == "EN-US" and s[A]["asr_model_version"] == ""
    assert s[A]["total_duration_sec"] == "40" and s[D]["total_duration_sec"] == ""  # one entry: no duration


def test_outcomes(out):
    s = out.table("voice_sessions", "session_id")
    got = {k: (v["final_outcome"], v["transfer_reason"]) for k, v in s.items()}
    assert got == {A: ("completed", ""),  # RenewId ReadyForFulfillment, CheckStatus Fulfilled
                   B: ("transferred", "repeated_errors"),  # two misses, then the bot's code hands off
                   C: ("transferred", "user_request"),  # the caller asked: TransferToAgent understood
                   D: ("abandoned", ""), D + "#2": ("completed", "")}


def test_turns_several_intents_no_input_barge_in_and_mixed_input(out):
    turns = out.turns(A)
    assert [(t["speaker"], t["detected_intent"], t["error_type"]) for t in turns] == [
        ("user", "renewid", ""), ("system", "renewid", ""),
        ("user", "unknown", "silence"), ("system", "renewid", ""),  # empty transcript of an audio turn
        ("user", "renewid", ""), ("system", "renewid", ""),  # the barge-in turn maps like any other
        ("user", "checkstatus", ""), ("system", "checkstatus", "")]  # typed
    user = [t for t in turns if t["speaker"] == "user"]
    assert [t["asr_confidence"] for t in user] == ["0.84", "", "0.77", ""]  # typed and silent: none
    assert [t["intent_confidence"] for t in user] == ["0.91", "", "0.97", "0.77"]  # "0.77" was a string
    assert all(t["intent_confidence"] == "" and t["asr_confidence"] == "" for t in turns if t["speaker"] == "system")


def test_fallback_and_override_are_misunderstandings(out):
    user = [t for t in out.turns(B) if t["speaker"] == "user"]
    assert [t["error_type"] for t in user] == ["misunderstanding"] * 3
    assert out.table("voice_ai_metrics", "session_id")[B]["recovery_success"] == "no"


def test_channel_and_dtmf(out):
    s = out.table("voice_sessions", "session_id")
    assert (s[A]["channel"], s[B]["channel"], s[C]["channel"]) == ("voice", "text", "voice")  # C: DTMF then speech


def test_users_from_attributes_else_the_session(out):
    users = out.table("users", "user_id")
    assert users["caller-0788000111"] == {"user_id": "caller-0788000111", "region": "rural",
                                          "disability_flag": "no", "first_time_digital_user": "yes"}
    assert users[C]["region"] == "urban"  # a request attribute
    assert users[B] == {"user_id": B, "region": "", "disability_flag": "", "first_time_digital_user": ""}
    assert out.table("voice_sessions", "session_id")[A]["user_id"] == "caller-0788000111"


def test_cloudwatch_events_are_unwrapped(out):
    files = {i["path"]: i for i in out.manifest["inputs"]}
    assert files["filter-log-events.json"]["records"] == 1  # one document, a page of two events
    assert len(out.turns(C)) == 4


def test_metrics(out):
    m = out.table("voice_ai_metrics", "session_id")[A]
    assert float(m["avg_asr_confidence"]) == pytest.approx((0.84 + 0.77) / 2)
    assert float(m["silence_rate"]) == pytest.approx(1 / 8) and m["recovery_success"] == "yes"


def test_bad_records(tmp_path):
    out = run(folder_of(tmp_path, LEX / "bad_records.jsonl"), tmp_path, "lex-v2")
    assert [(r["line"], r["field"]) for r in out.quarantine] == [
        ("1", "interpretations[0].nluConfidence"), ("2", "timestamp"), ("3", "sessionId"), ("4", "inputMode"),
        ("5", "sessionState.sessionAttributes.region")]
    reasons = [r["reason"] for r in out.quarantine]
    assert "got 'high'" in reasons[0] and "'not a time'" in reasons[1] and "Video" in reasons[3]
    assert "value not used" in reasons[4]
    assert len([t for t in out.rows("voice_turns.csv") if t["speaker"] == "user"]) == 2  # lines 5 and 6


def test_truncated(tmp_path):
    with pytest.raises(AdapterError) as info:
        run(folder_of(tmp_path, LEX / "truncated.jsonl"), tmp_path, "lex-v2")
    assert info.value.line == 2 and "truncated file?" in str(info.value)


def test_handoff_and_goal_intents_are_settings(tmp_path):
    out = run(LEX / "text-logs", tmp_path, "lex-v2", AdapterSettings(lex_handoff_intents=(), lex_goal_intents=("RenewId",)))
    s = out.table("voice_sessions", "session_id")
    assert s[C]["final_outcome"] == "abandoned" and s[D + "#2"]["final_outcome"] == "abandoned"
    assert s[A]["final_outcome"] == "completed"
