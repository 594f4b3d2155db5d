"""One declaration, many uses: the dbt sources, the raw DDL and the loader follow the contract."""

from __future__ import annotations

import yaml

from voice_analytics_dagster.lib.contract import TABLES, dbt_sources, raw_table_ddl
from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR


def test_dbt_sources_file_is_generated_from_the_contract():
    on_disk = yaml.safe_load((DBT_PROJECT_DIR / "models" / "staging" / "_voice_export__sources.yml").read_text())
    assert on_disk == dbt_sources(), "regenerate with: voice-analytics contract --write-dbt-sources"


def test_every_source_table_has_a_staging_model():
    staged = {p.stem for p in (DBT_PROJECT_DIR / "models" / "staging").glob("stg_*.sql")}
    for t in TABLES:
        sql = "\n".join((DBT_PROJECT_DIR / "models" / "staging" / f"{m}.sql").read_text() for m in staged)
        assert f"source('voice_export', '{t.name}')" in sql


def test_raw_ddl_types_every_contract_column():
    for t in TABLES:
        ddl = raw_table_ddl(t)
        for c in t.columns:
            assert f"    {c.name} {c.pg_type}" in ddl
        assert "_batch_id bigint not null" in ddl and "_source_line bigint not null" in ddl


def test_personal_data_is_marked():
    pii = {(t.name, c.name) for t in TABLES for c in t.columns if c.pii}
    assert pii == {("users", "user_id"), ("voice_sessions", "user_id"), ("applications", "user_id")}
