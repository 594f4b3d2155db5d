"""CI's small version of `voice-analytics bench` (issue 7): 2,000 sessions, one repeat, through
the CLI on the session's server. Every stage of the real run and both references (psql \\copy,
pandas to_sql) must come out measured, with positive times and memory, in the table and the JSON;
and the incremental mode (two days of history, a third, nothing new, the third day alone) at its
smallest.
Not a performance test: the figures are not compared with targets here (README "Performance")."""

from __future__ import annotations

import json

import pytest

from voice_analytics_dagster.tools.bench import STAGES

pytestmark = [pytest.mark.integration]


def test_bench_measures_every_stage_and_both_references(server, dbt_manifest, tmp_path, capsys):
    from voice_analytics_dagster.tools.cli import main

    out = tmp_path / "bench.json"
    code = main(["bench", "--sessions", "2000", "--repeat", "1", "--export", str(tmp_path / "export"),
                 "--json", str(out), "--incremental", "--days", "2"])
    printed = capsys.readouterr().out
    assert code == 0, printed

    result = json.loads(out.read_text())
    assert result["sessions"] == 2000 and result["repeat"] == 1
    assert result["rows_by_file"]["voice_sessions.csv"] == 2000
    seconds = result["summary"]["seconds"]
    for stage in (*STAGES, "run", "psql_copy", "pandas_to_sql"):
        assert seconds[stage] > 0, (stage, seconds)
    # the whole command includes every step, and Python start-up besides
    assert seconds["run"] > sum(seconds[s] for s in STAGES)
    for name, value in result["summary"]["throughput"].items():
        assert value > 0, name
    for name, value in result["summary"]["ratios"].items():
        assert value > 0, name
    peaks = result["summary"]["peak_mb"]
    for name in ("process voice-analytics", "process dbt", "psql \\copy", "pandas loader",
                 "run stage ingestion", "run stage model"):
        assert peaks[name] > 1, (name, peaks)
    assert result["copy_tool"] == "psql \\copy"  # the embedded distribution ships psql
    assert result["dbt_top_nodes"] and all(sec >= 0 for _, sec in result["dbt_top_nodes"])
    # whether the run parsed dbt beside ingestion (a new connection: the run's database is the
    # bench's own) is reported per repeat, in the JSON and the table
    assert [type(p) for p in result["dbt_parsed_by_repeat"]] == [bool]
    assert "dbt project parsed during the run (beside ingestion), by repeat: " in printed
    # ingestion over the \copy taken just before it, repeat by repeat (the machine's speed drifts)
    by_repeat = result["ingestion_over_psql_copy_by_repeat"]
    assert by_repeat == [pytest.approx(seconds["ingestion"] / seconds["psql_copy"])]
    assert result["summary"]["ratios"]["ingestion_over_psql_copy_paired"] == pytest.approx(by_repeat[0])
    assert f"the same, repeat by repeat     {by_repeat[0]:.2f}x   (median of {by_repeat[0]:.2f})" in printed

    for label in ("ingestion (raw/* steps)", "dbt build", "checks", "model fit", "publish",
                  "run end-to-end", "reference: psql \\copy", "reference: pandas", "ingestion / psql \\copy",
                  "run / (pandas load + dbt build)"):
        assert label in printed, label
    # --incremental: a full run on two daily deliveries, a third day, then a run with nothing new;
    # each a real run whose stages were read from its events
    inc = result["incremental"]
    assert inc["history_days"] == 2
    for key in ("full_run_s", "one_more_day_run_s", "nothing_new_run_s"):
        assert inc[key] > 0, (key, inc)
    assert inc["one_more_day_stages_s"]["dbt"] > 0 and inc["nothing_new_stages_s"]["dbt"] > 0
    assert f"nothing new delivered: {inc['nothing_new_run_s']:.1f} s" in printed
    # and the same day alone on a new warehouse, the daily run's yardstick, with their ratio
    assert inc["day_alone_run_s"] > 0 and inc["day_alone_stages_s"]["dbt"] > 0
    assert inc["day_over_alone"] == pytest.approx(inc["one_more_day_run_s"] / inc["day_alone_run_s"])
    assert f"costs {inc['day_over_alone']:.2f}x it (target <= 1.5x)" in printed
    assert set(inc["peak_mb"]) == {"full", "one_more_day", "nothing_new", "day_alone"}
    assert all(v > 1 for v in inc["peak_mb"].values()), inc["peak_mb"]
    # the bench dropped its databases: only the session's own remain on the server
    import psycopg

    with psycopg.connect(server.url(dbname="postgres")) as conn:
        left = conn.execute("select datname from pg_database where datname like 'voice_analytics_bench_%'").fetchall()
    assert left == []
