"""Daily runs and the landing-folder sensor.

Deliveries arrive as dated folders (``landing/2025-04-30/voice_sessions.csv`` ...) under
VOICE_ANALYTICS_LANDING_DIR. Both triggers run ``pipeline_job`` on the whole landing folder:
ingestion loads only files whose checksum it has not loaded before (copy.load_file), so a run
costs a checksum per file already loaded.

- ``voice_analytics_daily``: the catch-all, every day (VOICE_ANALYTICS_SCHEDULE_CRON, default
  02:00, in VOICE_ANALYTICS_SCHEDULE_TIMEZONE, default Africa/Kigali).
- ``landing_sensor``: reacts within a minute to a delivery folder that appears or changes and
  holds files not loaded yet (sha256 compared with ``raw.load_batches``). Its run key is made of
  the folder names and checksums, so Dagster never starts a second run for the same content; a
  run that fails is retried by the next daily run, not by the sensor.

The decisions are pure functions (``scan`` and checksums are the only I/O), unit-tested without
a database.
"""

import datetime as dt
import hashlib
import json
import time
import zoneinfo
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from voice_analytics_dagster.defs.automation.freshness import freshness_job
from voice_analytics_dagster.defs.automation.jobs import pipeline_job
from voice_analytics_dagster.defs.ingestion.batches import DATED_FOLDER_RE
from voice_analytics_dagster.defs.ingestion.reader import file_checksum
from voice_analytics_dagster.defs.transform.partitions import day_that_ended, launch_tags
from voice_analytics_dagster.lib.contract import TABLES
from voice_analytics_dagster.lib.settings import ENV_PREFIX, Settings, SettingsError, get_settings
from voice_analytics_dagster.lib.warehouse import Warehouse

SCHEDULE_NAME = "voice_analytics_daily"
LANDING_SENSOR = "landing_sensor"
TRIGGER_TAG = "voice_analytics/trigger"
DELIVERIES_TAG = "voice_analytics/deliveries"
# A file still being copied must not start a run on half its rows: a folder counts once none of
# its files changed for this long. Copying the sample x1000 (685 MB) to a local disk takes ~3 s
# here; 60 s also covers a slow network upload of a day's delivery.
SETTLE_SECONDS = 60
SENSOR_INTERVAL_SECONDS = 60


# -- run configuration ---------------------------------------------------------------------------

def source_run_config(source: Path) -> dict:
    """Run config that points the ``export_source`` resource at a folder."""
    return {"resources": {"export_source": {"config": {"source_dir": str(source)}}}}


def scheduled_request(settings: Settings, scheduled: dt.datetime | None = None) -> dg.RunRequest | dg.SkipReason:
    """What the daily schedule does for these settings: a run for the session day that ended
    before ``scheduled`` (in the schedule's timezone). Pure but for today's date."""
    if settings.landing_dir is None:
        return dg.SkipReason(
            f"{ENV_PREFIX}LANDING_DIR is not set: no landing folder to load deliveries from"
        )
    return dg.RunRequest(
        run_config=source_run_config(settings.landing_dir),
        tags={TRIGGER_TAG: SCHEDULE_NAME, **launch_tags(day_that_ended(settings.schedule_timezone, scheduled))},
    )


def validated_schedule(settings: Settings) -> tuple[str, str]:
    """(cron, timezone) from the settings, or a SettingsError naming the variable."""
    try:  # Dagster's own validation of a schedule's cron string
        dg.ScheduleDefinition(name="validate", cron_schedule=settings.schedule_cron, job_name="validate")
    except dg.DagsterInvalidDefinitionError:
        raise SettingsError(
            f"{ENV_PREFIX}SCHEDULE_CRON is not a valid cron expression: {settings.schedule_cron!r}"
        ) from None
    try:
        zoneinfo.ZoneInfo(settings.schedule_timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(
            f"{ENV_PREFIX}SCHEDULE_TIMEZONE is not an IANA time zone: {settings.schedule_timezone!r}"
        ) from exc
    return settings.schedule_cron, settings.schedule_timezone


# -- the landing folder --------------------------------------------------------------------------

@dataclass(frozen=True)
class LandingFile:
    table: str
    name: str
    size: int
    mtime_ns: int
    sha256: str | None = None


@dataclass(frozen=True)
class LandingFolder:
    """One dated delivery folder as seen on disk."""

    name: str
    files: tuple[LandingFile, ...]
    missing: tuple[str, ...] = ()

    @property
    def fingerprint(self) -> str:
        """Changes whenever a file is added, removed, rewritten or touched (no reading)."""
        parts = sorted(f"{f.name}:{f.size}:{f.mtime_ns}" for f in self.files)
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def newest_change(self) -> float:
        return max((f.mtime_ns for f in self.files), default=0) / 1e9


def scan_landing(landing: Path) -> list[LandingFolder]:
    """The dated delivery folders under ``landing`` (stat only, no reading), in date order."""
    out = []
    for folder in sorted(p for p in landing.iterdir() if p.is_dir() and DATED_FOLDER_RE.match(p.name)):
        files, missing = [], []
        for t in TABLES:
            path = folder / t.file
            try:
                st = path.stat()
            except FileNotFoundError:
                missing.append(t.file)
                continue
            files.append(LandingFile(t.name, t.file, st.st_size, st.st_mtime_ns))
        out.append(LandingFolder(folder.name, tuple(files), tuple(missing)))
    return out


@dataclass(frozen=True)
class Triage:
    to_check: tuple[LandingFolder, ...]  # complete, settled, changed since last known loaded
    waiting: tuple[str, ...]  # why a folder is not considered yet (incomplete, still changing)


def triage(folders: Sequence[LandingFolder], known_loaded: Mapping[str, str], now: float,
           settle_seconds: float = SETTLE_SECONDS) -> Triage:
    """Which folders need their checksums compared with the warehouse. Pure.

    ``known_loaded`` maps a folder to the fingerprint it had when all its files were found
    loaded (kept in the sensor's cursor): such a folder is not read again until it changes."""
    to_check, waiting = [], []
    for f in folders:
        if f.missing:
            waiting.append(f"{f.name}: incomplete, missing {', '.join(f.missing)}")
        elif now - f.newest_change() < settle_seconds:
            waiting.append(f"{f.name}: files changed less than {settle_seconds:.0f} s ago")
        elif known_loaded.get(f.name) != f.fingerprint:
            to_check.append(f)
    return Triage(tuple(to_check), tuple(waiting))


def with_checksums(folder: LandingFolder, landing: Path) -> LandingFolder:
    files = tuple(
        LandingFile(f.table, f.name, f.size, f.mtime_ns, file_checksum(landing / folder.name / f.name)[0])
        for f in folder.files
    )
    return LandingFolder(folder.name, files, folder.missing)


def unloaded_folders(folders: Sequence[LandingFolder], loaded: set[tuple[str, str]]) -> list[LandingFolder]:
    """Folders holding at least one file whose (table, sha256) is not loaded yet. Pure."""
    return [f for f in folders if any((x.table, x.sha256) not in loaded for x in f.files)]


def folder_days(names) -> list[dt.date]:
    """The days the dated delivery folders are named after (a name that is no date is left out). Pure."""
    days = []
    for name in names:
        try:
            days.append(dt.date.fromisoformat(name))
        except ValueError:
            continue
    return sorted(days)


def landing_run_key(pending: Sequence[LandingFolder]) -> str:
    """Same folders with the same content -> same key (Dagster starts one run per key). Pure."""
    content = sorted(f"{f.name}/{x.name}:{x.sha256}" for f in pending for x in f.files)
    digest = hashlib.sha256("\n".join(content).encode()).hexdigest()[:16]
    return "landing:" + "+".join(sorted(f.name for f in pending)) + ":" + digest


@dataclass(frozen=True)
class LandingCursor:
    known_loaded: dict[str, str]

    def to_json(self) -> str:
        return json.dumps({"known_loaded": self.known_loaded}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> "LandingCursor":
        if not raw:
            return cls({})
        try:
            return cls(dict(json.loads(raw).get("known_loaded", {})))
        except (ValueError, AttributeError):
            return cls({})  # an unreadable cursor only costs re-reading the folders once


LOADED_CHECKSUMS_SQL = """
select table_name, file_checksum from raw.load_batches
where status = 'loaded' and file_checksum = any(%s)
"""


def loaded_checksums(warehouse: Warehouse, checksums: list[str]) -> set[tuple[str, str]]:
    if not checksums:
        return set()
    if not warehouse.scalar("select to_regclass('raw.load_batches') is not null"):
        return set()  # nothing was ever loaded into this warehouse
    return {(t, c) for t, c in warehouse.fetchall(LOADED_CHECKSUMS_SQL, (checksums,))}


def evaluate_landing(settings: Settings, cursor: str | None, now: float | None = None,
                     logger=None) -> dg.SensorResult:
    """One tick of the landing sensor: stat the folders, read only what changed, ask the
    warehouse which checksums it holds, request one run for everything not loaded."""
    landing = settings.landing_dir
    if landing is None:
        return dg.SensorResult(skip_reason=f"{ENV_PREFIX}LANDING_DIR is not set", cursor=cursor)
    if not landing.is_dir():
        return dg.SensorResult(skip_reason=f"landing folder {landing} does not exist", cursor=cursor)
    state = LandingCursor.from_json(cursor)
    folders = scan_landing(landing)
    tri = triage(folders, state.known_loaded, time.time() if now is None else now)
    checked = [with_checksums(f, landing) for f in tri.to_check]
    loaded = loaded_checksums(Warehouse(settings), [x.sha256 for f in checked for x in f.files])
    pending = unloaded_folders(checked, loaded)
    pending_names = {f.name for f in pending}
    present = {f.name for f in folders}
    known = {n: fp for n, fp in state.known_loaded.items() if n in present}  # forget removed folders
    known.update({f.name: f.fingerprint for f in checked if f.name not in pending_names})
    new_cursor = LandingCursor(known).to_json()
    if not pending:
        reason = "no new delivery" + (": " + "; ".join(tri.waiting) if tri.waiting else "")
        return dg.SensorResult(skip_reason=reason, cursor=new_cursor)
    for line in tri.waiting if logger is not None else ():
        logger.info(f"not yet: {line}")
    dated = folder_days(pending_names)
    request = dg.RunRequest(
        run_key=landing_run_key(pending),
        run_config=source_run_config(landing),
        # the session days the deliveries are dated; the run reports any other day they touch
        tags={TRIGGER_TAG: LANDING_SENSOR, DELIVERIES_TAG: ",".join(sorted(pending_names)),
              **launch_tags(*((dated[0], dated[-1]) if dated else (day_that_ended(settings.schedule_timezone),)))},
    )
    return dg.SensorResult(run_requests=[request], cursor=new_cursor)


# -- definitions ---------------------------------------------------------------------------------

def build_daily_schedule(settings: Settings) -> dg.ScheduleDefinition:
    cron, timezone = validated_schedule(settings)

    @dg.schedule(
        name=SCHEDULE_NAME,
        job=pipeline_job,
        cron_schedule=cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Runs the pipeline on the landing folder ({ENV_PREFIX}LANDING_DIR) at '{cron}' {timezone}; "
            "only deliveries not loaded before are loaded."
        ),
    )
    def _daily(context: dg.ScheduleEvaluationContext):
        return scheduled_request(get_settings(), context.scheduled_execution_time)

    return _daily


@dg.sensor(
    name=LANDING_SENSOR,
    job=pipeline_job,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Starts a run when a dated delivery folder (YYYY-MM-DD) under the landing folder appears or "
        "changes and holds files not loaded yet; one run per content (run key = folders + checksums)."
    ),
)
def landing_sensor(context: dg.SensorEvaluationContext):
    return evaluate_landing(get_settings(), context.cursor, logger=context.log)


voice_analytics_daily = build_daily_schedule(get_settings())


# Hourly, off the hour: freshness is a matter of hours (limit 36 h), and an hour's delay in
# noticing is far below it.
freshness_schedule = dg.ScheduleDefinition(
    name="voice_analytics_freshness_hourly",
    job=freshness_job,
    cron_schedule="17 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Evaluate the freshness checks every hour (warn severity; alerts through check_failure_alerts).",
)
