"""One declaration, many uses: the dbt sources, the raw DDL and the loader follow the contract."""

from __future__ import annotations

import yaml

from voice_analytics_dagster.lib.contract import (
    SOURCES_FILE,
    TABLES,
    dbt_sources,
    loaded_at_query,
    raw_table_ddl,
)
from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR

STAGING = DBT_PROJECT_DIR / "models" / "staging" / "voice_export"


def test_dbt_sources_file_is_generated_from_the_contract():
    on_disk = yaml.safe_load((DBT_PROJECT_DIR / SOURCES_FILE).read_text())
    assert on_disk == dbt_sources(), "regenerate with: voice-analytics contract --write-dbt-sources"
    assert (DBT_PROJECT_DIR / SOURCES_FILE).parent == STAGING


def test_every_source_table_has_one_staging_model_in_the_source_folder():
    for t in TABLES:
        readers = [p.stem for p in STAGING.glob("stg_*.sql") if f"source('voice_export', '{t.name}')" in p.read_text()]
        assert len(readers) == 1, (t.name, readers)


def test_every_source_declares_its_freshness_from_the_load_log():
    (source,) = dbt_sources()["sources"]
    assert source["config"]["freshness"] == {"warn_after": {"count": 36, "period": "hour"}}
    for t, declared in zip(TABLES, source["tables"], strict=True):
        assert declared["config"]["loaded_at_query"] == loaded_at_query(t)
    assert loaded_at_query(TABLES[1]) == (
        "select max(loaded_at) from raw.load_batches where table_name = 'voice_sessions' and status = 'loaded'")


def test_raw_ddl_types_every_contract_column():
    for t in TABLES:
        ddl = raw_table_ddl(t)
        for c in t.columns:
            assert f"    {c.name} {c.pg_type}" in ddl
        assert "_batch_id bigint not null" in ddl and "_source_line bigint not null" in ddl


def test_personal_data_is_marked():
    pii = {(t.name, c.name) for t in TABLES for c in t.columns if c.pii}
    assert pii == {("users", "user_id"), ("voice_sessions", "user_id"), ("applications", "user_id")}
