"""The specs of metabase/ compiled into Superset 6.1's REST payloads. Pure: no network, no database.

One card becomes one virtual dataset (the card's own SQL, a thin SELECT on one certified table)
and one chart on it; a dashboard becomes a Superset dashboard whose grid follows the card layout
(Metabase's 24 columns halved into Superset's 12). Every chart is saved with its ``params`` (what
the browser's chart builds its query from) and its ``query_context`` (what Superset's chart data
API, thumbnails and reports run), the latter built as Superset's frontend builds it for that
visualization (plugin buildQuery: raw-records tables; echarts time series pivoted on the x axis,
then flattened).

Withheld values stay withheld: a table highlights the rows whose ``suppressed`` flag is true and
shows their blank values as Superset shows NULL; a chart's values are ``MAX(column)`` over the one
row a period has, so NULL stays NULL, the pivot keeps periods whose values are all NULL
(``drop_missing_columns: false``) and no series is stacked (Superset fills a stacked chart's
holes with 0), so ECharts leaves a gap (``connectNulls`` is off for plain series).
"""

from __future__ import annotations

import json
from typing import Any

from voice_analytics_dagster.defs.bi.spec import (
    CERTIFIED_SCHEMA,
    SUPPRESSED_COLOR,
    Card,
    Collection,
    Dashboard,
    parse_sql,
    selected_columns,
)
from voice_analytics_dagster.lib.warehouse import ConnInfo

DATABASE_NAME = "Voice analytics (certified)"
ROW_LIMIT = 10000
# Superset's dashboard grid: 12 columns, heights in 8 px units
SUPERSET_GRID_WIDTH = 12
HEIGHT_PER_SPEC_ROW = 8
INTRO_HEIGHT = 14
TIMESERIES = {"echarts_timeseries_line", "echarts_timeseries_bar"}


def viz_type(card: Card) -> str:
    """The Superset visualization of a card: the spec's ``superset: {viz: ...}`` if it names one, else
    derived from its Metabase display (a combo, or a line with its n, is a mixed chart: lines on the
    left axis, n as bars on the right)."""
    if card.superset.get("viz"):
        return card.superset["viz"]
    if card.display == "table":
        return "table"
    if card.display == "scalar":
        return "big_number_total"
    if card.display == "combo" or (card.display == "line" and card.chart and card.chart.get("n")):
        return "mixed_timeseries"
    return "echarts_timeseries_bar" if card.display == "bar" else "echarts_timeseries_line"


def is_compiled(card: Card) -> bool:
    return not card.superset.get("unsupported")


def order_by(sql: str) -> list[tuple[str, bool]]:
    """(column, ascending) of the query's ORDER BY: a virtual dataset is a subquery, whose order
    the outer query does not keep, so charts order again."""
    from sqlglot import exp

    tree = parse_sql(sql)
    order = tree.args.get("order")
    if order is None:
        return []
    # `select group_label as asr_model_version ... order by group_label`: the dataset's column is the alias
    aliases = {e.this.name: e.alias for e in tree.expressions if isinstance(e, exp.Alias) and isinstance(e.this, exp.Column)}
    return [(aliases.get(o.this.alias_or_name, o.this.alias_or_name), not o.args.get("desc"))
            for o in order.expressions if isinstance(o, exp.Ordered)]


def sqlalchemy_uri(conn: ConnInfo) -> str:
    """The BI role's URI as Superset stores it (psycopg2, its PostgreSQL driver)."""
    return conn.url(driver="psycopg2")


def database_payload(conn: ConnInfo, name: str = DATABASE_NAME) -> dict[str, Any]:
    """POST /api/v1/database/: read-only, schema ``analytics`` first on the search path (the role
    can read nothing else), no DML, uploads or CTAS."""
    extra = {"engine_params": {"connect_args": {"options": f"-csearch_path={CERTIFIED_SCHEMA}",
                                                "application_name": "superset"}},
             "metadata_params": {}, "schemas_allowed_for_file_upload": []}
    return {"database_name": name, "sqlalchemy_uri": sqlalchemy_uri(conn), "expose_in_sqllab": True,
            "allow_dml": False, "allow_file_upload": False, "allow_ctas": False, "allow_cvas": False,
            "allow_run_async": False, "extra": json.dumps(extra, sort_keys=True)}


def certification(collection: Collection) -> dict[str, str]:
    """The collection (Superset has none) as the certification of every dataset, chart and dashboard."""
    return {"certified_by": collection.name, "certification_details": collection.description}


def dataset_create_payload(card: Card, database_id: int) -> dict[str, Any]:
    """POST /api/v1/dataset/: a virtual dataset named after the card."""
    return {"database": database_id, "schema": CERTIFIED_SCHEMA, "table_name": card.name, "sql": card.sql}


def dataset_update_payload(card: Card, collection: Collection) -> dict[str, Any]:
    """PUT /api/v1/dataset/<id>: what a dataset must hold (compared with GET before writing)."""
    cert = certification(collection)
    return {"sql": card.sql, "description": card.description, "schema": CERTIFIED_SCHEMA,
            "extra": json.dumps({"certification": {"certified_by": cert["certified_by"],
                                                   "details": cert["certification_details"]}}, sort_keys=True)}


def metric(column: str) -> dict[str, Any]:
    """A chart metric showing a column's value as it is: each x value has one row, so MAX is that
    row's value, and NULL (withheld) stays NULL."""
    return {"expressionType": "SQL", "sqlExpression": f'MAX("{column}")', "label": column,
            "hasCustomLabel": True, "optionName": f"metric_{column}"}


def _conditional_formatting(columns: list[str]) -> list[dict[str, Any]]:
    return [{"column": flag, "operator": "is true", "targetValue": True, "colorScheme": SUPPRESSED_COLOR,
             "toAllRow": True, "columnFormatting": "ENTIRE_ROW", "objectFormatting": "BACKGROUND_COLOR",
             "useGradient": False}
            for flag in columns if flag == "suppressed" or flag.endswith("_suppressed")]


def form_data(card: Card, dataset_id: int) -> dict[str, Any]:
    """The chart's ``params``: what the browser builds its query and its rendering from."""
    viz = viz_type(card)
    base: dict[str, Any] = {"datasource": f"{dataset_id}__table", "viz_type": viz, "adhoc_filters": [],
                            "row_limit": ROW_LIMIT, "extra_form_data": {}}
    columns = selected_columns(card.sql)
    if viz == "table":
        return {**base, "query_mode": "raw", "all_columns": columns, "percent_metrics": [],
                "order_by_cols": [json.dumps([c, asc]) for c, asc in order_by(card.sql)],
                "server_pagination": False, "server_page_length": 10, "include_search": False,
                "show_cell_bars": False, "table_timestamp_format": "%Y-%m-%d", "allow_render_html": False,
                "conditional_formatting": _conditional_formatting(columns)}
    if viz == "big_number_total":
        return {**base, "metric": metric(columns[0]), "header_font_size": 0.4, "subheader_font_size": 0.15,
                "y_axis_format": "SMART_NUMBER"}
    chart = card.chart or {}
    series = [metric(c) for c in chart.get("series", [])]
    common = {"x_axis": chart["x"], "x_axis_sort_asc": True, "x_axis_time_format": "%Y-%m-%d",
              "show_empty_columns": True, "show_legend": True, "legendType": "scroll", "legendOrientation": "top",
              "rich_tooltip": True, "y_axis_format": "SMART_NUMBER", "truncateYAxis": False, "zoomable": False,
              "comparison_type": "values", "order_desc": True, "truncate_metric": True}
    if viz == "mixed_timeseries":
        n = chart.get("n")
        return {**base, **common, "metrics": series, "metrics_b": [metric(n)] if n else [],
                "groupby": [], "groupby_b": [], "adhoc_filters_b": [], "row_limit_b": ROW_LIMIT,
                "seriesType": "line", "seriesTypeB": "bar", "yAxisIndex": 0, "yAxisIndexB": 1,
                "markerEnabled": True, "markerEnabledB": False, "markerSize": 5, "stack": False, "stackB": False,
                "area": False, "areaB": False, "y_axis_format_secondary": "SMART_NUMBER",
                "order_desc_b": True, "truncate_metric_b": True}
    return {**base, **common, "metrics": series, "groupby": [], "stack": None, "area": False,
            "markerEnabled": viz == "echarts_timeseries_line", "markerSize": 5, "orientation": "vertical",
            **({"seriesType": "line"} if viz == "echarts_timeseries_line" else {})}


def _query(columns: list[Any], metrics: list[dict], orderby: list[list], post_processing: list[dict],
           **extra: Any) -> dict[str, Any]:
    return {"filters": [], "extras": {"having": "", "where": ""}, "applied_time_extras": {},
            "columns": columns, "metrics": metrics, "orderby": orderby, "annotation_layers": [],
            "row_limit": ROW_LIMIT, "series_limit": 0, "order_desc": True, "url_params": {},
            "custom_params": {}, "custom_form_data": {}, "time_offsets": [], "post_processing": post_processing,
            **extra}


def _timeseries_query(x: str, metrics: list[dict]) -> dict[str, Any]:
    axis = {"columnType": "BASE_AXIS", "sqlExpression": x, "label": x, "expressionType": "SQL"}
    pivot = {"operation": "pivot", "options": {
        "index": [x], "columns": [], "aggregates": {m["label"]: {"operator": "mean"} for m in metrics},
        "drop_missing_columns": False}}
    return _query([axis], metrics, [[metrics[0], False]] if metrics else [], [pivot, {"operation": "flatten"}],
                  series_columns=[], is_timeseries=False)


def query_context(card: Card, dataset_id: int) -> dict[str, Any]:
    """The chart's ``query_context``, as Superset's frontend builds it for the chart's visualization."""
    params = form_data(card, dataset_id)
    viz = params["viz_type"]
    if viz == "table":
        queries = [_query(params["all_columns"], [], [[c, asc] for c, asc in order_by(card.sql)], [])]
    elif viz == "big_number_total":
        queries = [_query([], [params["metric"]], [], [])]
    elif viz == "mixed_timeseries":
        queries = [_timeseries_query(params["x_axis"], params["metrics"])]
        if params["metrics_b"]:
            queries.append(_timeseries_query(params["x_axis"], params["metrics_b"]))
    else:
        queries = [_timeseries_query(params["x_axis"], params["metrics"])]
    return {"datasource": {"id": dataset_id, "type": "table"}, "force": False, "queries": queries,
            "form_data": params, "result_format": "json", "result_type": "full"}


def chart_payload(card: Card, dataset_id: int, dashboard_id: int, collection: Collection) -> dict[str, Any]:
    """POST /api/v1/chart/ (and PUT /api/v1/chart/<id>), with its query context."""
    return {"slice_name": card.name, "description": card.description, "viz_type": viz_type(card),
            "datasource_id": dataset_id, "datasource_type": "table",
            "params": json.dumps(form_data(card, dataset_id), sort_keys=True),
            "query_context": json.dumps(query_context(card, dataset_id), sort_keys=True),
            "query_context_generation": True, "dashboards": [dashboard_id], **certification(collection)}


def _markdown(dashboard: Dashboard, collection: Collection) -> str:
    lines = [f"**{dashboard.name}.** {dashboard.description}", "",
             f"_{collection.name}: {collection.description}_"]
    for card in dashboard.cards:
        if not is_compiled(card):
            lines += ["", f"**{card.name}** is not shown in Superset: {card.superset['unsupported']}"]
    return "\n".join(lines)


def position_json(dashboard: Dashboard, collection: Collection, chart_ids: dict[str, int]) -> dict[str, Any]:
    """The dashboard's grid: an introduction (the dashboard's description, and any card Superset
    cannot show, with the spec's reason), then one row per spec row, cards in column order."""
    grid_children: list[str] = []
    layout: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": grid_children, "parents": ["ROOT_ID"]},
        "HEADER_ID": {"type": "HEADER", "id": "HEADER_ID", "meta": {"text": dashboard.name}},
    }

    def row(row_id: str, children: list[str]) -> None:
        grid_children.append(row_id)
        layout[row_id] = {"type": "ROW", "id": row_id, "children": children, "parents": ["ROOT_ID", "GRID_ID"],
                          "meta": {"background": "BACKGROUND_TRANSPARENT"}}

    layout["MARKDOWN-intro"] = {"type": "MARKDOWN", "id": "MARKDOWN-intro", "children": [],
                                "parents": ["ROOT_ID", "GRID_ID", "ROW-intro"],
                                "meta": {"width": SUPERSET_GRID_WIDTH, "height": INTRO_HEIGHT,
                                         "code": _markdown(dashboard, collection)}}
    row("ROW-intro", ["MARKDOWN-intro"])
    cards = [c for c in dashboard.cards if is_compiled(c)]
    for spec_row in sorted({c.layout["row"] for c in cards}):
        row_id = f"ROW-{spec_row}"
        children = []
        for card in sorted((c for c in cards if c.layout["row"] == spec_row), key=lambda c: c.layout["col"]):
            chart_id = chart_ids[card.name]
            key = f"CHART-{chart_id}"
            children.append(key)
            layout[key] = {"type": "CHART", "id": key, "children": [], "parents": ["ROOT_ID", "GRID_ID", row_id],
                           "meta": {"chartId": chart_id, "sliceName": card.name,
                                    "width": max(1, round(card.layout["size_x"] / 2)),
                                    "height": card.layout["size_y"] * HEIGHT_PER_SPEC_ROW}}
        row(row_id, children)
    return layout


def dashboard_payload(dashboard: Dashboard, collection: Collection, chart_ids: dict[str, int] | None) -> dict[str, Any]:
    """POST /api/v1/dashboard/ (without charts: their ids come later) and PUT with them."""
    metadata = {"color_scheme": "", "refresh_frequency": 0, "expanded_slices": {}, "label_colors": {},
                "timed_refresh_immune_slices": [], "cross_filters_enabled": False, "default_filters": "{}",
                "native_filter_configuration": []}
    payload = {"dashboard_title": dashboard.name, "slug": dashboard.slug, "published": True,
               "json_metadata": json.dumps(metadata, sort_keys=True), **certification(collection)}
    if chart_ids is not None:
        payload["position_json"] = json.dumps(position_json(dashboard, collection, chart_ids), sort_keys=True)
    return payload
