"""The dashboards as code: ``metabase/collection.yaml`` and ``metabase/dashboards/*.yaml`` loaded
into plain dataclasses, plus the pure functions derived from them (the tables a card reads, its
Metabase visualization settings, the dbt exposures). No network and no database here."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voice_analytics_dagster.lib.settings import PROJECT_ROOT

SPEC_DIR = PROJECT_ROOT / "metabase"
CERTIFIED_SCHEMA = "analytics"
DISPLAYS = {"table", "combo", "line", "bar", "scalar"}
# The optional `superset:` key of a card (voice_analytics_dagster/tools/superset/): `viz` names a
# Superset visualization among those each display may become, `unsupported` gives the reason the
# card cannot be said in Superset. One spec for both tools, never two copies of a card.
SUPERSET_KEYS = {"viz", "unsupported"}
SUPERSET_VIZ = {
    "table": {"table"},
    "scalar": {"big_number_total"},
    "combo": {"mixed_timeseries"},
    "line": {"echarts_timeseries_line", "mixed_timeseries"},
    "bar": {"echarts_timeseries_bar", "echarts_timeseries_line"},
}
# Metabase's dashboard grid is 24 columns wide
GRID_WIDTH = 24


class SpecError(ValueError):
    """A dashboard file that breaks the rules of the specs (named in the message)."""


@dataclass(frozen=True)
class Rate:
    """A rate (or mean) a card shows, with the columns of its 95% interval and of its n."""

    value: str
    ci: tuple[str, str]
    n: tuple[str, ...]


@dataclass(frozen=True)
class Card:
    name: str
    description: str
    display: str
    sql: str
    layout: dict[str, int]
    rates: tuple[Rate, ...] = ()
    chart: dict[str, Any] | None = None
    # rate-like columns shown without an interval, each with the reason why (reviewed in the spec)
    no_interval: tuple[tuple[str, str], ...] = ()
    # how Superset says the card where it cannot say it as Metabase does (SUPERSET_KEYS): another
    # visualization, or `unsupported: reason` (shown on the Superset dashboard instead of the card)
    superset: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Dashboard:
    name: str
    description: str
    file: str
    cards: tuple[Card, ...]
    exposure: dict[str, Any] = field(default_factory=dict)

    @property
    def slug(self) -> str:
        return slug(self.name)


@dataclass(frozen=True)
class Collection:
    name: str
    description: str
    dashboards: tuple[Dashboard, ...]

    def cards(self) -> list[Card]:
        return [c for d in self.dashboards for c in d.cards]


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _rate(raw: dict, where: str) -> Rate:
    ci = raw.get("ci")
    if not (isinstance(ci, list) and len(ci) == 2 and all(isinstance(c, str) for c in ci)):
        raise SpecError(f"{where}: rate {raw.get('value')!r} needs ci: [low column, high column]")
    n = raw.get("n")
    n = [n] if isinstance(n, str) else n
    if not (isinstance(n, list) and n and all(isinstance(c, str) for c in n)):
        raise SpecError(f"{where}: rate {raw.get('value')!r} needs n: a column (or a list of columns)")
    return Rate(raw["value"], (ci[0], ci[1]), tuple(n))


def _card(raw: dict, where: str) -> Card:
    missing = {"name", "description", "display", "sql", "layout", "rates"} - set(raw)
    if missing:
        raise SpecError(f"{where}: card {raw.get('name')!r} lacks {sorted(missing)}")
    where = f"{where}: card {raw['name']!r}"
    if raw["display"] not in DISPLAYS:
        raise SpecError(f"{where}: display {raw['display']!r} is not one of {sorted(DISPLAYS)}")
    layout = {k: int(raw["layout"][k]) for k in ("row", "col", "size_x", "size_y")}
    if layout["col"] + layout["size_x"] > GRID_WIDTH or min(layout.values()) < 0 or layout["size_x"] < 1:
        raise SpecError(f"{where}: layout {layout} does not fit the {GRID_WIDTH}-column grid")
    chart = raw.get("chart")
    if raw["display"] in {"combo", "line", "bar"} and not (chart and chart.get("x") and chart.get("series")):
        raise SpecError(f"{where}: a {raw['display']} card needs chart: {{x: column, series: [columns]}}")
    return Card(raw["name"], " ".join(raw["description"].split()), raw["display"], raw["sql"].strip(),
                layout, tuple(_rate(r, where) for r in raw["rates"] or []), chart,
                tuple((k, str(v)) for k, v in (raw.get("no_interval") or {}).items()),
                _superset(raw.get("superset"), raw["display"], where))


def _superset(raw: Any, display: str, where: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict) or not raw or set(raw) - SUPERSET_KEYS:
        raise SpecError(f"{where}: superset: takes {sorted(SUPERSET_KEYS)}, got {raw!r}")
    if "unsupported" in raw and not (isinstance(raw["unsupported"], str) and raw["unsupported"].strip()):
        raise SpecError(f"{where}: superset: unsupported: needs the reason the card cannot be shown in Superset")
    if "viz" in raw and raw["viz"] not in SUPERSET_VIZ[display]:
        raise SpecError(f"{where}: superset: viz {raw['viz']!r} cannot show a {display} card "
                        f"(one of {sorted(SUPERSET_VIZ[display])})")
    if set(raw) == SUPERSET_KEYS:
        raise SpecError(f"{where}: superset: a card is either unsupported or shown as a viz, not both")
    return {k: " ".join(str(v).split()) for k, v in raw.items()}


def _yaml(path: Path) -> Any:
    # libyaml's loader when PyYAML has it: the pure-Python one takes 0.1 s per dashboard file
    return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def load_dashboard(path: Path) -> Dashboard:
    raw = _yaml(path)
    where = path.name
    cards = tuple(_card(c, where) for c in raw["cards"])
    _check_no_overlap(cards, where)
    return Dashboard(raw["name"], " ".join(raw["description"].split()), path.name, cards, raw.get("exposure") or {})


def _check_no_overlap(cards: tuple[Card, ...], where: str) -> None:
    taken: dict[tuple[int, int], str] = {}
    for c in cards:
        lay = c.layout
        for r in range(lay["row"], lay["row"] + lay["size_y"]):
            for col in range(lay["col"], lay["col"] + lay["size_x"]):
                if (r, col) in taken:
                    raise SpecError(f"{where}: cards {taken[(r, col)]!r} and {c.name!r} overlap")
                taken[(r, col)] = c.name


def load_collection(root: Path = SPEC_DIR) -> Collection:
    raw = _yaml(root / "collection.yaml")
    dashboards = tuple(load_dashboard(root / "dashboards" / f) for f in raw["dashboards"])
    names = [c.name for d in dashboards for c in d.cards] + [d.name for d in dashboards]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        # cards and dashboards are matched by name in Metabase: a duplicate would be ambiguous
        raise SpecError(f"names used twice: {duplicates}")
    return Collection(raw["name"], " ".join(raw["description"].split()), dashboards)


# -- SQL ---------------------------------------------------------------------------------------

def parse_sql(sql: str):
    import sqlglot

    return sqlglot.parse_one(sql, read="postgres")


def tables_read(sql: str) -> set[tuple[str, str]]:
    """(schema, table) of every table the query reads (FROM and JOIN, subqueries included)."""
    from sqlglot import exp

    tree = parse_sql(sql)
    ctes = {c.alias_or_name for c in tree.find_all(exp.CTE)}
    return {(t.db, t.name) for t in tree.find_all(exp.Table) if not (not t.db and t.name in ctes)}


def logic_in(sql: str) -> list[str]:
    """What makes a query more than a thin SELECT: joins, aggregates, CASE, window functions,
    arithmetic, subqueries, CTEs, set operations. Empty for a thin SELECT."""
    from sqlglot import exp

    tree = parse_sql(sql)
    kinds = {
        "join": exp.Join, "aggregate": exp.AggFunc, "case": exp.Case, "window function": exp.Window,
        "arithmetic": (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod), "subquery": exp.Subquery,
        "CTE": exp.With, "set operation": (exp.Union, exp.Intersect, exp.Except),
        "group by": exp.Group, "coalesce": exp.Coalesce,
    }
    return sorted(name for name, kind in kinds.items() if tree.find(kind) is not None)


def selected_columns(sql: str) -> list[str]:
    """Output column names of a thin SELECT (alias or column name), in order."""
    return [e.alias_or_name for e in parse_sql(sql).expressions]


# A selected column that holds a rate, a share, a gap, a mean or an AUC must be declared with its
# interval and its n (checked by the tests); counts, p-values, ranks and labels need not.
RATE_LIKE = re.compile(r"(rate|share|gap|difference|_mean|^mean_.*|^auc|_auc|^value|sessions_per_user)$")
INTERVAL = re.compile(r"(_ci_low|_ci_high|^ci_low|^ci_high)$")


def undeclared_rates(card: Card) -> list[str]:
    declared = {r.value for r in card.rates} | {c for c, _ in card.no_interval}
    return [c for c in selected_columns(card.sql)
            if RATE_LIKE.search(c) and not INTERVAL.search(c) and c not in declared]


# -- Metabase payload pieces -------------------------------------------------------------------

SUPPRESSED_COLOR = "#F9D45C"


def visualization_settings(card: Card) -> dict[str, Any]:
    """Metabase visualization settings for a card. Tables highlight withheld rows (a blank value on
    a highlighted row is a suppressed small cell, not a missing zero); charts leave gaps where a
    value is withheld ("line.missing": "none", never "zero") and show n as bars on a second axis."""
    columns = selected_columns(card.sql)
    settings: dict[str, Any] = {}
    flags = [c for c in columns if c == "suppressed" or c.endswith("_suppressed")]
    if card.display == "table" and flags:
        settings["table.column_formatting"] = [
            {"columns": [c for c in columns if c not in flags], "type": "single", "operator": "=",
             "value": True, "color": SUPPRESSED_COLOR, "highlight_row": True, "column": flag}
            for flag in flags
        ]
    if card.chart:
        series = list(card.chart["series"])
        n = card.chart.get("n")
        settings["graph.dimensions"] = [card.chart["x"]]
        settings["graph.metrics"] = series + ([n] if n else [])
        series_settings = {}
        for i, s in enumerate(series):
            style = {"line.missing": "none"}
            if card.display == "combo":
                style["display"] = "line"
                if i > 0:
                    style["line.style"] = "dashed"  # the interval's bounds
            series_settings[s] = style
        if n:
            series_settings[n] = {"display": "bar", "axis": "right", "title": f"n ({n})"}
        settings["series_settings"] = series_settings
    return settings


def card_payload(card: Card, database_id: int, collection_id: int) -> dict[str, Any]:
    """Body of POST /api/card (and of PUT /api/card/:id)."""
    return {
        "name": card.name,
        # POST /api/card takes a non-blank description or null
        "description": card.description or None,
        "display": card.display,
        "collection_id": collection_id,
        "dataset_query": {"type": "native", "database": database_id,
                          "native": {"query": card.sql, "template-tags": {}}},
        "visualization_settings": visualization_settings(card),
    }


# -- dbt exposures -----------------------------------------------------------------------------

EXPOSURES_FILE = PROJECT_ROOT / "dbt" / "models" / "exposures" / "metabase_dashboards.yml"
EXPOSURES_HEADER = (
    "# Generated from metabase/ by `voice-analytics metabase exposures --write`; do not edit by hand\n"
    "# (tests/unit/test_metabase_specs.py fails when this file and the dashboards disagree).\n"
)


def dbt_reference(table: str, manifest: dict) -> str:
    """ref() of the public dbt model published as ``table``: BI reads only models declared
    ``access: public`` (certified, contracted; dbt/dbt_project.yml)."""
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["name"] == table:
            if node.get("access") != "public":
                raise SpecError(f"analytics.{table} is read by BI but the dbt model is not declared access: public")
            return f"ref('{table}')"
    raise SpecError(f"analytics.{table} is not a dbt model: BI reads only the certified dbt models")


def exposures(collection: Collection, manifest: dict) -> dict:
    """One dbt exposure per dashboard (no url: Metabase numbers a dashboard only when it is
    provisioned, and the same specs serve every Metabase)."""
    out = []
    for d in collection.dashboards:
        tables = sorted({t for c in d.cards for _, t in tables_read(c.sql)})
        out.append({
            "name": f"metabase_{d.slug}",
            "label": d.exposure.get("label", d.name),
            "type": "dashboard",
            "maturity": d.exposure.get("maturity", "medium"),
            "description": d.description + f" Defined in metabase/dashboards/{d.file}.",
            "depends_on": [dbt_reference(t, manifest) for t in tables],
            "owner": {"name": "Voice analytics platform"},
            "meta": {"metabase_collection": collection.name, "metabase_dashboard": d.name,
                     "cards": [c.name for c in d.cards]},
        })
    return {"version": 2, "exposures": out}


def exposures_text(collection: Collection, manifest: dict) -> str:
    return EXPOSURES_HEADER + yaml.safe_dump(exposures(collection, manifest), sort_keys=False, width=110)
