"""The dashboards as code (metabase/), checked statically: every card is a thin SELECT on one
certified table of analytics (no join, no aggregate, no CASE: the logic lives in the tested marts),
every rate it shows comes with its interval and its n, the dbt exposures agree with the dashboards,
and the dashboards appear in the Dagster asset graph downstream of the tables they read."""

from __future__ import annotations

import json

import pytest

from voice_analytics_dagster.defs.bi import spec

COLLECTION = spec.load_collection()
CARDS = COLLECTION.cards()


@pytest.fixture(scope="module")
def manifest(dbt_manifest):
    return json.loads(dbt_manifest.read_text())


@pytest.fixture(scope="module")
def certified(dbt_manifest) -> set[str]:
    from voice_analytics_dagster.defs.publish.assets import certified_tables

    return {t.name for t, _ in certified_tables()}


def test_the_specs_hold_five_dashboards_in_one_collection():
    assert [d.name for d in COLLECTION.dashboards] == [
        "Accessibility", "Efficiency", "Adoption", "Error reduction", "Abandonment drivers"]
    assert all(d.cards for d in COLLECTION.dashboards)


@pytest.mark.parametrize("card", CARDS, ids=[c.name for c in CARDS])
def test_each_card_reads_one_certified_table_of_analytics(card, certified):
    tables = spec.tables_read(card.sql)
    assert len(tables) == 1, f"a card reads one table (a join belongs in a mart): {tables}"
    [(schema, table)] = tables
    assert schema == "analytics", f"cards read the certified schema only, not {schema or 'an unqualified name'}"
    assert table in certified, f"analytics.{table} is not a certified table"


@pytest.mark.parametrize("card", CARDS, ids=[c.name for c in CARDS])
def test_each_card_is_a_thin_select(card):
    assert spec.logic_in(card.sql) == []
    assert "*" not in spec.selected_columns(card.sql), "name the columns (a new column must be a decision)"


@pytest.mark.parametrize("card", CARDS, ids=[c.name for c in CARDS])
def test_each_rate_is_shown_with_its_interval_and_n(card):
    columns = set(spec.selected_columns(card.sql))
    assert spec.undeclared_rates(card) == []
    for rate in card.rates:
        needed = {rate.value, *rate.ci, *rate.n}
        assert needed <= columns, f"{rate.value}: the card does not select {sorted(needed - columns)}"


def test_the_static_checks_catch_logic_and_foreign_tables():
    bad = "select s.region, count(*) from marts.fact_voice_ai_sessions s join analytics.fct_voice_kpis k on true group by 1"
    assert spec.tables_read(bad) == {("marts", "fact_voice_ai_sessions"), ("analytics", "fct_voice_kpis")}
    assert {"join", "aggregate", "group by"} <= set(spec.logic_in(bad))
    assert spec.logic_in("select case when suppressed then 0 else value end from analytics.fct_voice_kpis") == ["case"]
    assert spec.logic_in("select coalesce(value, 0) as value from analytics.fct_voice_kpis") == ["coalesce"]
    card = spec.Card("x", "x", "table", "select n_sessions, completion_rate from analytics.t", {})
    assert spec.undeclared_rates(card) == ["completion_rate"]


def test_charts_leave_gaps_for_withheld_values_and_tables_highlight_them():
    for card in CARDS:
        settings = spec.visualization_settings(card)
        for style in settings.get("series_settings", {}).values():
            assert style.get("line.missing", "none") == "none"  # never "zero"
        if card.display == "table" and "suppressed" in spec.selected_columns(card.sql):
            [rule] = settings["table.column_formatting"]
            assert rule["column"] == "suppressed" and rule["highlight_row"] is True


def test_dbt_exposures_agree_with_the_dashboards(manifest):
    assert spec.EXPOSURES_FILE.read_text() == spec.exposures_text(COLLECTION, manifest), (
        "dbt/models/exposures/metabase_dashboards.yml is out of date: "
        "run `voice-analytics metabase exposures --write`")
    parsed = manifest["exposures"]
    for d in COLLECTION.dashboards:
        exposure = parsed[f"exposure.voice_analytics.metabase_{d.slug}"]
        assert exposure["type"] == "dashboard"
        read = {t for c in d.cards for _, t in spec.tables_read(c.sql)}
        assert {n.rsplit(".", 1)[1] for n in exposure["depends_on"]["nodes"]} == read


def test_dashboards_are_assets_downstream_of_what_they_read_and_outside_the_pipeline_job():
    import dagster as dg

    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB

    graph = defs.resolve_asset_graph()
    for d in COLLECTION.dashboards:
        node = graph.get(dg.AssetKey(["metabase", d.slug]))
        read = {t for c in d.cards for _, t in spec.tables_read(c.sql)}
        assert node.parent_keys == {dg.AssetKey(["analytics", t]) for t in read}
        assert all(graph.has(k) for k in node.parent_keys)
        assert not node.is_materializable
    job = defs.resolve_job_def(PIPELINE_JOB)
    assert not [k for k in job.asset_layer.asset_graph.get_all_asset_keys() if k.path[0] == "metabase"]
