"""Deterministic synthetic Voice AI export, in exactly the schema of the real sample.

Writes the five files of the export contract (``contract.py``): ``users.csv``,
``voice_sessions.csv``, ``voice_turns.csv``, ``voice_ai_metrics.csv`` and ``applications.csv``,
header row first, comma separated, UTF-8, ``\\n`` line ends, no quoting, numbers formatted like
the sample (two-decimal turn confidences such as ``0.6``; per-session metrics with full float
precision such as ``0.7116666666666666``). Same arguments and seed => byte-identical files.

Unlike the real sample, this export is *clean*: every derived column agrees with its source
(``total_turns`` = turns written, ``total_duration_sec`` = sum of the written turn durations,
metrics = aggregates of the written turn values, an application's user = its session's user,
``transfer_reason`` only on transferred sessions). Session ids are chronological.

How a session is made
---------------------
* Users ``U{1000+i}``, about ``round(0.42 x sessions)`` of them: rural 59 %, disability 8.6 %,
  first-time digital user 42 %. Each user has a Gamma(shape 6) propensity to call, so that the
  number of sessions per user is over-dispersed (some users return often; at 1,200 sessions 429
  of the 504 users appear, 85 %; the sample: 447 of 500).
* Sessions ``S{2000+i}`` over ``days`` days from ``start_date``, daily volume rising linearly by
  40 % over the period (adoption). Language KINYARWANDA 85 %, ENGLISH 10 %, FRENCH 5 %.
  ``asr_model_version`` is ``v1`` before ``switch_day`` (day index from 0) and ``v2`` from then on.
  The column can be left out of the file (``asr_model_version=False``); the data are the same.
* Turns ``T{3000+i}``: 1-13 per session from the sample's own distribution (mean 5.43); speaker
  alternates starting with the user; intents service_lookup 39 %, start_application 30 %,
  repeat 16 %, unknown 15 %; intent confidence N(0.71, 0.16); ASR confidence = session mean
  N(0.75, 0.08) (+ ``asr_v2_shift`` under v2) + turn noise N(0, 0.11); both clipped to
  [0.05, 1] and rounded to 2 decimals; duration 2-14 s.
* Errors per turn: silence 15 %, noise 5 %, otherwise misunderstanding with probability
  logistic(mis0 + mis_asr x (asr - 0.75) + mis_v2 x is_v2) (about 20 % of all turns).
* The outcome is drawn AFTER the turns, from the session's written (rounded) aggregates, i.e.
  from exactly the features a downstream model sees, so a logistic regression on them is
  correctly specified:

      P(abandoned) = logistic(b0 + b_asr (avg_asr_confidence - 0.75) + b_silence (silence_rate - 0.15)
                              + b_first_time is_first_time_digital_user + b_disability has_disability)
      P(transferred | not abandoned) = logistic(c0 + c_mis misunderstanding_rate), else completed.

  transfer_reason: repeated_errors when the session had >= 2 misunderstandings, else
  user_request (60 %) or system (40 %); empty unless transferred. recovery_success: yes when the
  session had an error turn and was not abandoned, else yes with probability 5 % (noise).
  escalation_flag: yes iff transferred.
* Applications ``A{4000+i}``: a completed session yields one (status completed) with p = 0.7, an
  abandoned one (status abandoned) with p = 0.3, a transferred one (status failed) with p = 0.2;
  same user and day as the session, channel voice, service uniform over ID_REPLACEMENT, LAND, DL,
  BIRTH_CERT, time_to_submit_sec = round(lognormal(median 480 s, sigma 0.64)) (mean ~588 s).

Planted effects (``PLANTED``), measured on 1,000,000 sessions, seed 0, default options
-------------------------------------------------------------------------------------
Abandonment (log-odds). Standardised = raw coefficient x SD of the feature in the generated
sessions; "refit" is a statsmodels Logit of is_abandoned on all standardised features
(also intent confidence, misunderstanding, noise, region, language, version), with its 95 % CI:

====================  ============================  ======  ============  =======================
feature               raw coefficient               SD      standardised  refit (95 % CI)
====================  ============================  ======  ============  =======================
avg_asr_confidence    b_asr = -8.0 per unit         0.0946  -0.757        -0.758 (-0.763, -0.753)
                      (-0.8 per 0.1)
silence_rate          b_silence = +1.5 per unit     0.1735  +0.260        +0.256 (+0.251, +0.260)
first_time_digital    b_first_time = +0.35          0.4935  +0.173        +0.175 (+0.170, +0.180)
has_disability        b_disability = +0.30          0.2803  +0.084        +0.085 (+0.080, +0.089)
====================  ============================  ======  ============  =======================

ASR confidence is by far the strongest driver (about 3x silence). b0 = -1.0525 gives 28.0 %
abandoned sessions (sample: 27.8 %). Intent confidence, misunderstanding rate, noise rate,
region, language and asr_model_version have NO direct effect on abandonment (all refit
|coefficients| < 0.006 per SD): v2 acts only through its better ASR confidence, and the
misunderstanding rate is correlated with ASR confidence but has no effect of its own.
The session ASR mean has SD 0.0946 (not 0.08: turn noise and the v2 shift add to the
session-level N(0.75, 0.08)); it averages 0.748 under v1 and 0.796 under v2.

Transfer: c_mis = +2.5 per unit of misunderstanding rate (SD 0.197 among sessions not abandoned:
+0.49 per SD), c0 = -1.7834: 16.0 % of all sessions transferred (sample: 15.8 %), 56.0 % completed.

ASR model version (the planted improvement of the error rate): v2 raises the session ASR mean by
``asr_v2_shift`` = +0.05 and lowers the log-odds of a misunderstanding by ``mis_v2`` = -0.30 on
top of what the better ASR gives (``mis_asr`` = -5.0 per unit of turn ASR confidence,
``mis0`` = -0.9303). Share of turns with a misunderstanding: 24.1 % under v1, 16.5 % under v2,
a drop of 7.6 points (3.6 through the ASR shift alone, which would give 20.5 %; 4.0 direct);
20.0 % overall with the default switch on day 60 of 120 (54 % of the sessions are v2 because
volume rises; the sample: 19.8 %).

``NO_EFFECT`` (for false-positive tests) keeps b0 and the recogniser's physics ``mis_asr`` (low
ASR confidence -> more misunderstandings: a correlation among features, not an effect on an
outcome or a version difference) and sets every other effect to 0: b_asr = b_silence =
b_first_time = b_disability = c_mis = asr_v2_shift = mis_v2 = 0, with the other intercepts
recalibrated to keep the marginal rates: c0 = -1.2890 (16.0 % transferred) and mis0 = -1.2103
(20.0 % misunderstandings under both versions). Abandoned: 25.8 % = logistic(b0): with the
same b0 but no spread of the linear predictor (SD ~0.8 log-odds under PLANTED, which pulls the
average probability towards 0.5), a little below PLANTED's 28.0 %.

Determinism and size
--------------------
Every random draw comes from ``numpy.random.default_rng(SeedSequence([seed, stream, chunk]))``
with fixed chunks of ``CHUNK_SESSIONS`` = 20,000 sessions, so the files depend only on the
arguments. Each chunk is generated with vectorised numpy and turned into CSV bytes by a
vectorised scatter of pre-formatted values (no Python loop per row); memory is one chunk plus
O(users + days) arrays. 1,000,000 sessions (420,000 users, 5.43 M turns, 508,000 applications,
522 MB of CSV): 8.6 s and 164 MB peak RSS (by_day: 8.8 s, 167 MB) on the development machine
(2 cores).
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from voice_analytics_dagster.lib.contract import (
    APPLICATIONS,
    SYNTHETIC_MARKER,
    USERS,
    VOICE_AI_METRICS,
    VOICE_SESSIONS,
    VOICE_TURNS,
    Table,
)

__all__ = [
    "CHUNK_SESSIONS",
    "Effects",
    "GenerationSummary",
    "NO_EFFECT",
    "PLANTED",
    "generate_export",
    "header",
    "simulate_sessions",
]


# -- planted effects -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Effects:
    """Coefficients (log-odds) of the outcome and error models. See the module docstring."""

    # P(abandoned) = logistic(b0 + b_asr (avg_asr - 0.75) + b_silence (silence_rate - 0.15)
    #                         + b_first_time first_time + b_disability disability)
    b0: float = -1.0525
    b_asr: float = -8.0  # per unit of avg_asr_confidence (-0.8 per 0.1)
    b_silence: float = 1.5  # per unit of silence_rate
    b_first_time: float = 0.35
    b_disability: float = 0.30
    # P(transferred | not abandoned) = logistic(c0 + c_mis misunderstanding_rate)
    c0: float = -1.7834
    c_mis: float = 2.5
    # ASR model version v2: shift of the session ASR mean, and of the misunderstanding log-odds
    asr_v2_shift: float = 0.05
    mis_v2: float = -0.30
    # P(misunderstanding | not silence/noise) = logistic(mis0 + mis_asr (asr - 0.75) + mis_v2 v2)
    mis0: float = -0.9303
    mis_asr: float = -5.0


PLANTED = Effects()
NO_EFFECT = replace(
    PLANTED,
    b_asr=0.0,
    b_silence=0.0,
    b_first_time=0.0,
    b_disability=0.0,
    c0=-1.2890,
    mis0=-1.2103,
    c_mis=0.0,
    asr_v2_shift=0.0,
    mis_v2=0.0,
)

# -- world parameters (not effects under test) ---------------------------------------------------

CHUNK_SESSIONS = 20_000
USERS_PER_SESSION = 0.42
USER_PROPENSITY_SHAPE = 6.0
P_RURAL = 0.59
P_DISABILITY = 0.086
P_FIRST_TIME = 0.42
DAILY_TREND = 0.40  # the last day has 40 % more sessions than the first
LANGUAGES = ("KINYARWANDA", "ENGLISH", "FRENCH")
P_LANGUAGE = (0.85, 0.10, 0.05)
# turns per session, 1..13: the sample's own distribution (voice_turns.csv, mean 5.43)
TURN_COUNT_WEIGHTS = (32, 72, 150, 206, 181, 179, 159, 97, 61, 32, 16, 6, 5)
INTENTS = ("service_lookup", "start_application", "repeat", "unknown")
P_INTENT = (0.39, 0.30, 0.16, 0.15)
INTENT_MEAN, INTENT_SD = 0.71, 0.16
ASR_MEAN, ASR_SESSION_SD, ASR_TURN_SD = 0.75, 0.08, 0.11
CONFIDENCE_MIN_HUNDREDTHS = 5  # confidences are clipped to [0.05, 1.0]
P_SILENCE, P_NOISE = 0.15, 0.05
TURN_SECONDS = (2, 14)
ABANDON_ASR_CENTRE, ABANDON_SILENCE_CENTRE = 0.75, 0.15
P_USER_REQUEST = 0.60  # among transfers without repeated errors; the rest: system
P_RECOVERY_NOISE = 0.05
P_APPLICATION = (0.7, 0.3, 0.2)  # by outcome: completed, abandoned, transferred
SERVICE_CODES = ("ID_REPLACEMENT", "LAND", "DL", "BIRTH_CERT")
SUBMIT_MEDIAN_SEC, SUBMIT_SIGMA = 480.0, 0.64

OUTCOMES = ("completed", "abandoned", "transferred")
APPLICATION_STATUS = ("completed", "abandoned", "failed")  # by outcome
TRANSFER_REASONS = ("", "repeated_errors", "user_request", "system")
ERROR_TYPES = ("", "misunderstanding", "silence", "noise")
SPEAKERS = ("user", "system")
REGIONS = ("rural", "urban")
VERSIONS = ("v1", "v2")
YES_NO = ("no", "yes")

FILES = {t.name: t.file for t in (USERS, VOICE_SESSIONS, VOICE_TURNS, VOICE_AI_METRICS, APPLICATIONS)}
_TABLES = (USERS, VOICE_SESSIONS, VOICE_TURNS, VOICE_AI_METRICS, APPLICATIONS)

# random streams: one per purpose, one generator per chunk
_STREAM_USERS, _STREAM_DAYS, _STREAM_CHUNK = 0, 1, 2
_MAX_TURNS = len(TURN_COUNT_WEIGHTS)


def header(table: Table, asr_model_version: bool = True) -> tuple[str, ...]:
    """The columns the generator writes for ``table``, in the contract's order."""
    return tuple(
        c.name for c in table.columns
        if not c.optional_in_file or (asr_model_version and c.name == "asr_model_version")
    )


def _logistic(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _categorical(rng: np.random.Generator, p: tuple[float, ...], size: int) -> np.ndarray:
    cum = np.cumsum(np.asarray(p, dtype=np.float64))
    cum /= cum[-1]
    return np.minimum(np.searchsorted(cum, rng.random(size), side="right"), len(p) - 1).astype(np.int8)


# -- the plan: everything fixed before the first chunk (O(days + users)) -------------------------

@dataclass(frozen=True)
class _Plan:
    sessions: int
    seed: int
    effects: Effects
    start_date: date
    days: int
    switch_day: int
    n_users: int
    user_rural: np.ndarray  # bool per user
    user_disability: np.ndarray
    user_first_time: np.ndarray
    user_cdf: np.ndarray  # cumulative propensity
    day_end: np.ndarray  # cumulative session count at the end of each day (ids are chronological)

    @property
    def chunks(self) -> int:
        return -(-self.sessions // CHUNK_SESSIONS)


def _plan(sessions: int, seed: int, effects: Effects, start_date: date, days: int, switch_day: int) -> _Plan:
    if isinstance(sessions, bool) or not isinstance(sessions, (int, np.integer)) or sessions < 0:
        raise ValueError(f"sessions must be a non-negative integer, got {sessions!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if isinstance(days, bool) or not isinstance(days, (int, np.integer)) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if not isinstance(effects, Effects):
        raise TypeError(f"effects must be an Effects, got {type(effects).__name__}")
    sessions, seed, days = int(sessions), int(seed), int(days)
    n_users = max(1, round(USERS_PER_SESSION * sessions))
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_USERS]))
    rural = rng.random(n_users) < P_RURAL
    disability = rng.random(n_users) < P_DISABILITY
    first_time = rng.random(n_users) < P_FIRST_TIME
    propensity = rng.gamma(USER_PROPENSITY_SHAPE, 1.0, n_users)
    user_cdf = np.cumsum(propensity)
    weights = 1.0 + DAILY_TREND * (np.arange(days) / max(days - 1, 1))
    rng_days = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_DAYS]))
    per_day = rng_days.multinomial(sessions, weights / weights.sum())
    return _Plan(
        sessions=sessions,
        seed=seed,
        effects=effects,
        start_date=start_date,
        days=days,
        switch_day=int(switch_day),
        n_users=n_users,
        user_rural=rural,
        user_disability=disability,
        user_first_time=first_time,
        user_cdf=user_cdf,
        day_end=np.cumsum(per_day),
    )


# -- one chunk of sessions: the single place where values are made ------------------------------

@dataclass
class _Chunk:
    first: int  # global index of the first session
    # per session
    day: np.ndarray
    user: np.ndarray
    language: np.ndarray
    v2: np.ndarray
    n_turns: np.ndarray
    duration: np.ndarray
    asr_sum: np.ndarray  # sum of the written ASR confidences, in hundredths (exact)
    intent_sum: np.ndarray
    n_mis: np.ndarray
    n_silence: np.ndarray
    n_noise: np.ndarray
    avg_asr: np.ndarray
    avg_intent: np.ndarray
    mis_rate: np.ndarray
    silence_rate: np.ndarray
    noise_rate: np.ndarray
    outcome: np.ndarray  # index into OUTCOMES
    reason: np.ndarray  # index into TRANSFER_REASONS
    recovery: np.ndarray
    escalation: np.ndarray
    has_app: np.ndarray
    service: np.ndarray
    submit_sec: np.ndarray
    # per turn
    turn_session: np.ndarray  # local session index
    turn_number: np.ndarray
    intent: np.ndarray
    intent_h: np.ndarray  # intent confidence in hundredths
    asr_h: np.ndarray
    error: np.ndarray  # index into ERROR_TYPES
    turn_sec: np.ndarray

    @property
    def size(self) -> int:
        return len(self.day)


def _simulate_chunk(plan: _Plan, k: int) -> _Chunk:
    e = plan.effects
    first = k * CHUNK_SESSIONS
    m = min(plan.sessions, first + CHUNK_SESSIONS) - first
    rng = np.random.default_rng(np.random.SeedSequence([plan.seed, _STREAM_CHUNK, k]))

    # sessions
    ids = np.arange(first, first + m)
    day = np.searchsorted(plan.day_end, ids, side="right").astype(np.int32)
    user = np.searchsorted(plan.user_cdf, rng.random(m) * plan.user_cdf[-1], side="right")
    user = np.minimum(user, plan.n_users - 1).astype(np.int64)
    language = _categorical(rng, P_LANGUAGE, m)
    v2 = day >= plan.switch_day
    n_turns = (_categorical(rng, TURN_COUNT_WEIGHTS, m) + 1).astype(np.int64)
    asr_mean = ASR_MEAN + e.asr_v2_shift * v2 + rng.normal(0.0, ASR_SESSION_SD, m)

    # turns
    total = int(n_turns.sum())
    starts = np.cumsum(n_turns) - n_turns
    turn_session = np.repeat(np.arange(m), n_turns)
    turn_number = np.arange(total) - np.repeat(starts, n_turns) + 1
    intent = _categorical(rng, P_INTENT, total)
    lo = CONFIDENCE_MIN_HUNDREDTHS
    intent_h = np.clip(np.rint(100 * (INTENT_MEAN + INTENT_SD * rng.standard_normal(total))), lo, 100)
    intent_h = intent_h.astype(np.int64)
    asr_h = np.clip(np.rint(100 * (asr_mean[turn_session] + ASR_TURN_SD * rng.standard_normal(total))), lo, 100)
    asr_h = asr_h.astype(np.int64)
    u = rng.random(total)
    p_mis = _logistic(e.mis0 + e.mis_asr * (asr_h / 100 - ASR_MEAN) + e.mis_v2 * v2[turn_session])
    mis = (u >= P_SILENCE + P_NOISE) & (rng.random(total) < p_mis)
    error = np.where(u < P_SILENCE, 2, np.where(u < P_SILENCE + P_NOISE, 3, np.where(mis, 1, 0))).astype(np.int8)
    turn_sec = rng.integers(TURN_SECONDS[0], TURN_SECONDS[1] + 1, total).astype(np.int64)

    # the written aggregates (exact: sums of integers, one correctly rounded division)
    if m:
        duration = np.add.reduceat(turn_sec, starts)
        asr_sum = np.add.reduceat(asr_h, starts)
        intent_sum = np.add.reduceat(intent_h, starts)
        n_mis = np.add.reduceat((error == 1).astype(np.int64), starts)
        n_silence = np.add.reduceat((error == 2).astype(np.int64), starts)
        n_noise = np.add.reduceat((error == 3).astype(np.int64), starts)
    else:
        duration = asr_sum = intent_sum = n_mis = n_silence = n_noise = np.zeros(0, np.int64)
    avg_asr = asr_sum / (100 * n_turns)
    avg_intent = intent_sum / (100 * n_turns)
    mis_rate = n_mis / n_turns
    silence_rate = n_silence / n_turns
    noise_rate = n_noise / n_turns

    # outcome, from the written features only
    x = (
        e.b0
        + e.b_asr * (avg_asr - ABANDON_ASR_CENTRE)
        + e.b_silence * (silence_rate - ABANDON_SILENCE_CENTRE)
        + e.b_first_time * plan.user_first_time[user]
        + e.b_disability * plan.user_disability[user]
    )
    abandoned = rng.random(m) < _logistic(x)
    transferred = ~abandoned & (rng.random(m) < _logistic(e.c0 + e.c_mis * mis_rate))
    outcome = np.where(abandoned, 1, np.where(transferred, 2, 0)).astype(np.int8)
    user_request = rng.random(m) < P_USER_REQUEST
    reason = np.where(
        transferred, np.where(n_mis >= 2, 1, np.where(user_request, 2, 3)), 0
    ).astype(np.int8)
    had_error = (n_mis + n_silence + n_noise) > 0
    recovery = (had_error & ~abandoned) | (rng.random(m) < P_RECOVERY_NOISE)

    # applications
    has_app = rng.random(m) < np.asarray(P_APPLICATION)[outcome]
    service = rng.integers(0, len(SERVICE_CODES), m).astype(np.int8)
    submit_sec = np.maximum(
        1, np.rint(np.exp(math.log(SUBMIT_MEDIAN_SEC) + SUBMIT_SIGMA * rng.standard_normal(m)))
    ).astype(np.int64)

    return _Chunk(
        first=first, day=day, user=user, language=language, v2=v2, n_turns=n_turns, duration=duration,
        asr_sum=asr_sum, intent_sum=intent_sum, n_mis=n_mis, n_silence=n_silence, n_noise=n_noise,
        avg_asr=avg_asr, avg_intent=avg_intent, mis_rate=mis_rate, silence_rate=silence_rate,
        noise_rate=noise_rate, outcome=outcome, reason=reason, recovery=recovery, escalation=transferred,
        has_app=has_app, service=service, submit_sec=submit_sec, turn_session=turn_session,
        turn_number=turn_number, intent=intent, intent_h=intent_h, asr_h=asr_h, error=error,
        turn_sec=turn_sec,
    )


def _chunks(plan: _Plan, progress: bool) -> Iterator[_Chunk]:
    with tqdm(total=plan.sessions, unit="session", file=sys.stderr, disable=not progress,
              desc="generating export") as bar:
        for k in range(plan.chunks):
            chunk = _simulate_chunk(plan, k)
            yield chunk
            bar.update(chunk.size)


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


# -- writing ---------------------------------------------------------------------------------------

@dataclass
class GenerationSummary:
    """What ``generate_export`` wrote. ``rows`` and ``bytes`` are per file name (summed over the
    dated folders when ``by_day``); ``paths`` lists every file written."""

    out_dir: Path
    sessions: int
    users: int
    seed: int
    effects: Effects
    by_day: bool
    asr_model_version: bool
    start_date: date
    days: int
    switch_day: int
    rows: dict[str, int] = field(default_factory=dict)
    bytes: dict[str, int] = field(default_factory=dict)
    paths: tuple[Path, ...] = ()
    turns: int = 0
    applications: int = 0


class _Sink:
    """Appends formatted rows to one file per table (flat) or per table and day (by_day)."""

    def __init__(self, out_dir: Path, by_day: bool, dates: list[str], headers: dict[str, bytes]):
        self.out_dir, self.by_day, self.dates, self.headers = out_dir, by_day, dates, headers
        self.rows = dict.fromkeys(FILES.values(), 0)
        self.bytes = dict.fromkeys(FILES.values(), 0)
        self.paths: list[Path] = []
        self.handles = {}
        folders = [out_dir / d for d in dates] if by_day else [out_dir]
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            for name, file in FILES.items():
                path = folder / file
                path.write_bytes(headers[name])
                self.paths.append(path)
                self.bytes[file] += len(headers[name])
        if not by_day:
            self.handles = {name: open(out_dir / file, "ab") for name, file in FILES.items()}  # noqa: SIM115

    def write(self, name: str, rows: _Rows) -> None:
        n = len(rows.day)
        if not n:
            return
        file = FILES[name]
        self.rows[file] += n
        self.bytes[file] += len(rows.data)
        if not self.by_day:
            self.handles[name].write(rows.data.data)
            return
        # rows are in day order: one contiguous run per day
        days, first = np.unique(rows.day, return_index=True)
        bounds = np.append(first, n)
        for d, i0, i1 in zip(days, bounds[:-1], bounds[1:], strict=True):
            with open(self.out_dir / self.dates[d] / file, "ab") as fh:
                fh.write(rows.data[rows.offsets[i0]:rows.offsets[i1]].data)

    def close(self) -> None:
        for fh in self.handles.values():
            fh.close()
        self.handles = {}


def generate_export(
    out_dir: Path | str,
    sessions: int,
    seed: int = 0,
    *,
    effects: Effects = PLANTED,
    asr_model_version: bool = True,
    start_date: date = date(2025, 1, 1),
    days: int = 120,
    switch_day: int = 60,
    by_day: bool = False,
    progress: bool = True,
) -> GenerationSummary:
    """Write a synthetic export of ``sessions`` sessions to ``out_dir`` (created if needed).

    ``by_day=False``: the five files directly in ``out_dir``. ``by_day=True``: one folder
    ``out_dir/YYYY-MM-DD/`` per day of the period, each with all five files (header always
    present) holding that day's rows; a user is delivered on the day of their first session
    (users without a session on the first day). Existing files of the same names are replaced.
    """
    plan = _plan(sessions, seed, effects, start_date, days, switch_day)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    day_names = [(start_date + timedelta(days=d)).isoformat() for d in range(plan.days)]
    dates = np.array([d.encode() for d in day_names], dtype="S10")
    headers = {
        t.name: (",".join(header(t, asr_model_version)) + "\n").encode() for t in _TABLES
    }
    sink = _Sink(out_dir, by_day, day_names, headers)
    turn_next = app_next = 0
    first_day = np.full(plan.n_users, plan.days, dtype=np.int32) if by_day else None
    try:
        for chunk in _chunks(plan, progress):
            rows = _format_chunk(plan, chunk, turn_next, app_next, asr_model_version, dates)
            for name, r in rows.items():
                sink.write(name, r)
            turn_next += len(chunk.turn_session)
            app_next += int(chunk.has_app.sum())
            if first_day is not None:
                np.minimum.at(first_day, chunk.user, chunk.day)
        # users last (in by_day mode their folder is the day of their first session)
        if first_day is not None:
            first_day[first_day == plan.days] = 0
            order = np.argsort(first_day, kind="stable")
        else:
            order = np.arange(plan.n_users)
        for i in range(0, plan.n_users, 4 * CHUNK_SESSIONS):
            users = order[i:i + 4 * CHUNK_SESSIONS]
            day = first_day[users] if first_day is not None else np.zeros(len(users), np.int32)
            sink.write("users", _format_users(plan, users, day))
    finally:
        sink.close()
    marker = json.dumps({"generator": "voice-analytics generate", "seed": plan.seed, "sessions": plan.sessions,
                         "effects": "none" if effects == NO_EFFECT else "planted",
                         "start_date": start_date.isoformat(), "days": plan.days}, indent=2) + "\n"
    for folder in ([out_dir / d for d in day_names if (out_dir / d).is_dir()] if by_day else [out_dir]):
        (folder / SYNTHETIC_MARKER).write_text(marker)
    return GenerationSummary(
        out_dir=out_dir, sessions=plan.sessions, users=plan.n_users, seed=plan.seed, effects=effects,
        by_day=by_day, asr_model_version=asr_model_version, start_date=start_date, days=plan.days,
        switch_day=plan.switch_day, rows=dict(sink.rows), bytes=dict(sink.bytes), paths=tuple(sink.paths),
        turns=turn_next, applications=app_next,
    )


# -- the model-facing features, without files ----------------------------------------------------

def simulate_sessions(
    sessions: int,
    seed: int = 0,
    effects: Effects = PLANTED,
    *,
    asr_model_version: bool = True,
    start_date: date = date(2025, 1, 1),
    days: int = 120,
    switch_day: int = 60,
    progress: bool = False,
) -> pd.DataFrame:
    """One row per session with the features a downstream model sees, made by the same code as
    ``generate_export`` with the same arguments (the values equal those recomputed from the
    written files). Writes nothing.

    Columns: session_id, user_id, created_at, total_turns, avg_asr_confidence,
    avg_intent_confidence, misunderstanding_rate, silence_rate, noise_rate,
    is_first_time_digital_user, has_disability, region, language, asr_model_version,
    final_outcome, is_abandoned. ``asr_model_version`` is the version that served the session,
    also when the file leaves the column out (``asr_model_version=False`` changes no value).
    """
    del asr_model_version  # the column's presence in the file changes no value
    plan = _plan(sessions, seed, effects, start_date, days, switch_day)
    parts = [_features(plan, c) for c in _chunks(plan, progress)]
    if not parts:  # no sessions: the empty chunk gives the columns and their types
        return _features(plan, _simulate_chunk(plan, 0))
    return pd.concat(parts, ignore_index=True)


def _features(plan: _Plan, c: _Chunk) -> pd.DataFrame:
    start = np.datetime64(plan.start_date.isoformat(), "D")
    return pd.DataFrame({
        "session_id": np.strings.add("S", (2000 + c.first + np.arange(c.size)).astype(str)),
        "user_id": np.strings.add("U", (1000 + c.user).astype(str)),
        "created_at": (start + c.day.astype("timedelta64[D]")).astype("datetime64[s]"),
        "total_turns": c.n_turns,
        "avg_asr_confidence": c.avg_asr,
        "avg_intent_confidence": c.avg_intent,
        "misunderstanding_rate": c.mis_rate,
        "silence_rate": c.silence_rate,
        "noise_rate": c.noise_rate,
        "is_first_time_digital_user": plan.user_first_time[c.user],
        "has_disability": plan.user_disability[c.user],
        "region": np.asarray(REGIONS)[(~plan.user_rural[c.user]).astype(np.int8)],
        "language": np.asarray(LANGUAGES)[c.language],
        "asr_model_version": np.asarray(VERSIONS)[c.v2.astype(np.int8)],
        "final_outcome": np.asarray(OUTCOMES)[c.outcome],
        "is_abandoned": c.outcome == 1,
    })
