"""Formatting: columns of values to CSV bytes, vectorised, numbers spelled like the sample's."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from voice_analytics_dagster.tools.generator.world import (
    _MAX_TURNS,
    APPLICATION_STATUS,
    ERROR_TYPES,
    INTENTS,
    LANGUAGES,
    OUTCOMES,
    REGIONS,
    SERVICE_CODES,
    SPEAKERS,
    TRANSFER_REASONS,
    TURN_SECONDS,
    VERSIONS,
    YES_NO,
    _Chunk,
    _Plan,
)

# -- formatting: columns of bytes -> CSV bytes, vectorised --------------------------------------

def _table(values) -> np.ndarray:
    return np.array([str(v).encode() for v in values], dtype="S")


def _digits(a: np.ndarray) -> np.ndarray:
    """Non-negative integers as ASCII digits (an 'S' array), vectorised."""
    a = np.asarray(a, dtype=np.int64)
    if a.size == 0:
        return np.zeros(0, dtype="S1")
    nd = len(str(int(a.max())))
    length = np.ones(a.shape, np.int64)
    for p in range(1, nd):
        length += a >= 10**p
    exponent = length[:, None] - 1 - np.arange(nd)
    powers = 10 ** np.arange(nd, dtype=np.int64)
    out = (a[:, None] // powers[np.maximum(exponent, 0)]) % 10 + 48
    out[exponent < 0] = 0
    return np.ascontiguousarray(out.astype(np.uint8)).view(f"S{nd}").ravel()


# lookup tables for every value the files can hold
_HUNDREDTHS = _table(repr(k / 100) for k in range(101))  # 0.6, 0.75, 1.0 (as the sample)
_SMALL_INT = _table(range(_MAX_TURNS * TURN_SECONDS[1] + 1))
# avg_* = sum of hundredths / (100 n): every (sum, n) pair; rates = count / n
_MEAN_KEY = _MAX_TURNS + 1
_MEANS = _table(
    repr(s / (100 * n)) if n else "" for s in range(100 * _MAX_TURNS + 1) for n in range(_MEAN_KEY)
)
_RATES = _table(repr(c / n) if n else "" for c in range(_MAX_TURNS + 1) for n in range(_MEAN_KEY))
_S = {name: _table(values) for name, values in {
    "language": LANGUAGES, "outcome": OUTCOMES, "reason": TRANSFER_REASONS, "error": ERROR_TYPES,
    "speaker": SPEAKERS, "intent": INTENTS, "region": REGIONS, "version": VERSIONS, "yesno": YES_NO,
    "service": SERVICE_CODES, "status": APPLICATION_STATUS,
}.items()}

Col = tuple[bytes, "np.ndarray | None"]  # (constant prefix, values)


def _csv(cols: list[Col]) -> tuple[np.ndarray, np.ndarray]:
    """CSV bytes of rows made of the given columns, and the byte offset of every row (n + 1)."""
    n = next(len(v) for _, v in cols if v is not None)
    lengths = []
    row = np.full(n, len(cols), dtype=np.int64)  # separators and line end
    for prefix, values in cols:
        length = np.strings.str_len(values).astype(np.int64) if values is not None else None
        lengths.append(length)
        row += len(prefix)
        if length is not None:
            row += length
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row, out=offsets[1:])
    buf = np.empty(int(offsets[-1]), dtype=np.uint8)
    pos = offsets[:-1].copy()
    for i, ((prefix, values), length) in enumerate(zip(cols, lengths, strict=True)):
        if prefix:
            buf[pos[:, None] + np.arange(len(prefix))] = np.frombuffer(prefix, dtype=np.uint8)
            pos += len(prefix)
        if values is not None and values.dtype.itemsize:
            width = values.dtype.itemsize
            raw = np.ascontiguousarray(values).view(np.uint8).reshape(n, width)
            mask = np.arange(width) < length[:, None]
            buf[(pos[:, None] + np.arange(width))[mask]] = raw[mask]
            pos += length
        buf[pos] = ord(",") if i < len(cols) - 1 else ord("\n")
        pos += 1
    return buf, offsets


@dataclass
class _Rows:
    """One file's rows of a chunk: CSV bytes, row offsets, and the day index of every row."""

    data: np.ndarray
    offsets: np.ndarray
    day: np.ndarray


def _format_chunk(plan: _Plan, c: _Chunk, turn_first: int, app_first: int,
                  asr_model_version: bool, dates: np.ndarray) -> dict[str, _Rows]:
    sid = _digits(2000 + c.first + np.arange(c.size))
    uid = _digits(1000 + c.user)
    sessions: list[Col] = [
        (b"S", sid), (b"U", uid), (b"voice", None), (b"", _S["language"][c.language]),
        (b"", _digits(c.duration)), (b"", _SMALL_INT[c.n_turns]), (b"", _S["outcome"][c.outcome]),
        (b"", _S["reason"][c.reason]), (b"", dates[c.day]),
    ]
    if asr_model_version:
        sessions.append((b"", _S["version"][c.v2.astype(np.int8)]))
    ts = c.turn_session
    turns: list[Col] = [
        (b"T", _digits(3000 + turn_first + np.arange(len(ts)))), (b"S", sid[ts]),
        (b"", _SMALL_INT[c.turn_number]), (b"", _S["speaker"][(c.turn_number - 1) % 2]),
        (b"", _S["intent"][c.intent]), (b"", _HUNDREDTHS[c.intent_h]), (b"", _HUNDREDTHS[c.asr_h]),
        (b"", _S["error"][c.error]), (b"", _SMALL_INT[c.turn_sec]), (b"", dates[c.day[ts]]),
    ]
    yn = _S["yesno"]
    metrics: list[Col] = [
        (b"S", sid), (b"", _MEANS[c.asr_sum * _MEAN_KEY + c.n_turns]),
        (b"", _MEANS[c.intent_sum * _MEAN_KEY + c.n_turns]), (b"", _RATES[c.n_mis * _MEAN_KEY + c.n_turns]),
        (b"", _RATES[c.n_silence * _MEAN_KEY + c.n_turns]), (b"", yn[c.recovery.astype(np.int8)]),
        (b"", yn[c.escalation.astype(np.int8)]),
    ]
    a = np.flatnonzero(c.has_app)
    apps: list[Col] = [
        (b"A", _digits(4000 + app_first + np.arange(len(a)))), (b"S", sid[a]), (b"U", uid[a]),
        (b"", _S["service"][c.service[a]]), (b"voice", None), (b"", _S["status"][c.outcome[a]]),
        (b"", _digits(c.submit_sec[a])), (b"", dates[c.day[a]]),
    ]
    out = {}
    for name, cols, day in (
        ("voice_sessions", sessions, c.day),
        ("voice_turns", turns, c.day[ts]),
        ("voice_ai_metrics", metrics, c.day),
        ("applications", apps, c.day[a]),
    ):
        if len(day):
            data, offsets = _csv(cols)
        else:
            data, offsets = np.zeros(0, np.uint8), np.zeros(1, np.int64)
        out[name] = _Rows(data, offsets, day)
    return out


def _format_users(plan: _Plan, users: np.ndarray, day: np.ndarray) -> _Rows:
    yn = _S["yesno"]
    if not len(users):
        return _Rows(np.zeros(0, np.uint8), np.zeros(1, np.int64), day)
    data, offsets = _csv([
        (b"U", _digits(1000 + users)), (b"", _S["region"][(~plan.user_rural[users]).astype(np.int8)]),
        (b"", yn[plan.user_disability[users].astype(np.int8)]),
        (b"", yn[plan.user_first_time[users].astype(np.int8)]),
    ])
    return _Rows(data, offsets, day)


