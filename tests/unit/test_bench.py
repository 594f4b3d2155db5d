"""Pure parts of the bench: which stage a Dagster step belongs to, step intervals from events,
per-stage peaks from the RSS timeline, the psql script of the physical-limit reference."""

from __future__ import annotations

from voice_analytics_dagster.tools.bench.commands import copy_script
from voice_analytics_dagster.tools.bench.report import render_incremental
from voice_analytics_dagster.tools.bench.sampling import label_of
from voice_analytics_dagster.tools.bench.stages import (
    peak_in,
    ratio,
    split_dbt_step,
    stage_of_step,
    stage_seconds,
    step_intervals,
)


def test_every_step_of_the_pipeline_job_has_its_stage():
    # the step keys of a real run (tests/e2e runs print the same)
    expected = {
        "source_adapters": "ingestion",
        "raw_export": "ingestion",
        "raw__voice_turns": "ingestion",
        "raw__users": "ingestion",
        "freshness_check_cb35f2bc": "checks",
        "voice_dbt_models": "dbt",
        "voice_dbt_models_2": "dbt",
        "marts__fact_voice_ai_sessions_sessions_reconcile": "checks",
        "marts__fact_voice_ai_sessions_daily_volume_within_range": "checks",
        "abandonment_model": "model",
        "publish_certified_schema": "publish",
        "marts__fact_voice_ai_sessions_fact_has_sessions": "checks",
        "reports__voice_analytics_report": "report",
        "something_new": "other",
    }
    assert {k: stage_of_step(k) for k in expected} == expected


def test_the_step_keys_of_the_job_all_map_to_a_known_stage():
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB

    job = defs.resolve_job_def(PIPELINE_JOB)
    keys = [node.name for node in job.graph.node_defs]
    assert keys and all(stage_of_step(k) != "other" for k in keys), [k for k in keys if stage_of_step(k) == "other"]


def test_step_intervals_and_stage_seconds():
    events = [(10.0, "STEP_START", "raw__users"), (12.5, "STEP_SUCCESS", "raw__users"),
              (12.6, "STEP_START", "voice_dbt_models"), (20.6, "STEP_FAILURE", "voice_dbt_models"),
              (21.0, "STEP_START", "abandonment_model")]  # never ended: not counted
    intervals = step_intervals(list(reversed(events)))
    assert intervals == {"raw__users": (10.0, 12.5), "voice_dbt_models": (12.6, 20.6)}
    seconds = stage_seconds(intervals)
    assert seconds["ingestion"] == 2.5 and abs(seconds["dbt"] - 8.0) < 1e-9 and seconds["model"] == 0.0


def test_peak_in_counts_the_sample_just_before_the_step():
    timeline = [(1.0, 100), (2.0, 500), (3.0, 200), (4.0, 900)]
    assert peak_in(timeline, 2.5, 3.5) == 500  # the 2.0 sample is where the step started from
    assert peak_in(timeline, 1.0, 3.0) == 500
    assert peak_in(timeline, 0.0, 0.5) is None


def test_ratio_and_labels():
    assert ratio(3.0, 2.0) == 1.5 and ratio(1.0, 0.0) is None and ratio(None, 1.0) is None
    assert label_of("/venv/bin/python /venv/bin/dbt build --select x") == "dbt"
    assert label_of("/venv/bin/python -m voice_analytics_dagster.tools.cli run --source x") == "voice-analytics"
    assert label_of("") == "?"


def test_copy_script_names_the_header_columns_in_file_order(tmp_path):
    from voice_analytics_dagster.lib.contract import TABLES

    for t in TABLES:
        cols = [c.name for c in t.columns][::-1]  # reversed: \copy must follow the file, not the contract
        (tmp_path / f"{t.name}.csv").write_text(",".join(cols) + "\n")
    script = copy_script(tmp_path, "bench_copy")
    assert "create table bench_copy.voice_turns (turn_id " in script
    users = [line for line in script.splitlines() if line.startswith("\\copy bench_copy.users ")][0]
    assert "(" + ", ".join([c.name for c in TABLES[0].columns][::-1]) + ")" in users
    assert "with (format csv, header true)" in users


def test_the_partial_parse_fingerprint_follows_the_dbt_connection_and_vars_only():
    from voice_analytics_dagster.defs.transform.parse import parse_fingerprint

    env = {"VOICE_ANALYTICS_DBT_HOST": "/tmp/pg", "VOICE_ANALYTICS_DBT_PORT": "5432",
           "VOICE_ANALYTICS_DBT_USER": "postgres", "VOICE_ANALYTICS_DBT_DBNAME": "voice_analytics",
           "PGOPTIONS": "-c voice_analytics.hmac_inner=aa", "DBT_ENV_SECRET_VOICE_ANALYTICS_PASSWORD": "x"}
    base = parse_fingerprint(env, {"min_cell_size": 10})
    # secrets and session options are not in dbt's profile hash: changing them must not re-parse
    assert parse_fingerprint({**env, "PGOPTIONS": "other", "DBT_ENV_SECRET_VOICE_ANALYTICS_PASSWORD": "y"},
                             {"min_cell_size": 10}) == base
    assert parse_fingerprint({**env, "VOICE_ANALYTICS_DBT_DBNAME": "other"}, {"min_cell_size": 10}) != base
    assert parse_fingerprint(env, {"min_cell_size": 5}) != base
    assert "aa" not in base and len(base) == 64


def test_a_dbt_step_splits_into_dbt_start_command_and_dagster_after():
    inv = {"step": "voice_dbt_models", "command_s": 50.0, "first_ts": 102.5, "last_ts": 152.5}
    split = split_dbt_step(inv, (100.0, 155.0))
    assert split["startup_s"] == 2.5 and split["after_s"] == 2.5 and split["command_s"] == 50.0
    assert split_dbt_step(inv, None) == inv  # a step without events: nothing invented
    assert "startup_s" not in split_dbt_step({**inv, "first_ts": None}, (100.0, 155.0))


def test_the_incremental_figures_show_the_day_and_the_run_with_nothing_new():
    inc = {"history_days": 120, "full_run_s": 158.1, "one_more_day_run_s": 96.1, "ratio": 96.1 / 158.1,
           "one_more_day_stages_s": {"ingestion": 4.2, "dbt": 65.9, "checks": 0.0},
           "nothing_new_run_s": 80.0, "nothing_new_ratio": 80.0 / 158.1,
           "nothing_new_stages_s": {"ingestion": 0.4, "dbt": 55.0}}
    lines = render_incremental(inc)
    assert lines[0] == "incremental: full run on 120 days 158.1 s; one more day 96.1 s = 61% of it"
    assert lines[1] == "  one more day, by stage (s): ingestion 4.2, dbt 65.9"  # a stage of 0 s left out
    assert lines[2].startswith("  nothing new delivered: 80.0 s = 51% of the full run")
    assert lines[3] == "  nothing new, by stage (s): ingestion 0.4, dbt 55.0"
    # a result written before the run with nothing new was measured still renders
    old = {k: v for k, v in inc.items() if not k.startswith("nothing_new")}
    assert render_incremental(old) == lines[:2]


def test_the_incremental_figures_compare_the_day_with_the_same_day_alone():
    inc = {"history_days": 120, "full_run_s": 158.1, "one_more_day_run_s": 96.1, "ratio": 96.1 / 158.1,
           "one_more_day_stages_s": {"dbt": 65.9}, "day_alone_run_s": 24.0, "day_over_alone": 96.1 / 24.0,
           "day_alone_stages_s": {"ingestion": 0.5, "dbt": 12.25},
           "peak_mb": {"full": 861.4, "one_more_day": 790.0, "day_alone": 301.2}}
    lines = render_incremental(inc)
    assert lines[2] == ("  the same day alone on a new warehouse: 24.0 s; the day onto the history costs 4.00x it "
                        "(target <= 1.5x)")
    assert lines[3] == "  the day alone, by stage (s): ingestion 0.5, dbt 12.2"
    assert lines[4] == "  largest process, by run (MB): full 861, one more day 790, day alone 301"


def test_each_dbt_connection_and_vars_keep_their_own_partial_parse_state():
    """Runs on two warehouses from one checkout (two homes, two test sessions) must not replace
    each other's state, and the state `make setup`'s prepare-and-package writes to
    target/partial_parse.msgpack (default profile, no vars) must never pass for a run's: each of
    the run's dbt steps would parse the whole project again."""
    from voice_analytics_dagster.defs.transform.dbt_cli import PARSE_STATE_FOLDER
    from voice_analytics_dagster.defs.transform.parse import parse_state_path, parse_states_dir
    from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR

    ours, theirs = parse_state_path("f" * 64), parse_state_path("e" * 64)
    assert ours != theirs and ours.parent.parent == theirs.parent.parent == parse_states_dir()
    assert ours != DBT_PROJECT_DIR / "target" / "partial_parse.msgpack"
    assert PARSE_STATE_FOLDER.match(ours.parent.name) and ours.name == "partial_parse.msgpack"


def test_a_day_alone_carries_the_users_its_sessions_and_applications_refer_to(tmp_path):
    from voice_analytics_dagster.tools.bench.runner import day_alone

    landing = tmp_path / "landing"
    for day, users, sessions, applications in (
        ("2025-01-01", ["U1,urban,no,no", "U2,rural,yes,no"], ["S1,U1"], []),
        ("2025-01-02", ["U3,rural,no,yes", "U1,rural,no,no"], ["S2,U2", "S3,U3"], ["A1,S9,U1"]),
    ):
        d = landing / day
        d.mkdir(parents=True)
        (d / "users.csv").write_text("user_id,region,disability_flag,first_time_digital_user\n"
                                     + "".join(f"{u}\n" for u in users))
        (d / "voice_sessions.csv").write_text("session_id,user_id\n" + "".join(f"{s}\n" for s in sessions))
        (d / "applications.csv").write_text("application_id,session_id,user_id\n"
                                            + "".join(f"{a}\n" for a in applications))
        (d / "voice_turns.csv").write_text(f"turn_id,session_id\nT-{day},S1\n")
    out = tmp_path / "alone" / "2025-01-02"
    day_alone(landing, "2025-01-02", out)
    # U2 came with the first day; U1 was delivered again on the second: its later row
    assert (out / "users.csv").read_text() == ("user_id,region,disability_flag,first_time_digital_user\n"
                                               "U1,rural,no,no\nU2,rural,yes,no\nU3,rural,no,yes\n")
    assert (out / "voice_turns.csv").read_text() == "turn_id,session_id\nT-2025-01-02,S1\n"
    assert sorted(p.name for p in out.iterdir()) == ["applications.csv", "users.csv", "voice_sessions.csv",
                                                     "voice_turns.csv"]


def test_without_references_the_run_is_reported_and_no_reference_figure_is_invented():
    """`bench --no-references` (the 10M run: pandas to_sql would take hours): the references'
    rows show "-", and no ratio is computed against a reference that was not measured."""
    from voice_analytics_dagster.tools.bench.report import render, summarise
    from voice_analytics_dagster.tools.bench.runner import Repeat

    r = Repeat(run_seconds=1000.0, stages={"ingestion": 100.0, "dbt": 800.0}, stage_peaks={"dbt": 900_000_000},
               run_peaks={"dagster run": 950_000_000}, run_tree_peak=950_000_000, copy_seconds=None,
               copy_peak=None, pandas_seconds=None, pandas_peak=None, pg_backend_anon_peak=50_000_000)
    summary = summarise([r], rows=10, size=10_000_000)
    assert summary["seconds"]["run"] == 1000.0 and summary["seconds"]["psql_copy"] is None
    assert all(v is None for v in summary["ratios"].values())
    assert summary["peak_mb"]["psql \\copy"] is None and summary["peak_mb"]["process dagster run"] == 950.0
    text = render({"sessions": 10, "rows": 10, "bytes": 10_000_000, "repeat": 1, "copy_tool": "psql \\copy",
                   "shared_buffers": "128MB", "summary": summary,
                   "machine": {"cpus": 2, "loadavg_start": [0.1, 0.1, 0.1]}})
    pandas_row = next(line for line in text.splitlines() if line.startswith("reference: pandas"))
    assert pandas_row.split()[-1] == "-" and "run / (pandas load + dbt build) -" in text
