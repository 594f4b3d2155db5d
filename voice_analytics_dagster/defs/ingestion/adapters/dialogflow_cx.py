"""Dialogflow CX conversation history (interaction logging) -> the export contract
(docs/SOURCES.md, "Dialogflow CX").

Accepted records: rows of the BigQuery export table of conversation history, exported as JSON
lines (``bq extract --destination_format NEWLINE_DELIMITED_JSON``) or as a JSON array. A row is
one turn: ``conversation_name``, ``turn_position``, ``request_time``, ``language_code``,
``request`` (the detect intent request), ``response`` (the detect intent response, with its
``queryResult``), ``partial_responses``, ``derived_data``, ``conversation_signals``. The JSON
columns may come as objects or as JSON text.
"""

from __future__ import annotations

import json

from voice_analytics_dagster.defs.ingestion.adapters.base import BuildContext, Event, MapContext, Record
from voice_analytics_dagster.defs.ingestion.adapters.convert import Adapter
from voice_analytics_dagster.defs.ingestion.adapters.model import (
    ABANDONED,
    COMPLETED,
    MISUNDERSTANDING,
    SILENCE,
    TRANSFERRED,
    Rejected,
    Session,
    Turn,
    intent_name,
    language,
    number,
    numbered,
    region,
    split_by_gap,
    text,
    timestamp,
    transfer_reason,
    yes_no,
)

CALLER_MATCHES = ("INTENT", "DIRECT_INTENT", "PARAMETER_FILLING", "NO_MATCH", "NO_INPUT")
# Match types the API documents besides the caller's: an event, or an answer without an intent.
OTHER_MATCHES = ("EVENT", "KNOWLEDGE_CONNECTOR", "PLAYBOOK", "LLM", "MATCH_TYPE_UNSPECIFIED")
END_PAGES = ("END_SESSION",)


def _json_column(row: dict, key: str):
    value = row.get(key)
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise Rejected(key, f"not JSON: {exc.msg} at character {exc.pos + 1}") from None
    return value


def _obj(value, path: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected(path, f"expected an object, got {type(value).__name__}")
    return value


def _session_key(conversation_name: str) -> str:
    """The session's id as the contract keeps it: the resource name from the agent on
    (<agent>/sessions/<id>, or <agent>/environments/<env>/sessions/<id>), unique across agents
    and short enough for the contract."""
    return conversation_name.split("/agents/", 1)[1] if "/agents/" in conversation_name else conversation_name


class DialogflowCxAdapter(Adapter):
    format = "dialogflow-cx"
    version = "1"
    not_recorded = {}
    partly_recorded = {
        "voice_turns": {
            "asr_confidence": "spoken caller turns whose final streaming recognition result has a confidence "
                              "(response.recognitionResult or partial_responses); never typed or bot turns",
            "intent_confidence": "caller turns matched to an intent or a parameter (match.confidence)",
        },
        "voice_sessions": {"asr_model_version": "turns with audio input naming its speech model",
                           "total_duration_sec": "sessions with turns at two different times"},
        "users": {"region": "only when the bot sets the session parameter", "disability_flag": "ditto",
                  "first_time_digital_user": "ditto"},
        "voice_ai_metrics": {"avg_asr_confidence": "sessions with at least one turn with an ASR confidence",
                             "avg_intent_confidence": "sessions with at least one turn with an intent confidence"},
    }

    def map(self, record: Record, ctx: MapContext) -> None:
        row = record.value
        if not isinstance(row, dict):
            raise Rejected("", f"expected a conversation history row (a JSON object), got {type(row).__name__}")
        conv = text(row.get("conversation_name"), "conversation_name", required=True)
        ts = timestamp(row.get("request_time"), "request_time")
        request = _obj(_json_column(row, "request"), "request")
        response = _obj(_json_column(row, "response"), "response")
        signals = _obj(_obj(_json_column(row, "conversation_signals"), "conversation_signals").get("turnSignals"),
                       "conversation_signals.turnSignals")
        partials = _json_column(row, "partial_responses")
        qr = _obj(response.get("queryResult"), "response.queryResult")
        query_input = _obj(request.get("queryInput"), "request.queryInput")
        audio = _obj(query_input.get("audio"), "request.queryInput.audio")
        match = _obj(qr.get("match"), "response.queryResult.match")
        match_type = text(match.get("matchType"), "response.queryResult.match.matchType")
        if match_type is not None and match_type not in CALLER_MATCHES + OTHER_MATCHES:
            raise Rejected("response.queryResult.match.matchType", f"unknown Dialogflow CX match type {match_type!r}")

        if "transcript" in qr or audio:
            mode = "speech"
        elif "dtmf" in qr or "dtmf" in query_input:
            mode = "dtmf"
        elif "text" in qr or "text" in query_input:
            mode = "text"
        else:
            mode = None  # an event or an intent triggered by the client: no caller turn
        s = self.settings
        error = None
        caller = mode is not None or match_type == "NO_INPUT"
        if match_type == "NO_INPUT":
            error, mode = SILENCE, mode or "speech"
        elif match_type == "NO_MATCH":
            error = MISUNDERSTANDING
        intent_obj = _obj(match.get("intent") or qr.get("intent"), "response.queryResult.match.intent")
        name = text(intent_obj.get("displayName"), "response.queryResult.match.intent.displayName")
        if error:
            name = None
        elif name is None and match_type and match_type not in CALLER_MATCHES + ("EVENT", "MATCH_TYPE_UNSPECIFIED"):
            name = match_type.lower()  # e.g. knowledge_connector, playbook: understood, without an intent
        confidence = None
        if caller and not error:
            confidence = number(match.get("confidence", qr.get("intentDetectionConfidence")),
                                "response.queryResult.match.confidence")
        asr = self._asr(response, partials) if mode == "speech" and not error else None
        messages = qr.get("responseMessages") or []
        if not isinstance(messages, list):
            raise Rejected("response.queryResult.responseMessages", "expected a list")
        kinds = {k for m in messages if isinstance(m, dict) for k in m}
        page = _obj(qr.get("currentPage"), "response.queryResult.currentPage")
        page_name = text(page.get("displayName"), "response.queryResult.currentPage.displayName")
        ended = "endInteraction" in kinds or bool(signals.get("reachedEndPage")) \
            or any(str(page.get("name", "")).endswith("/pages/" + p) for p in END_PAGES)
        goal = (page_name in s.dialogflow_goal_pages) if s.dialogflow_goal_pages else (ended and error is None)
        handoff = "liveAgentHandoff" in kinds or bool(signals.get("agentEscalated") or signals.get("userEscalated"))
        params = dict(_obj(_obj(request.get("queryParams"), "request.queryParams").get("parameters"),
                           "request.queryParams.parameters"))
        params.update(_obj(qr.get("parameters"), "response.queryResult.parameters"))
        attributes, user_id = self._attributes(params, request, ts, ctx)
        config = _obj(audio.get("config"), "request.queryInput.audio.config")
        ctx.emit(conv, ts, "turn", {
            "u": caller, "i": name, "pf": match_type == "PARAMETER_FILLING", "c": confidence, "a": asr,
            "e": error, "m": mode, "sys": bool(kinds & {"text", "outputAudioText"}),
            "ho": handoff, "uo": bool(signals.get("userEscalated")), "ok": goal,
            "lang": language(text(row.get("language_code") or qr.get("languageCode"), "language_code")),
            "model": text(config.get("model"), "request.queryInput.audio.config.model"),
            "attr": attributes, "uid": user_id,
        })

    @staticmethod
    def _asr(response: dict, partials) -> float | None:
        """The speech recogniser's confidence in the final transcript (streaming audio only)."""
        results = [response.get("recognitionResult")]
        if isinstance(partials, list):
            results += [p.get("recognitionResult") for p in partials if isinstance(p, dict)]
        final = [r for r in results if isinstance(r, dict) and r.get("isFinal") and "confidence" in r]
        if not final:
            return None
        return number(final[-1]["confidence"], "partial_responses[].recognitionResult.confidence")

    def _attributes(self, params: dict, request: dict, ts: float, ctx: MapContext):
        s = self.settings
        found: dict[str, list] = {}
        for name, column, normalise in ((s.region_attribute, "region", region),
                                        (s.disability_attribute, "disability_flag", yes_no),
                                        (s.first_time_attribute, "first_time_digital_user", yes_no)):
            if params.get(name) not in (None, ""):
                try:
                    found[column] = [normalise(params[name], f"parameters.{name}"), ts]
                except Rejected as exc:
                    ctx.drop_value(exc.field, exc.reason, params[name])
        user_id = next((str(params[n]).strip() for n in s.user_id_attributes
                        if params.get(n) not in (None, "")), None)
        if user_id is None:
            payload = _obj(_obj(request.get("queryParams"), "request.queryParams").get("payload"),
                           "request.queryParams.payload")
            caller_id = _obj(payload.get("telephony"), "request.queryParams.payload.telephony").get("caller_id")
            user_id = caller_id.strip() if isinstance(caller_id, str) and caller_id.strip() else None
        return found, user_id

    def build(self, conv: str, events: list[Event], ctx: BuildContext) -> list[Session]:
        starts = split_by_gap([e.ts for e in events], self.settings.dialogflow_session_ttl_seconds)
        key = _session_key(conv)
        return [self._session(numbered(key, k), key, events[a:b])
                for k, (a, b) in enumerate(zip(starts, starts[1:] + [len(events)], strict=True), start=1)]

    def _session(self, session_id: str, key: str, events: list[Event]) -> Session:
        turns: list[Turn] = []
        attributes: dict[str, tuple[str, float]] = {}
        handoff_ts = None
        user_requested = completed = False
        user_id = lang = model = None
        last_intent = None
        for e in events:
            d = e.data
            intent = intent_name(d["i"])
            if d["pf"] and intent is None:
                intent = last_intent  # a parameter answers the intent being filled
            if d["u"]:
                turns.append(Turn(e.ts, "user", intent, d["c"], d["a"], d["e"], d["m"]))
            if intent and not d["pf"]:
                last_intent = intent
            if d["sys"]:
                turns.append(Turn(e.ts, "system", intent or last_intent))
            if d["ho"] and handoff_ts is None:
                handoff_ts, user_requested = e.ts, d["uo"]
            completed = completed or d["ok"]
            for column, (value, ts) in d["attr"].items():
                attributes[column] = (value, ts)
            user_id = d["uid"] or user_id
            lang, model = lang or d["lang"], model or d["model"]
        outcome = TRANSFERRED if handoff_ts is not None else COMPLETED if completed else ABANDONED
        return Session(
            session_id=session_id, user_id=user_id or key, start_ts=events[0].ts, end_ts=events[-1].ts,
            turns=turns, outcome=outcome, language=lang, asr_model_version=model,
            transfer_reason=transfer_reason(turns, handoff_ts, user_requested) if handoff_ts is not None else None,
            attributes=attributes, origin=(events[0].file, events[0].line))
