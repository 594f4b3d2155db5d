"""Settings from the environment, the dbt CLI's arguments and environment, the HMAC pads."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from voice_analytics_dagster.defs.transform.dbt_cli import (
    INVOCATION_FOLDER,
    PARSE_STATE_FOLDER,
    dbt_build_args,
    dbt_env,
    hmac_pads,
    invocation_folder_name,
    stale_invocation_folders,
)
from voice_analytics_dagster.lib.settings import SettingsError, load_settings
from voice_analytics_dagster.lib.warehouse import ConnInfo, parse_database_url


def test_production_mode_refuses_to_invent_secrets(tmp_path):
    with pytest.raises(SettingsError, match="VOICE_ANALYTICS_HASH_KEY.*VOICE_ANALYTICS_BI_PASSWORD"):
        load_settings({"VOICE_ANALYTICS_MODE": "production", "VOICE_ANALYTICS_HOME": str(tmp_path)})
    s = load_settings({"VOICE_ANALYTICS_MODE": "production", "VOICE_ANALYTICS_HOME": str(tmp_path),
                       "VOICE_ANALYTICS_HASH_KEY": "k" * 32, "VOICE_ANALYTICS_BI_PASSWORD": "pw"})
    assert s.hash_key == "k" * 32 and not (tmp_path / "secrets").exists()


def test_development_secrets_are_random_and_stable(tmp_path):
    a = load_settings({"VOICE_ANALYTICS_HOME": str(tmp_path)})
    b = load_settings({"VOICE_ANALYTICS_HOME": str(tmp_path)})
    other = load_settings({"VOICE_ANALYTICS_HOME": str(tmp_path / "other")})
    assert a.hash_key == b.hash_key != other.hash_key
    assert len(a.hash_key) == 64
    assert (tmp_path / "secrets" / "hash_key").stat().st_mode & 0o077 == 0
    assert "hash_key" not in repr(a) and a.hash_key not in repr(a)


@pytest.mark.parametrize("env,message", [
    ({"VOICE_ANALYTICS_MIN_CELL_SIZE": "ten"}, "MIN_CELL_SIZE must be an integer"),
    ({"VOICE_ANALYTICS_MIN_CELL_SIZE": "0"}, "MIN_CELL_SIZE must be >= 1"),
    ({"VOICE_ANALYTICS_QUARANTINE_TOLERANCE": "1.5"}, "QUARANTINE_TOLERANCE must be between 0 and 1"),
    ({"VOICE_ANALYTICS_BI_ROLE": "bi; drop table x"}, "BI_ROLE must be a plain SQL identifier"),
    ({"VOICE_ANALYTICS_MODE": "staging"}, "MODE must be development or production"),
    ({"VOICE_ANALYTICS_HASH_KEY": "short"}, "at least 16 characters"),
])
def test_bad_settings_name_the_variable(tmp_path, env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings({"VOICE_ANALYTICS_HOME": str(tmp_path), **env})


@pytest.mark.parametrize("key", ["a" * 16, "ümlaut-key-0123456789", "x" * 100])
def test_hmac_pads_reproduce_rfc2104(key):
    """H(outer || H(inner || m)) with our pads is HMAC-SHA256(key, m): what the SQL macro computes."""
    inner, outer = hmac_pads(key)
    message = b"U1000"
    ours = hashlib.sha256(bytes.fromhex(outer) + hashlib.sha256(bytes.fromhex(inner) + message).digest()).hexdigest()
    assert ours == hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def test_dbt_environment_carries_the_pads_not_the_key(tmp_path):
    s = load_settings({"VOICE_ANALYTICS_HOME": str(tmp_path), "VOICE_ANALYTICS_HASH_KEY": "secret-key-0123456789"})
    env = dbt_env(s, ConnInfo("/tmp/sock", 5432, "postgres", "pw", "wh"))
    assert env["VOICE_ANALYTICS_DBT_HOST"] == "/tmp/sock" and env["VOICE_ANALYTICS_DBT_DBNAME"] == "wh"
    assert "voice_analytics.hmac_inner=" in env["PGOPTIONS"]
    assert all("secret-key" not in v for v in env.values())
    # the password goes through dbt's secret-scrubbed variable
    assert env["DBT_ENV_SECRET_VOICE_ANALYTICS_PASSWORD"] == "pw"


def test_dbt_build_args_pass_settings_as_vars(tmp_path):
    s = load_settings({"VOICE_ANALYTICS_HOME": str(tmp_path), "VOICE_ANALYTICS_MIN_CELL_SIZE": "5"})
    args = dbt_build_args(s, full_refresh=True, extra_vars={"x": 1})
    assert args[0] == "build" and args[-1] == "--full-refresh"
    assert json.loads(args[args.index("--vars") + 1]) == {
        "min_cell_size": 5, "asr_low_confidence_threshold": 0.6, "x": 1}


@pytest.mark.parametrize("url,expected", [
    ("postgresql://u:p%40ss@db.example:6543/wh", ConnInfo("db.example", 6543, "u", "p@ss", "wh")),
    ("postgresql+psycopg2://u@/wh?host=/run/pg&port=5433", ConnInfo("/run/pg", 5433, "u", "", "wh")),
])
def test_database_urls_round_trip(url, expected):
    info = parse_database_url(url)
    assert info == expected
    assert parse_database_url(info.url()) == expected
    assert info.url(driver="psycopg2").startswith("postgresql+psycopg2://")



def test_only_old_invocation_folders_beyond_the_newest_are_pruned():
    """dagster-dbt leaves a target folder per invocation; the newest `keep` stay, and so does any
    folder younger than min_age_s (another run's step may be writing it). dbt's own files and
    folders (the prepared manifest, a background parse's scratch folder) are never touched."""
    now = 100_000.0
    folders = [(f"voice_dbt_models-{i:07x}-abc1234", now - 10_000 + i) for i in range(5)]
    folders += [("voice_dbt_session_models-00000aa-1f2e3d4", now - 60),  # young: kept
                ("manifest.json", 0.0), ("partial_parse.msgpack", 0.0), (".parse-4242", 0.0), ("compiled", 0.0)]
    stale = stale_invocation_folders(folders, now, keep=2, min_age_s=3600)
    # newest two: the young one and folder 4; the rest of the invocation folders go, oldest included
    assert sorted(stale) == [f"voice_dbt_models-{i:07x}-abc1234" for i in range(4)]
    assert stale_invocation_folders(folders, now, keep=10, min_age_s=3600) == []
    assert stale_invocation_folders(folders, now, keep=0, min_age_s=0)[0] == "voice_dbt_session_models-00000aa-1f2e3d4"
    # "parse" (the states' folder) is not an invocation folder; under it, the same rule keeps the
    # newest states, and an invocation's name is never taken for a state's
    assert "parse" not in stale_invocation_folders([*folders, ("parse", 0.0)], now, keep=0, min_age_s=0)
    states = [(f"{i:016x}", now - 10_000 + i) for i in range(3)] + [("voice_dbt_models-0000001-abc1234", 0.0)]
    assert stale_invocation_folders(states, now, keep=1, min_age_s=3600, pattern=PARSE_STATE_FOLDER) == [
        f"{1:016x}", f"{0:016x}"]
    assert invocation_folder_name("voice_dbt_models", "0123456789abcdef", "abc1234") == "voice_dbt_models-0123456-abc1234"
    assert INVOCATION_FOLDER.match(invocation_folder_name("voice_dbt_models", "0123456789abcdef", "abc1234"))
