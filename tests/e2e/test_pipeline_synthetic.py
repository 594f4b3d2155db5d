"""End to end on a small synthetic export through the command line: generate, run, run again."""

from __future__ import annotations

import hashlib
import hmac

import pytest

pytestmark = [pytest.mark.e2e]

SESSIONS = 1500


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    from voice_analytics_dagster.tools.cli import main

    out = tmp_path_factory.mktemp("synthetic")
    assert main(["generate", "--sessions", str(SESSIONS), "--out", str(out), "--seed", "7", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def first_run(module_db, export, dbt_manifest):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    outcome = run_pipeline(export)
    assert outcome.published, outcome.report()
    return module_db, outcome


def fingerprint(db, table):
    return db.scalar(f"select md5(string_agg(x::text, '|' order by x::text)) from analytics.{table} x")


def test_every_synthetic_session_is_certified(first_run, use_db):
    db = use_db(first_run[0])
    assert db.scalar("select count(*) from analytics.fact_voice_ai_sessions") == SESSIONS
    assert db.scalar("select count(*) from analytics.dq_session_exclusions") == 0
    # the clean export's links validate, so this time the fact joins the applications
    assert db.scalar("select bool_and(passed) from analytics.dq_source_validation where gate is not null")
    assert db.scalar("select count(*) from analytics.fact_voice_ai_sessions where application_count > 0") > 0


def test_user_key_is_the_keyed_hash_of_the_user_id(first_run, use_db, export):
    from voice_analytics_dagster.lib.settings import get_settings

    db = use_db(first_run[0])
    import csv

    with open(export / "voice_sessions.csv", newline="") as fh:
        first = next(csv.DictReader(fh))
    expected = hmac.new(get_settings().hash_key.encode(), first["user_id"].encode(), hashlib.sha256).hexdigest()[:32]
    got = db.scalar("select user_key from analytics.fact_voice_ai_sessions where session_id = %s",
                    (first["session_id"],))
    assert got == expected


def test_loading_the_same_export_again_adds_no_rows(first_run, use_db, export):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    db = use_db(first_run[0])
    raw_before = {t: db.scalar(f"select count(*) from raw.{t}") for t in ("users", "voice_sessions", "voice_turns")}
    fact_before = fingerprint(db, "fact_voice_ai_sessions")
    batches_before = db.scalar("select count(*) from raw.load_batches")

    outcome = run_pipeline(export)

    assert outcome.published, outcome.report()
    assert {t: db.scalar(f"select count(*) from raw.{t}") for t in raw_before} == raw_before
    assert db.scalar("select count(*) from raw.load_batches") == batches_before
    assert fingerprint(db, "fact_voice_ai_sessions") == fact_before
    assert db.scalar("select count(*) from analytics.publication_log where status = 'published'") == 2
