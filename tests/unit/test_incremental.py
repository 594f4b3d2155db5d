"""The incremental build plan's pure rules: which days, when a full build, the dbt step's run config."""

import datetime as dt

import pytest

from voice_analytics_dagster.defs.transform.incremental import BuildPlan, days_to_rebuild, decide, parse_day
from voice_analytics_dagster.defs.transform.partitions import subset_backfill_vars
from voice_analytics_dagster.tools.pipeline import dbt_ops_config, session_day_range

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
    nodes = ["raw__users", "voice_dbt_session_models", "voice_dbt_models", "voice_dbt_models_2", "abandonment_model"]
    assert dbt_ops_config(nodes) == {}
    cfg = {"config": {"full_refresh": True}}
    assert dbt_ops_config(nodes, full_refresh=True) == {
        "voice_dbt_session_models": cfg, "voice_dbt_models": cfg, "voice_dbt_models_2": cfg}
    zero = {"config": {"lookback_days": 0}}
    assert dbt_ops_config(nodes, lookback_days=0) == {
        "voice_dbt_session_models": zero, "voice_dbt_models": zero, "voice_dbt_models_2": zero}


PARTITIONS = ("2024-01-01", "2026-12-08")


def test_a_backfill_is_a_range_of_session_day_partitions():
    delivered = (D(2025, 1, 1), D(2025, 4, 30))
    assert session_day_range(None, None, delivered, PARTITIONS) is None
    assert session_day_range("2025-03-01", "2025-03-31", delivered, PARTITIONS) == (D(2025, 3, 1), D(2025, 3, 31))
    # an omitted end is the first / last day delivered, else the partitions' own end
    assert session_day_range("2025-03-01", None, delivered, PARTITIONS) == (D(2025, 3, 1), D(2025, 4, 30))
    assert session_day_range(None, "2025-02-01", delivered, PARTITIONS) == (D(2025, 1, 1), D(2025, 2, 1))
    assert session_day_range("2025-03-01", None, None, PARTITIONS) == (D(2025, 3, 1), D(2026, 12, 8))
    with pytest.raises(ValueError, match="from_date 2025-03-02 is after to_date 2025-03-01"):
        session_day_range("2025-03-02", "2025-03-01", delivered, PARTITIONS)
    with pytest.raises(ValueError, match="from_date 2023-12-31 has no session-day partition.*FIRST_SESSION_DAY"):
        session_day_range("2023-12-31", "2024-01-02", delivered, PARTITIONS)
    with pytest.raises(ValueError, match="to_date must be a date"):
        session_day_range(None, "2025-02-30", delivered, PARTITIONS)


def test_range_tags_are_the_single_run_backfill_tags():
    from voice_analytics_dagster.defs.transform.partitions import range_tags

    assert range_tags(D(2025, 3, 1), D(2025, 3, 31)) == {
        "dagster/asset_partition_range_start": "2025-03-01", "dagster/asset_partition_range_end": "2025-03-31"}


def test_rebuilt_days_outside_the_run_window_are_reported_and_those_without_a_partition_named():
    import dagster as dg

    from voice_analytics_dagster.defs.transform.partitions import days_outside

    parts = dg.DailyPartitionsDefinition(start_date="2025-01-01", end_date="2025-02-01")
    days = ["2025-01-05", "2025-01-03", "2025-01-04", "2024-12-31", "2025-02-01", "2025-01-04"]
    assert days_outside(days, None, parts) == (["2025-01-03", "2025-01-04", "2025-01-05"],
                                               ["2024-12-31", "2025-02-01"])
    assert days_outside(days, ("2025-01-04", "2025-01-05"), parts) == (["2025-01-03"], ["2024-12-31", "2025-02-01"])


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


def test_only_the_partitioned_step_is_told_the_days_of_a_subset_backfill():
    """The marts' step runs in a partitioned run too; a day var there re-parsed the whole dbt
    project in every daily run."""
    assert subset_backfill_vars(True, ["2025-01-02", "2025-01-03"]) == {"session_days": ["2025-01-02", "2025-01-03"]}
    assert subset_backfill_vars(False, ["2025-01-02"]) is None
