"""Models with an enforced contract are built with CREATE TABLE AS and their NOT NULL constraints
added afterwards (dbt/macros/create_table_as.sql), so that PostgreSQL may read their input with
parallel workers: the built tables carry exactly the contract's types and NOT NULLs, and a NULL in
a constrained column fails the build and leaves the previous table in place."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.e2e]


def _contracted_models(manifest_path) -> list[dict]:
    nodes = json.loads(manifest_path.read_text())["nodes"].values()
    return [n for n in nodes if n["resource_type"] == "model"
            and (n["config"].get("contract") or {}).get("enforced")]


def test_every_contracted_table_has_the_contracts_types_and_not_nulls(published_sample, dbt_manifest):
    models = _contracted_models(dbt_manifest)
    assert len(models) >= 12  # the fact, the export and the KPI marts
    for node in models:
        declared = [(name, col["data_type"], any(c["type"] == "not_null" for c in col.get("constraints") or []))
                    for name, col in node["columns"].items()]
        built = published_sample.db.rows(
            "select a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull "
            "from pg_attribute a join pg_class c on c.oid = a.attrelid "
            "join pg_namespace s on s.oid = c.relnamespace "
            "where s.nspname = %s and c.relname = %s and a.attnum > 0 and not a.attisdropped order by a.attnum",
            (node["schema"], node["alias"] or node["name"]))
        assert built == declared, node["name"]


def test_a_null_in_a_not_null_column_fails_the_build_and_keeps_the_previous_table(published_sample, tmp_path):
    db = published_sample.db
    before = db.rows("select * from marts.dq_session_exclusions order by 1, 2, 3")
    with db.connect() as conn:  # an exclusion without a reason: the certified table's column is NOT NULL
        conn.execute("insert into intermediate.int_session_exclusions (session_id, exclusion_reason) "
                     "values ('S-no-reason', null)")
    result = db.dbt(tmp_path / "dbt", "run", "--select", "dq_session_exclusions")
    assert result.returncode != 0
    assert 'column "exclusion_reason" of relation "dq_session_exclusions__dbt_tmp" contains null values' in result.stdout
    assert db.rows("select * from marts.dq_session_exclusions order by 1, 2, 3") == before
    compiled = next((tmp_path / "dbt" / "run").rglob("dq_session_exclusions.sql")).read_text()
    assert "insert into" not in compiled and "alter column exclusion_reason set not null" in compiled
