"""Independent computations the analysis marts are checked against: pandas over the certified
fact, statsmodels' intervals and tests, and the suppression rule restated in Python. Nothing here
imports the project's statistics code."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from statsmodels.stats.proportion import proportion_confint

ATTRIBUTES = ["region", "has_disability", "is_first_time_digital_user", "language"]
DIMENSION_NAMES = {"region": "region", "has_disability": "disability",
                   "is_first_time_digital_user": "first_time_digital_user", "language": "language"}
KEY_NAMES = {"region": "region", "has_disability": "disability", "is_first_time_digital_user": "first_time",
             "language": "language"}


def frame(db, query: str) -> pd.DataFrame:
    with db.connect(autocommit=True) as conn:
        cur = conn.execute(query)
        return pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description])


def fact(db) -> pd.DataFrame:
    return frame(db, "select * from analytics.fact_voice_ai_sessions")


def wilson(k: int, n: int) -> tuple[float, float]:
    low, high = proportion_confint(k, n, alpha=0.05, method="wilson")
    return float(low), float(high)


def newcombe_by_hand(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Newcombe (1998) method 10 from statsmodels' Wilson limits."""
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1)
    l2, u2 = wilson(k2, n2)
    d = p1 - p2
    return d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def ratio_estimate(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """sum(y) / sum(x) and its linearised standard error with the session as the unit."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    r = y.sum() / x.sum()
    n = len(x)
    return r, math.sqrt(n / (n - 1) * np.sum((y - r * x) ** 2)) / x.sum()


def segment_key(values: dict) -> str:
    parts = []
    for a in ATTRIBUTES:
        if a in values:
            v = values[a]
            parts.append(f"{KEY_NAMES[a]}={str(v).lower() if isinstance(v, bool | np.bool_) else v}")
    return "|".join(parts) or "all"


def segment_cells(f: pd.DataFrame, dims: list[list[str]]) -> pd.DataFrame:
    """Sessions per segment for the given dimensions (lists of attributes), one row per cell."""
    rows = []
    for dim in dims:
        for values, g in f.groupby(dim) if dim else [((), f)]:
            values = values if isinstance(values, tuple) else (values,)
            cell = dict(zip(dim, values, strict=True))
            rows.append({"segment_key": segment_key(cell), "dim": tuple(dim), **cell, "n": len(g),
                         "completed": int(g.is_completed.sum()), "abandoned": int(g.is_abandoned.sum()),
                         "transferred": int(g.is_transferred.sum())})
    return pd.DataFrame(rows)


def exactly_one_suppressed_sets(published: pd.DataFrame, family: pd.Series) -> list[str]:
    """Sibling sets (rows with the same non-null family id, two or more) with exactly one
    suppressed row: a published total minus the others would give it back."""
    df = published.assign(_family=family).dropna(subset=["_family"])
    bad = []
    for set_id, g in df.groupby("_family"):
        if len(g) >= 2 and int(g["suppressed"].sum()) == 1:
            bad.append(str(set_id))
    return bad


# -- the rounding rule of the published marts (dbt doc block "rounding"), restated with decimal --

def rounded(x: float, digits: int = 4) -> float:
    """Halves away from zero, from the 15 significant digits PostgreSQL keeps of a float8."""
    from decimal import ROUND_HALF_UP, Decimal

    return float(Decimal(f"{x:.15g}").quantize(Decimal(1).scaleb(-digits), ROUND_HALF_UP))


def rounded_sig(x: float, digits: int = 4) -> float:
    from decimal import ROUND_HALF_UP, Decimal

    d = Decimal(f"{x:.15g}")
    return float(d.quantize(Decimal(1).scaleb(d.adjusted() - digits + 1), ROUND_HALF_UP)) if x else 0.0


def outward(low: float, high: float, exact_low: float, exact_high: float, digits: int = 4, slack: float = 1e-9) -> bool:
    """A published interval is the exact one rounded outward to ``digits`` decimals (``slack``: how
    far the independent computation may differ from the SQL one, e.g. a t quantile's series)."""
    step = 10.0 ** -digits
    return (exact_low - step - slack < low <= exact_low + slack and exact_high - slack <= high < exact_high + step + slack
            and rounded(low, digits) == low and rounded(high, digits) == high)
