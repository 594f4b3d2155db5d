"""The dbt project's layout by dbt Labs' conventions (docs/DBT_CONVENTIONS.md), checked without the
evaluator: the layers' folders and prefixes, one YAML per model stating its grain, the certified
models public and contracted, and the abandonment model's tables declared as analysis/store.py
declares them. `voice-analytics dbt-evaluate` runs the full rule set."""

from __future__ import annotations

import json

import pytest
import yaml

from voice_analytics_dagster.defs.model import store
from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR

MODELS = DBT_PROJECT_DIR / "models"
# the one documented exception to the mart prefixes: the name the design fixes
FIXED_NAMES = {"fact_voice_ai_sessions"}
PREFIXES = {"staging": ("stg_",), "intermediate": ("int_",), "data_quality": ("dq_",), "marts": ("fct_", "dim_")}
TYPES = {"timestamptz": "timestamp with time zone"}


@pytest.fixture(scope="module")
def manifest(dbt_manifest) -> dict:
    return json.loads(dbt_manifest.read_text())


@pytest.fixture(scope="module")
def models(manifest) -> list[dict]:
    return [n for n in manifest["nodes"].values()
            if n["resource_type"] == "model" and n["package_name"] == "voice_analytics"]


def _yaml(path) -> dict:
    return yaml.safe_load(path.read_text())


def test_every_model_is_in_its_layer_folder_with_the_layer_prefix():
    for sql in MODELS.rglob("*.sql"):
        layer = sql.relative_to(MODELS).parts[0]
        assert layer in PREFIXES, f"{sql}: models live in {', '.join(PREFIXES)}"
        assert sql.stem.startswith(PREFIXES[layer]) or sql.stem in FIXED_NAMES, sql


def test_staging_models_sit_in_the_folder_of_their_source():
    for sql in (MODELS / "staging").rglob("*.sql"):
        source = sql.parent.name
        assert sql.stem.startswith(f"stg_{source}__"), sql
        assert f"source('{source}', " in sql.read_text(), f"{sql} reads a source of another folder"
        assert (sql.parent / f"_{source}__sources.yml").exists()


def test_one_yaml_per_model_beside_it_stating_the_grain():
    for sql in MODELS.rglob("*.sql"):
        doc = _yaml(sql.with_suffix(".yml"))
        assert [m["name"] for m in doc["models"]] == [sql.stem], f"{sql.with_suffix('.yml')}: one model, this one"
        assert "(grain: " in doc["models"][0]["description"], f"{sql.stem}: say the grain in the description"
    for yml in MODELS.rglob("*.yml"):
        assert yml.name.startswith("_") or yml.parent.name == "exposures" or yml.with_suffix(".sql").exists(), yml


def test_certified_models_are_public_and_contracted_and_only_they_are_public(models):
    for node in models:
        certified = bool((node.get("meta") or {}).get("certified") or node["config"].get("meta", {}).get("certified"))
        public = node.get("access") == "public"
        assert certified == public, f"{node['name']}: BI reads the certified models, so exactly they are public"
        if public:
            assert node["config"]["contract"]["enforced"], f"{node['name']}: a public model has a contract"
            assert node["config"]["materialized"] in ("table", "incremental"), node["name"]
            undocumented = [c for c, col in node["columns"].items() if not col.get("description")]
            assert not undocumented, f"{node['name']}: undocumented columns {undocumented}"


def test_exposures_depend_on_public_models_only(manifest):
    for exposure in manifest["exposures"].values():
        parents = exposure["depends_on"]["nodes"]
        assert parents, exposure["name"]
        for parent in parents:
            assert manifest["nodes"][parent].get("access") == "public", (exposure["name"], parent)


def test_sources_declare_their_freshness(manifest):
    for source in manifest["sources"].values():
        assert source["config"]["freshness"]["warn_after"]["count"], source["unique_id"]
        assert source["config"].get("loaded_at_query") or source["config"].get("loaded_at_field"), source["unique_id"]


def test_the_analysis_sources_are_the_model_steps_tables():
    (source,) = _yaml(MODELS / "staging" / "analysis" / "_analysis__sources.yml")["sources"]
    assert {t["name"] for t in source["tables"]} == set(store.TABLES)
    for table in source["tables"]:
        columns, _ = store.TABLES[table["name"]]
        assert [(c["name"], c["data_type"], c["description"]) for c in table["columns"]] == \
            [(c, TYPES.get(t, t), d) for c, t, d in columns], table["name"]
        assert table["meta"]["dagster"]["asset_key"] == ["analysis", table["name"]]


@pytest.mark.parametrize("table", sorted(store.TABLES))
def test_each_analysis_table_is_staged_with_its_key_tested(table):
    doc = _yaml(MODELS / "staging" / "analysis" / f"stg_analysis__{table}.yml")
    columns, _ = store.TABLES[table]
    staged = doc["models"][0]["columns"]
    assert [c["name"] for c in staged] == [c for c, _, _ in columns]
    (key,) = store.PRIMARY_KEYS[table]
    assert next(c for c in staged if c["name"] == key)["data_tests"] == ["unique", "not_null"]


@pytest.mark.parametrize("table", sorted(set(store.TABLES) - {"abandonment_session_scores"}))
def test_each_certified_analysis_table_is_a_contracted_mart_of_the_same_columns(table):
    doc = _yaml(MODELS / "marts" / f"fct_{table}.yml")
    (model,) = doc["models"]
    columns, _ = store.TABLES[table]
    assert [(c["name"], c["data_type"], c["description"]) for c in model["columns"]] == \
        [(c, TYPES.get(t, t), d) for c, t, d in columns]
    assert model["meta"]["certified"] is True and model["config"]["contract"]["enforced"] is True
