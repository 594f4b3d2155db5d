"""Which session days a dbt build must rebuild (incremental processing).

The ingestion keeps every delivery as a load batch (raw.load_batches, ``active`` marks the
batches that feed dbt). ``raw.dbt_built_batches`` records the active batches as of the last
successful build of the session fact. A build then rebuilds:

- the session days touched by the batches that became active since (new deliveries, late
  turns, corrected rows) or stopped being active (another export folder was run): the days of
  every version of every session those batches name, directly (sessions, turns, AI metrics,
  applications) or through a user whose row they carry;
- the ``lookback_days`` days before the latest of them (late data is most likely there; it also
  covers a change the batches cannot show, such as a row edited by hand);
- a backfill range ``from_date``..``to_date`` when given.

Nothing to rebuild when no batch changed (the build still tests everything and rebuilds the
aggregate marts). A full build when the fact does not exist yet, when no build was recorded, or
on request (``full_refresh``). The batches are recorded only after dbt succeeded, so a failed or
blocked build is redone by the next run.

The day computation reads only the changed batches' partitions plus one scan of the raw sessions
(session id -> day), so its cost follows the new data, not the history."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from voice_analytics_dagster.defs.transform.relations import FACT
from voice_analytics_dagster.lib.contract import LOAD_ORDER

STATE_TABLE = "raw.dbt_built_batches"
BUILD_LOG = "raw.dbt_incremental_builds"

DAYS_TABLE = "raw.dbt_rebuild_days"

STATE_DDL = f"""
create schema if not exists raw;
create table if not exists {DAYS_TABLE} (session_day date primary key);
create table if not exists {STATE_TABLE} (
    batch_id bigint primary key,
    recorded_at timestamptz not null default now(),
    dagster_run_id text
);
create table if not exists {BUILD_LOG} (
    build_id bigint generated always as identity primary key,
    dagster_run_id text,
    started_at timestamptz not null default now(),
    mode text not null check (mode in ('full', 'incremental')),
    reason text not null,
    session_days date[],
    new_batches bigint[] not null,
    gone_batches bigint[] not null,
    succeeded boolean
)"""

# Session ids touched by a set of batches (any table), then every delivered day of those sessions.
AFFECTED_DAYS_SQL = """
with touched as (
    select session_id from raw.voice_sessions where _batch_id = any(%(batches)s)
    union select session_id from raw.voice_turns where _batch_id = any(%(batches)s)
    union select session_id from raw.voice_ai_metrics where _batch_id = any(%(batches)s)
    union select session_id from raw.applications where _batch_id = any(%(batches)s)
    union select s.session_id from raw.voice_sessions s
          where s.user_id in (select user_id from raw.users where _batch_id = any(%(batches)s))
)
select distinct created_at from raw.voice_sessions
where session_id in (select session_id from touched)
order by 1"""

# Loaded, active batches of the tables dbt reads.
ACTIVE_SQL = "select batch_id from raw.load_batches where active and status = 'loaded' and table_name = any(%s)"


@dataclass
class BuildPlan:
    mode: str                      # 'full' or 'incremental'
    reason: str
    session_days: list[str] | None = None   # None on a full build
    new_batches: list[int] = field(default_factory=list)
    gone_batches: list[int] = field(default_factory=list)

    @property
    def full_refresh(self) -> bool:
        """dbt is told --full-refresh on every full build: also when the fact is missing, the
        other incremental models may exist from an older layout."""
        return self.mode == "full"


def parse_day(value: str | None, name: str) -> dt.date | None:
    if value in (None, ""):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{name} must be a date YYYY-MM-DD, got {value!r}") from exc


def days_to_rebuild(touched: list[dt.date], lookback_days: int,
                    backfill: tuple[dt.date, dt.date] | None = None) -> list[str]:
    """The touched days, the ``lookback_days`` days before the latest of them, and every day of
    the backfill range (inclusive). Pure."""
    if lookback_days < 0:
        raise ValueError(f"lookback_days must be 0 or more, got {lookback_days}")
    days = set(touched)
    if touched:
        latest = max(touched)
        days.update(latest - dt.timedelta(days=k) for k in range(1, lookback_days + 1))
    if backfill:
        first, last = backfill
        if first > last:
            raise ValueError(f"from_date {first} is after to_date {last}")
        days.update(first + dt.timedelta(days=k) for k in range((last - first).days + 1))
    return [d.isoformat() for d in sorted(days)]


def decide(fact_exists: bool, state_recorded: bool, full_refresh: bool) -> str | None:
    """Why the build must be full, or None for an incremental build. Pure."""
    if full_refresh:
        return "full refresh requested"
    if not fact_exists:
        return "the fact does not exist yet"
    if not state_recorded:
        return "no successful build recorded (raw.dbt_built_batches is empty)"
    return None


def plan_build(conn, lookback_days: int, full_refresh: bool = False, run_id: str | None = None,
               from_date: str | None = None, to_date: str | None = None) -> tuple[BuildPlan, int]:
    """The build plan for the warehouse behind ``conn``, written to raw.dbt_rebuild_days (what
    the dbt models read) and logged in raw.dbt_incremental_builds; returns it and its log id.
    A backfill range may omit an end: the earliest / latest session day delivered."""
    start, end = parse_day(from_date, "from_date"), parse_day(to_date, "to_date")
    conn.execute(STATE_DDL)
    tables = list(LOAD_ORDER)
    has_batches = conn.execute("select to_regclass('raw.load_batches') is not null").fetchone()[0]
    active = {r[0] for r in conn.execute(ACTIVE_SQL, (tables,)).fetchall()} if has_batches else set()
    built = {r[0] for r in conn.execute(f"select batch_id from {STATE_TABLE}").fetchall()}
    fact_exists = conn.execute("select to_regclass(%s) is not null", (FACT,)).fetchone()[0]
    new, gone = sorted(active - built), sorted(built - active)
    why_full = decide(fact_exists, bool(built), full_refresh)
    if why_full:
        plan = BuildPlan("full", why_full, None, sorted(active), gone)
    else:
        touched = [r[0] for r in conn.execute(AFFECTED_DAYS_SQL, {"batches": new + gone}).fetchall()] \
            if (new or gone) else []
        backfill = None
        if start or end:
            lo, hi = conn.execute("select min(created_at), max(created_at) from raw.voice_sessions").fetchone()
            backfill = (start or lo or end, end or hi or start)
        days = days_to_rebuild(touched, lookback_days, backfill)
        reason = (f"{len(new)} new and {len(gone)} inactive batch(es) touch {len(touched)} session day(s)"
                  f"; lookback {lookback_days} day(s)"
                  + (f"; backfill {backfill[0]}..{backfill[1]}" if backfill else ""))
        plan = BuildPlan("incremental", reason, days, new, gone)
    # what the dbt models read (macros/incremental.sql); on a full build they read nothing
    conn.execute(f"delete from {DAYS_TABLE}")
    if plan.session_days:
        conn.execute(f"insert into {DAYS_TABLE} select unnest(%s::date[])", (plan.session_days,))
    build_id = conn.execute(
        f"insert into {BUILD_LOG} (dagster_run_id, mode, reason, session_days, new_batches, gone_batches) "
        "values (%s, %s, %s, %s::date[], %s, %s) returning build_id",
        (run_id, plan.mode, plan.reason, plan.session_days, plan.new_batches, plan.gone_batches),
    ).fetchone()[0]
    return plan, build_id


def record_build(conn, plan: BuildPlan, build_id: int, succeeded: bool, run_id: str | None = None) -> None:
    """After dbt: on success, the active batches become the built state."""
    conn.execute(f"update {BUILD_LOG} set succeeded = %s where build_id = %s", (succeeded, build_id))
    if not succeeded:
        return
    if plan.mode == "full":
        conn.execute(f"delete from {STATE_TABLE}")
    elif plan.gone_batches:
        conn.execute(f"delete from {STATE_TABLE} where batch_id = any(%s)", (plan.gone_batches,))
    if plan.new_batches:
        conn.execute(
            f"insert into {STATE_TABLE} (batch_id, dagster_run_id) select unnest(%s::bigint[]), %s "
            "on conflict (batch_id) do nothing", (plan.new_batches, run_id))
