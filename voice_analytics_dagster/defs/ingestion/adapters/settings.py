"""Settings of the platform adapters: the names a bot uses for what the platforms do not define.

Every name is a setting with a default, read from ``VOICE_ANALYTICS_ADAPTER_<NAME>`` (lists are
comma separated). The platforms record no caller attributes, no goal and no handoff of their own:
a bot records them under names its builders chose, and these settings say which names to read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from voice_analytics_dagster.lib.settings import ENV_PREFIX, SettingsError

ADAPTER_PREFIX = ENV_PREFIX + "ADAPTER_"


@dataclass(frozen=True)
class AdapterSettings:
    # Session/request attributes (Lex), session parameters (Dialogflow CX) or slots (Rasa) that
    # carry the caller's attributes and identifier when the bot sets them.
    region_attribute: str = "region"
    disability_attribute: str = "disability_flag"
    first_time_attribute: str = "first_time_digital_user"
    user_id_attributes: tuple[str, ...] = ("user_id",)
    language_attribute: str = "language"  # Rasa only: the other platforms record the locale

    # Amazon Lex V2. FallbackIntent is the name Lex gives AMAZON.FallbackIntent in every bot;
    # Lex has no handoff of its own, so the handoff is the bot's intent(s) for it.
    lex_fallback_intents: tuple[str, ...] = ("FallbackIntent",)
    lex_handoff_intents: tuple[str, ...] = ("TransferToAgent",)
    lex_goal_intents: tuple[str, ...] = ()  # empty: any fulfilled intent but the handoff/fallback ones
    # Lex forgets a session after idleSessionTTLInSeconds (default 300 s): a later utterance with
    # the same session id starts a new conversation.
    lex_idle_session_seconds: float = 300.0

    # Dialogflow CX: pages whose reach completes the session (empty: an end of interaction
    # after a matched turn); a session lives 30 minutes after its last request by default.
    dialogflow_goal_pages: tuple[str, ...] = ()
    dialogflow_session_ttl_seconds: float = 1800.0

    # Rasa: handoff actions (an `action` event or the bot's `utter_action`), the intents by which
    # a caller asks for a human, fallback and no-input intents, goal forms/actions, voice channels.
    rasa_handoff_actions: tuple[str, ...] = ("action_handoff", "utter_handoff", "action_human_handoff")
    rasa_handoff_request_intents: tuple[str, ...] = ("human_handoff", "request_human")
    rasa_fallback_intents: tuple[str, ...] = ("nlu_fallback",)
    # Rasa's AudioCodes channel turns every VoiceAI Connect event into the intent vaig_event_<event>.
    rasa_no_input_intents: tuple[str, ...] = ("vaig_event_noUserInput",)
    rasa_goal_forms: tuple[str, ...] = ()  # empty: any form completed
    rasa_goal_actions: tuple[str, ...] = ()
    rasa_goal_flows: tuple[str, ...] = ()  # empty: any completed flow but Rasa's own pattern_* flows
    # Intents by which a voice channel signals the call, not the caller's words: the AudioCodes
    # channel's start and end events (vaig_event_start/end, or session_start/end from Rasa Pro 3.11).
    rasa_channel_event_intents: tuple[str, ...] = ("vaig_event_start", "vaig_event_end",
                                                   "session_start", "session_end")
    rasa_dtmf_intents: tuple[str, ...] = ("vaig_event_DTMF",)
    rasa_voice_channels: tuple[str, ...] = ("audiocodes", "twilio_voice", "jambonz", "genesys", "browser_audio")


def _env_name(field_name: str) -> str:
    return ADAPTER_PREFIX + field_name.upper()


def load_adapter_settings(environ: Mapping[str, str] | None = None) -> AdapterSettings:
    """The adapter settings from the environment (``VOICE_ANALYTICS_ADAPTER_*``), defaults else."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(AdapterSettings):
        raw = env.get(_env_name(f.name))
        if raw is None or raw.strip() == "":
            continue
        if f.type == "float":
            try:
                values[f.name] = float(raw)
            except ValueError as exc:
                raise SettingsError(f"{_env_name(f.name)} must be a number, got {raw!r}") from exc
        elif f.type == "str":
            values[f.name] = raw.strip()
        else:
            values[f.name] = tuple(v.strip() for v in raw.split(",") if v.strip())
    return AdapterSettings(**values)


def setting_names() -> dict[str, str]:
    """Environment variable of every adapter setting (for the docs and error messages)."""
    return {f.name: _env_name(f.name) for f in fields(AdapterSettings)}
