"""Writing the export (the five files, flat or by day, with the synthetic marker) and the
model-facing features of the same sessions without files."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from voice_analytics_dagster.lib.contract import SYNTHETIC_MARKER
from voice_analytics_dagster.tools.generator.csvformat import _format_chunk, _format_users, _Rows
from voice_analytics_dagster.tools.generator.world import (
    _TABLES,
    CHUNK_SESSIONS,
    FILES,
    LANGUAGES,
    NO_EFFECT,
    OUTCOMES,
    PLANTED,
    REGIONS,
    VERSIONS,
    Effects,
    _Chunk,
    _chunks,
    _Plan,
    _plan,
    _simulate_chunk,
    header,
)

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
