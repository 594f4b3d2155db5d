"""End to end on the real sample: `voice-analytics run` publishes the certified fact and the
source validation; nothing outside raw holds a raw user id."""

from __future__ import annotations

import csv

import pytest

pytestmark = [pytest.mark.e2e]


@pytest.fixture(scope="module")
def published(published_sample):
    """The real sample as `voice-analytics run` published it (conftest: one run per test session)."""
    return published_sample.db


def _csv(sample_dir, name):
    with open(sample_dir / name, newline="") as fh:
        return list(csv.DictReader(fh))


def test_fact_has_one_row_per_valid_session(published, sample_dir, use_db):
    db = use_db(published)
    sessions = {r["session_id"] for r in _csv(sample_dir, "voice_sessions.csv")}
    with_turns = {r["session_id"] for r in _csv(sample_dir, "voice_turns.csv")}
    fact = {r[0] for r in db.rows("select session_id from analytics.fact_voice_ai_sessions")}
    excluded = dict(db.rows("select session_id, exclusion_reason from analytics.dq_session_exclusions"))
    assert fact == sessions & with_turns
    # reconciliation: every session read is in the fact or excluded with a reason
    assert fact | set(excluded) == sessions and not fact & set(excluded)
    assert set(excluded.values()) == {"no_turns"}


def test_fact_matches_an_independent_computation(published, sample_dir, use_db):
    db = use_db(published)
    turns = _csv(sample_dir, "voice_turns.csv")
    sid = "S2000"
    mine = [t for t in turns if t["session_id"] == sid]
    row = db.rows(
        "select turn_count, error_turn_count, silence_rate, avg_asr_confidence, is_abandoned "
        "from analytics.fact_voice_ai_sessions where session_id = %s", (sid,)
    )[0]
    assert row[0] == len(mine)
    assert row[1] == sum(1 for t in mine if t["error_type"])
    assert row[2] == pytest.approx(sum(1 for t in mine if t["error_type"] == "silence") / len(mine))
    assert row[3] == pytest.approx(sum(float(t["asr_confidence"]) for t in mine) / len(mine))
    assert row[4] is True  # S2000 is abandoned in the sample


def test_source_validation_measures_the_real_disagreements(published, use_db):
    db = use_db(published)
    v = {r[0]: r[1:] for r in db.rows(
        "select measurement, n_checked, n_agree, agreement_rate, passed, decision from analytics.dq_source_validation")}
    assert v["session_user_exists"][2] == 1.0
    # applications name sessions whose user is someone else: the gate stays closed
    assert v["application_user_matches_session_user"][2] < 0.01
    assert v["application_user_matches_session_user"][4].startswith("blocks")
    # the per-session metrics are exactly the turn aggregates: that gate opens
    assert v["metrics_avg_asr_confidence_matches_turns"][2] == 1.0
    assert v["metrics_avg_asr_confidence_matches_turns"][4].startswith("supports")
    assert v["session_total_turns_matches_turns"][2] < 0.2
    # the decisions reach the fact
    apps = db.scalar("select count(*) from analytics.fact_voice_ai_sessions where application_count is not null")
    recov = db.scalar("select count(*) from analytics.fact_voice_ai_sessions where recovery_success is not null")
    assert apps == 0 and recov > 1000


def test_no_raw_user_id_outside_raw(published, sample_dir, use_db):
    db = use_db(published)
    user_ids = sorted({r["user_id"] for r in _csv(sample_dir, "users.csv")})
    columns = db.rows(
        """select table_schema, table_name, column_name from information_schema.columns
           where table_schema not in ('raw', 'pg_catalog', 'information_schema')
             and data_type in ('text', 'character varying', 'jsonb', 'ARRAY')""")
    assert columns, "nothing scanned"
    hits = []
    for schema, table, column in columns:
        n = db.scalar(
            f'select count(*) from "{schema}"."{table}" where "{column}"::text ~ %s',
            (r"\m(" + "|".join(user_ids) + r")\M",),
        )
        if n:
            hits.append(f"{schema}.{table}.{column}: {n}")
    assert not hits, hits


def test_published_tables_are_the_tested_working_tables(published, use_db):
    db = use_db(published)
    for table in ("fact_voice_ai_sessions", "dq_source_validation", "dq_session_exclusions"):
        assert db.scalar(f"select count(*) from analytics.{table}") == db.scalar(f"select count(*) from marts.{table}")
    log = db.rows("select status, tables from analytics.publication_log")
    assert [r[0] for r in log] == ["published"]
    assert log[0][1]["fact_voice_ai_sessions"] == 1196
