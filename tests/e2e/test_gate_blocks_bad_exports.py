"""The certification gate on broken exports: each break is named by the failed check, the
certified schema keeps exactly its previous rows, and publication_log records the block."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import copy_export

pytestmark = [pytest.mark.e2e]

CERTIFIED = ("fact_voice_ai_sessions", "dq_source_validation", "dq_session_exclusions")


def fingerprint(db) -> dict[str, str]:
    return {
        t: db.scalar(f"select md5(coalesce(string_agg(x::text, '|' order by x::text), '')) from analytics.{t} x")
        for t in CERTIFIED
    }


def rewrite(path: Path, mutate) -> None:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    rows = mutate(rows)
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


def out_of_range_confidence(rows):
    i = rows[0].index("asr_confidence")
    rows[5][i] = "1.7"
    return rows


def duplicate_session_id(rows):
    rows.append(list(rows[3]))
    return rows


def orphan_turn(rows):
    extra = list(rows[1])
    extra[0], extra[1] = "T_ORPHAN", "S_DOES_NOT_EXIST"
    rows.append(extra)
    return rows


def missing_column(rows):
    i = rows[0].index("asr_confidence")
    return [r[:i] + r[i + 1:] for r in rows]


BREAKS = [
    ("voice_turns.csv", out_of_range_confidence, "raw/voice_turns:quarantine_within_tolerance"),
    ("voice_sessions.csv", duplicate_session_id, "raw/voice_sessions:quarantine_within_tolerance"),
    ("voice_turns.csv", orphan_turn,
     "staging/stg_voice_export__turns:relationships_stg_voice_export__turns_session_id__session_id__ref_stg_voice_export__sessions_"),
    ("voice_turns.csv", missing_column, "raw/voice_turns:file_matches_contract"),
]


@pytest.fixture(scope="module")
def certified(published_sample):
    """The real sample as `voice-analytics run` published it (conftest: one run per test session)."""
    return published_sample.db, fingerprint(published_sample.db)


@pytest.mark.parametrize("file,mutate,check", BREAKS, ids=[b[1].__name__ for b in BREAKS])
def test_a_broken_export_is_blocked_by_the_named_check(certified, sample_dir, tmp_path, use_db, file, mutate, check):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    db, before = certified
    use_db(db)
    broken = copy_export(sample_dir, tmp_path / "export")
    rewrite(broken / file, mutate)

    outcome = run_pipeline(broken)

    assert not outcome.published
    assert check in outcome.blocked_by, outcome.report()
    assert check in outcome.report()
    assert fingerprint(db) == before, "the certified schema changed after a blocked run"
    status, blocked_by = db.rows(
        "select status, blocked_by from analytics.publication_log where run_id = %s", (outcome.run_id,))[0]
    assert status == "blocked" and check in blocked_by
    # bad data is never retried: no step went up for retry, dbt was not run again
    from tests.e2e.runs import run_events

    assert run_events(outcome.run_id, "STEP_UP_FOR_RETRY") == []
    assert not [e for e in run_events(outcome.run_id) if "lost the warehouse connection" in (e.user_message or "")]


def test_the_clean_export_publishes_again_after_the_blocks(certified, sample_dir, use_db):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    db, before = certified
    use_db(db)
    outcome = run_pipeline(sample_dir)
    assert outcome.published, outcome.report()
    assert fingerprint(db) == before  # same input, same certified rows
    statuses = [r[0] for r in db.rows("select status from analytics.publication_log order by publication_id")]
    assert statuses == ["published"] + ["blocked"] * len(BREAKS) + ["published"]
