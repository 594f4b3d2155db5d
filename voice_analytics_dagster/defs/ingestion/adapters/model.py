"""A platform conversation as the export contract sees it, and the contract rows made from it.

The adapters build :class:`Session` objects (turns, outcome, caller attributes); everything that
is the same for every platform is here, in pure functions: the per-session AI metrics derived
from the turns, the transfer reason, the channel, and the contract's rows and spellings. A value
the platform did not record is ``None`` and is written as an empty field (NULL once loaded),
never as 0.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from voice_analytics_dagster.lib.contract import MAX_TEXT_LENGTH, NO_VALUES, YES_VALUES

UNKNOWN_INTENT = "unknown"
MISUNDERSTANDING, SILENCE, NOISE = "misunderstanding", "silence", "noise"
COMPLETED, ABANDONED, TRANSFERRED = "completed", "abandoned", "transferred"
SPOKEN_MODES = ("speech", "dtmf")
# Consecutive misunderstood or silent caller turns just before a handoff that make its reason
# "repeated_errors" (two: the usual re-prompt limit before a bot gives up).
REPEATED_ERRORS = 2
# The turn ids append ":<turn number>" to the session id; the contract caps text at this length.
MAX_SESSION_ID_LENGTH = MAX_TEXT_LENGTH - 6


class Rejected(Exception):
    """A record, or a value in it, cannot be mapped: ``field`` (a JSON path) and why."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass
class Turn:
    ts: float  # seconds since the epoch, UTC
    speaker: str  # "user" or "system"
    intent: str | None = None  # None: no intent detected ('unknown')
    intent_confidence: float | None = None
    asr_confidence: float | None = None
    error_type: str | None = None
    mode: str | None = None  # caller turns: "speech", "dtmf" or "text"

    @property
    def matched(self) -> bool:
        """A caller turn the assistant understood: no error and an intent."""
        return self.speaker == "user" and self.error_type is None and self.intent is not None


@dataclass
class Session:
    session_id: str
    user_id: str
    start_ts: float
    end_ts: float
    turns: list[Turn]
    outcome: str
    language: str | None = None
    channel: str | None = None
    transfer_reason: str | None = None
    asr_model_version: str | None = None
    # contract column of users -> (normalised value, time it was set)
    attributes: dict[str, tuple[str, float]] = field(default_factory=dict)
    # (input file index, line) of the session's first record, to name it in quarantine
    origin: tuple[int, int] | None = None


# -- values -----------------------------------------------------------------------------------

def number(value, path: str, lo: float | None = 0.0, hi: float | None = 1.0) -> float | None:
    """A JSON number (or a numeric string, as some logs write them) within [lo, hi]; None when
    absent. Anything else is rejected with the value shown."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise Rejected(path, f"expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            x = float(value.strip())
        except ValueError:
            raise Rejected(path, f"expected a number, got {value[:40]!r}") from None
    elif isinstance(value, (int, float)):
        x = float(value)
    else:
        raise Rejected(path, f"expected a number, got {type(value).__name__}")
    if not math.isfinite(x) or (lo is not None and x < lo) or (hi is not None and x > hi):
        raise Rejected(path, f"expected a number between {lo:g} and {hi:g}, got {value!r}")
    return x


def text(value, path: str, required: bool = False) -> str | None:
    """A non-empty JSON string (None when absent or empty, unless required)."""
    if value is None or value == "":
        if required:
            raise Rejected(path, "missing: the record cannot be placed without it")
        return None
    if not isinstance(value, str):
        raise Rejected(path, f"expected a string, got {type(value).__name__} {str(value)[:40]!r}")
    return value


def timestamp(value, path: str) -> float:
    """Seconds since the epoch from an ISO 8601 time (a trailing Z, an offset, or BigQuery's
    'YYYY-MM-DD HH:MM:SS[.ffffff] UTC'), or from epoch seconds or milliseconds as a number.
    A time without a zone is read as UTC."""
    if value is None or value == "":
        raise Rejected(path, "missing: expected a timestamp")
    if isinstance(value, bool):
        raise Rejected(path, f"expected a timestamp, got {value!r}")
    if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip().replace(".", "", 1).isdigit()):
        x = float(value)
        # epoch milliseconds (CloudWatch) are beyond any plausible epoch seconds
        return x / 1000.0 if x > 1e11 else x
    if not isinstance(value, str):
        raise Rejected(path, f"expected a timestamp, got {type(value).__name__}")
    s = value.strip()
    if s.endswith(" UTC"):
        s = s[:-4] + "+00:00"
    try:
        t = dt.datetime.fromisoformat(s.replace("Z", "+00:00") if s.endswith("Z") else s)
    except ValueError:
        raise Rejected(path, f"expected an ISO 8601 timestamp or epoch seconds, got {value[:40]!r}") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.timestamp()


def yes_no(value, path: str) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    v = str(value).strip().lower()
    if v in YES_VALUES:
        return "yes"
    if v in NO_VALUES:
        return "no"
    raise Rejected(path, f"expected yes or no (or true/false), got {str(value)[:40]!r}")


def region(value, path: str) -> str:
    v = str(value).strip().lower()
    if v in ("rural", "urban"):
        return v
    raise Rejected(path, f"expected rural or urban, got {str(value)[:40]!r}")


def intent_name(name: str | None) -> str | None:
    """The contract's spelling of an intent (lower case), None for no intent."""
    if not name:
        return None
    return name.strip().lower()[:MAX_TEXT_LENGTH] or None


def language(code: str | None) -> str | None:
    """A locale (en_US, en-us, rw) as the contract stores languages: upper case, BCP 47 hyphen."""
    if not code:
        return None
    return code.strip().replace("_", "-").upper() or None


# -- what is derived from the turns ---------------------------------------------------------------

def mean(values) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def recovered(turns: list[Turn]) -> bool:
    """An error turn followed, later in the session, by a caller turn the assistant understood."""
    seen_error = False
    for t in turns:
        if t.error_type is not None:
            seen_error = True
        elif seen_error and t.matched:
            return True
    return False


@dataclass(frozen=True)
class Metrics:
    avg_asr_confidence: float | None
    avg_intent_confidence: float | None
    misunderstanding_rate: float | None
    silence_rate: float | None
    recovery_success: bool
    escalation_flag: bool


def derive_metrics(turns: list[Turn], outcome: str) -> Metrics:
    """The voice_ai_metrics row of a session, derived from its turns exactly as the warehouse
    aggregates turns (int_turns_aggregated_to_sessions): means over the turns that have a value,
    shares over all turns. The platforms report no such metrics themselves."""
    n = len(turns)
    return Metrics(
        avg_asr_confidence=mean(t.asr_confidence for t in turns),
        avg_intent_confidence=mean(t.intent_confidence for t in turns),
        misunderstanding_rate=sum(t.error_type == MISUNDERSTANDING for t in turns) / n if n else None,
        silence_rate=sum(t.error_type == SILENCE for t in turns) / n if n else None,
        recovery_success=recovered(turns),
        escalation_flag=outcome == TRANSFERRED,
    )


def transfer_reason(turns: list[Turn], handoff_ts: float, user_requested: bool) -> str:
    """Why a session was handed to a human: the caller asked; or the caller turns before the
    handoff (the turn that led to it excluded) were errors, REPEATED_ERRORS in a row; or the
    system decided."""
    if user_requested:
        return "user_request"
    caller = [t for t in turns if t.speaker == "user" and t.ts < handoff_ts]
    last = caller[-REPEATED_ERRORS:]
    if len(last) == REPEATED_ERRORS and all(t.error_type is not None for t in last):
        return "repeated_errors"
    return "system"


def channel_of(turns: list[Turn]) -> str:
    """voice when a caller turn was spoken or keyed (DTMF), text when every caller turn was
    typed, unknown when the caller never took a turn."""
    modes = {t.mode for t in turns if t.speaker == "user" and t.mode}
    if modes & set(SPOKEN_MODES):
        return "voice"
    return "text" if modes else "unknown"


# -- contract rows ----------------------------------------------------------------------------------

def fmt(value) -> str:
    """A value as the contract files spell it; None is the empty field (NULL once loaded)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return format(value, ".10g")
    return str(value)


def day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


def session_rows(s: Session) -> tuple[dict, list[dict], dict]:
    """(voice_sessions row, voice_turns rows, voice_ai_metrics row) of a session, as strings."""
    m = derive_metrics(s.turns, s.outcome)
    span = s.end_ts - s.start_ts
    session = {
        "session_id": s.session_id,
        "user_id": s.user_id,
        "channel": s.channel or channel_of(s.turns),
        "language": fmt(s.language),
        # derived: the time between the session's first and last recorded events; one event
        # measures nothing, so a single-event session has no duration rather than 0
        "total_duration_sec": fmt(round(span) if s.end_ts > s.start_ts else None),
        "total_turns": fmt(len(s.turns)),
        "final_outcome": s.outcome,
        "transfer_reason": fmt(s.transfer_reason if s.outcome == TRANSFERRED else None),
        "created_at": day(s.start_ts),
        "asr_model_version": fmt(s.asr_model_version),
    }
    turns = [{
        "turn_id": f"{s.session_id}:{i}",
        "session_id": s.session_id,
        "turn_number": str(i),
        "speaker": t.speaker,
        "detected_intent": t.intent or UNKNOWN_INTENT,
        "intent_confidence": fmt(t.intent_confidence),
        "asr_confidence": fmt(t.asr_confidence),
        "error_type": fmt(t.error_type),
        "turn_duration_sec": "",  # no platform records how long a turn lasted
        "created_at": day(t.ts),
    } for i, t in enumerate(s.turns, start=1)]
    metrics = {
        "session_id": s.session_id,
        "avg_asr_confidence": fmt(m.avg_asr_confidence),
        "avg_intent_confidence": fmt(m.avg_intent_confidence),
        "misunderstanding_rate": fmt(m.misunderstanding_rate),
        "silence_rate": fmt(m.silence_rate),
        "recovery_success": fmt(m.recovery_success),
        "escalation_flag": fmt(m.escalation_flag),
    }
    return session, turns, metrics


def split_by_gap(times: list[float], gap: float) -> list[int]:
    """Indexes where a new session starts because the previous event is more than ``gap``
    seconds older (the platform forgot the session in between); always starts with 0."""
    starts = [0] if times else []
    for i in range(1, len(times)):
        if times[i] - times[i - 1] > gap:
            starts.append(i)
    return starts


def numbered(base: str, k: int) -> str:
    """The id of the k-th session (from 1) of a conversation: the platform's id, then id#2..."""
    return base if k == 1 else f"{base}#{k}"
