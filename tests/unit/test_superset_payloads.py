"""The specs compiled into Superset's payloads (voice_analytics_dagster/tools/superset/payloads.py),
and the pure parts of the client, the server and the install."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from voice_analytics_dagster.defs.bi import spec
from voice_analytics_dagster.lib.settings import load_settings, load_superset_settings
from voice_analytics_dagster.lib.warehouse import ConnInfo
from voice_analytics_dagster.tools.superset import api, install, payloads, server

COLLECTION = spec.load_collection()
CARDS = COLLECTION.cards()
BY_NAME = {c.name: c for c in CARDS}


def test_every_card_of_the_five_dashboards_is_compiled():
    assert len(COLLECTION.dashboards) == 5 and len(CARDS) == 19
    assert all(payloads.is_compiled(c) for c in CARDS)
    assert {payloads.viz_type(c) for c in CARDS} == {"table", "mixed_timeseries", "echarts_timeseries_bar"}


@pytest.mark.parametrize("card", CARDS, ids=[c.name for c in CARDS])
def test_each_chart_carries_its_query_context(card):
    body = payloads.chart_payload(card, dataset_id=7, dashboard_id=3, collection=COLLECTION)
    params, context = json.loads(body["params"]), json.loads(body["query_context"])
    assert body["slice_name"] == card.name and body["dashboards"] == [3] and body["datasource_id"] == 7
    assert context["datasource"] == {"id": 7, "type": "table"} and params["datasource"] == "7__table"
    assert context["form_data"] == params and context["result_type"] == "full"
    assert params["viz_type"] == body["viz_type"] == payloads.viz_type(card)
    for query in context["queries"]:
        assert query["row_limit"] == payloads.ROW_LIMIT and query["filters"] == []
        for step in query["post_processing"]:
            # withheld values stay NULL: no fill, and a period whose values are all NULL is kept
            assert "metric_fill_value" not in step.get("options", {})
            if step["operation"] == "pivot":
                assert step["options"]["drop_missing_columns"] is False
        for m in query["metrics"]:
            assert m["sqlExpression"] == f'MAX("{m["label"]}")'
    assert not params.get("stack") and not params.get("stackB")  # a stacked chart turns holes into 0


def test_a_table_shows_the_cards_columns_in_its_order_and_highlights_withheld_rows():
    card = BY_NAME["Efficiency: time to completion by week"]
    params = payloads.form_data(card, 1)
    [query] = payloads.query_context(card, 1)["queries"]
    assert params["query_mode"] == "raw" and params["all_columns"] == spec.selected_columns(card.sql)
    assert query["columns"] == params["all_columns"] and query["metrics"] == []
    assert query["orderby"] == [["period_start", True]] and params["order_by_cols"] == ['["period_start", true]']
    [rule] = params["conditional_formatting"]
    assert rule == {"column": "time_to_completion_suppressed", "operator": "is true", "targetValue": True,
                    "colorScheme": spec.SUPPRESSED_COLOR, "toAllRow": True, "columnFormatting": "ENTIRE_ROW",
                    "objectFormatting": "BACKGROUND_COLOR", "useGradient": False}
    # an ORDER BY on the column a card renames orders by the dataset's (renamed) column
    renamed = BY_NAME["Error reduction: error rates by ASR model version"]
    assert payloads.order_by(renamed.sql) == [("asr_model_version", True)]
    assert payloads.order_by(BY_NAME["Abandonment drivers: model history"].sql) == [("trained_at", False)]
    assert payloads.order_by(BY_NAME["Abandonment drivers: model quality"].sql) == []


def test_a_combo_card_is_a_mixed_chart_lines_left_and_n_as_bars_right():
    card = BY_NAME["Efficiency: turns per session by week"]
    params = payloads.form_data(card, 1)
    assert [m["label"] for m in params["metrics"]] == card.chart["series"]
    assert [m["label"] for m in params["metrics_b"]] == ["n_sessions"]
    assert (params["seriesType"], params["seriesTypeB"], params["yAxisIndex"], params["yAxisIndexB"]) == (
        "line", "bar", 0, 1)
    first, second = payloads.query_context(card, 1)["queries"]
    assert first["columns"] == second["columns"] == [
        {"columnType": "BASE_AXIS", "sqlExpression": "period_start", "label": "period_start", "expressionType": "SQL"}]
    assert list(first["post_processing"][0]["options"]["aggregates"]) == card.chart["series"]
    assert [p["operation"] for p in second["post_processing"]] == ["pivot", "flatten"]


def test_a_bar_card_is_a_plain_unstacked_bar_chart():
    card = BY_NAME["Adoption: sessions and users by week"]
    params = payloads.form_data(card, 1)
    assert params["viz_type"] == "echarts_timeseries_bar" and params["stack"] is None
    assert [m["label"] for m in params["metrics"]] == card.chart["series"]
    assert len(payloads.query_context(card, 1)["queries"]) == 1


def test_the_dashboard_grid_follows_the_spec_layout():
    for d in COLLECTION.dashboards:
        ids = {c.name: 100 + i for i, c in enumerate(d.cards)}
        layout = payloads.position_json(d, COLLECTION, ids)
        charts = {v["meta"]["chartId"]: v for v in layout.values() if isinstance(v, dict) and v.get("type") == "CHART"}
        assert set(charts) == set(ids.values())
        for card in d.cards:
            meta = charts[ids[card.name]]["meta"]
            assert meta["width"] == card.layout["size_x"] // 2 and meta["sliceName"] == card.name
            assert meta["height"] == card.layout["size_y"] * payloads.HEIGHT_PER_SPEC_ROW
        rows = layout["GRID_ID"]["children"]
        assert rows[0] == "ROW-intro" and d.description in layout["MARKDOWN-intro"]["meta"]["code"]
        for row in rows:
            assert sum(layout[c]["meta"]["width"] for c in layout[row]["children"]) <= payloads.SUPERSET_GRID_WIDTH
            for child in layout[row]["children"]:
                assert layout[child]["parents"] == ["ROOT_ID", "GRID_ID", row]
        assert [int(r.split("-")[1]) for r in rows[1:]] == sorted({c.layout["row"] for c in d.cards})
    payload = payloads.dashboard_payload(COLLECTION.dashboards[0], COLLECTION, None)
    assert "position_json" not in payload and payload["slug"] == "accessibility" and payload["published"]


def test_a_card_the_spec_marks_unsupported_is_left_out_with_its_reason():
    d = COLLECTION.dashboards[1]
    card = replace(d.cards[0], superset={"unsupported": "needs a dashed interval band"})
    dashboard = replace(d, cards=(card, *d.cards[1:]))
    assert not payloads.is_compiled(card)
    ids = {c.name: i for i, c in enumerate(d.cards)}
    layout = payloads.position_json(dashboard, COLLECTION, ids)
    assert f"CHART-{ids[card.name]}" not in layout
    assert f"**{card.name}** is not shown in Superset: needs a dashed interval band" in layout["MARKDOWN-intro"]["meta"]["code"]
    assert payloads.viz_type(replace(card, superset={"viz": "echarts_timeseries_line"})) == "echarts_timeseries_line"


def test_the_spec_validates_the_superset_key(tmp_path):
    base = {"name": "x", "description": "x", "display": "table", "sql": "select a from analytics.t",
            "layout": {"row": 0, "col": 0, "size_x": 24, "size_y": 4}, "rates": []}
    assert spec._card({**base, "superset": {"unsupported": " a  reason "}}, "f").superset == {"unsupported": "a reason"}
    assert spec._card(base, "f").superset == {}
    for bad, message in (({"colour": "red"}, "takes"), ({"unsupported": ""}, "needs the reason"),
                         ({"viz": "echarts_timeseries_line"}, "cannot show a table card"),
                         ({"viz": "table", "unsupported": "why"}, "either unsupported or shown")):
        with pytest.raises(spec.SpecError, match=message):
            spec._card({**base, "superset": bad}, "f")


def test_the_database_is_the_bi_role_over_tcp_read_only_on_analytics():
    conn = ConnInfo("127.0.0.1", 55432, "metabase", "p@ss", "voice_analytics")
    body = payloads.database_payload(conn)
    assert body["sqlalchemy_uri"] == "postgresql+psycopg2://metabase:p%40ss@127.0.0.1:55432/voice_analytics"
    assert json.loads(body["extra"])["engine_params"]["connect_args"]["options"] == "-csearch_path=analytics"
    assert not (body["allow_dml"] or body["allow_file_upload"] or body["allow_ctas"] or body["allow_cvas"])
    assert api.masked_uri(body["sqlalchemy_uri"]) == "postgresql+psycopg2://metabase:XXXXXXXXXX@127.0.0.1:55432/voice_analytics"


def test_differs_compares_what_the_specs_set():
    assert not api.differs({"a": 1}, {"a": 1, "added_by_superset": 2})
    assert api.differs({"a": 1}, {"a": 2})
    assert not api.differs('{"x": [1, {"y": 2}]}', '{"x": [1, {"y": 2, "z": 3}], "w": 0}')
    assert api.differs('{"x": [1, 2]}', '{"x": [1]}')
    assert api.differs({"a": [1]}, {"a": None})
    assert not api.differs("select 1", "select 1")


def test_the_server_gets_its_secrets_from_the_environment_never_a_command_line(tmp_path):
    settings = load_settings({"VOICE_ANALYTICS_HOME": str(tmp_path)})
    ss = load_superset_settings(settings, {"VOICE_ANALYTICS_SUPERSET_ADMIN_PASSWORD": "s3cret-pw"})
    assert ss.venv == tmp_path / "superset" / "venv" and ss.url == "http://127.0.0.1:8088"
    assert ss.secret_key == (tmp_path / "secrets" / "superset_secret_key").read_text()
    for cmd, _stdin in server.init_commands(ss):
        assert "s3cret-pw" not in " ".join(cmd)
    assert server.init_commands(ss)[1][1] == "s3cret-pw\ns3cret-pw\n"
    env = server.environment(ss, {"PATH": "/bin", "PYTHONPATH": "x", "VOICE_ANALYTICS_BI_PASSWORD": "y"})
    assert env["SUPERSET_SECRET_KEY"] == ss.secret_key and "PYTHONPATH" not in env
    assert not [k for k in env if k.startswith("VOICE_ANALYTICS_")]
    assert env["PATH"].startswith(str(ss.venv / "bin"))
    assert "--bind" in (cmd := server.serve_command(ss)) and cmd[cmd.index("--bind") + 1] == "127.0.0.1:8088"
    config = server.config_text(ss.home)
    assert "SECRET_KEY" not in config and f"sqlite:///{ss.home}/superset.db" in config
    production = replace(settings, mode="production")
    with pytest.raises(Exception, match="SUPERSET_ADMIN_PASSWORD, VOICE_ANALYTICS_SUPERSET_SECRET_KEY"):
        load_superset_settings(production, {})


def test_install_is_pinned_and_detected_by_its_stamp(tmp_path):
    venv = tmp_path / "venv"
    assert all("==" in r for r in install.REQUIREMENTS)
    commands = install.install_commands(venv, "/usr/bin/python3")
    assert commands[0] == ["/usr/bin/python3", "-m", "venv", "--clear", str(venv)]
    assert commands[-1][-len(install.REQUIREMENTS):] == list(install.REQUIREMENTS)
    assert not install.is_installed(venv)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "superset").write_text("")
    (venv / install.STAMP).write_text("apache-superset==0.1\n")
    assert not install.is_installed(venv)  # other pins: installed again
    (venv / install.STAMP).write_text(install.stamp_text())
    assert install.is_installed(venv)


def test_status_text():
    assert "not running" in server.status_text({"running": False, "home": "/h"})
    assert "runs (pid 7) on http://127.0.0.1:8088 and answers" in server.status_text(
        {"running": True, "healthy": True, "pid": 7, "url": "http://127.0.0.1:8088", "log": Path("/l")})
