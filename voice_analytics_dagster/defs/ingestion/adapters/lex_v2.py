"""Amazon Lex V2 conversation text logs -> the export contract (docs/SOURCES.md, "Amazon Lex V2").

Accepted records, one per JSON lines line or one per file:
* a text log entry as Lex V2 writes it to CloudWatch Logs (or S3): ``sessionId``, ``timestamp``,
  ``bot``, ``inputMode``, ``inputTranscript``, ``interpretations``, ``transcriptions``,
  ``sessionState``, ``messages``, ``missedUtterance``, ``requestAttributes``...;
* a CloudWatch Logs event holding one in ``message`` (as ``aws logs filter-log-events`` and
  CloudWatch exports give them), or a page of them: ``{"events": [...]}``.
One entry is one exchange: the caller's input (a caller turn) and the bot's messages (a system
turn when there are any).
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

INPUT_MODES = {"speech": "speech", "dtmf": "dtmf", "text": "text"}
FULFILLED = ("Fulfilled", "ReadyForFulfillment")


def _confidence(value, path: str) -> float | None:
    """Lex writes a confidence as a number, a numeric string or {"score": number}."""
    if isinstance(value, dict):
        return number(value.get("score"), path + ".score")
    return number(value, path)


def _flag(value, path: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Rejected(path, f"expected true or false, got {str(value)[:40]!r}")


def _obj(doc: dict, key: str, path: str) -> dict:
    value = doc.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Rejected(path, f"expected an object, got {type(value).__name__}")
    return value


class LexV2Adapter(Adapter):
    format = "lex-v2"
    version = "1"
    not_recorded = {
        "voice_sessions": {"asr_model_version": "Lex does not name its speech recogniser's version"},
    }
    partly_recorded = {
        "voice_turns": {
            "asr_confidence": "spoken caller turns with transcriptions[].transcriptionConfidence (Lex gives it "
                              "for 8 kHz audio in en-US and en-GB only); never typed or bot turns",
            "intent_confidence": "caller turns whose intent has an interpretation with nluConfidence "
                                 "(FallbackIntent has none); never bot turns",
        },
        "voice_sessions": {"total_duration_sec": "sessions with entries at two different times"},
        "users": {"region": "only when the bot sets the attribute", "disability_flag": "ditto",
                  "first_time_digital_user": "ditto"},
        "voice_ai_metrics": {"avg_asr_confidence": "sessions with at least one turn with an ASR confidence",
                             "avg_intent_confidence": "sessions with at least one turn with an intent confidence"},
    }

    def map(self, record: Record, ctx: MapContext) -> None:
        doc = record.value
        if not isinstance(doc, dict):
            raise Rejected("", f"expected a Lex V2 log entry (a JSON object), got {type(doc).__name__}")
        if isinstance(doc.get("events"), list) and "sessionId" not in doc:
            for i, event in enumerate(doc["events"]):
                try:
                    self._entry(self._unwrap(event, f"events[{i}]"), ctx)
                except Rejected as exc:
                    ctx.reject_part(exc.field, exc.reason, event)
            return
        self._entry(self._unwrap(doc, ""), ctx)

    @staticmethod
    def _unwrap(doc, path: str) -> tuple[dict, object, str]:
        """(log entry, the CloudWatch event's timestamp if wrapped, path of the entry)."""
        if not isinstance(doc, dict):
            raise Rejected(path, f"expected a JSON object, got {type(doc).__name__}")
        if "sessionId" not in doc and isinstance(doc.get("message"), str):
            where = f"{path}.message" if path else "message"
            try:
                entry = json.loads(doc["message"])
            except json.JSONDecodeError as exc:
                raise Rejected(where, f"not JSON: {exc.msg} at character {exc.pos + 1}") from None
            if not isinstance(entry, dict):
                raise Rejected(where, "expected a Lex V2 log entry (a JSON object)")
            return entry, doc.get("timestamp"), where
        return doc, None, path

    def _entry(self, unwrapped: tuple[dict, object, str], ctx: MapContext) -> None:
        e, outer_ts, base = unwrapped

        def at(p: str) -> str:
            return f"{base}.{p}" if base else p

        s = self.settings
        session_id = text(e.get("sessionId"), at("sessionId"), required=True)
        ts = timestamp(e.get("timestamp", outer_ts), at("timestamp"))
        bot = _obj(e, "bot", at("bot"))
        raw_mode = text(e.get("inputMode"), at("inputMode"))
        if raw_mode is not None and raw_mode.lower() not in INPUT_MODES:
            raise Rejected(at("inputMode"), f"expected Speech, DTMF or Text, got {raw_mode[:40]!r}")
        mode = INPUT_MODES[raw_mode.lower()] if raw_mode else "text"
        state = _obj(e, "sessionState", at("sessionState"))
        intent = _obj(state, "intent", at("sessionState.intent"))
        interpretations = e.get("interpretations") or []
        if not isinstance(interpretations, list):
            raise Rejected(at("interpretations"), "expected a list")
        transcriptions = e.get("transcriptions") or []
        if not isinstance(transcriptions, list):
            raise Rejected(at("transcriptions"), "expected a list")
        missed = _flag(e.get("missedUtterance"), at("missedUtterance"))
        override = _flag(e.get("developerOverride"), at("developerOverride"))
        transcript = e.get("inputTranscript")
        name = text(intent.get("name"), at("sessionState.intent.name"))
        top = None
        scores: dict[str, float | None] = {}
        for i, interp in enumerate(interpretations):
            if not isinstance(interp, dict):
                raise Rejected(at(f"interpretations[{i}]"), "expected an object")
            iname = text(_obj(interp, "intent", at(f"interpretations[{i}].intent")).get("name"),
                         at(f"interpretations[{i}].intent.name"))
            score = _confidence(interp.get("nluConfidence"), at(f"interpretations[{i}].nluConfidence"))
            if iname is not None:
                scores.setdefault(iname, score)
                top = top or iname
        name = name or top
        asr = None
        if mode == "speech" and transcriptions:
            first = transcriptions[0]
            if not isinstance(first, dict):
                raise Rejected(at("transcriptions[0]"), "expected an object")
            asr = _confidence(first.get("transcriptionConfidence"), at("transcriptions[0].transcriptionConfidence"))
        error = None
        if mode in ("speech", "dtmf") and not (isinstance(transcript, str) and transcript.strip()):
            error = SILENCE  # an audio or keypad turn that brought no input
        elif missed or name in s.lex_fallback_intents or top in s.lex_fallback_intents:
            # the caller was not understood, even when the bot's code then chose another intent
            error = MISUNDERSTANDING
        handoff = name in s.lex_handoff_intents
        fulfilled = intent.get("state") in FULFILLED and not handoff and name not in s.lex_fallback_intents \
            and (not s.lex_goal_intents or name in s.lex_goal_intents)
        attributes, user_id = self._attributes(state, e, at, ts, ctx)
        ctx.emit(session_id, ts, "turn", {
            "i": None if error else name,
            "c": None if error else scores.get(name) if name else None,
            "a": asr, "e": error, "m": mode,
            "sys": bool(e.get("messages")), "si": name,
            "ho": handoff, "uo": handoff and top == name and not override and not missed,
            "ok": fulfilled, "lang": language(text(bot.get("localeId"), at("bot.localeId"))),
            "attr": attributes, "uid": user_id,
        })

    def _attributes(self, state: dict, e: dict, at, ts: float, ctx: MapContext):
        """Caller attributes and user id from the session attributes, then the request attributes."""
        s = self.settings
        sources = []
        for key, path in ((state.get("sessionAttributes"), "sessionState.sessionAttributes"),
                          (e.get("requestAttributes"), "requestAttributes")):
            if isinstance(key, dict):
                sources.append((key, path))
        found: dict[str, list] = {}
        user_id = None
        for attrs, path in sources:
            for name, column, normalise in ((s.region_attribute, "region", region),
                                            (s.disability_attribute, "disability_flag", yes_no),
                                            (s.first_time_attribute, "first_time_digital_user", yes_no)):
                if attrs.get(name) not in (None, ""):
                    try:
                        found[column] = [normalise(attrs[name], at(f"{path}.{name}")), ts]
                    except Rejected as exc:
                        ctx.drop_value(exc.field, exc.reason, attrs[name])
            for name in s.user_id_attributes:
                if isinstance(attrs.get(name), str) and attrs[name].strip():
                    user_id = attrs[name].strip()
        return found, user_id

    def build(self, conv: str, events: list[Event], ctx: BuildContext) -> list[Session]:
        starts = split_by_gap([e.ts for e in events], self.settings.lex_idle_session_seconds)
        sessions = []
        for k, (a, b) in enumerate(zip(starts, starts[1:] + [len(events)], strict=True), start=1):
            sessions.append(self._session(numbered(conv, k), conv, events[a:b]))
        return sessions

    def _session(self, session_id: str, conv: str, events: list[Event]) -> Session:
        turns: list[Turn] = []
        attributes: dict[str, tuple[str, float]] = {}
        handoff_ts = None
        user_requested = completed = False
        user_id = lang = None
        for e in events:
            d = e.data
            turns.append(Turn(e.ts, "user", intent_name(d["i"]), d["c"], d["a"], d["e"], d["m"]))
            if d["sys"]:
                turns.append(Turn(e.ts, "system", intent_name(d["si"])))
            if d["ho"] and handoff_ts is None:
                handoff_ts, user_requested = e.ts, d["uo"]
            completed = completed or d["ok"]
            for column, (value, ts) in d["attr"].items():
                attributes[column] = (value, ts)
            user_id = d["uid"] or user_id
            lang = lang or d["lang"]
        outcome = TRANSFERRED if handoff_ts is not None else COMPLETED if completed else ABANDONED
        return Session(
            session_id=session_id, user_id=user_id or conv, start_ts=events[0].ts, end_ts=events[-1].ts,
            turns=turns, outcome=outcome, language=lang,
            transfer_reason=transfer_reason(turns, handoff_ts, user_requested) if handoff_ts is not None else None,
            attributes=attributes, origin=(events[0].file, events[0].line))
