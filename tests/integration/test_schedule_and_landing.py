"""The daily schedule and the landing sensor, evaluated as Dagster evaluates them, against a real
warehouse: a delivery folder requests one run; once its files are loaded (by the real raw
ingestion assets, with the run config the sensor asked for) it requests none."""

import datetime as dt
import os
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.conftest import copy_export

pytestmark = [pytest.mark.integration]


def landing_env(monkeypatch, landing: Path | None):
    from voice_analytics_dagster.lib.settings import reset_settings_cache

    if landing is None:
        monkeypatch.delenv("VOICE_ANALYTICS_LANDING_DIR", raising=False)
    else:
        monkeypatch.setenv("VOICE_ANALYTICS_LANDING_DIR", str(landing))
    reset_settings_cache()


def settled(folder: Path, age_seconds: float = 3600) -> Path:
    """As if the delivery had been copied an hour ago."""
    when = time.time() - age_seconds
    for f in folder.iterdir():
        os.utime(f, (when, when))
    return folder


def deliver(sample_dir: Path, landing: Path, name: str, drop_last_rows: int = 0) -> Path:
    folder = copy_export(sample_dir, landing / name)
    if drop_last_rows:  # a delivery of its own: different content, different checksums
        for f in folder.glob("*.csv"):
            lines = f.read_bytes().splitlines(keepends=True)
            f.write_bytes(b"".join(lines[:-drop_last_rows]))
    return settled(folder)


def tick(instance, cursor=None) -> dg.SensorResult:
    from voice_analytics_dagster.defs.automation.schedules import landing_sensor

    result = landing_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult)
    return result


@pytest.fixture
def instance(server):
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings

    return open_instance(get_settings())


def test_schedule_runs_the_pipeline_on_the_landing_folder(instance, tmp_path, monkeypatch):
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB
    from voice_analytics_dagster.defs.automation.schedules import voice_analytics_daily

    assert voice_analytics_daily.cron_schedule == "0 2 * * *"
    assert voice_analytics_daily.execution_timezone == "Africa/Kigali"
    assert voice_analytics_daily.job_name == PIPELINE_JOB
    when = dt.datetime(2025, 5, 1, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))

    landing_env(monkeypatch, tmp_path / "landing")
    request = voice_analytics_daily(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert isinstance(request, dg.RunRequest)
    assert request.run_config["resources"]["export_source"]["config"]["source_dir"] == str(tmp_path / "landing")
    assert request.tags["dagster/partition"] == "2025-04-30"  # the session day that ended
    # the run config is valid for the scheduled job as the daemon would launch it
    dg.validate_run_config(defs.resolve_job_def(PIPELINE_JOB), request.run_config)

    landing_env(monkeypatch, None)
    skip = voice_analytics_daily(dg.build_schedule_context(instance=instance, scheduled_execution_time=when))
    assert isinstance(skip, dg.SkipReason) and "VOICE_ANALYTICS_LANDING_DIR" in skip.skip_message


def test_landing_sensor_requests_one_run_per_new_delivery(fresh_db, instance, sample_dir, tmp_path, monkeypatch):
    from voice_analytics_dagster.defs.ingestion.assets import raw_assets
    from voice_analytics_dagster.lib.resources import (
        ExportSourceResource,
        WarehouseLockResource,
        WarehouseResource,
    )

    landing = tmp_path / "landing"
    landing.mkdir()
    landing_env(monkeypatch, None)
    assert "VOICE_ANALYTICS_LANDING_DIR" in tick(instance).skip_reason.skip_message
    landing_env(monkeypatch, landing)
    assert tick(instance).run_requests == []  # empty landing folder

    deliver(sample_dir, landing, "2025-04-30")
    first = tick(instance)
    assert len(first.run_requests) == 1
    request = first.run_requests[0]
    assert request.run_key.startswith("landing:2025-04-30:")
    assert request.run_config["resources"]["export_source"]["config"]["source_dir"] == str(landing)
    assert request.tags["voice_analytics/deliveries"] == "2025-04-30"
    assert request.tags["dagster/partition"] == "2025-04-30"  # the day the delivery is dated
    # nothing loaded yet: the same content asks again with the same key (Dagster starts it once)
    assert tick(instance, first.cursor).run_requests[0].run_key == request.run_key

    # the requested run's ingestion, with the sensor's run config
    result = dg.materialize(
        raw_assets, instance=instance, run_config=request.run_config,
        resources={"warehouse": WarehouseResource(), "warehouse_lock": WarehouseLockResource(),
                   "export_source": ExportSourceResource()},
    )
    assert result.success
    assert fresh_db.scalar("select count(*) from raw.load_batches where status = 'loaded'") == 5

    after = tick(instance, first.cursor)
    assert after.run_requests == [] and "no new delivery" in after.skip_reason.skip_message
    # the warehouse decides, not only the cursor: a fresh cursor finds everything loaded too
    assert tick(instance, None).run_requests == []

    # an incomplete delivery waits, naming a missing file
    (landing / "2025-05-02").mkdir()
    shutil.copy(sample_dir / "users.csv", landing / "2025-05-02" / "users.csv")
    settled(landing / "2025-05-02")
    incomplete = tick(instance, after.cursor)
    assert incomplete.run_requests == []
    message = incomplete.skip_reason.skip_message
    assert "2025-05-02: incomplete, missing" in message and "applications.csv" in message

    # a second day: still being copied, then settled
    second = deliver(sample_dir, landing, "2025-05-01", drop_last_rows=1)
    settled(second, age_seconds=5)
    waiting = tick(instance, after.cursor)
    assert waiting.run_requests == [] and "2025-05-01" in waiting.skip_reason.skip_message
    settled(second)
    new_day = tick(instance, after.cursor)
    assert [r.run_key.split(":")[1] for r in new_day.run_requests] == ["2025-05-01"]

    # a re-delivered file with other content under a loaded day is new again
    turns = landing / "2025-04-30" / "voice_turns.csv"
    turns.write_bytes(turns.read_bytes() + turns.read_bytes().splitlines(keepends=True)[1].replace(b"T", b"TX", 1))
    settled(landing / "2025-04-30")
    redelivered = tick(instance, new_day.cursor)
    keys = [r.run_key for r in redelivered.run_requests]
    assert len(keys) == 1 and keys[0].startswith("landing:2025-04-30+2025-05-01:") and keys[0] != request.run_key
