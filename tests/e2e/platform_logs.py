"""Synthetic conversations in each platform's own log format, varied enough for the whole pipeline
(its checks, the marts and the model): several days, completed, abandoned and transferred calls
(on request and after repeated errors), no-match and no-input turns, spoken, keyed and typed
input, repeat callers, and caller attributes that the bot records for some callers only (the rest
are "not recorded"). Each conversation's records are split over two files, as the adapters'
bench does, so that the grouping has work to do.

The record shapes are those the adapters read (docs/SOURCES.md, with the platforms' pages it cites);
tests/fixtures/sources holds hand-written examples of each.
"""

from __future__ import annotations

import datetime as dt
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

FIRST_DAY = dt.date(2025, 3, 3)
INTENTS = ("renew_id", "check_status", "birth_certificate", "land_transfer")


@dataclass
class Call:
    """One planned conversation: who, when, how it goes (independent of the platform)."""

    i: int
    user: str
    start: float  # epoch seconds
    mode: str  # speech, dtmf or text
    steps: list[str]  # per caller turn: ok, nomatch, noinput, handoff_request
    outcome: str  # completed, abandoned, transferred
    attributes: dict = field(default_factory=dict)  # only what the bot records for this caller
    language: str | None = None
    confidences: list[float] = field(default_factory=list)


def plan(n: int, days: int = 20, seed: int = 0) -> list[Call]:
    rng = random.Random(seed)
    users = max(3, n * 2 // 3)  # about a third of the calls are repeat callers
    profile = {}
    for u in range(users):
        attrs = {}
        if rng.random() < 0.7:
            attrs["region"] = rng.choice(("rural", "urban"))
        if rng.random() < 0.6:
            attrs["disability_flag"] = rng.choice(("yes", "no", "no", "no"))
        if rng.random() < 0.6:
            attrs["first_time_digital_user"] = rng.choice(("yes", "no"))
        profile[u] = attrs
    calls = []
    for i in range(n):
        u = rng.randrange(users)
        day = FIRST_DAY + dt.timedelta(days=i % days)
        start = dt.datetime.combine(day, dt.time(7), tzinfo=dt.UTC).timestamp() + rng.randrange(0, 11 * 3600)
        r = rng.random()
        turns = rng.randint(2, 5)
        steps = ["nomatch" if (x := rng.random()) < 0.12 else "noinput" if x < 0.2 else "ok" for _ in range(turns)]
        steps[0] = "ok"
        if r < 0.58:
            outcome = "completed"
            steps[-1] = "ok"
        elif r < 0.82:
            outcome = "abandoned"
        elif r < 0.91:
            outcome = "transferred"
            steps.append("handoff_request")
        else:
            outcome = "transferred"  # after repeated errors, the bot hands over
            steps += ["nomatch", "noinput", "handoff"]
        mode = "speech" if (m := rng.random()) < 0.65 else "dtmf" if m < 0.72 else "text"
        attrs = dict(profile[u])
        language = rng.choice(("en-US", "en-US", "fr-FR")) if rng.random() < 0.8 else None
        calls.append(Call(i, f"caller-{u:05d}", start, mode, steps, outcome, attrs, language,
                          [round(rng.uniform(0.35, 0.99), 3) for _ in steps]))
    return calls


# -- Amazon Lex V2 text logs -------------------------------------------------------------------------

def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def lex(call: Call) -> list[dict]:
    intent = INTENTS[call.i % len(INTENTS)]
    locale = (call.language or "en-US").replace("-", "_")
    out = []
    attrs = {"user_id": call.user, **call.attributes}
    for k, step in enumerate(call.steps):
        last = k == len(call.steps) - 1
        mode = {"speech": "Speech", "dtmf": "DTMF", "text": "Text"}[call.mode]
        e = {"sessionId": f"lex-{call.i:06d}", "timestamp": _iso(call.start + 12 * k), "inputMode": mode,
             "inputTranscript": "yes please", "bot": {"name": "Services", "localeId": locale, "version": "3"},
             "messages": [{"contentType": "PlainText", "content": "..."}], "missedUtterance": False,
             "requestAttributes": None, "sessionState": {"sessionAttributes": attrs}}
        name, state = intent, "InProgress"
        if step == "nomatch":
            name, e["missedUtterance"] = "FallbackIntent", True
        elif step == "noinput" and call.mode != "text":
            e["inputTranscript"] = ""
        elif step in ("handoff_request", "handoff"):
            name = "TransferToAgent"
            if step == "handoff":
                e["developerOverride"] = True  # the bot's code chose the handoff, not the caller
        elif last and call.outcome == "completed":
            state = "Fulfilled"
        e["interpretations"] = [{"intent": {"name": name}, **({} if name == "FallbackIntent" else
                                                            {"nluConfidence": call.confidences[k]})}]
        if step == "handoff":
            e["interpretations"] = [{"intent": {"name": "FallbackIntent"}}, {"intent": {"name": name},
                                                                           "nluConfidence": 0.2}]
        e["sessionState"]["intent"] = {"name": name, "state": state}
        if call.mode == "speech" and e["inputTranscript"]:
            e["transcriptions"] = [{"transcription": "yes please", "transcriptionConfidence": call.confidences[k]}]
        out.append(e)
    return out


# -- Dialogflow CX conversation history ----------------------------------------------------------------

def dialogflow(call: Call) -> list[dict]:
    intent = INTENTS[call.i % len(INTENTS)]
    rows = []
    params = {"user_id": call.user, **call.attributes}
    for k, step in enumerate(call.steps):
        last = k == len(call.steps) - 1
        qr: dict = {"currentPage": {"name": "projects/p/locations/global/agents/a/flows/f/pages/main",
                                    "displayName": "main"},
                    "responseMessages": [{"text": {"text": ["..."]}}], "parameters": params}
        request: dict = {"queryParams": {"parameters": params}}
        if call.mode == "speech":
            qr["transcript"] = "yes please"
            request["queryInput"] = {"audio": {"config": {"model": "telephony", "audioEncoding": "AUDIO_ENCODING_MULAW"}}}
        elif call.mode == "dtmf":
            qr["dtmf"] = {"digits": "1"}
            request["queryInput"] = {"dtmf": {"digits": "1"}}
        else:
            qr["text"] = "yes please"
            request["queryInput"] = {"text": {"text": "yes please"}}
        signals = {}
        if step == "nomatch":
            qr["match"] = {"matchType": "NO_MATCH"}
        elif step == "noinput":
            qr["match"] = {"matchType": "NO_INPUT"}
        else:
            qr["match"] = {"matchType": "INTENT", "intent": {"displayName": "agent" if "handoff" in step else intent},
                           "confidence": call.confidences[k]}
        if step in ("handoff_request", "handoff"):
            qr["responseMessages"].append({"liveAgentHandoff": {}})
            signals = {"turnSignals": {"userEscalated": step == "handoff_request",
                                       "agentEscalated": step == "handoff"}}
        elif last and call.outcome == "completed":
            qr["responseMessages"].append({"endInteraction": {}})
            qr["currentPage"] = {"name": "projects/p/locations/global/agents/a/flows/f/pages/END_SESSION",
                                 "displayName": "End Session"}
        row = {"conversation_name": f"projects/p/locations/global/agents/a/sessions/df-{call.i:06d}",
               "turn_position": k + 1, "request_time": _iso(call.start + 15 * k),
               "language_code": (call.language or "en-US").lower(), "request": request,
               "response": {"queryResult": qr}, "conversation_signals": signals}
        if call.mode == "speech" and step != "noinput":
            row["partial_responses"] = [{"recognitionResult": {"isFinal": True, "confidence": call.confidences[k]}}]
        rows.append(row)
    return rows


# -- Rasa tracker events ----------------------------------------------------------------------------

def rasa(call: Call) -> list[dict]:
    sid = f"rasa-{call.i:06d}"
    channel = "audiocodes" if call.mode != "text" else "rest"
    intent = INTENTS[call.i % len(INTENTS)]
    t = call.start
    events = [{"sender_id": sid, "event": "session_started", "timestamp": t}]
    for name, value in call.attributes.items():
        events.append({"sender_id": sid, "event": "slot", "timestamp": t + 0.5, "name": name, "value": value})
    if call.language:
        events.append({"sender_id": sid, "event": "slot", "timestamp": t + 0.5, "name": "language",
                       "value": call.language})
    events.append({"sender_id": sid, "event": "active_loop", "timestamp": t + 0.6, "name": f"{intent}_form"})
    for k, step in enumerate(call.steps):
        ts = t + 1 + 10 * k
        name = {"nomatch": "nlu_fallback", "noinput": "vaig_event_noUserInput",
                "handoff_request": "human_handoff"}.get(step, "vaig_event_DTMF" if call.mode == "dtmf" else intent)
        if step == "handoff":
            events.append({"sender_id": sid, "event": "action", "timestamp": ts, "name": "action_handoff"})
            continue
        events.append({"sender_id": sid, "event": "user", "timestamp": ts, "text": "yes please",
                       "input_channel": channel,
                       "parse_data": {"intent": {"name": name, "confidence": call.confidences[k]}}})
        events.append({"sender_id": sid, "event": "bot", "timestamp": ts + 1, "text": "...",
                       "metadata": {"utter_action": "utter_handoff" if step == "handoff_request" else "utter_ask"}})
    if call.outcome == "completed":
        events.append({"sender_id": sid, "event": "active_loop", "timestamp": t + 2 + 10 * len(call.steps),
                       "name": None})
    return events


GENERATORS = {"lex-v2": lex, "dialogflow-cx": dialogflow, "rasa": rasa}


def write_logs(fmt: str, folder: Path, conversations: int, days: int = 20, seed: int = 0,
               by_day: bool = False, files: int = 3) -> list[Call]:
    """Write ``conversations`` planned calls in ``fmt`` under ``folder`` as JSON lines (each call
    split over two files); ``by_day``: a landing folder of dated delivery folders."""
    calls = plan(conversations, days, seed)
    handles: dict[Path, object] = {}
    try:
        for call in calls:
            base = folder / dt.datetime.fromtimestamp(call.start, dt.UTC).date().isoformat() if by_day else folder
            records = GENERATORS[fmt](call)
            half = len(records) // 2
            for j, record in enumerate(records):
                path = base / f"part-{(call.i if j < half else call.i + 1) % files}.jsonl"
                if path not in handles:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    handles[path] = open(path, "w", encoding="utf-8")
                handles[path].write(json.dumps(record, separators=(",", ":")) + "\n")
    finally:
        for fh in handles.values():
            fh.close()
    return calls
