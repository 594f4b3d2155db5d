"""What drives abandonment, recomputed from the data on every run.

- Drivers: statsmodels' logistic regression on the standardised features (features.py): log-odds
  per SD with Wald 95% intervals, significant only after Holm's correction over all features;
  the strongest driver is the strongest significant one, or none.
- Discrimination: the AUC of 5-fold out-of-fold scores with a percentile bootstrap interval over
  the scored sessions (not over refits: the usual, slightly optimistic choice); a gradient-boosted
  model on the same folds shows what the linear model gives up.
- Calibration: deciles of the out-of-fold risk, intercept, slope and Brier score.
The GBM and the bootstraps use stratified subsamples of large data; the point AUC every session.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from voice_analytics_dagster.defs.model.features import Design

FOLDS = 5
ALPHA = 0.05
BOOTSTRAP_REPLICATES = 1000
# Each bootstrap replicate costs O(n). Above BOOTSTRAP_MAX_SESSIONS the interval comes from an
# m-out-of-n bootstrap: replicates on a stratified subsample of m sessions, their deviations from
# the subsample's AUC scaled by sqrt(m / n) (the AUC is a U-statistic: its standard error falls as
# 1 / sqrt(n)) around the AUC of all n sessions.
BOOTSTRAP_MAX_SESSIONS = 50_000
# A GBM costs far more per session than the logistic model; its comparison with the logistic
# model is paired (same subsample, same folds), so a subsample of this size can answer it.
GBM_MAX_SESSIONS = 30_000
# Fewer events than this in either class (or fewer sessions than folds x this): no model.
MIN_EVENTS = 20
SEED = 20_251_126
MODEL_NAME = "abandonment-logit"
MODEL_REVISION = 1
CALIBRATION_BINS = 10


@dataclass
class Driver:
    feature: str
    kind: str
    reference_level: str | None
    feature_mean: float
    feature_sd: float
    coefficient: float
    std_error: float
    ci_low: float
    ci_high: float
    odds_ratio: float
    odds_ratio_ci_low: float
    odds_ratio_ci_high: float
    coefficient_per_unit: float
    p_value: float
    p_value_adjusted: float
    is_significant: bool
    rank: int


@dataclass
class CalibrationBin:
    bin: int
    n_sessions: int
    events: int
    mean_predicted: float
    observed_rate: float
    min_predicted: float
    max_predicted: float


@dataclass
class ModelResult:
    status: str  # fitted | insufficient_data | not_converged | rank_deficient
    message: str
    model_version: str
    n_input: int
    n_sessions: int
    n_events: int
    dropped_null: dict[str, int]
    unused_features: dict[str, str]
    drivers: list[Driver] = field(default_factory=list)
    intercept: float | None = None  # of the logistic model on the standardised features
    auc: float | None = None
    auc_ci_low: float | None = None
    auc_ci_high: float | None = None
    bootstrap_sessions: int | None = None
    gbm_auc: float | None = None
    gbm_auc_ci_low: float | None = None
    gbm_auc_ci_high: float | None = None
    gbm_sessions: int | None = None
    logit_auc_on_gbm_sessions: float | None = None
    gbm_minus_logit_auc_ci_low: float | None = None
    gbm_minus_logit_auc_ci_high: float | None = None
    brier_score: float | None = None
    calibration_intercept: float | None = None
    calibration_slope: float | None = None
    calibration: list[CalibrationBin] = field(default_factory=list)
    session_ids: np.ndarray | None = None
    oof_risk: np.ndarray | None = None
    fold: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def event_rate(self) -> float | None:
        return self.n_events / self.n_sessions if self.n_sessions else None

    @property
    def significant(self) -> list[Driver]:
        return [d for d in self.drivers if d.is_significant]

    @property
    def strongest_driver(self) -> str | None:
        """The strongest driver that is significant after Holm's correction, else None."""
        significant = self.significant
        return min(significant, key=lambda d: d.rank).feature if significant else None

    @property
    def conclusion(self) -> str:
        if self.status != "fitted":
            return f"no model: {self.message}"
        m = len(self.drivers)
        if self.strongest_driver is None:
            return (f"No driver of abandonment is significant after Holm's correction over {m} features "
                    f"(family-wise error rate {ALPHA:.0%}); the data do not support naming a strongest predictor.")
        top = next(d for d in self.drivers if d.feature == self.strongest_driver)
        direction = "raises" if top.coefficient > 0 else "lowers"
        return (f"{top.feature} is the strongest significant driver: one standard deviation more "
                f"{direction} the odds of abandonment by a factor {top.odds_ratio:.2f} "
                f"(95% CI {top.odds_ratio_ci_low:.2f}-{top.odds_ratio_ci_high:.2f}, Holm-adjusted "
                f"p = {top.p_value_adjusted:.2g}); {len(self.significant)} of {m} features are significant.")


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values (statsmodels' multipletests)."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p_values, dtype=np.float64)
    return multipletests(p, method="holm")[1] if len(p) else np.zeros(0)


def collinear_features(Z: np.ndarray, names: list[str]) -> list[str]:
    """The features in a linear dependence of the standardised design (none when it has full
    rank). Read from the k x k cross-product, which costs no copy of the design, unlike
    statsmodels' own rank check (a QR decomposition of the whole design)."""
    gram = Z.T @ Z
    if np.linalg.matrix_rank(gram, hermitian=True) == len(names):
        return []
    values, vectors = np.linalg.eigh(gram)
    null = vectors[:, values <= values.max() * len(names) * np.finfo(float).eps]
    return [name for name, loading in zip(names, np.abs(null).max(axis=1), strict=True) if loading > 1e-6]


def _finite(x) -> float:
    """A published figure is a number or NULL (NaN), never an infinity."""
    x = float(x)
    return x if math.isfinite(x) else math.nan


def fit_drivers(design: Design) -> tuple[list[Driver], str, str, float | None]:
    """The logistic regression on the standardised features: (drivers ranked, status, message,
    intercept; the intercept is None when no model was fitted).

    status is "fitted", "rank_deficient" (no drivers: their coefficients are not identified) or
    "not_converged" (drivers listed, none significant; non-finite figures as NaN)."""
    import statsmodels.api as sm

    names = design.feature_names
    Z = design.Z.to_numpy()
    collinear = collinear_features(Z, names)
    if collinear:
        return [], "rank_deficient", (
            f"the features {', '.join(collinear)} are linearly dependent in this data: their effects cannot be "
            "told apart; no driver claimed"), None
    # check_rank=False: collinear_features has checked the rank without statsmodels' copy of the design
    model = sm.Logit(design.y, sm.add_constant(Z, has_constant="add"), check_rank=False)
    try:
        fit = model.fit(method="newton", maxiter=100, disp=0, warn_convergence=False)
    except (np.linalg.LinAlgError, ValueError) as exc:  # a singular Hessian, perfect separation
        return [], "not_converged", f"logistic regression failed: {exc}; no driver claimed", None
    params = np.asarray(fit.params)[1:]
    bse = np.asarray(fit.bse)[1:]
    ci = np.asarray(fit.conf_int(alpha=ALPHA))[1:]
    p = np.asarray(fit.pvalues)[1:]
    converged = bool(fit.mle_retvals.get("converged", False)) and bool(np.isfinite(params).all()
                                                                        and np.isfinite(bse).all())
    status, message = ("fitted", "") if converged else (
        "not_converged", "logistic regression did not converge; no driver claimed")
    adjusted = holm(p)
    order = np.argsort(-np.abs(params), kind="stable")
    rank = np.empty(len(params), dtype=int)
    rank[order] = np.arange(1, len(params) + 1)
    drivers = []
    with np.errstate(over="ignore"):
        for j, name in enumerate(names):
            sd = float(design.sd[name])
            drivers.append(Driver(
                feature=name, kind=design.kinds[name], reference_level=design.reference_levels[name],
                feature_mean=float(design.mean[name]), feature_sd=sd,
                coefficient=_finite(params[j]), std_error=_finite(bse[j]),
                ci_low=_finite(ci[j, 0]), ci_high=_finite(ci[j, 1]),
                odds_ratio=_finite(np.exp(params[j])), odds_ratio_ci_low=_finite(np.exp(ci[j, 0])),
                odds_ratio_ci_high=_finite(np.exp(ci[j, 1])),
                coefficient_per_unit=_finite(params[j] / sd),
                p_value=_finite(p[j]), p_value_adjusted=_finite(adjusted[j]),
                is_significant=bool(converged and adjusted[j] < ALPHA), rank=int(rank[j]),
            ))
    return sorted(drivers, key=lambda d: d.rank), status, message, _finite(np.asarray(fit.params)[0])


def fold_labels(y: np.ndarray, folds: int = FOLDS, seed: int = SEED) -> np.ndarray:
    """Stratified fold of every session (0..folds-1)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.empty(len(y), dtype=np.int8)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for k, (_, test) in enumerate(splitter.split(np.zeros(len(y)), y)):
        labels[test] = k
    return labels


# scikit-learn rather than statsmodels for the five cross-validation fits: at 1,000,000 sessions
# it needs about two thirds of statsmodels' CPU time and of its memory above the design.
# C=inf is the unpenalised maximum likelihood (penalty=None is deprecated). The default tol=1e-4
# stops short of the maximum (risks up to 1e-4 from statsmodels'); at 1e-10 they agree to 1e-15.
OOF_TOLERANCE = 1e-10


def out_of_fold_logit(Z: np.ndarray, y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """Each session's risk from the unpenalised logistic model fitted on the other folds.

    Z is standardised on all sessions; an unpenalised logistic model's predictions do not
    depend on an affine rescaling of its features, so this leaks nothing into the test fold."""
    from sklearn.linear_model import LogisticRegression

    risk = np.empty(len(y))
    # warm_start: each fold starts from the previous fold's estimates, which share four fifths of
    # its sessions; it converges to the same maximum in two Newton steps instead of five
    model = LogisticRegression(C=np.inf, solver="newton-cholesky", tol=OOF_TOLERANCE, max_iter=100, warm_start=True)
    for k in np.unique(fold):
        test = fold == k
        model.fit(Z[~test], y[~test])
        risk[test] = model.predict_proba(Z[test])[:, 1]
    return risk


def out_of_fold_gbm(X: np.ndarray, y: np.ndarray, fold: np.ndarray, seed: int = SEED) -> np.ndarray:
    """Each session's risk from a gradient-boosted model fitted on the other folds. ``X`` may be
    the standardised features: trees split on the order of the values, which standardising keeps."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    risk = np.empty(len(y))
    for k in np.unique(fold):
        test = fold == k
        model = HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=15, min_samples_leaf=20,
            early_stopping=False, random_state=seed,
        )
        model.fit(X[~test], y[~test])
        risk[test] = model.predict_proba(X[test])[:, 1]
    return risk


def auc(scores: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def _weighted_auc_setup(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Tie groups of the scores in ascending order: group index of every session."""
    _, group = np.unique(scores, return_inverse=True)
    return group, int(group.max()) + 1 if len(group) else 0


def _weighted_auc(group: np.ndarray, n_groups: int, y: np.ndarray, w: np.ndarray) -> float:
    """AUC with case weights (bootstrap counts): P(score_pos > score_neg) + 0.5 P(tie)."""
    pos = np.bincount(group, weights=w * y, minlength=n_groups)
    neg = np.bincount(group, weights=w * (1 - y), minlength=n_groups)
    below = np.cumsum(neg) - neg
    total = pos.sum() * neg.sum()
    return float(np.sum(pos * (below + 0.5 * neg)) / total) if total > 0 else float("nan")


def bootstrap_auc(
    y: np.ndarray,
    scores: list[np.ndarray],
    replicates: int = BOOTSTRAP_REPLICATES,
    seed: int = SEED,
) -> np.ndarray:
    """Bootstrap AUCs (replicates x len(scores)) with the same resampled sessions for every
    score vector (paired: differences between models are valid). Each replicate draws n sessions
    with replacement; a replicate's AUC is the weighted AUC with the draw counts as weights."""
    rng = np.random.default_rng(seed)
    n = len(y)
    setups = [_weighted_auc_setup(s) for s in scores]
    out = np.empty((replicates, len(scores)))
    for b in range(replicates):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(np.float64)
        for j, (group, n_groups) in enumerate(setups):
            out[b, j] = _weighted_auc(group, n_groups, y, w)
    return out


def stratified_subsample(y: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Indices of a subsample of ``size`` sessions keeping the event rate (sorted)."""
    if size >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    events = np.flatnonzero(y == 1)
    others = np.flatnonzero(y == 0)
    k = round(size * len(events) / len(y))
    return np.sort(np.concatenate([rng.choice(events, k, replace=False), rng.choice(others, size - k, replace=False)]))


def calibration_summary(y: np.ndarray, risk: np.ndarray, bins: int = CALIBRATION_BINS):
    """(decile bins, Brier score, calibration intercept, calibration slope)."""
    import statsmodels.api as sm

    order = np.argsort(risk, kind="stable")
    edges = np.linspace(0, len(y), bins + 1).round().astype(int)
    table = []
    for b in range(bins):
        idx = order[edges[b]:edges[b + 1]]
        if len(idx) == 0:
            continue
        table.append(CalibrationBin(
            bin=b + 1, n_sessions=len(idx), events=int(y[idx].sum()), mean_predicted=float(risk[idx].mean()),
            observed_rate=float(y[idx].mean()), min_predicted=float(risk[idx].min()),
            max_predicted=float(risk[idx].max()),
        ))
    brier = float(np.mean((risk - y) ** 2))
    clipped = np.clip(risk, 1e-9, 1 - 1e-9)
    logit = np.log(clipped / (1 - clipped))
    try:
        fit = sm.Logit(y, sm.add_constant(logit)).fit(disp=0, method="newton", maxiter=50)
        intercept, slope = (float(v) for v in fit.params)
    except Exception:  # a constant score (no variation) has no calibration slope
        intercept = slope = float("nan")
    return table, brier, intercept, slope


def model_version(design: Design) -> str:
    return f"{MODEL_NAME}-r{MODEL_REVISION}-{design.fingerprint()}"


def fit_abandonment_model(
    design: Design,
    *,
    folds: int = FOLDS,
    replicates: int = BOOTSTRAP_REPLICATES,
    bootstrap_max: int = BOOTSTRAP_MAX_SESSIONS,
    gbm_max: int = GBM_MAX_SESSIONS,
    seed: int = SEED,
) -> ModelResult:
    """Drivers, cross-validated discrimination, the GBM comparison and calibration.

    BLAS and OpenMP run one thread: on a small machine shared with other work (the database, dbt),
    OpenMP's spinning threads made the GBM several times slower, not faster."""
    # threadpoolctl limits only the thread pools already loaded: import them first
    import sklearn.ensemble  # noqa: F401  (OpenMP)
    import statsmodels.api  # noqa: F401  (BLAS)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _fit(design, folds=folds, replicates=replicates, bootstrap_max=bootstrap_max,
                    gbm_max=gbm_max, seed=seed)


def _fit(design: Design, *, folds: int, replicates: int, bootstrap_max: int, gbm_max: int,
         seed: int) -> ModelResult:
    y = design.y
    n_events = int(y.sum())
    result = ModelResult(
        status="fitted", message="", model_version=model_version(design), n_input=design.n_input,
        n_sessions=len(y), n_events=n_events, dropped_null=dict(design.dropped_null),
        unused_features=dict(design.unused),
    )
    if min(n_events, len(y) - n_events) < max(MIN_EVENTS, folds) or not design.feature_names:
        result.status = "insufficient_data"
        result.message = (f"{n_events} abandoned and {len(y) - n_events} other sessions, {len(design.feature_names)} "
                          f"usable features: at least {max(MIN_EVENTS, folds)} of each class and one feature needed")
        result.session_ids, result.oof_risk = design.session_ids, np.full(len(y), np.nan)
        return result

    t = time.perf_counter()
    result.drivers, result.status, result.message, result.intercept = fit_drivers(design)
    result.seconds["drivers"] = time.perf_counter() - t

    # the out-of-fold risk is defined even for a rank-deficient design: its predictions are identified
    t = time.perf_counter()
    Z = design.Z.to_numpy()
    fold = fold_labels(y, folds, seed)
    risk = out_of_fold_logit(Z, y, fold)
    result.fold, result.oof_risk, result.session_ids = fold, risk, design.session_ids
    result.auc = auc(risk, y)
    result.seconds["cross_validation"] = time.perf_counter() - t

    t = time.perf_counter()
    boot_idx = stratified_subsample(y, bootstrap_max, seed + 1)
    result.bootstrap_sessions = len(boot_idx)
    boots = bootstrap_auc(y[boot_idx], [risk[boot_idx]], replicates, seed + 2)[:, 0]
    if len(boot_idx) < len(y):  # m-out-of-n: rescale the deviations to n sessions
        boots = result.auc + (boots - auc(risk[boot_idx], y[boot_idx])) * math.sqrt(len(boot_idx) / len(y))
    result.auc_ci_low, result.auc_ci_high = (float(v) for v in np.quantile(boots, [0.025, 0.975]))
    result.seconds["bootstrap"] = time.perf_counter() - t

    t = time.perf_counter()
    gbm_idx = stratified_subsample(y, gbm_max, seed + 3)
    gbm_risk = out_of_fold_gbm(Z[gbm_idx], y[gbm_idx], fold[gbm_idx], seed)
    result.gbm_sessions = len(gbm_idx)
    result.gbm_auc = auc(gbm_risk, y[gbm_idx])
    result.logit_auc_on_gbm_sessions = auc(risk[gbm_idx], y[gbm_idx])
    result.seconds["gbm"] = time.perf_counter() - t

    t = time.perf_counter()
    sub = gbm_idx if len(gbm_idx) <= bootstrap_max else gbm_idx[stratified_subsample(y[gbm_idx], bootstrap_max, seed + 4)]
    paired = bootstrap_auc(y[sub], [gbm_risk[np.searchsorted(gbm_idx, sub)], risk[sub]], replicates, seed + 5)
    result.gbm_auc_ci_low, result.gbm_auc_ci_high = (float(v) for v in np.quantile(paired[:, 0], [0.025, 0.975]))
    diff = paired[:, 0] - paired[:, 1]
    result.gbm_minus_logit_auc_ci_low, result.gbm_minus_logit_auc_ci_high = (
        float(v) for v in np.quantile(diff, [0.025, 0.975]))
    result.seconds["gbm_bootstrap"] = time.perf_counter() - t

    t = time.perf_counter()
    result.calibration, result.brier_score, result.calibration_intercept, result.calibration_slope = (
        calibration_summary(y, risk))
    result.seconds["calibration"] = time.perf_counter() - t
    return result


def drivers_frame(result: ModelResult) -> pd.DataFrame:
    return pd.DataFrame([d.__dict__ for d in result.drivers])


def markdown_drivers(result: ModelResult) -> str:
    """The drivers as a markdown table (asset metadata)."""
    if not result.drivers:
        return f"_{result.conclusion}_"
    lines = [
        "| rank | feature | coef (per SD) | 95% CI | odds ratio | p | p (Holm) | significant |",
        "|---:|---|---:|---|---:|---:|---:|:---:|",
    ]
    for d in result.drivers:
        lines.append(
            f"| {d.rank} | {d.feature} | {d.coefficient:+.3f} | [{d.ci_low:+.3f}, {d.ci_high:+.3f}] | "
            f"{d.odds_ratio:.3f} | {d.p_value:.3g} | {d.p_value_adjusted:.3g} | {'yes' if d.is_significant else 'no'} |"
        )
    return "\n".join(lines) + f"\n\n{result.conclusion}"


def markdown_metrics(result: ModelResult) -> str:
    def f(v, fmt="{:.3f}"):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v)

    rows = [
        ("model_version", result.model_version), ("status", result.status),
        ("sessions used / read", f"{result.n_sessions:,} / {result.n_input:,}"),
        ("event rate (abandoned)", f(result.event_rate)),
        ("AUC, out-of-fold (95% bootstrap CI)", f"{f(result.auc)} [{f(result.auc_ci_low)}, {f(result.auc_ci_high)}]"),
        (f"GBM AUC on {result.gbm_sessions or 0:,} sessions (95% CI)",
         f"{f(result.gbm_auc)} [{f(result.gbm_auc_ci_low)}, {f(result.gbm_auc_ci_high)}]"),
        ("logistic AUC on the same sessions", f(result.logit_auc_on_gbm_sessions)),
        ("GBM - logistic AUC (95% paired CI)",
         f"[{f(result.gbm_minus_logit_auc_ci_low, '{:+.3f}')}, {f(result.gbm_minus_logit_auc_ci_high, '{:+.3f}')}]"),
        ("Brier score", f(result.brier_score)),
        ("calibration intercept / slope", f"{f(result.calibration_intercept)} / {f(result.calibration_slope)}"),
        ("strongest driver", result.strongest_driver or "none significant"),
    ]
    return "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)
