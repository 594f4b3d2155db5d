"""Rasa trackers -> the export contract (mapping table: docs/SOURCES.md, "Rasa").

Accepted records, one per JSON lines line or one per file:
* a tracker as Rasa's HTTP API returns it (GET /conversations/<id>/tracker) or as a Mongo or
  Redis tracker store keeps it: ``{"sender_id": ..., "events": [...]}``;
* one event with its conversation, as Rasa's event brokers publish them:
  ``{"sender_id": ..., "event": "user", "timestamp": ..., ...}``;
* a row of the SQL tracker store's ``events`` table: ``{"sender_id", "type_name", "data"}``
  (``data`` the event as JSON text or an object).
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
    text,
    timestamp,
    transfer_reason,
    yes_no,
)

# Event types Rasa documents that say nothing about turns, outcome or caller: counted as ignored
# in the manifest, never quarantined. (slot events are read when they set a caller attribute.)
IGNORED_EVENTS = frozenset({
    "reset_slots", "reminder", "cancel_reminder", "pause", "resume", "followup", "rewind", "undo",
    "user_featurization", "entities", "export", "action_execution_rejected", "loop_interrupted",
    "form_validation", "agent", "stack", "flow_started", "flow_interrupted", "flow_resumed",
    "flow_cancelled", "routing_session_ended",
})
DEACTIVATE_LOOP = "action_deactivate_loop"


class RasaAdapter(Adapter):
    format = "rasa"
    version = "1"
    not_recorded = {
        "voice_turns": {"asr_confidence": "Rasa receives text: a voice channel's speech recogniser "
                                          "confidence does not reach the tracker"},
        "voice_sessions": {"asr_model_version": "not in the tracker"},
        "voice_ai_metrics": {"avg_asr_confidence": "no turn has an ASR confidence"},
    }
    partly_recorded = {
        "voice_turns": {"intent_confidence": "caller turns with an intent (parse_data.intent.confidence); "
                                             "not bot turns, not fallback or no-input turns"},
        "voice_sessions": {"language": "only when the bot sets the language slot (setting language_attribute)",
                           "total_duration_sec": "sessions with events at two different times"},
        "users": {"region": "only when the bot sets the slot", "disability_flag": "only when the bot sets the slot",
                  "first_time_digital_user": "only when the bot sets the slot"},
        "voice_ai_metrics": {"avg_intent_confidence": "sessions with at least one caller turn with an intent"},
    }

    def __init__(self, settings):
        super().__init__(settings)
        s = settings
        self.attribute_slots = {s.region_attribute: ("region", region),
                                s.disability_attribute: ("disability_flag", yes_no),
                                s.first_time_attribute: ("first_time_digital_user", yes_no)}
        self.relevant_actions = set(s.rasa_handoff_actions) | set(s.rasa_goal_actions) | {DEACTIVATE_LOOP}

    # -- records -> events ---------------------------------------------------------------------

    def map(self, record: Record, ctx: MapContext) -> None:
        doc = record.value
        if not isinstance(doc, dict):
            raise Rejected("", f"expected a Rasa tracker or event (a JSON object), got {type(doc).__name__}")
        sender = text(doc.get("sender_id"), "sender_id", required=True)
        if "events" in doc:
            events = doc["events"]
            if not isinstance(events, list):
                raise Rejected("events", f"expected a list of events, got {type(events).__name__}")
            for i, event in enumerate(events):
                self._map_event(sender, event, f"events[{i}]", ctx, part=True)
        elif "event" in doc:
            self._map_event(sender, doc, "", ctx, part=False)
        elif "type_name" in doc:
            data = doc.get("data")
            if isinstance(data, str):
                try:
                    data = json.loads(data)
                except json.JSONDecodeError as exc:
                    raise Rejected("data", f"not JSON: {exc.msg} at character {exc.pos + 1}") from None
            if not isinstance(data, dict):
                raise Rejected("data", "expected the event as a JSON object")
            self._map_event(sender, {"event": doc["type_name"], **data}, "data", ctx, part=False)
        else:
            raise Rejected("", "not a Rasa tracker or event: expected sender_id with events, event, "
                               "or type_name and data")

    def _map_event(self, sender: str, event, path: str, ctx: MapContext, part: bool) -> None:
        try:
            self._event(sender, event, path, ctx)
        except Rejected as exc:
            if not part:
                raise
            ctx.reject_part(exc.field, exc.reason, event)

    def _event(self, sender: str, ev, path: str, ctx: MapContext) -> None:
        if not isinstance(ev, dict):
            raise Rejected(path, f"expected an event object, got {type(ev).__name__}")
        kind = text(ev.get("event"), _join(path, "event"), required=True)
        if kind in IGNORED_EVENTS:
            ctx.ignore(kind)
            return
        known = ("user", "bot", "action", "session_started", "restart", "active_loop", "form", "slot",
                 "flow_completed")
        if kind not in known:
            raise Rejected(_join(path, "event"), f"unknown Rasa event type {kind!r}")
        ts = timestamp(ev.get("timestamp"), _join(path, "timestamp"))
        s = self.settings
        if kind == "user":
            self._user(sender, ev, path, ts, ctx)
        elif kind == "bot":
            utter = (ev.get("metadata") or {}).get("utter_action") if isinstance(ev.get("metadata"), dict) else None
            ctx.emit(sender, ts, "bot", {"u": utter if isinstance(utter, str) else None})
        elif kind == "action":
            name = text(ev.get("name"), _join(path, "name"), required=True)
            if name in self.relevant_actions:
                ctx.emit(sender, ts, "action", {"n": name})
            else:
                ctx.ignore("action")
        elif kind in ("session_started", "restart"):
            ctx.emit(sender, ts, kind, {})
        elif kind in ("active_loop", "form"):
            ctx.emit(sender, ts, "loop", {"n": text(ev.get("name"), _join(path, "name"))})
        elif kind == "flow_completed":
            flow = text(ev.get("flow_id"), _join(path, "flow_id"), required=True)
            if (flow in s.rasa_goal_flows) if s.rasa_goal_flows else not flow.startswith("pattern_"):
                ctx.emit(sender, ts, "goal", {"n": flow})
            else:
                ctx.ignore("flow_completed")
        else:  # slot
            name = ev.get("name")
            if name == s.language_attribute and isinstance(ev.get("value"), str):
                ctx.emit(sender, ts, "attr", {"a": "language", "v": ev["value"]})
            elif name in self.attribute_slots and ev.get("value") is not None:
                column, normalise = self.attribute_slots[name]
                try:
                    ctx.emit(sender, ts, "attr", {"a": column, "v": normalise(ev["value"], _join(path, "value"))})
                except Rejected as exc:
                    ctx.drop_value(exc.field, f"slot {name}: {exc.reason}", ev)
            else:
                ctx.ignore("slot")

    def _user(self, sender: str, ev: dict, path: str, ts: float, ctx: MapContext) -> None:
        s = self.settings
        parse = ev.get("parse_data") if isinstance(ev.get("parse_data"), dict) else {}
        intent = parse.get("intent") if isinstance(parse.get("intent"), dict) else {}
        name = text(intent.get("name"), _join(path, "parse_data.intent.name"))
        confidence = number(intent.get("confidence"), _join(path, "parse_data.intent.confidence"))
        if name in s.rasa_channel_event_intents:
            ctx.ignore("user (channel event)")
            return
        channel = text(ev.get("input_channel"), _join(path, "input_channel"))
        mode = "speech" if channel in s.rasa_voice_channels else "text"
        error = None
        if name in s.rasa_dtmf_intents:
            mode = "dtmf"
        elif name in s.rasa_no_input_intents:
            error, name, confidence = SILENCE, None, None
        elif name in s.rasa_fallback_intents or not name:
            # the fallback intent's confidence is its threshold, not the NLU's: not written
            error, name, confidence = MISUNDERSTANDING, None, None
        ctx.emit(sender, ts, "user", {"i": name, "c": confidence, "m": mode, "e": error})

    # -- a conversation's events -> sessions ------------------------------------------------------

    def build(self, conv: str, events: list[Event], ctx: BuildContext) -> list[Session]:
        segments: list[list[Event]] = [[]]
        for e in events:
            if e.kind in ("session_started", "restart") and segments[-1]:
                segments.append([])
            if e.kind not in ("session_started", "restart"):
                segments[-1].append(e)
        sessions = []
        for seg in segments:
            s = self._session(conv, seg)
            if s is None:
                continue
            if s.turns:
                s.session_id = numbered(conv, sum(1 for x in sessions if x.turns) + 1)
            sessions.append(s)
        return sessions

    def _session(self, conv: str, events: list[Event]) -> Session | None:
        if not events:
            return None
        s = self.settings
        turns: list[Turn] = []
        attributes: dict[str, tuple[str, float]] = {}
        handoff_ts = None
        user_requested = completed = False
        active_form = None
        last_action = None
        for e in events:
            d = e.data
            if e.kind == "user":
                turns.append(Turn(e.ts, "user", intent_name(d["i"]), d["c"], None, d["e"], d["m"]))
            elif e.kind == "bot":
                # a bot turn serves the intent the caller last expressed (a re-prompt included)
                intent = next((t.intent for t in reversed(turns) if t.speaker == "user" and t.intent), None)
                turns.append(Turn(e.ts, "system", intent))
                if d["u"] in s.rasa_handoff_actions and handoff_ts is None:
                    handoff_ts = e.ts
            elif e.kind == "action":
                if d["n"] in s.rasa_handoff_actions and handoff_ts is None:
                    handoff_ts = e.ts
                if d["n"] in s.rasa_goal_actions:
                    completed = True
            elif e.kind == "loop":
                if d["n"] is None and active_form and last_action != DEACTIVATE_LOOP:
                    completed = completed or not s.rasa_goal_forms or active_form in s.rasa_goal_forms
                active_form = d["n"]
            elif e.kind == "goal":
                completed = True
            elif e.kind == "attr":
                attributes[d["a"]] = (d["v"], e.ts)
            last_action = d.get("n") if e.kind == "action" else (last_action if e.kind == "attr" else None)
        if handoff_ts is not None:
            before = [t for t in turns if t.speaker == "user" and t.ts <= handoff_ts]
            user_requested = bool(before) and before[-1].intent in {i.lower() for i in s.rasa_handoff_request_intents}
            outcome = TRANSFERRED
        else:
            outcome = COMPLETED if completed else ABANDONED
        lang = attributes.pop("language", None)
        return Session(
            session_id=conv, user_id=conv, start_ts=events[0].ts, end_ts=events[-1].ts, turns=turns,
            outcome=outcome, language=language(lang[0]) if lang else None,
            transfer_reason=transfer_reason(turns, handoff_ts, user_requested) if handoff_ts is not None else None,
            attributes=attributes, origin=(events[0].file, events[0].line))


def _join(prefix: str, path: str) -> str:
    if not prefix:
        return path
    return prefix + ("" if not path or path.startswith("[") else ".") + path
