"""How dbt's nodes appear in Dagster: every rule a small named helper, per-model behaviour read
from dbt ``meta`` (``certified``, ``grain``, ``dagster.asset_key``), never from model names.

Models are keyed and grouped by their schema (``marts/fact_voice_ai_sessions`` in group
``marts``); sources are the assets that write them (the raw ingestion assets, unless their meta
names another key); every dbt test is an asset check on its model, described in words.
"""

import re
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings

from voice_analytics_dagster.defs.ingestion.assets import raw_asset_key


def _is_source(props: Mapping[str, Any]) -> bool:
    return props.get("resource_type") == "source"


def _schema_of(props: Mapping[str, Any]) -> str:
    return (props.get("config") or {}).get("schema") or props.get("schema") or "marts"


def _meta(props: Mapping[str, Any]) -> Mapping[str, Any]:
    return {**(props.get("meta") or {}), **((props.get("config") or {}).get("meta") or {})}


def is_certified(props: Mapping[str, Any]) -> bool:
    return bool(_meta(props).get("certified"))


def _meta_asset_key(props: Mapping[str, Any]) -> dg.AssetKey | None:
    """An explicit key in dbt meta (``meta: {dagster: {asset_key: [...]}}``), e.g. for a source
    written by a Python asset."""
    key = (_meta(props).get("dagster") or {}).get("asset_key")
    return dg.AssetKey(key) if key else None


class VoiceDbtTranslator(DagsterDbtTranslator):
    """dbt sources are the assets that write them (the raw ingestion assets unless their meta
    names another key); models are keyed and grouped by their schema."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        explicit = _meta_asset_key(dbt_resource_props)
        if explicit is not None:
            return explicit
        if _is_source(dbt_resource_props):
            return raw_asset_key(dbt_resource_props["name"])
        return dg.AssetKey([_schema_of(dbt_resource_props), dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if _is_source(dbt_resource_props):
            return None  # the asset that writes the source owns its group
        return _schema_of(dbt_resource_props)

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        tags = dict(super().get_tags(dbt_resource_props))
        if is_certified(dbt_resource_props):
            tags["certified"] = ""
        return tags

    def get_asset_check_spec(self, asset_spec, manifest, unique_id, project):
        spec = super().get_asset_check_spec(asset_spec, manifest, unique_id, project)
        if spec is None or spec.description:
            return spec
        return dg.AssetCheckSpec(
            spec.name, asset=spec.asset_key, description=check_description(manifest["nodes"][unique_id]),
            additional_deps=spec.additional_deps, blocking=spec.blocking, metadata=spec.metadata,
            automation_condition=spec.automation_condition, partitions_def=spec.partitions_def)

    def get_metadata(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, Any]:
        metadata = dict(super().get_metadata(dbt_resource_props))
        grain = _meta(dbt_resource_props).get("grain")
        if grain:
            metadata["grain"] = grain
        metadata["certified"] = is_certified(dbt_resource_props)
        return metadata


def _listed(values, limit: int = 6) -> str:
    values = [str(v) for v in values]
    return ", ".join(values[:limit]) + (f" and {len(values) - limit} more" if len(values) > limit else "")


# What each generic test of the project asserts, in words (dagster-dbt shows a test's
# meta.description as the check's description, else "No description provided").
_TEST_WORDS = {
    "not_null": lambda c, k: f"No row has a NULL {c}.",
    "unique": lambda c, k: f"Every {c} appears once (the table's key).",
    "relationships": lambda c, k: f"Every {c} exists in {k.get('to', '?')}.{k.get('field', '?')}.",
    "accepted_values": lambda c, k: f"{c} is one of: {_listed(k.get('values', []))}.",
    "accepted_range": lambda c, k: f"{c} lies " + (
        f"between {k['min_value']} and {k['max_value']}" if "min_value" in k and "max_value" in k
        else f"at or above {k['min_value']}" if "min_value" in k else f"at or below {k.get('max_value')}") + ".",
    "expression_is_true": lambda c, k: f"Every row satisfies: {k.get('expression', '?')}.",
    "unique_combination": lambda c, k: f"Each combination of {_listed(k.get('columns', []))} appears once "
                                       "(the table's grain).",
    "suppression_applied": lambda c, k: f"Rows built from fewer than min_cell_size {k.get('size_column', 'sessions')} "
                                        "withhold their figures (NULL, suppressed = true), never show them.",
    "suppression_complete": lambda c, k: "No withheld cell can be recomputed from a published total and its "
                                         "published siblings (complementary suppression).",
    "column_rules": lambda c, k: "Every column's rule in one scan: " + _listed(sorted(k.get("rules", {})), 8) + ".",
}


def relation_of(node: Mapping[str, Any]) -> str:
    """schema.table of a dbt model node (its alias when it has one)."""
    return f"{node['schema']}.{node.get('alias') or node['name']}"


def metadata_queries(props: Mapping[str, Any], models: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """A model's materialization metadata, declared in its dbt meta (``dagster.metadata``: name ->
    {as: scalar | list | mapping | table, sql}), with ``{this}`` and ``{ref:model}`` resolved to
    relations. ``models``: dbt model nodes by name. Pure."""
    out = {}
    for name, spec in ((_meta(props).get("dagster") or {}).get("metadata") or {}).items():
        sql = spec["sql"].replace("{this}", relation_of(props))
        for ref in re.findall(r"\{ref:(\w+)\}", sql):
            sql = sql.replace("{ref:" + ref + "}", relation_of(models[ref]))
        out[name] = (spec.get("as", "scalar"), sql)
    return out


def check_description(test: Mapping[str, Any]) -> str:
    """A dbt test node's check description: what it asserts and what its failure does. Pure."""
    metadata = test.get("test_metadata") or {}
    name = metadata.get("name")
    kwargs = metadata.get("kwargs") or {}
    column = test.get("column_name") or kwargs.get("column_name") or "the column"
    words = _TEST_WORDS.get(name)
    said = words(column, kwargs) if words else (test.get("description") or f"dbt test {test.get('name')}.")
    severity = ((test.get("config") or {}).get("severity") or "error").lower()
    effect = "blocks publication" if severity == "error" else "warns, does not block"
    return f"{said} (dbt test {name or test.get('name')}; severity {severity}: {effect})"


translator = VoiceDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
