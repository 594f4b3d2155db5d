"""The rules every adapter shares (adapters/model.py): values, derived metrics, transfer reason,
channel, session splitting, and the contract rows (what is not recorded is empty, never 0)."""

from __future__ import annotations

import pytest

from voice_analytics_dagster.defs.ingestion.adapters.model import (
    Rejected,
    Session,
    Turn,
    channel_of,
    derive_metrics,
    fmt,
    language,
    number,
    recovered,
    session_rows,
    split_by_gap,
    timestamp,
    transfer_reason,
    yes_no,
)
from voice_analytics_dagster.lib import contract


def user(ts, intent="renew", error=None, conf=0.8, asr=None, mode="speech"):
    return Turn(ts, "user", None if error else intent, None if error else conf, asr, error, mode)


def system(ts, intent="renew"):
    return Turn(ts, "system", intent)


@pytest.mark.parametrize("value,expected", [(0.5, 0.5), ("0.77", 0.77), (1, 1.0), (None, None)])
def test_number_accepts_numbers_and_numeric_strings(value, expected):
    assert number(value, "c") == expected


@pytest.mark.parametrize("value,why", [("high", "expected a number, got 'high'"), (1.5, "between 0 and 1"),
                                       (True, "expected a number"), ([0.5], "got list")])
def test_number_rejects_with_the_field_and_value(value, why):
    with pytest.raises(Rejected) as info:
        number(value, "parse_data.intent.confidence")
    assert info.value.field == "parse_data.intent.confidence" and why in info.value.reason


@pytest.mark.parametrize("value,expected", [
    ("2025-03-04T08:00:00.000Z", 1741075200.0), ("2025-03-04T10:00:00+02:00", 1741075200.0),
    ("2025-03-04 08:00:00.000000 UTC", 1741075200.0), (1741075200, 1741075200.0),
    (1741075200000, 1741075200.0), ("1741075200.5", 1741075200.5), ("2025-03-04T08:00:00", 1741075200.0)])
def test_timestamp_forms(value, expected):
    assert timestamp(value, "t") == expected


@pytest.mark.parametrize("value", ["yesterday at noon", "", None, True, {"t": 1}])
def test_timestamp_rejects_what_is_not_one(value):
    with pytest.raises(Rejected) as info:
        timestamp(value, "timestamp")
    assert info.value.field == "timestamp"


def test_yes_no_and_language():
    assert [yes_no(v, "f") for v in (True, "false", "YES", "1", 0)] == ["yes", "no", "yes", "yes", "no"]
    with pytest.raises(Rejected):
        yes_no("maybe", "f")
    assert language("en_US") == "EN-US" and language("rw") == "RW" and language(None) is None


def test_metrics_derived_like_the_warehouse():
    turns = [user(1, asr=0.9, conf=0.8), system(2), user(3, error="misunderstanding"), system(4),
             user(5, error="silence"), user(6, asr=0.7, conf=0.6)]
    m = derive_metrics(turns, "completed")
    assert m.avg_asr_confidence == pytest.approx(0.8)  # over the turns that have one
    assert m.avg_intent_confidence == pytest.approx(0.7)
    assert m.misunderstanding_rate == pytest.approx(1 / 6) and m.silence_rate == pytest.approx(1 / 6)  # over all turns
    assert m.recovery_success is True and m.escalation_flag is False


def test_nothing_recorded_is_none_not_zero():
    m = derive_metrics([user(1, conf=None, mode="text"), system(2)], "abandoned")
    assert m.avg_asr_confidence is None and m.avg_intent_confidence is None
    assert fmt(m.avg_asr_confidence) == "" and fmt(0.0) == "0"


def test_recovery_needs_an_error_then_an_understood_caller_turn():
    assert not recovered([user(1), user(2)])  # no error: nothing to recover from
    assert not recovered([user(1), user(2, error="silence"), system(3)])
    assert not recovered([user(1, error="misunderstanding"), user(2, intent=None)])
    assert recovered([user(1, error="silence"), system(2), user(3)])


def test_escalation_flag_is_the_transfer():
    assert derive_metrics([user(1)], "transferred").escalation_flag is True


def test_transfer_reason():
    errors = [user(1, error="misunderstanding"), user(2, error="silence"), user(3)]
    assert transfer_reason(errors, 3, user_requested=False) == "repeated_errors"  # the handoff turn excluded
    assert transfer_reason(errors, 3, user_requested=True) == "user_request"
    assert transfer_reason([user(1, error="silence"), user(2)], 3, False) == "system"


def test_channel():
    assert channel_of([user(1, mode="text"), user(2, mode="dtmf")]) == "voice"
    assert channel_of([user(1, mode="text"), system(2)]) == "text"
    assert channel_of([system(1)]) == "unknown"


def test_split_by_gap():
    assert split_by_gap([0, 10, 400, 410, 2000], 300) == [0, 2, 4]
    assert split_by_gap([], 300) == []


def test_session_rows_follow_the_contract():
    s = Session("S1", "U1", 1741075200.0, 1741075260.4, [user(1741075200.0, asr=0.9), system(1741075201.0)],
                "transferred", language="EN-US", transfer_reason="user_request")
    session, turns, metrics = session_rows(s)
    assert list(session) == list(contract.VOICE_SESSIONS.column_names)
    assert list(turns[0]) == list(contract.VOICE_TURNS.column_names)
    assert list(metrics) == list(contract.VOICE_AI_METRICS.column_names)
    assert session["total_duration_sec"] == "60" and session["total_turns"] == "2"
    assert session["created_at"] == "2025-03-04" and session["channel"] == "voice"
    assert session["asr_model_version"] == "" and session["transfer_reason"] == "user_request"
    assert [t["turn_id"] for t in turns] == ["S1:1", "S1:2"]
    assert turns[1]["detected_intent"] == "renew" and turns[1]["intent_confidence"] == ""
    assert all(t["turn_duration_sec"] == "" for t in turns)
    assert metrics["escalation_flag"] == "yes" and metrics["avg_intent_confidence"] == "0.8"


def test_one_event_measures_no_duration_and_reason_only_when_transferred():
    s = Session("S2", "U1", 5.0, 5.0, [user(5.0)], "abandoned", transfer_reason="system")
    session, _, _ = session_rows(s)
    assert session["total_duration_sec"] == "" and session["transfer_reason"] == ""


def test_settings_from_the_environment():
    from voice_analytics_dagster.defs.ingestion.adapters.settings import (
        AdapterSettings,
        load_adapter_settings,
        setting_names,
    )
    from voice_analytics_dagster.lib.settings import SettingsError

    s = load_adapter_settings({"VOICE_ANALYTICS_ADAPTER_LEX_HANDOFF_INTENTS": "Agent, Human ,",
                               "VOICE_ANALYTICS_ADAPTER_LEX_IDLE_SESSION_SECONDS": "600",
                               "VOICE_ANALYTICS_ADAPTER_REGION_ATTRIBUTE": " province "})
    assert s.lex_handoff_intents == ("Agent", "Human") and s.lex_idle_session_seconds == 600.0
    assert s.region_attribute == "province" and s.rasa_fallback_intents == AdapterSettings().rasa_fallback_intents
    assert load_adapter_settings({}) == AdapterSettings()
    with pytest.raises(SettingsError, match="VOICE_ANALYTICS_ADAPTER_LEX_IDLE_SESSION_SECONDS"):
        load_adapter_settings({"VOICE_ANALYTICS_ADAPTER_LEX_IDLE_SESSION_SECONDS": "soon"})
    assert setting_names()["rasa_goal_forms"] == "VOICE_ANALYTICS_ADAPTER_RASA_GOAL_FORMS"
