"""Between trainings, the last model scores the sessions delivered or changed since it was trained.

A training reads every session and cross-validates, so its cost grows with the history while a
daily run adds a day. The model is therefore trained on its own cadence (``refit_reason``,
``change_reason``): when the fact holds VOICE_ANALYTICS_MODEL_REFIT_DAYS days of sessions past the
last training's last day, when the sessions new, changed or gone since it exceed
VOICE_ANALYTICS_MODEL_REFIT_GROWTH of those it read (a new export in place of the last one), when
the model's code revision changed, when the last training fitted no model, or when a run asks.
Otherwise a run reads only the sessions without a score or whose model columns changed since
they were scored (a hash of those columns is kept with each score) and scores them with the last
model's coefficients (``ScoringState``, kept as JSON with the model's metrics). Every score is a
risk from a model that never saw the session as it is now: out-of-fold (``cv_fold`` set) for the
sessions of the training, the last model for those outside its sample (above
VOICE_ANALYTICS_MODEL_MAX_TRAINING_SESSIONS) and those delivered or changed since (``cv_fold`` NULL).
A level of a categorical column that the model has not seen (a new ASR model version) has no
coefficient: the model is trained again.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from voice_analytics_dagster.defs.model.features import FEATURES, KEY, Design, complete_rows

HASH_COLUMN = "features_hash"
_BOOLEAN = {f.column for f in FEATURES if f.kind == "boolean"}


@dataclass(frozen=True)
class ScoredFeature:
    name: str  # a column, or column=level for a level of a categorical column
    column: str
    level: str | None
    mean: float
    sd: float
    coefficient: float  # log-odds per standard deviation


@dataclass(frozen=True)
class ScoringState:
    """What scoring a session with a fitted model needs."""

    model_version: str
    intercept: float
    features: list[ScoredFeature]
    used_columns: list[str]  # a NULL in any of them leaves the session unscored, as in training
    levels: dict[str, list[str]]  # every level the training saw, per categorical column

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, value: str | dict) -> ScoringState:
        data = json.loads(value) if isinstance(value, str) else dict(value)
        data["features"] = [ScoredFeature(**f) for f in data["features"]]
        return cls(**data)


def state_of(design: Design, model_version: str, status: str, intercept: float | None,
             coefficients: dict[str, float]) -> ScoringState | None:
    """The state of a fitted model (None when no model was fitted: nothing to score with)."""
    if status != "fitted" or intercept is None:
        return None
    features = []
    for name in design.feature_names:
        column, _, level = name.partition("=")
        features.append(ScoredFeature(name=name, column=column, level=level or None,
                                      mean=float(design.mean[name]), sd=float(design.sd[name]),
                                      coefficient=float(coefficients[name])))
    return ScoringState(model_version=model_version, intercept=float(intercept), features=features,
                        used_columns=list(design.used_columns), levels={k: list(v) for k, v in design.levels.items()})


@dataclass
class Scored:
    session_ids: np.ndarray
    risk: np.ndarray
    hashes: np.ndarray
    dropped: int  # sessions with a NULL in a used column: not scored
    unseen: dict[str, list[str]]  # levels the model has not seen, per column (then nothing is scored)


def score(frame: pd.DataFrame, state: ScoringState) -> Scored:
    """The last model's risk for every session of ``frame`` (the model columns and the hash) that
    has no NULL in a used column; unscored if a categorical column has a level the model did not
    see. Pure."""
    from scipy.special import expit

    keep = complete_rows(frame, state.used_columns)
    data = frame.loc[keep]
    unseen = {}
    for column, levels in state.levels.items():
        new = sorted(set(data[column].astype(str).unique()) - set(levels))
        if new:
            unseen[column] = new
    if unseen:
        return Scored(np.array([], dtype=object), np.array([]), np.array([], dtype=np.int64), 0, unseen)
    eta = np.full(len(data), state.intercept)
    for f in state.features:
        values = data[f.column]
        if f.level is not None:
            x = (values.astype(str) == f.level).to_numpy(dtype=np.float64)
        elif f.column in _BOOLEAN:
            x = values.astype(bool).to_numpy(dtype=np.float64)
        else:
            x = values.to_numpy(dtype=np.float64)
        eta += f.coefficient * ((x - f.mean) / f.sd)
    return Scored(session_ids=data[KEY].astype(str).to_numpy(), risk=expit(eta),
                  hashes=data[HASH_COLUMN].to_numpy(dtype=np.int64), dropped=int((~keep).sum()), unseen={})


@dataclass(frozen=True)
class LastTraining:
    model_version: str
    status: str
    n_sessions_read: int
    last_session_date: dt.date | None
    state: ScoringState | None
    n_fact_sessions: int | None = None  # None: a training older than the column

    @property
    def fact_sessions(self) -> int:
        """The sessions the fact held at the training (it read all of them, or a sample)."""
        return self.n_fact_sessions if self.n_fact_sessions is not None else self.n_sessions_read


def refit_reason(last: LastTraining | None, last_day: dt.date | None, *, refit_days: int, requested: bool,
                 version_prefix: str) -> str | None:
    """Why this run trains the model again, from what is known before reading any session; None:
    see change_reason once the new and changed sessions are read. Pure."""
    if requested:
        return "requested by the run (--refit-model or --full-refresh)"
    if last is None:
        return "no model trained yet"
    if last.state is None:
        return (f"the last training fitted no model ({last.status})" if last.status != "fitted"
                else "the last training's scoring state or scores are missing")
    if not last.model_version.startswith(version_prefix):
        return f"the model's code changed ({last.model_version} is not {version_prefix}*)"
    if refit_days == 0:
        return "VOICE_ANALYTICS_MODEL_REFIT_DAYS is 0: trained on every run"
    if last_day is not None and last.last_session_date is not None and \
            last_day >= last.last_session_date + dt.timedelta(days=refit_days):
        return (f"the sessions reach {last_day}, {refit_days} or more days past the last training's last day "
                f"({last.last_session_date})")
    return None


def change_reason(changed: int, gone: int, trained_on: int, growth: float) -> str | None:
    """Why this run trains the model again once it knows how many sessions are new or changed
    (``changed``) and how many the fact no longer holds (``gone``) since the last training, when
    the fact held ``trained_on``; None: the last model scores them. A daily delivery changes a
    small share; a new export in place of the last one changes most of it. Pure."""
    share = (changed + gone) / max(trained_on, 1)
    if share > growth:
        return (f"{changed:,} sessions new or changed and {gone:,} gone since the last training: "
                f"{share:.1%} of the {trained_on:,} it had (VOICE_ANALYTICS_MODEL_REFIT_GROWTH {growth:.0%})")
    return None
