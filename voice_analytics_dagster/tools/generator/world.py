"""The synthetic world: planted effects, world parameters, the plan fixed before the first
chunk, and the simulation of one chunk of sessions (the single place where values are made)."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date

import numpy as np
from tqdm import tqdm

from voice_analytics_dagster.lib.contract import (
    APPLICATIONS,
    USERS,
    VOICE_AI_METRICS,
    VOICE_SESSIONS,
    VOICE_TURNS,
    Table,
)

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


