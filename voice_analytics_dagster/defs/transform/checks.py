"""The session fact's checks that dbt tests cannot express (docs/CHECKS.md lists every check).

- reconciliation and a non-empty fact: ERROR, blocking. Sessions read must equal sessions in the
  fact plus sessions left out with a reason; and an export whose sessions are all excluded (a
  turns file holding only its header, say) must not publish empty dashboards as certified.
- volume anomaly: WARN. A short latest day usually means a partial delivery; the rows that did
  arrive are still correct, so it alerts without blocking.

Check metadata carries counts and a few keys (session ids), never personal data.
"""

import datetime as dt
import math

import dagster as dg

from voice_analytics_dagster.defs.transform import relations
from voice_analytics_dagster.defs.transform.assets import dbt_model_key
from voice_analytics_dagster.lib.resources import WarehouseResource

FACT = dbt_model_key("fact_voice_ai_sessions")

# Volume anomaly: the latest day's sessions against the trailing 7 days' mean. Flag only when the
# day is both far in Poisson terms (|z| > 4, ~1 false alarm in 15,000 normal days) and
# materially different (< 50% or > 200% of the mean): at national volumes any z is "significant",
# at pilot volumes (10 sessions/day in the sample) any ratio is noisy.
VOLUME_WINDOW_DAYS = 7
VOLUME_Z = 4.0
VOLUME_RATIO_LOW, VOLUME_RATIO_HIGH = 0.5, 2.0

# One pass: the three sets of session ids full-joined once, each difference a filtered count
# (set semantics as EXCEPT / INTERSECT: distinct ids), instead of a scan and an EXCEPT per figure
# (docs/PERFORMANCE.md).
def _sql(text: str) -> str:
    """The relations a check reads, named by the manifest (defs/transform/relations.py)."""
    return (text.replace("{fact}", relations.FACT).replace("{staged}", relations.STAGED_SESSIONS)
            .replace("{excluded}", relations.SESSION_EXCLUSIONS))


RECONCILIATION_SQL = """
with ids as (
    select session_id,
           r.session_id is not null as in_read,
           f.session_id is not null as in_fact,
           e.session_id is not null as in_excluded
    from {staged} r
    full join {fact} f using (session_id)
    full join {excluded} e using (session_id)
),
differences as (
    select
        count(distinct session_id) filter (where in_read and not in_fact and not in_excluded) as missing,
        (array_agg(distinct session_id) filter (where in_read and not in_fact and not in_excluded))[1:5]
            as missing_sample,
        count(distinct session_id) filter (where in_fact and not in_read) as unexpected,
        (array_agg(distinct session_id) filter (where in_fact and not in_read))[1:5] as unexpected_sample,
        count(distinct session_id) filter (where in_fact and in_excluded) as both_in_fact_and_excluded
    from ids
)
select
    (select count(*) from {staged}) as sessions_read,
    (select count(*) from {fact}) as sessions_in_fact,
    (select count(*) from {excluded}) as sessions_excluded,
    coalesce(missing_sample, '{}'), missing, coalesce(unexpected_sample, '{}'), unexpected, both_in_fact_and_excluded
from differences
"""


@dg.asset_check(asset=FACT, name="sessions_reconcile", blocking=True,
                description="Sessions read = sessions in the fact + sessions excluded with a reason.")
def sessions_reconcile(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    row = warehouse.get().fetchall(_sql(RECONCILIATION_SQL))[0]
    read, in_fact, excluded, missing_sample, missing, unexpected_sample, unexpected, both = row
    passed = missing == 0 and unexpected == 0 and both == 0 and read == in_fact + excluded
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "sessions_read": read,
            "sessions_in_fact": in_fact,
            "sessions_excluded": excluded,
            "failing_count": missing + unexpected + both,
            "missing_sample": list(missing_sample),
            "unexpected_sample": list(unexpected_sample),
        },
    )


def volume_anomaly(latest: int, trailing: list[int]) -> tuple[bool, float | None, float | None]:
    """(anomalous, z, ratio) of the latest day's count against the trailing days. Pure."""
    if not trailing:
        return False, None, None
    mean = sum(trailing) / len(trailing)
    if mean == 0:
        return latest > 0 and latest >= VOLUME_Z ** 2, None, None
    z = (latest - mean) / math.sqrt(mean)
    ratio = latest / mean
    return abs(z) > VOLUME_Z and not (VOLUME_RATIO_LOW <= ratio <= VOLUME_RATIO_HIGH), z, ratio


@dg.asset_check(asset=FACT, name="daily_volume_within_range", blocking=False,
                description="The latest day's sessions against the trailing 7-day mean (warn).")
def daily_volume_within_range(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    rows = warehouse.get().fetchall(
        _sql("""select session_date, count(*) from {fact}
           where session_date > (select max(session_date) from {fact}) - %s
           group by 1 order by 1"""),
        (VOLUME_WINDOW_DAYS + 1,),
    )
    if not rows:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                   metadata={"note": "no sessions"})
    counts = dict(rows)
    latest_day = max(counts)
    days = [latest_day - dt.timedelta(days=i) for i in range(1, VOLUME_WINDOW_DAYS + 1)]
    trailing = [counts.get(d, 0) for d in days]
    anomalous, z, ratio = volume_anomaly(counts[latest_day], trailing)
    return dg.AssetCheckResult(
        passed=not anomalous,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "latest_day": latest_day.isoformat(),
            "latest_sessions": counts[latest_day],
            "trailing_mean": sum(trailing) / len(trailing),
            "z": z if z is not None else 0.0,
            "ratio": ratio if ratio is not None else 0.0,
            "failing_count": int(anomalous),
        },
    )


@dg.asset_check(asset=FACT, name="fact_has_sessions", blocking=True,
                description="The fact holds sessions: an export whose every session is excluded (no turns, "
                            "say) is blocked rather than published as empty dashboards.")
def fact_has_sessions(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    in_fact, excluded = warehouse.get().fetchall(
        _sql("select (select count(*) from {fact}), (select count(*) from {excluded})"))[0]
    reasons = warehouse.get().fetchall(
        _sql("select exclusion_reason, count(*) from {excluded} group by 1 order by 2 desc limit 3"))
    return dg.AssetCheckResult(
        passed=in_fact > 0, severity=dg.AssetCheckSeverity.ERROR,
        metadata={"sessions_in_fact": in_fact, "sessions_excluded": excluded,
                  "top_exclusion_reasons": [f"{r}: {n}" for r, n in reasons]},
        description=None if in_fact > 0 else f"no session reaches the fact ({excluded} excluded)",
    )


asset_checks = [sessions_reconcile, fact_has_sessions, daily_volume_within_range]
