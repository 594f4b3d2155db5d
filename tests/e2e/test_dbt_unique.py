"""dbt's `unique` test as this project runs it (dbt/macros/test_unique.sql: the keys counted first,
grouped only when the counts differ): it is the one dbt compiles, it passes what dbt's own
version passes (NULLs included) and fails a repeated key with the same failing rows."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.e2e]

TEST = "unique_stg_voice_export__turns_turn_id"
TABLE = "staging.stg_voice_export__turns"
# dbt-core's default__test_unique, the query the override must agree with
DBT_DEFAULT = (f"select turn_id as unique_field, count(*) as n_records from {TABLE} "
               "where turn_id is not null group by turn_id having count(*) > 1")


def _compiled(target) -> str:
    return next((target / "compiled").rglob(f"{TEST}.sql")).read_text()


def _failing_rows(db, query: str) -> list[tuple]:
    return sorted(db.rows(f"select * from ({query}) t"))


def test_unique_passes_nulls_and_fails_a_repeated_key_with_dbts_failing_rows(published_sample, tmp_path):
    db = published_sample.db
    clean = db.dbt(tmp_path / "a", "test", "--select", TEST)
    assert clean.returncode == 0, clean.stdout[-2000:]
    compiled = _compiled(tmp_path / "a")
    assert "repeated_rows" in compiled and "count(distinct turn_id)" in compiled  # the override ran

    with db.connect() as conn:  # two NULL keys: not a duplicate, as in dbt's test
        conn.execute(f"insert into {TABLE} (turn_id, session_id) values (null, 'S-x'), (null, 'S-y')")
    nulls = db.dbt(tmp_path / "b", "test", "--select", TEST)
    assert nulls.returncode == 0, nulls.stdout[-2000:]
    assert _failing_rows(db, _compiled(tmp_path / "b")) == [] == _failing_rows(db, DBT_DEFAULT)

    with db.connect() as conn:  # one turn delivered twice, one three times
        first, second = (r[0] for r in db.rows(f"select turn_id from {TABLE} where turn_id is not null "
                                               "order by turn_id limit 2"))
        conn.execute(f"insert into {TABLE} select * from {TABLE} where turn_id = %s", (first,))
        conn.execute(f"insert into {TABLE} select * from {TABLE} where turn_id = %s", (second,))
        conn.execute(f"insert into {TABLE} select * from {TABLE} where turn_id = %s limit 1", (second,))
    failed = db.dbt(tmp_path / "c", "test", "--select", TEST)
    assert failed.returncode != 0
    assert "Got 2 results, configured to fail if != 0" in failed.stdout
    assert _failing_rows(db, _compiled(tmp_path / "c")) == [(first, 2), (second, 3)] == _failing_rows(db, DBT_DEFAULT)
