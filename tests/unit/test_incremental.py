"""The incremental build plan's pure rules: which days, when a full build, the dbt step's run config."""

import datetime as dt

import pytest

from voice_analytics_dagster.defs.transform.incremental import BuildPlan, days_to_rebuild, decide, parse_day
from voice_analytics_dagster.tools.pipeline import dbt_ops_config

D = dt.date


def test_touched_days_plus_lookback_before_the_latest():
    assert days_to_rebuild([D(2025, 1, 10), D(2025, 1, 2)], 2) == [
        "2025-01-02", "2025-01-08", "2025-01-09", "2025-01-10"]


def test_no_touched_day_means_nothing_to_rebuild_whatever_the_lookback():
    assert days_to_rebuild([], 3) == []


def test_lookback_zero_is_exactly_the_touched_days():
    assert days_to_rebuild([D(2025, 1, 5)], 0) == ["2025-01-05"]


def test_backfill_range_is_inclusive_and_merged():
    assert days_to_rebuild([D(2025, 1, 5)], 0, (D(2025, 1, 3), D(2025, 1, 5))) == [
        "2025-01-03", "2025-01-04", "2025-01-05"]
    with pytest.raises(ValueError, match="after"):
        days_to_rebuild([], 0, (D(2025, 1, 5), D(2025, 1, 3)))
    with pytest.raises(ValueError, match="0 or more"):
        days_to_rebuild([], -1)


def test_dates_are_validated():
    assert parse_day("2025-02-28", "from_date") == D(2025, 2, 28)
    assert parse_day(None, "from_date") is None
    with pytest.raises(ValueError, match="from_date must be a date"):
        parse_day("2025-02-30", "from_date")


def test_full_build_when_asked_when_the_fact_is_missing_or_no_build_was_recorded():
    assert decide(True, True, False) is None
    assert decide(True, True, True) == "full refresh requested"
    assert decide(False, True, False) == "the fact does not exist yet"
    assert "no successful build" in decide(True, False, False)
    assert BuildPlan("full", "x").full_refresh and not BuildPlan("incremental", "x", []).full_refresh


def test_dbt_ops_config_reaches_every_dbt_node_and_only_them():
    nodes = ["raw__users", "voice_dbt_models", "voice_dbt_models_2", "abandonment_model"]
    assert dbt_ops_config(nodes) == {}
    cfg = {"config": {"full_refresh": True, "from_date": "2025-01-01"}}
    assert dbt_ops_config(nodes, full_refresh=True, from_date="2025-01-01") == {
        "voice_dbt_models": cfg, "voice_dbt_models_2": cfg}
    assert dbt_ops_config(nodes, lookback_days=0) == {
        "voice_dbt_models": {"config": {"lookback_days": 0}}, "voice_dbt_models_2": {"config": {"lookback_days": 0}}}


def test_a_full_refresh_or_refit_model_trains_the_model_again(tmp_path):
    from voice_analytics_dagster.tools.cli import build_parser
    from voice_analytics_dagster.tools.pipeline import RunOptions, run_config

    nodes = ["voice_dbt_models", "abandonment_model"]
    for options in (RunOptions(full_refresh=True), RunOptions(refit_model=True)):
        assert run_config(tmp_path, nodes, options, verbose=False)["ops"]["abandonment_model"] == {
            "config": {"refit": True}}
    assert "ops" not in run_config(tmp_path, nodes, RunOptions(), verbose=False)
    # a job without the model step gets no config for it
    assert "ops" not in run_config(tmp_path, ["x"], RunOptions(refit_model=True), verbose=False)
    assert build_parser().parse_args(["run", "--source", "x", "--refit-model"]).refit_model
