"""Incremental processing end to end: three dated deliveries land one after another in the landing
folder and each is processed by the scheduled job's code path (the schedule's run request,
executed in process like the daemon would). Shows that

- each daily run rebuilds only the session days its new load batches touch (the build plan in
  raw.dbt_incremental_builds, and the rows of the other days are physically untouched: same
  PostgreSQL xmin);
- a late turn (and the corrected outcome) delivered on day 3 for a day-1 session rebuilds day 1,
  and the session's outcome history grows (fct_session_outcome_history);
- the certified tables equal those of a full refresh of the same data, and the history survives
  the full refresh.

One warehouse for the whole module; lookback 0 so that the days rebuilt are exactly the days the
batches touch (the lookback itself is unit-tested in tests/unit/test_incremental.py)."""

import csv
import datetime as dt
import io
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

pytestmark = [pytest.mark.e2e]

DAYS = ["2025-01-01", "2025-01-02", "2025-01-03"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _append(path: Path, rows: list[dict]) -> None:
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    buf = io.StringIO()
    csv.DictWriter(buf, header, lineterminator="\n").writerows(rows)
    with open(path, "a", newline="") as f:
        f.write(buf.getvalue())


def plant_late_turn(export: Path) -> str:
    """Day 3's delivery carries one more turn for an abandoned day-1 session, and that session
    again, now completed (the late turn finished it). Returns the session id."""
    day1, day3 = export / DAYS[0], export / DAYS[2]
    session = next(r for r in _rows(day1 / "voice_sessions.csv") if r["final_outcome"] == "abandoned")
    sid = session["session_id"]
    turns = [t for t in _rows(day1 / "voice_turns.csv") if t["session_id"] == sid]
    last = max(turns, key=lambda t: int(t["turn_number"]))
    late = {**last, "turn_id": f"LATE-{sid}", "turn_number": str(int(last["turn_number"]) + 1),
            "speaker": "system", "error_type": "", "detected_intent": "confirm_submission",
            "created_at": DAYS[2]}
    _append(day3 / "voice_turns.csv", [late])
    corrected = {**session, "final_outcome": "completed", "transfer_reason": "",
                 "total_turns": str(int(session["total_turns"]) + 1)}
    _append(day3 / "voice_sessions.csv", [corrected])
    return sid


def run_scheduled(instance, landing: Path, extra_ops: dict | None = None, day: str = DAYS[-1]) -> str:
    """The daily schedule's run request for the landing folder, executed in process: the run at
    02:00 after ``day``, for that day's partition."""
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB
    from voice_analytics_dagster.defs.automation.schedules import voice_analytics_daily

    at = dt.datetime.combine(dt.date.fromisoformat(day) + dt.timedelta(days=1), dt.time(2), tzinfo=dt.UTC)
    request = voice_analytics_daily(dg.build_schedule_context(instance=instance, scheduled_execution_time=at))
    assert request.tags["dagster/partition"] == day
    assert isinstance(request, dg.RunRequest), request
    run_config = {**request.run_config, **({"ops": extra_ops} if extra_ops else {})}
    result = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(
        run_config=run_config, instance=instance, tags=request.tags, raise_on_error=False)
    return result.run_id


def landing_warehouse(tmp_path: Path, monkeypatch, **settings: str):
    """An empty landing folder for the daily schedule, these VOICE_ANALYTICS_ settings, and the
    Dagster instance: (landing, instance)."""
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings, reset_settings_cache

    landing = tmp_path / "landing"
    landing.mkdir()
    monkeypatch.setenv("VOICE_ANALYTICS_LANDING_DIR", str(landing))
    for name, value in settings.items():
        monkeypatch.setenv(f"VOICE_ANALYTICS_{name}", value)
    reset_settings_cache()
    return landing, open_instance(get_settings())


def last_build(db) -> tuple:
    return db.rows("select mode, reason, coalesce(session_days::text[], '{}'), succeeded "
                   "from raw.dbt_incremental_builds order by build_id desc limit 1")[0]


def xmins(db, table: str) -> dict[str, tuple[str, str]]:
    """session_id -> (session_date, xmin): xmin changes iff the row was written again."""
    return {r[0]: (str(r[1]), r[2]) for r in db.rows(
        f"select session_id, session_date, xmin::text from {table}")}


def cell_xmins(db) -> dict[str, str]:
    """The cells of the marts' cell models (dbt/macros/cells.sql), model:cell_key -> xmin."""
    return {r[0]: r[1] for r in db.rows(
        "select 'day:' || cell_key, xmin::text from intermediate.int_session_day_cells union all "
        "select 'accessibility:' || cell_key, xmin::text from intermediate.int_accessibility_day_cells union all "
        "select 'efficiency:' || cell_key, xmin::text from intermediate.int_efficiency_period_cells union all "
        "select 'adoption:' || cell_key, xmin::text from intermediate.int_adoption_period_cells")}


def rewritten(before: dict[str, str], after: dict[str, str]) -> set[str]:
    """The keys written (or added, or removed) between two cell_xmins."""
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


DAY_MODELS = ("fact_voice_ai_sessions", "stg_voice_export__turns", "stg_voice_export__users")


def last_event_id(instance) -> int:
    """The newest materialization of the models whose days are checked: the event log is shared by
    the whole test session, and other modules materialize the same assets and days."""
    from voice_analytics_dagster.defs.transform.assets import dbt_model_key

    newest = [instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dbt_model_key(m)),
                                              limit=1, ascending=False).records for m in DAY_MODELS]
    return max((r[0].storage_id for r in newest if r), default=0)


def day_runs(instance, model: str, after: int) -> dict[str, str]:
    """Session day -> the run that last materialized the model's partition of that day, as
    Dagster's event log holds it (what the UI shows per day), among the events after ``after``."""
    from voice_analytics_dagster.defs.transform.assets import dbt_model_key

    records = instance.fetch_materializations(dg.AssetRecordsFilter(
        asset_key=dbt_model_key(model), after_storage_id=after), limit=10_000).records
    out = {}
    for r in sorted(records, key=lambda r: r.storage_id):
        if r.partition_key is not None:
            out[r.partition_key] = r.run_id
    return out


def published(db, run_id: str) -> bool:
    return db.scalar("select status from analytics.publication_log where run_id = %s", (run_id,)) == "published"


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, str]:
    from voice_analytics_dagster.tools.generator import generate_export

    out = tmp_path_factory.mktemp("incremental") / "export"
    generate_export(out, 1500, seed=7, days=len(DAYS), switch_day=1, by_day=True, progress=False)
    return out, plant_late_turn(out)


def fact_publication(db, run_id: str) -> str:
    """What publication did to the certified fact in a run (swap.py: copied, unchanged, N days replaced)."""
    return db.scalar("select actions->>'fact_voice_ai_sessions' from analytics.publication_log where run_id = %s",
                     (run_id,))


def test_three_daily_deliveries_rebuild_only_their_days_and_match_a_full_refresh(
        fresh_db, dbt_manifest, export, tmp_path, monkeypatch):
    from voice_analytics_dagster.tools.pipeline import dbt_ops_config

    source, late_session = export
    landing, instance = landing_warehouse(tmp_path, monkeypatch, LOOKBACK_DAYS="0")
    db = fresh_db

    def deliver(day: str) -> str:
        (landing / day).symlink_to(source / day, target_is_directory=True)
        run_id = run_scheduled(instance, landing, day=day)
        assert published(db, run_id), db.rows("select * from analytics.publication_log")
        return run_id

    start = last_event_id(instance)
    # day 1: nothing built yet -> a full build
    run1 = deliver(DAYS[0])
    assert last_build(db)[0] == "full" and last_build(db)[3] is True
    # the run was launched without a partition; it reports the day it built as that day's partition
    assert day_runs(instance, "fact_voice_ai_sessions", start) == {DAYS[0]: run1}
    fact1 = xmins(db, "marts.fact_voice_ai_sessions")
    assert {d for d, _ in fact1.values()} == {DAYS[0]}
    assert fact_publication(db, run1) == "copied"
    published1 = xmins(db, "analytics.fact_voice_ai_sessions")

    # day 2: only day 2 is rebuilt; every day-1 row of the session models is untouched
    stg1 = xmins(db, "staging.stg_voice_export__sessions")
    cells1 = cell_xmins(db)
    run2 = deliver(DAYS[1])
    assert day_runs(instance, "stg_voice_export__turns", start) == {DAYS[0]: run1, DAYS[1]: run2}
    mode, reason, days, ok = last_build(db)
    assert (mode, days, ok) == ("incremental", [DAYS[1]], True), reason
    fact2 = xmins(db, "marts.fact_voice_ai_sessions")
    stg2 = xmins(db, "staging.stg_voice_export__sessions")
    assert {s: v for s, v in fact2.items() if v[0] == DAYS[0]} == fact1
    assert {s: v for s, v in stg2.items() if v[0] == DAYS[0]} == stg1
    day2 = {s for s, v in fact2.items() if v[0] == DAYS[1]}
    assert day2 and not day2 & set(fact1)
    # publication inserted day 2 into the certified fact and left day 1's rows as they were
    assert fact_publication(db, run2) == "1 days replaced"
    published2 = xmins(db, "analytics.fact_voice_ai_sessions")
    assert {s: v for s, v in published2.items() if v[0] == DAYS[0]} == published1
    assert db.scalar("select count(*) from analytics.fct_session_outcome_history") == len(fact2)
    # the marts' cells: day 2 and its week and month computed, day 1's cells kept (the three days
    # share an ISO week, 2025-W01, and a month)
    week_and_month = {"efficiency:week:2024-12-30", "adoption:week:2024-12-30", "adoption:month:2025-01-01"}
    cells2 = cell_xmins(db)
    history2 = xmins(db, "marts.fct_session_outcome_history")
    assert rewritten(cells1, cells2) == {k for k in cells2 if DAYS[1] in k} | week_and_month, cells2

    # day 3 brings a late turn for a day-1 session: days 1 and 3 are rebuilt, day 2 is not
    run3 = deliver(DAYS[2])
    mode, reason, days, ok = last_build(db)
    assert (mode, days, ok) == ("incremental", [DAYS[0], DAYS[2]], True), reason
    # day 1 shows as materialized again, by day 3's run; day 2 keeps its run
    assert day_runs(instance, "fact_voice_ai_sessions", start) == {DAYS[0]: run3, DAYS[1]: run2, DAYS[2]: run3}
    # the whole-history inputs of the fact show only the days each run was launched for
    assert day_runs(instance, "stg_voice_export__users", start) == {DAYS[0]: run1, DAYS[1]: run2, DAYS[2]: run3}
    fact3 = xmins(db, "marts.fact_voice_ai_sessions")
    assert {s: v for s, v in fact3.items() if v[0] == DAYS[1]} == {s: fact2[s] for s in day2}
    assert fact_publication(db, run3) == "2 days replaced"
    published3 = xmins(db, "analytics.fact_voice_ai_sessions")
    assert {s: v for s, v in published3.items() if v[0] == DAYS[1]} == {s: published2[s] for s in day2}
    cells3 = cell_xmins(db)
    # the late turn changed day 1, and adoption's periods depend on every day before them (a
    # user's first day): its day 2 is computed again too; the other models keep day 2's cells
    assert rewritten(cells2, cells3) == ({k for k in cells3 if DAYS[0] in k or DAYS[2] in k} | week_and_month
                                         | {"adoption:day:" + DAYS[1]})
    assert db.rows("select final_outcome, turn_count from analytics.fact_voice_ai_sessions where session_id = %s",
                   (late_session,)) == [("completed", fact_turns_before(db, late_session) + 1)]

    # the history grew by exactly one version: the late session's, abandoned -> completed
    history = db.rows("select session_id, version, final_outcome, is_current from analytics.fct_session_outcome_history "
                      "where session_id in (select session_id from analytics.fct_session_outcome_history "
                      "group by 1 having count(*) > 1) order by version")
    assert history == [(late_session, 1, "abandoned", False), (late_session, 2, "completed", True)]
    # and only the sessions with a new version (day 3's, the late one) had their history rewritten
    history3 = xmins(db, "marts.fct_session_outcome_history")
    assert {s for s in history3 if history3[s] != history2.get(s)} == \
        {s for s, v in fact3.items() if v[0] == DAYS[2]} | {late_session}
    n_history = db.scalar("select count(*) from analytics.fct_session_outcome_history")
    assert n_history == len(fact3) + 1

    # the same data rebuilt from scratch gives the same certified tables; the history survives
    incremental = certified_content(db)
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB

    nodes = [n.name for n in defs.resolve_job_def(PIPELINE_JOB).graph.nodes]
    run_id = run_scheduled(instance, landing, dbt_ops_config(nodes, full_refresh=True))
    assert published(db, run_id)
    assert last_build(db)[:2] == ("full", "full refresh requested")
    rebuilt = certified_content(db)
    assert rebuilt.keys() == incremental.keys()
    for table in rebuilt:
        assert rebuilt[table] == incremental[table], table
    assert db.scalar("select count(*) from analytics.fct_session_outcome_history") == n_history
    assert set(day_runs(instance, "fact_voice_ai_sessions", start).values()) == {run_id}

    # A backfill of day 2 (`voice-analytics run --from-date/--to-date`, as the UI's single-run
    # backfill launches it): one run over the partition range, which rebuilds that day only and
    # publishes the same tables
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    cells = cell_xmins(db)
    outcome = run_pipeline(landing, from_date=DAYS[1], to_date=DAYS[1])
    assert outcome.published, outcome.report()
    # day 2's fact rows were written again with the same content: its fingerprint is the same, so
    # no cell is computed again
    assert cell_xmins(db) == cells
    # both dbt steps parsed partially, on the state `run` parsed beside ingestion (a day var in the
    # marts' step made dbt parse the whole project again: "config vars ... have changed")
    from voice_analytics_dagster.tools.bench.stages import dbt_invocations

    parsed = {i["step"]: i["partial_parse"] for i in dbt_invocations(outcome.run_id)}
    assert parsed == {"voice_dbt_session_models": True, "voice_dbt_models": True}, parsed
    assert instance.get_run_by_id(outcome.run_id).tags["dagster/asset_partition_range_start"] == DAYS[1]
    assert last_build(db)[:3] == ("incremental", last_build(db)[1], [DAYS[1]])
    assert day_runs(instance, "fact_voice_ai_sessions", start)[DAYS[1]] == outcome.run_id
    assert day_runs(instance, "fact_voice_ai_sessions", start)[DAYS[0]] == run_id
    assert certified_content(db) == rebuilt

    # A backfill of one session model without the fact (the UI lets one pick any of the
    # partitioned assets) rebuilds the days it was launched for, and only those
    from voice_analytics_dagster.defs.transform.assets import dbt_model_key

    staged = xmins(db, "staging.stg_voice_export__sessions")
    job = defs.resolve_job_def(PIPELINE_JOB).get_subset(
        asset_selection={dbt_model_key("stg_voice_export__sessions")}, asset_check_selection=set())
    assert job.execute_in_process(instance=instance, partition_key=DAYS[2]).success
    after = xmins(db, "staging.stg_voice_export__sessions")
    assert {s for s in after if after[s] != staged[s]} == {s for s, v in staged.items() if v[0] == DAYS[2]}

    # A fourth delivery holds nothing but a turn and AI metrics of a session never delivered. The
    # staging models look for orphans among the rows delivered since the last build (not among
    # every raw row: dbt/macros/incremental.sql, unbuilt_batch_ids): both are staged without a
    # day, their relationships tests fail, nothing is published.
    orphan_day = landing / "2025-01-04"
    orphan_day.mkdir()
    for f in sorted((source / DAYS[2]).iterdir()):
        if f.suffix != ".csv":  # the generator's marker: this delivery is synthetic like the others
            shutil.copy(f, orphan_day / f.name)
            continue
        rows = _rows(f)
        (orphan_day / f.name).write_text(",".join(rows[0]) + "\n")  # the header only
        if f.name in ("voice_turns.csv", "voice_ai_metrics.csv"):
            _append(orphan_day / f.name, [{**rows[0], "session_id": "S-NEVER-DELIVERED", **(
                {"turn_id": "T-ORPHAN", "created_at": "2025-01-04"} if "turn_id" in rows[0] else {})}])
    run_id = run_scheduled(instance, landing, day="2025-01-04")
    assert not published(db, run_id)
    mode, reason, days, ok = last_build(db)
    # its own day is rebuilt (no session has it); the orphans have no day to rebuild
    assert (mode, days, ok) == ("incremental", ["2025-01-04"], False), reason
    assert db.rows("select turn_id, session_date from staging.stg_voice_export__turns "
                   "where session_id = 'S-NEVER-DELIVERED'") == [("T-ORPHAN", None)]
    assert db.rows("select session_date from staging.stg_voice_export__ai_metrics "
                   "where session_id = 'S-NEVER-DELIVERED'") == [(None,)]
    from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR

    statuses = {r["unique_id"].split(".")[2]: r["status"]
                for p in (DBT_PROJECT_DIR / "target").glob(f"voice_dbt_*-{run_id[:7]}-*/run_results.json")
                for r in json.loads(p.read_text())["results"]}
    for staged in ("turns", "ai_metrics"):
        test = f"relationships_stg_voice_export__{staged}_session_id__session_id__ref_stg_voice_export__sessions_"
        assert statuses.get(test) == "fail", (test, statuses.get(test))
    assert certified_content(db) == rebuilt  # the certified schema as it was

    # The tests of an incremental model read the rows its build wrote (dbt/macros/test_scope.sql).
    # A day-2 turn edited by hand to break a rule, and a day-1 session removed from the raw data:
    # a build of days 1 and 3 writes the removed session's turns again, now orphans, and its
    # relationships test fails on them; its column rules pass (the day-2 row was not written).
    # `dbt test` reads every row: both fail.
    day2_turn = db.scalar("select min(turn_id) from staging.stg_voice_export__turns where session_date = %s", (DAYS[1],))
    day1_session = db.scalar("select min(session_id) from staging.stg_voice_export__sessions "
                             "where session_date = %s and session_id <> %s", (DAYS[0], late_session))
    with db.connect() as conn:
        conn.execute("update staging.stg_voice_export__turns set asr_confidence = 2 where turn_id = %s", (day2_turn,))
        conn.execute("delete from raw.voice_sessions where session_id = %s", (day1_session,))
        conn.execute("insert into raw.dbt_rebuild_days values (%s), (%s)", (DAYS[0], DAYS[2]))
    turns_tests = {"column_rules_stg_voice_export__turns", "unique_stg_voice_export__turns_turn_id",
                   "relationships_stg_voice_export__turns_session_id__session_id__ref_stg_voice_export__sessions_"}
    build = dbt_results(db, tmp_path / "build", "build", "--select", "stg_voice_export__sessions", "stg_voice_export__turns")
    assert {t: build[t] for t in turns_tests} == {
        "column_rules_stg_voice_export__turns": "pass", "unique_stg_voice_export__turns_turn_id": "pass",
        "relationships_stg_voice_export__turns_session_id__session_id__ref_stg_voice_export__sessions_": "fail"}, build
    assert db.scalar("select count(*) from staging.stg_voice_export__turns where session_id = %s "
                     "and session_date is null", (day1_session,)) > 0
    test = dbt_results(db, tmp_path / "test", "test", "--select", "stg_voice_export__turns")
    assert {t: test[t] for t in turns_tests} == {
        "column_rules_stg_voice_export__turns": "fail", "unique_stg_voice_export__turns_turn_id": "pass",
        "relationships_stg_voice_export__turns_session_id__session_id__ref_stg_voice_export__sessions_": "fail"}, test


def dbt_results(db, target: Path, *args: str) -> dict[str, str]:
    """Run dbt by hand against ``db``; every node's status by name (run_results.json)."""
    db.dbt(target, *args)
    results = json.loads((target / "run_results.json").read_text())["results"]
    return {r["unique_id"].split(".")[2]: r["status"] for r in results}


def fact_turns_before(db, session_id: str) -> int:
    """The late session's turn count in its first version (from the history)."""
    return db.scalar("select turn_count from analytics.fct_session_outcome_history "
                     "where session_id = %s and version = 1", (session_id,))


def certified_content(db) -> dict[str, list[str]]:
    """Every certified table's rows (sorted, as JSON), the logs and training clocks aside like
    tests/e2e/runs.fingerprint. Compared exactly: the marts accumulate floats in numeric
    (macros/exact_aggregates.sql), so a table rebuilt by days, whose rows sit in another
    physical order, gives the same figures to the last bit as one built at once."""
    tables = [r[0] for r in db.rows(
        "select table_name from information_schema.tables where table_schema = 'analytics' "
        "and table_name not in ('publication_log', 'fct_abandonment_model_history', 'fct_session_outcome_history')")]
    drop = ["training_id", "trained_at", "fit_seconds"]
    return {t: sorted(json.dumps(r[0], sort_keys=True) for r in db.rows(
        f'select to_jsonb(x) - %s::text[] from analytics."{t}" x', (drop,))) for t in tables}


def test_between_trainings_the_last_model_scores_the_new_and_changed_sessions(
        fresh_db, dbt_manifest, export, tmp_path, monkeypatch):
    """Days 1 and 2 land and the model is trained; day 3 (with a late turn that changes a day-1
    session) lands while the model is not due (a growth threshold above day 3's share): the day-3
    sessions and the changed session are scored by the last model (cv_fold NULL), exactly as its
    certified coefficients say; nothing else is written again. A run asked to refit trains again
    and every score is out-of-fold."""
    import numpy as np
    import pandas as pd

    from voice_analytics_dagster.defs.model.features import FEATURES, KEY, OUTCOME
    from voice_analytics_dagster.defs.model.scoring import HASH_COLUMN, ScoringState, score
    source, late_session = export
    landing, instance = landing_warehouse(tmp_path, monkeypatch, MODEL_REFIT_GROWTH="1.0")
    db = fresh_db
    for day in DAYS[:2]:
        (landing / day).symlink_to(source / day, target_is_directory=True)
    assert published(db, run_scheduled(instance, landing))
    training = db.rows("select training_id, n_sessions_read from analytics.fct_abandonment_model_metrics")
    assert db.scalar("select count(*) from analysis.abandonment_session_scores where cv_fold is null") == 0
    before = {r[0]: r[1:] for r in db.rows(
        "select session_id, abandonment_risk, cv_fold, xmin::text from analysis.abandonment_session_scores")}

    (landing / DAYS[2]).symlink_to(source / DAYS[2], target_is_directory=True)
    run_id = run_scheduled(instance, landing)
    assert published(db, run_id)
    # not trained: the same training is certified, the history holds one
    assert db.rows("select training_id, n_sessions_read from analytics.fct_abandonment_model_metrics") == training
    assert db.scalar("select count(*) from analytics.fct_abandonment_model_history") == 1
    model = instance.get_latest_materialization_event(dg.AssetKey(["analysis", "abandonment_session_scores"]))
    assert model.asset_materialization.metadata["trained"].value is False
    day3 = {r[0] for r in db.rows("select session_id from analytics.fact_voice_ai_sessions where session_date = %s",
                                  (DAYS[2],))}
    after = {r[0]: r[1:] for r in db.rows(
        "select session_id, abandonment_risk, cv_fold, xmin::text from analysis.abandonment_session_scores")}
    rescored = {s for s, (_, fold, _) in after.items() if fold is None}
    assert rescored == day3 | {late_session}
    # the others were not written again
    assert {s: v for s, v in after.items() if s not in rescored} == {s: before[s] for s in after if s not in rescored}
    # every session of the fact is scored (the synthetic export has no NULL model column)
    assert set(after) == {r[0] for r in db.rows("select session_id from analytics.fact_voice_ai_sessions")}

    # the last model's risk, recomputed from its certified coefficients
    state = ScoringState.from_json(db.scalar("select scoring_state from analytics.fct_abandonment_model_metrics"))
    columns = [KEY, OUTCOME, *(f.column for f in FEATURES)]
    frame = pd.DataFrame(db.rows(f"select {', '.join(columns)} from analytics.fact_voice_ai_sessions "
                                 "where session_id = any(%s) order by session_id", (sorted(rescored),)), columns=columns)
    frame[HASH_COLUMN] = 0
    for c in (f.column for f in FEATURES if f.kind == "numeric"):
        frame[c] = frame[c].astype(float)
    expected = score(frame, state)
    assert list(expected.session_ids) == sorted(rescored)
    np.testing.assert_allclose([after[s][0] for s in expected.session_ids], expected.risk, rtol=1e-12)
    exported = dict(db.rows("select session_id, abandonment_risk from analytics.fct_voice_session_export "
                            "where session_id = any(%s)", (sorted(rescored),)))
    assert exported == {s: after[s][0] for s in rescored}

    # asked to refit: trained again on every session, every score out-of-fold
    run_id = run_scheduled(instance, landing, {"abandonment_model": {"config": {"refit": True}}})
    assert published(db, run_id)
    assert db.scalar("select count(*) from analytics.fct_abandonment_model_history") == 2
    assert db.scalar("select n_sessions_read from analytics.fct_abandonment_model_metrics") == len(after)
    assert db.scalar("select count(*) from analysis.abandonment_session_scores where cv_fold is null") == 0
