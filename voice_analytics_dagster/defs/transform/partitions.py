"""Session-day partitions of the session-grain models (dbt tag ``session_day``: the staged
sessions, turns and AI metrics, the two session-grain intermediates and the fact).

A partition is the day a session started (``session_date``), not the day its rows were
delivered: a late turn delivered on 3 May for a session of 1 May changes 1 May's figures, so it is
1 May that is built again and shown as materialized again.

Every run is launched for the days it is known to build: the daily schedule for the day that
ended (as Dagster's partitioned schedules do), the landing sensor for the dated delivery folders
it saw, ``voice-analytics run`` for yesterday or its ``--from-date/--to-date``, the UI for the
days picked (a range is one run: ``BackfillPolicy.single_run()``). Which other days a delivery
touches is known only once it is loaded (a turn names its session, not its day; platform logs are
converted inside the run), so the run rebuilds those too and reports each as that day's
materialization.
The raw tables stay delivery-grain: a delivery is what is loaded, checksummed and quarantined,
and one delivery holds rows of several session days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

import dagster as dg

from voice_analytics_dagster.lib.settings import get_settings

SESSION_DAY_TAG = "session_day"  # the dbt tag of the partitioned models

# end_offset=1: today's sessions have a partition as soon as they are delivered
session_days = dg.DailyPartitionsDefinition(start_date=get_settings().first_session_day, end_offset=1)

PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_tags(first: dt.date, last: dt.date) -> dict[str, str]:
    """The run tags of a run over the session days ``first``..``last`` (inclusive): what the UI's
    single-run backfill sets. Pure."""
    if first > last:
        raise ValueError(f"from_date {first} is after to_date {last}")
    return {RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()}


def launch_tags(first: dt.date, last: dt.date | None = None) -> dict[str, str]:
    """The run tags of a run over ``first``..``last`` (default: the one day), each end moved into
    the partitions (a delivery dated before the first partition, or after today). Pure but for
    today's date."""
    lo, hi = (dt.date.fromisoformat(k) for k in (session_days.get_first_partition_key(),
                                                  session_days.get_last_partition_key()))
    first, last = (min(max(d, lo), hi) for d in (first, last or first))
    if first == last:
        return {PARTITION_TAG: first.isoformat()}
    return range_tags(first, last)


def run_window(context: dg.AssetExecutionContext) -> tuple[str, str] | None:
    """The run's session days as (first, last) inclusive, or None for a run without partitions."""
    if not (context.has_partition_key or context.has_partition_key_range):
        return None
    keys = context.partition_key_range
    return keys.start, keys.end


def subset_backfill_vars(step_is_partitioned: bool, partition_keys: Sequence[str]) -> dict | None:
    """The dbt vars of a dbt step that does not build the fact, in a run with partitions: for a
    backfill of some session models (the UI lets one pick any partitioned asset), the run's days,
    so that they rebuild those days and not the last build plan's. None for the marts' step
    (unpartitioned, although the run has a partition): a var that changes every day makes dbt
    parse the whole project again ("config vars ... have changed"), seconds of every daily run.
    Pure."""
    return {"session_days": list(partition_keys)} if step_is_partitioned else None


def day_that_ended(timezone: str, now: dt.datetime | None = None) -> dt.date:
    """The session day before ``now`` (default: now) in ``timezone``: the day a daily run is
    launched for (as Dagster's partitioned schedules do)."""
    import zoneinfo

    return (now or dt.datetime.now(zoneinfo.ZoneInfo(timezone))).date() - dt.timedelta(days=1)


def days_outside(days: Iterable[str], window: tuple[str, str] | None,
                 partitions: dg.DailyPartitionsDefinition) -> tuple[list[str], list[str]]:
    """Of the days a build rebuilt: those to report as materialized at run time (not in the run's
    window, whose outputs Dagster records itself, and with a partition), and those without a
    partition (before the first day, or after tomorrow). Pure."""
    first, last = partitions.get_first_partition_key(), partitions.get_last_partition_key()
    report, unpartitioned = [], []
    for day in sorted(set(days)):
        if window is not None and window[0] <= day <= window[1]:
            continue
        (report if first <= day <= last else unpartitioned).append(day)
    return report, unpartitioned
