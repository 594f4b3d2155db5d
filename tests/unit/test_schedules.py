"""The schedule's and the landing sensor's decisions, without a database."""

from pathlib import Path

import dagster as dg
import pytest

from voice_analytics_dagster.defs.automation.schedules import (
    SCHEDULE_NAME,
    TRIGGER_TAG,
    LandingCursor,
    LandingFile,
    LandingFolder,
    folder_days,
    landing_run_key,
    scan_landing,
    scheduled_request,
    source_run_config,
    triage,
    unloaded_folders,
    validated_schedule,
)
from voice_analytics_dagster.lib.contract import TABLES
from voice_analytics_dagster.lib.settings import SettingsError, load_settings

NOW = 1_800_000_000.0


def settings(tmp_path, **env):
    base = {"VOICE_ANALYTICS_HOME": str(tmp_path / "home"), "VOICE_ANALYTICS_HASH_KEY": "k" * 32,
            "VOICE_ANALYTICS_BI_PASSWORD": "x"}
    return load_settings({**base, **{f"VOICE_ANALYTICS_{k}": v for k, v in env.items()}})


def folder(name, shas=None, mtime=NOW - 3600, missing=()):
    shas = shas or {t.name: f"{name}-{t.name}" for t in TABLES}
    files = tuple(LandingFile(t, f"{t}.csv", 100, int(mtime * 1e9), sha) for t, sha in shas.items())
    return LandingFolder(name, files, tuple(missing))


def test_schedule_request_points_export_source_at_the_landing_folder(tmp_path):
    request = scheduled_request(settings(tmp_path, LANDING_DIR=str(tmp_path / "landing")))
    assert isinstance(request, dg.RunRequest)
    assert request.run_config == source_run_config(tmp_path / "landing")
    assert request.run_config["resources"]["export_source"]["config"]["source_dir"] == str(tmp_path / "landing")
    assert request.tags[TRIGGER_TAG] == SCHEDULE_NAME


def test_schedule_and_sensor_launch_the_days_they_know(tmp_path):
    import datetime as dt

    from voice_analytics_dagster.defs.transform.partitions import launch_tags, session_days

    at = dt.datetime(2025, 5, 1, 2, tzinfo=dt.UTC)
    request = scheduled_request(settings(tmp_path, LANDING_DIR=str(tmp_path / "landing")), at)
    assert request.tags["dagster/partition"] == "2025-04-30"
    assert folder_days(["2025-05-02", "2025-04-30", "2025-02-30"]) == [dt.date(2025, 4, 30), dt.date(2025, 5, 2)]
    assert launch_tags(dt.date(2025, 4, 30), dt.date(2025, 5, 2)) == {
        "dagster/asset_partition_range_start": "2025-04-30", "dagster/asset_partition_range_end": "2025-05-02"}
    # a day outside the partitions is moved to their nearest end
    first = session_days.get_first_partition_key()
    assert launch_tags(dt.date(1999, 1, 1)) == {"dagster/partition": first}
    assert launch_tags(dt.date(2999, 1, 1)) == {"dagster/partition": session_days.get_last_partition_key()}


def test_schedule_skips_with_the_variable_named_when_no_landing_folder(tmp_path):
    skip = scheduled_request(settings(tmp_path))
    assert isinstance(skip, dg.SkipReason)
    assert "VOICE_ANALYTICS_LANDING_DIR" in skip.skip_message


def test_schedule_defaults_and_bad_values(tmp_path):
    assert validated_schedule(settings(tmp_path)) == ("0 2 * * *", "Africa/Kigali")
    assert validated_schedule(settings(tmp_path, SCHEDULE_CRON="30 5 * * 1-5", SCHEDULE_TIMEZONE="UTC")) == (
        "30 5 * * 1-5", "UTC")
    with pytest.raises(SettingsError, match="VOICE_ANALYTICS_SCHEDULE_CRON"):
        validated_schedule(settings(tmp_path, SCHEDULE_CRON="every day"))
    with pytest.raises(SettingsError, match="VOICE_ANALYTICS_SCHEDULE_TIMEZONE"):
        validated_schedule(settings(tmp_path, SCHEDULE_TIMEZONE="Mars/Olympus"))


def test_triage_waits_for_complete_and_settled_folders():
    complete = folder("2025-04-30")
    incomplete = folder("2025-05-01", {"users": "a"}, missing=("voice_turns.csv",))
    copying = folder("2025-05-02", mtime=NOW - 5)
    tri = triage([complete, incomplete, copying], {}, NOW)
    assert [f.name for f in tri.to_check] == ["2025-04-30"]
    assert any("2025-05-01" in w and "voice_turns.csv" in w for w in tri.waiting)
    assert any("2025-05-02" in w and "changed" in w for w in tri.waiting)


def test_triage_skips_a_folder_known_loaded_until_it_changes():
    f = folder("2025-04-30")
    assert triage([f], {"2025-04-30": f.fingerprint}, NOW).to_check == ()
    touched = folder("2025-04-30", mtime=NOW - 600)
    assert touched.fingerprint != f.fingerprint
    assert [x.name for x in triage([touched], {"2025-04-30": f.fingerprint}, NOW).to_check] == ["2025-04-30"]


def test_a_folder_is_pending_while_any_of_its_files_is_not_loaded():
    f = folder("2025-04-30")
    all_loaded = {(x.table, x.sha256) for x in f.files}
    assert unloaded_folders([f], all_loaded) == []
    assert unloaded_folders([f], all_loaded - {("voice_turns", "2025-04-30-voice_turns")}) == [f]
    # the same content under another table does not count as loaded
    assert unloaded_folders([f], {("users", x.sha256) for x in f.files}) == [f]


def test_run_key_is_stable_per_content_and_changes_with_it():
    a, b = folder("2025-04-30"), folder("2025-05-01")
    assert landing_run_key([a, b]) == landing_run_key([b, a])
    assert landing_run_key([a]).startswith("landing:2025-04-30:")
    assert "2025-04-30+2025-05-01" in landing_run_key([a, b])
    redelivered = folder("2025-04-30", {**{x.table: x.sha256 for x in a.files}, "voice_turns": "new"})
    assert landing_run_key([redelivered]) != landing_run_key([a])


def test_cursor_round_trip_and_unreadable_cursor():
    c = LandingCursor({"2025-04-30": "abc"})
    assert LandingCursor.from_json(c.to_json()) == c
    assert LandingCursor.from_json(None) == LandingCursor({})
    assert LandingCursor.from_json("not json") == LandingCursor({})


def test_scan_landing_lists_dated_folders_only(tmp_path: Path):
    (tmp_path / "2025-04-30").mkdir()
    for t in TABLES:
        (tmp_path / "2025-04-30" / t.file).write_text("x\n")
    (tmp_path / "2025-05-01").mkdir()
    (tmp_path / "2025-05-01" / "users.csv").write_text("x\n")
    (tmp_path / "archive").mkdir()
    folders = scan_landing(tmp_path)
    assert [f.name for f in folders] == ["2025-04-30", "2025-05-01"]
    assert folders[0].missing == () and len(folders[0].files) == len(TABLES)
    assert "voice_turns.csv" in folders[1].missing
