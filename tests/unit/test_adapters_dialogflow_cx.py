"""Dialogflow CX conversation history rows -> contract: match types to errors, end of interaction
and live-agent handoff to outcomes, speech confidence from the final recognition result."""

from __future__ import annotations

import pytest

from tests.unit.adapters_support import FIXTURES, folder_of, run
from voice_analytics_dagster.defs.ingestion.adapters import AdapterError, AdapterSettings

DF = FIXTURES / "dialogflow-cx"
AGENT = "5b1e2f3a-7c6d-4e8f-9a0b-1c2d3e4f5a6b"
A, B, C, D = (f"{AGENT}/sessions/df-000{i}" for i in range(1, 5))


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return run(DF / "history", tmp_path_factory.mktemp("df"))


def test_outcomes(out):
    got = {k: (v["final_outcome"], v["transfer_reason"]) for k, v in out.table("voice_sessions", "session_id").items()}
    assert got == {A: ("completed", ""),  # end of interaction on the END_SESSION page after a matched turn
                   B: ("transferred", "repeated_errors"),  # liveAgentHandoff after NO_MATCH x2
                   C: ("transferred", "user_request"),  # userEscalated
                   D: ("abandoned", "")}


def test_turns(out):
    turns = out.turns(A)
    assert [(t["speaker"], t["detected_intent"], t["error_type"], t["intent_confidence"], t["asr_confidence"])
            for t in turns] == [
        ("system", "unknown", "", "", ""),  # the WELCOME event: a bot turn, no caller turn
        ("user", "renew_id", "", "0.88", "0.9"), ("system", "renew_id", "", "", ""),
        ("user", "unknown", "silence", "", ""), ("system", "renew_id", "", "", ""),  # NO_INPUT
        ("user", "renew_id", "", "0.7", ""), ("system", "renew_id", "", "", ""),  # typed parameter answer
        ("user", "confirm", "", "0.95", "0.93"), ("system", "confirm", "", "", "")]
    b = [t for t in out.turns(B) if t["speaker"] == "user"]
    assert [t["error_type"] for t in b] == ["misunderstanding"] * 3


def test_session_attributes(out):
    s = out.table("voice_sessions", "session_id")
    assert (s[A]["channel"], s[A]["language"], s[A]["asr_model_version"]) == ("voice", "RW", "telephony")
    assert (s[D]["channel"], s[D]["language"], s[D]["asr_model_version"]) == ("text", "EN", "")
    assert s[A]["user_id"] == "+250788000222"  # telephony caller id
    assert s[C]["user_id"] == "U-77"  # a session parameter
    assert s[B]["user_id"] == B  # nothing recorded: one user per session


def test_users(out):
    users = out.table("users", "user_id")
    assert users["+250788000222"] == {"user_id": "+250788000222", "region": "rural", "disability_flag": "yes",
                                      "first_time_digital_user": "no"}


def test_json_columns_as_text_and_split_files(out):
    # B's first row carries its JSON columns as JSON text; A's rows are in both files, out of order
    assert len(out.turns(B)) == 6 and len(out.turns(A)) == 9
    assert out.manifest["records_quarantined"] == 0


def test_bad_records(tmp_path):
    out = run(folder_of(tmp_path, DF / "bad_records.jsonl"), tmp_path, "dialogflow-cx")
    assert [(r["line"], r["field"]) for r in out.quarantine] == [
        ("1", "request_time"), ("2", "response.queryResult.match.confidence"), ("3", "conversation_name"),
        ("4", "response"), ("5", "response.queryResult.match.matchType"), ("6", "parameters.region")]
    reasons = [r["reason"] for r in out.quarantine]
    assert "'yesterday'" in reasons[0] and "'high'" in reasons[1] and "not JSON" in reasons[3]
    assert reasons[4] == "unknown Dialogflow CX match type 'TELEPATHY'"


def test_truncated(tmp_path):
    with pytest.raises(AdapterError) as info:
        run(folder_of(tmp_path, DF / "truncated.jsonl"), tmp_path, "dialogflow-cx")
    assert (info.value.line, info.value.column) == (2, "105 (character)")  # where the cut string opens
    assert "Unterminated string" in str(info.value)


def test_goal_pages_setting(tmp_path):
    out = run(DF / "history", tmp_path, "dialogflow-cx", AdapterSettings(dialogflow_goal_pages=("Status",)))
    s = out.table("voice_sessions", "session_id")
    assert s[D]["final_outcome"] == "completed" and s[A]["final_outcome"] == "abandoned"
