"""The abandonment model's feature policy, and the design matrix built from it.

No feature may leak the outcome: a feature is allowed only if it is known, or has a running value,
while the session is still going, and is not derived from how it ended: the caller's attributes,
the session's context (language, channel, ASR model version), and the turns' quality as means and
shares, which do not grow with the session's length. Every other fact column is in ``EXCLUDED``
with its reason (a test checks that none is unclassified). The shares are still computed over the
whole session: the model explains which conditions go with abandonment; it is not a forecast.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

Kind = Literal["numeric", "boolean", "categorical"]

OUTCOME = "is_abandoned"
KEY = "session_id"


@dataclass(frozen=True)
class Feature:
    column: str
    kind: Kind
    why: str


FEATURES: tuple[Feature, ...] = (
    Feature("avg_asr_confidence", "numeric", "mean ASR confidence of the turns: a running mean exists at every turn"),
    Feature("avg_intent_confidence", "numeric", "mean intent confidence of the turns (running mean)"),
    Feature("misunderstanding_rate", "numeric", "share of no-match turns (running share; not a count)"),
    Feature("silence_rate", "numeric", "share of no-input turns (running share)"),
    Feature("noise_rate", "numeric", "share of noisy turns (running share)"),
    Feature("intent_detection_rate", "numeric", "share of turns with a detected intent (running share)"),
    Feature("has_disability", "boolean", "caller attribute, known before the call"),
    Feature("is_first_time_digital_user", "boolean", "caller attribute, known before the call"),
    Feature("region", "categorical", "caller attribute, known before the call"),
    Feature("language", "categorical", "chosen at the start of the call"),
    Feature("channel", "categorical", "known at the start of the call"),
    Feature("asr_model_version", "categorical", "the recogniser serving the call, known at its start"),
)

EXCLUDED: dict[str, str] = {
    "session_id": "identifier",
    "user_key": "identifier (a model must not learn individuals)",
    "final_outcome": "the outcome",
    "is_completed": "derived from the outcome",
    "is_abandoned": "the outcome",
    "is_transferred": "derived from the outcome",
    "is_contained": "derived from the outcome",
    "transfer_reason": "describes how the session ended",
    "escalation_flag": "describes how the session ended (transfer)",
    "recovery_success": "known only after the session ended (and defined with the outcome in exports)",
    "application_count": "applications follow the session",
    "completed_application_count": "applications follow the session",
    "turn_count": "grows with the session's length, which the outcome cuts short",
    "user_turn_count": "count: grows with the session's length",
    "system_turn_count": "count: grows with the session's length",
    "error_turn_count": "count: grows with the session's length",
    "misunderstanding_turn_count": "count: grows with the session's length (the share is a feature)",
    "silence_turn_count": "count: grows with the session's length (the share is a feature)",
    "noise_turn_count": "count: grows with the session's length (the share is a feature)",
    "low_asr_confidence_turn_count": "count: grows with the session's length",
    "asr_confidence_turn_count": "count: grows with the session's length",
    "unknown_intent_turn_count": "count: grows with the session's length",
    "duplicate_turn_number_count": "a data-quality count, grows with the session's length",
    "reported_turn_count": "the platform's turn count: known only at the end",
    "turn_duration_sec_total": "duration: known only when the session ended",
    "reported_duration_sec": "duration: known only when the session ended",
    "min_asr_confidence": "a minimum over more turns is lower: it encodes the session's length",
    "error_turn_rate": "the sum of the three error shares, which are features (collinear)",
    "has_ai_metrics": "a data-availability flag, not a property of the call",
    "session_date": "calendar time is not a driver; a planned change shows as asr_model_version",
    "session_week": "calendar time (see session_date)",
    "session_month": "calendar time (see session_date)",
    "last_source_batch_id": "load metadata",
}

# An indicator (a boolean or one level of a category) needs at least this many sessions on each
# side to be estimable: below it a logistic fit separates or its interval is meaningless.
MIN_INDICATOR_SESSIONS = 10


def model_columns() -> list[str]:
    """Columns to read from the fact: the key, the outcome and the features (nothing else)."""
    return [KEY, OUTCOME, *(f.column for f in FEATURES)]


@dataclass
class Design:
    """The model's inputs: the standardised features Z (float64; ``mean`` and ``sd`` give back the
    raw scale), y and what was done."""

    Z: pd.DataFrame
    y: np.ndarray
    session_ids: np.ndarray
    mean: pd.Series
    sd: pd.Series
    kinds: dict[str, str]
    reference_levels: dict[str, str | None]
    n_input: int
    dropped_null: dict[str, int] = field(default_factory=dict)
    unused: dict[str, str] = field(default_factory=dict)
    # what scoring new sessions with this design's model needs (scoring.py): the columns whose
    # NULL drops a session, and every level seen of each categorical column
    used_columns: list[str] = field(default_factory=list)
    levels: dict[str, list[str]] = field(default_factory=dict)

    @property
    def n_dropped(self) -> int:
        return self.n_input - len(self.y)

    @property
    def feature_names(self) -> list[str]:
        return list(self.Z.columns)

    def fingerprint(self) -> str:
        """A short hash of the feature set (names and kinds), for the model version."""
        text = ";".join(f"{name}:{self.kinds[name]}" for name in self.feature_names)
        return hashlib.sha256(text.encode()).hexdigest()[:8]


def build_design(frame: pd.DataFrame, features: tuple[Feature, ...] = FEATURES) -> Design:
    """The design matrix of ``frame`` (one row per session, the columns of ``model_columns()``).

    - A feature column that is entirely NULL (an export without asr_model_version) is not used.
    - Sessions with a NULL in any used feature are dropped and counted per column (never silently).
    - Booleans become 0/1; a categorical becomes one indicator per level other than its most
      frequent (the reference level), named ``column=level``.
    - An indicator with fewer than MIN_INDICATOR_SESSIONS sessions on either side, and a numeric
      feature without variation, is not used (listed in ``unused`` with the reason).
    - Nor is a feature that is a linear combination of the features before it (redundant_features).
    - Z is X standardised by its mean and sample SD over the sessions used: coefficients are
      log-odds per standard deviation, comparable across features.
    """
    forbidden = [f.column for f in features if f.column in EXCLUDED or f.column in (KEY, OUTCOME)]
    if forbidden:
        raise ValueError(f"the feature policy excludes {forbidden}: they leak the outcome or identify callers")
    missing = [c for c in (KEY, OUTCOME, *(f.column for f in features)) if c not in frame.columns]
    if missing:
        raise KeyError(f"columns missing from the model input: {missing}")

    n_input = len(frame)
    unused: dict[str, str] = {}
    used = []
    for f in features:
        if frame[f.column].isna().all():
            unused[f.column] = "not in this export (every value NULL)"
        else:
            used.append(f)
    null_counts = {f.column: int(frame[f.column].isna().sum()) for f in used}
    dropped_null = {c: n for c, n in null_counts.items() if n}
    keep = complete_rows(frame, [f.column for f in used])
    if frame[OUTCOME].isna().any():
        raise ValueError("the outcome is NULL for some sessions; the fact guarantees it is not")
    data = frame.loc[keep]

    columns: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    reference_levels: dict[str, str | None] = {}
    seen_levels: dict[str, list[str]] = {}
    for f in used:
        values = data[f.column]
        if f.kind == "numeric":
            x = values.to_numpy(dtype=np.float64, copy=True)
            if len(x) < 2 or np.nanstd(x) == 0:
                unused[f.column] = "no variation"
                continue
            columns[f.column], kinds[f.column], reference_levels[f.column] = x, "numeric", None
        elif f.kind == "boolean":
            x = values.astype(bool).to_numpy().astype(np.float64)
            if not _estimable(x):
                unused[f.column] = f"fewer than {MIN_INDICATOR_SESSIONS} sessions on one side"
                continue
            columns[f.column], kinds[f.column], reference_levels[f.column] = x, "indicator", "false"
        else:
            # by the levels' codes: one pass over the sessions, then a comparison of small
            # integers per level instead of Python strings
            categorical = values.astype(str).astype("category") if values.dtype != "category" else values
            codes = categorical.cat.codes.to_numpy()
            names = [str(level) for level in categorical.cat.categories]
            per_code = np.bincount(codes[codes >= 0], minlength=len(names))
            counts = {name: int(n) for name, n in zip(names, per_code, strict=True) if n}
            levels = sorted(counts, key=lambda v: (-counts[v], v))
            seen_levels[f.column] = levels
            if len(levels) < 2:
                unused[f.column] = f"a single level ({levels[0]})" if levels else "no values"
                continue
            reference = levels[0]
            code_of = {name: code for code, name in enumerate(names)}
            for level in levels[1:]:
                name = f"{f.column}={level}"
                x = (codes == code_of[level]).astype(np.float64)
                if not _estimable(x):
                    unused[name] = f"fewer than {MIN_INDICATOR_SESSIONS} sessions on one side"
                    continue
                columns[name], kinds[name], reference_levels[name] = x, "indicator", reference

    mean = pd.Series({name: x.mean() for name, x in columns.items()}, dtype=np.float64)
    sd = pd.Series({name: x.std(ddof=1) for name, x in columns.items()}, dtype=np.float64)
    # standardised in place, column by column: no raw-scale copy of the design is kept; the GBM,
    # the only user of the raw scale, splits on the order of the values, which a positive affine
    # map keeps
    for name, x in columns.items():
        x -= mean[name]
        x /= sd[name]
    for name, why in redundant_features(columns).items():
        unused[name] = why
        del columns[name], kinds[name], reference_levels[name]
        mean, sd = mean.drop(name), sd.drop(name)
    Z = pd.DataFrame(columns, index=pd.RangeIndex(len(data)))
    return Design(
        Z=Z, y=data[OUTCOME].astype(bool).to_numpy().astype(np.float64),
        session_ids=data[KEY].astype(str).to_numpy(), mean=mean, sd=sd, kinds=kinds,
        reference_levels=reference_levels, n_input=n_input, dropped_null=dropped_null, unused=unused,
        used_columns=[f.column for f in used], levels=seen_levels,
    )


def complete_rows(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Which sessions of ``frame`` the model uses: those without a NULL in any of ``columns`` (the
    used feature columns; the rule of training and of scoring between trainings)."""
    if not columns:
        return np.ones(len(frame), bool)
    return ~frame[columns].isna().any(axis=1).to_numpy()


def redundant_features(columns: dict[str, np.ndarray]) -> dict[str, str]:
    """Features (standardised columns, in order) that are a linear combination of the ones kept
    before them, with the reason. Their coefficients could not be told apart from the others'
    (a rank-deficient design claims no driver at all). From a platform's logs, whose turns lack
    an intent exactly when they are no-match or no-input turns, intent_detection_rate is
    1 - misunderstanding_rate - silence_rate: it is left out, and the others keep their meaning.
    Read from the k x k cross-product of the columns, without a copy of the design."""
    names = list(columns)
    gram = np.array([[float(columns[a] @ columns[b]) for b in names] for a in names]).reshape(len(names), len(names))
    kept: list[int] = []
    out = {}
    for j, name in enumerate(names):
        trial = [*kept, j]
        sub = gram[np.ix_(trial, trial)]
        if np.linalg.matrix_rank(sub, hermitian=True) == len(trial):
            kept.append(j)
            continue
        values, vectors = np.linalg.eigh(sub)
        null = vectors[:, np.argmin(values)]
        involved = [names[i] for i, loading in zip(kept, np.abs(null[:-1]), strict=True) if loading > 1e-6]
        out[name] = "a linear combination of " + (", ".join(involved) or "the features before it")
    return out


def _estimable(indicator: np.ndarray) -> bool:
    ones = int(indicator.sum())
    return min(ones, len(indicator) - ones) >= MIN_INDICATOR_SESSIONS


def frame_from_simulation(sim: pd.DataFrame) -> pd.DataFrame:
    """A ``generator.simulate_sessions`` frame in the fact's column names (for tests and benchmarks
    that fit the model without a database). intent_detection_rate and channel are not simulated
    per session: channel is constant (voice) and the intent detection rate is drawn as the
    generator draws intents (15% unknown per turn), independently of the outcome."""
    rng = np.random.default_rng(12345)
    turns = sim["total_turns"].to_numpy()
    detected = rng.binomial(turns, 0.85)
    return pd.DataFrame({
        KEY: sim["session_id"].astype(str),
        OUTCOME: sim["is_abandoned"].astype(bool),
        "avg_asr_confidence": sim["avg_asr_confidence"],
        "avg_intent_confidence": sim["avg_intent_confidence"],
        "misunderstanding_rate": sim["misunderstanding_rate"],
        "silence_rate": sim["silence_rate"],
        "noise_rate": sim["noise_rate"],
        "intent_detection_rate": detected / turns,
        "has_disability": sim["has_disability"].astype(bool),
        "is_first_time_digital_user": sim["is_first_time_digital_user"].astype(bool),
        "region": sim["region"].astype(str),
        "language": sim["language"].astype(str),
        "channel": "voice",
        "asr_model_version": sim["asr_model_version"].astype(str),
    })
