"""What a new user meets first (issue: "First contact you can trust"): the demo never touches the
warehouse that holds real data; a warehouse refuses to mix synthetic and real exports; every
publication says what it read; a publication that would empty what BI reads, or drop many
sessions, is blocked unless accepted; a run's output is plain lines with the report's path."""

from __future__ import annotations

import csv
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT, copy_export
from tests.e2e.runs import fingerprint

pytestmark = [pytest.mark.e2e]

DEMO_SESSIONS = 2000


def every_certified_table(db) -> dict[str, str]:
    """Every certified table's content, the logs included: what only differs between two runs of
    the same data (their ids and clocks) is left out, what the data decide is kept (for the
    session history: the versions and whether they are current)."""
    out = {k: v for k, v in fingerprint(db).items() if k != "publication_log rows"}
    out["fct_session_outcome_history"] = db.scalar(
        "select md5(string_agg(r, '|' order by r)) from (select (to_jsonb(h) - array['valid_from', 'valid_to'])::text "
        "|| (valid_to is null)::text as r from analytics.fct_session_outcome_history h) s")
    out["fct_abandonment_model_history"] = db.scalar(
        "select md5(string_agg(r, '|' order by r)) from (select (to_jsonb(h) - array['training_id', 'trained_at', "
        "'fit_seconds'])::text as r from analytics.fct_abandonment_model_history h) s")
    out["publication_log"] = str(db.rows(
        "select status, tables, sources, dataset, generator_seeds from analytics.publication_log order by publication_id"))
    return out


def cli(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "voice_analytics_dagster.tools.cli", *args], env=environ,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_demo_then_the_sample_in_one_home_equals_the_sample_alone(fresh_db, sample_dir, sample_template, server):
    """The README's own order: `demo`, then `run` on the real sample, in the same home. Every
    certified table (session history and model history included) is what a sample-only run
    published, the log names the sample alone, and the demo's data live in its own home."""
    import psycopg

    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.tools.cli import main

    demo = cli("demo", "--sessions", str(DEMO_SESSIONS))
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    demo_home = get_settings().demo_home
    assert f"demo's own embedded PostgreSQL in {demo_home}" in demo.stdout
    assert "--demo ui" in demo.stdout and "--demo psql" in demo.stdout
    assert "read: synthetic data, generator seed 0 from" in demo.stdout

    assert fresh_db.scalar("select to_regclass('raw.load_batches')") is None, "the demo wrote into the main warehouse"
    assert main(["run", "--source", str(sample_dir)]) == 0
    assert every_certified_table(fresh_db) == every_certified_table(sample_template.db)
    assert fresh_db.rows("select distinct dataset, source_folder from raw.load_batches") == [("real", str(sample_dir))]

    # the demo's warehouse is the demo's: its own server, its synthetic sessions, its seed
    demo_psql = cli("--demo", "psql", "-At", "-c", "select dataset, generator_seeds from analytics.publication_log")
    assert demo_psql.returncode == 0, demo_psql.stderr
    assert demo_psql.stdout.strip() == "synthetic|{0}"
    assert (demo_home / "pgdata").is_dir() and demo_home != get_settings().home
    with psycopg.connect(server.url(dbname="postgres"), autocommit=True) as conn:
        assert not conn.execute("select 1 from pg_database where datname like '%%demo%%'").fetchall()


def test_a_warehouse_of_real_data_refuses_a_synthetic_export(published_sample, use_db, tmp_path):
    from voice_analytics_dagster.tools.generator import generate_export
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    db = use_db(published_sample.db)
    before = fingerprint(db)
    batches = db.scalar("select count(*) from raw.load_batches")
    export = tmp_path / "synthetic"
    generate_export(export, 300, seed=7, progress=False)

    outcome = run_pipeline(export)

    assert not outcome.published
    report = outcome.report()
    assert "synthetic and real exports are never mixed in one warehouse" in report, report
    assert "--demo run --source DIR" in report and "VOICE_ANALYTICS_HOME" in report
    assert db.scalar("select count(*) from raw.load_batches") == batches, "the synthetic files were loaded"
    assert fingerprint(db)["fact_voice_ai_sessions"] == before["fact_voice_ai_sessions"]


def test_every_publication_says_what_it_read(published_sample, sample_dir):
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.provenance import DATASET_TAG, SOURCE_TAG
    from voice_analytics_dagster.lib.settings import get_settings

    db = published_sample.db
    sources, formats, dataset, seeds, inputs = db.rows(
        "select sources, formats, dataset, generator_seeds, inputs from analytics.publication_log "
        "where run_id = %s", (published_sample.run_id,))[0]
    assert (sources, formats, dataset, seeds) == ([str(sample_dir)], ["csv"], "real", [])
    assert sorted(f["table"] for f in inputs) == sorted(
        ["users", "voice_sessions", "voice_turns", "voice_ai_metrics", "applications"])
    for f in inputs:
        assert f["sha256"] == sha256(Path(f["path"])), f
        assert f["rows_read"] == f["rows_loaded"] + f["rows_quarantined"] > 0
    # the run itself carries its source, for the Dagster UI
    run = open_instance(get_settings()).get_run_by_id(published_sample.run_id)
    assert run.tags[SOURCE_TAG] == str(sample_dir) and run.tags[DATASET_TAG] == "real"


def january_only(src: Path, dst: Path) -> Path:
    """The sample cut to its January sessions (and their turns, metrics and applications)."""
    copy_export(src, dst)
    with open(dst / "voice_sessions.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    day = rows[0].index("created_at")
    kept = [rows[0]] + [r for r in rows[1:] if r[day].startswith("2025-01")]
    sessions = {r[0] for r in kept[1:]}
    for name, column in (("voice_sessions.csv", None), ("voice_turns.csv", "session_id"),
                         ("voice_ai_metrics.csv", "session_id"), ("applications.csv", "session_id")):
        with open(dst / name, newline="") as fh:
            table = list(csv.reader(fh))
        i = table[0].index(column or "session_id")
        table = [table[0]] + [r for r in table[1:] if r[i] in sessions]
        with open(dst / name, "w", newline="") as fh:
            csv.writer(fh, lineterminator="\n").writerows(table)
    return dst


def test_a_header_only_turns_file_is_blocked_and_the_schema_kept(published_sample, sample_dir, use_db, tmp_path):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    db = use_db(published_sample.db)
    before = fingerprint(db)
    export = copy_export(sample_dir, tmp_path / "export")
    header = (sample_dir / "voice_turns.csv").read_text().splitlines()[0]
    (export / "voice_turns.csv").write_text(header + "\n")

    # accepting a shrink would not publish it either: the fact's own blocking check stops it first
    outcome = run_pipeline(export, accept_shrink=True)
    assert not outcome.published, outcome.report()
    assert "marts/fact_voice_ai_sessions:fact_has_sessions" in outcome.blocked_by, outcome.report()
    assert content_of(fingerprint(db)) == content_of(before)
    status, sources = db.rows("select status, sources from analytics.publication_log where run_id = %s",
                              (outcome.run_id,))[0]
    # the turns file is this export's; the other four are byte for byte the sample's, loaded before
    assert status == "blocked" and str(export) in sources


def content_of(fp: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in fp.items() if k != "publication_log rows"}


def test_a_publication_that_drops_most_sessions_needs_accepting(published_sample, sample_dir, use_db, tmp_path):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    db = use_db(published_sample.db)
    before = fingerprint(db)
    sessions_before = db.scalar("select count(*) from analytics.fact_voice_ai_sessions")
    export = january_only(sample_dir, tmp_path / "january")

    refused = run_pipeline(export)
    assert not refused.published
    assert "step:publish_certified_schema" in refused.blocked_by, refused.report()
    assert f"the fact's sessions would drop from {sessions_before:,} to" in refused.report()
    assert "--accept-shrink" in refused.report()
    assert content_of(fingerprint(db)) == content_of(before)

    accepted = run_pipeline(export, accept_shrink=True)
    assert accepted.published, accepted.report()
    after = db.scalar("select count(*) from analytics.fact_voice_ai_sessions")
    assert 0 < after < sessions_before * 0.8
    accepted_shrink, shrink, message = db.rows(
        "select accepted_shrink, shrink, message from analytics.publication_log where run_id = %s",
        (accepted.run_id,))[0]
    assert accepted_shrink and shrink["fact_voice_ai_sessions"] == {"published": sessions_before, "new": after}
    assert "shrink accepted (--accept-shrink)" in message
    # the sessions the new export no longer holds are closed in the certified history
    closed = db.scalar("select count(*) from analytics.fct_session_outcome_history h where not is_current "
                       "and not exists (select 1 from analytics.fact_voice_ai_sessions f where f.session_id = h.session_id)")
    current = db.scalar("select count(*) from analytics.fct_session_outcome_history where is_current")
    assert current == after and closed == sessions_before - after


def test_a_run_prints_plain_lines_the_report_and_the_log(published_sample, sample_dir, use_db):
    db = use_db(published_sample.db)
    done = cli("run", "--source", str(sample_dir), env={"VOICE_ANALYTICS_DATABASE": db.name})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    report = next(line for line in done.stdout.splitlines() if line.startswith("Report: "))
    assert Path(report.removeprefix("Report: ")).is_file()
    assert f"read: real data from {sample_dir} (csv, 5 file(s))" in done.stdout

    blocked = cli("run", "--source", str(sample_dir / "no-such-folder"), env={"VOICE_ANALYTICS_DATABASE": db.name})
    assert blocked.returncode == 1
    assert "Traceback" not in blocked.stdout + blocked.stderr
    assert "source folder not found" in blocked.stdout
    log = next(line for line in blocked.stdout.splitlines() if line.startswith("Full log"))
    kept = Path(log.split(": ", 1)[1]).read_text()
    assert "source folder not found" in kept and "Stack Trace" in kept  # the trace is kept, in the file named

    bi = cli("psql", "--bi", "-At", "-c", "select count(*) from analytics.fact_voice_ai_sessions",
             env={"VOICE_ANALYTICS_DATABASE": db.name})
    assert bi.returncode == 0 and bi.stdout.strip() == str(db.scalar("select count(*) from analytics.fact_voice_ai_sessions"))
    denied = cli("psql", "--bi", "-c", "select count(*) from raw.load_batches", env={"VOICE_ANALYTICS_DATABASE": db.name})
    assert denied.returncode != 0 and "permission denied" in denied.stderr
