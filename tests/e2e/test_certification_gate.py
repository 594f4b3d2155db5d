"""Write-audit-publish as a property of the database: the BI role reads the certified schema and
nothing else, writes nowhere, never sees a raw user id; a failed blocking check (here: rows that
vanished between layers) leaves analytics exactly as it was, even when publication is run alone."""

from __future__ import annotations

import csv

import psycopg
import pytest

pytestmark = [pytest.mark.e2e]

WORKING_TABLES = [
    "raw.voice_sessions", "raw.users", "raw.load_batches", "raw.quarantine",
    "staging.stg_voice_export__sessions", "staging.stg_voice_export__users", "staging.stg_voice_export__turns",
    "intermediate.int_turns_aggregated_to_sessions", "intermediate.int_session_exclusions",
    "marts.fact_voice_ai_sessions", "marts.dq_source_validation",
]


@pytest.fixture(scope="module")
def published(published_sample):
    """The real sample as `voice-analytics run` published it (conftest: one run per test session)."""
    return published_sample.db


def bi_connect(db):
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.lib.warehouse import ConnInfo

    info = db.warehouse.conninfo()
    s = get_settings()
    return psycopg.connect(ConnInfo(info.host, info.port, s.bi_role, s.bi_password, info.dbname).url(), autocommit=True)


def certified_tables(db) -> list[str]:
    return [r[0] for r in db.rows(
        "select table_name from information_schema.tables where table_schema = 'analytics' order by 1")]


def test_bi_role_reads_every_certified_table(published, use_db):
    db = use_db(published)
    tables = certified_tables(db)
    assert {"fact_voice_ai_sessions", "dq_source_validation", "dq_session_exclusions", "publication_log"} <= set(tables)
    with bi_connect(db) as conn:
        for t in tables:
            assert conn.execute(f"select count(*) from analytics.{t}").fetchone()[0] >= 1


@pytest.mark.parametrize("table", WORKING_TABLES)
def test_bi_role_is_denied_every_working_schema(published, use_db, table):
    db = use_db(published)
    with bi_connect(db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
        conn.execute(f"select * from {table} limit 1")


def test_bi_role_is_denied_every_table_outside_analytics(published, use_db):
    """Not only the schemas we know of: every relation in every other schema of the warehouse."""
    db = use_db(published)
    relations = db.rows(
        """select n.nspname, c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace
           where c.relkind in ('r', 'p', 'v', 'm') and n.nspname not in ('analytics', 'pg_catalog', 'information_schema')
             and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'""")
    schemas = {s for s, _ in relations}
    assert {"raw", "staging", "intermediate", "marts", "analysis"} <= schemas
    readable = []
    with bi_connect(db) as conn:
        for schema, name in relations:
            try:
                conn.execute(f'select 1 from "{schema}"."{name}" limit 1')
                readable.append(f"{schema}.{name}")
            except psycopg.errors.InsufficientPrivilege:
                pass
    assert readable == []


@pytest.mark.parametrize("statement", [
    "create table analytics.x (a int)",
    "create table public.x (a int)",
    "create temporary table x (a int)",
    "insert into analytics.dq_source_validation (measurement) values ('x')",
    "update analytics.fact_voice_ai_sessions set is_completed = true",
    "delete from analytics.publication_log",
    "drop table analytics.fact_voice_ai_sessions",
    "create schema bi_private",
])
def test_bi_role_writes_nowhere(published, use_db, statement):
    db = use_db(published)
    with bi_connect(db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)


def test_no_raw_user_id_is_readable_by_bi(published, use_db, sample_dir):
    db = use_db(published)
    with open(sample_dir / "users.csv", newline="") as fh:
        user_ids = sorted({r["user_id"] for r in csv.DictReader(fh)})
    pattern = r"\m(" + "|".join(user_ids) + r")\M"
    with bi_connect(db) as conn:
        columns = conn.execute(
            """select table_name, column_name from information_schema.columns
               where table_schema = 'analytics' and data_type in ('text', 'character varying', 'jsonb', 'ARRAY')"""
        ).fetchall()
        assert len(columns) > 5
        for table, column in columns:
            hits = conn.execute(f'select count(*) from analytics."{table}" where "{column}"::text ~ %s',
                                (pattern,)).fetchone()[0]
            assert hits == 0, f"analytics.{table}.{column} holds raw user ids"


def fingerprint(db):
    return db.scalar("select md5(string_agg(f::text, '|' order by f::text)) from analytics.fact_voice_ai_sessions f")


def test_vanished_rows_block_publication_even_when_publish_runs_alone(published, use_db):
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB
    from voice_analytics_dagster.defs.publish.assets import publish_certified_schema
    from voice_analytics_dagster.defs.transform.checks import sessions_reconcile
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings

    db = use_db(published)
    before = fingerprint(db)
    # a bug between layers: two sessions vanish from the working fact
    with db.connect() as conn:
        conn.execute("delete from marts.fact_voice_ai_sessions where session_id in ('S2001', 'S2002')")
        conn.commit()
    instance = open_instance(get_settings())
    job = defs.resolve_job_def(PIPELINE_JOB)

    # publication's own checks (on analytics/*) come with it: its multi-asset is not subsettable
    own_checks = set(publish_certified_schema.check_keys)
    checked = job.get_subset(asset_selection=set(publish_certified_schema.keys),
                             asset_check_selection={sessions_reconcile.check_key, *own_checks})
    result = checked.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    evaluation = [e for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"][0]
    assert not evaluation.event_specific_data.passed
    assert evaluation.event_specific_data.metadata["failing_count"].value == 2
    assert fingerprint(db) == before

    # publication alone, without the check in its run: refused on the check's latest evaluation
    alone = job.get_subset(asset_selection=set(publish_certified_schema.keys), asset_check_selection=own_checks)
    result = alone.execute_in_process(instance=instance, raise_on_error=False)
    assert not result.success
    assert fingerprint(db) == before
    # recorded as the run-failure sensor records every failed run (defs/publish/blocks.py)
    from voice_analytics_dagster.defs.publish.blocks import record_unpublished_run

    record_unpublished_run(instance, db.warehouse, result.run_id)
    status, blocked_by, message = db.rows(
        "select status, blocked_by, message from analytics.publication_log where run_id = %s", (result.run_id,))[0]
    assert status == "blocked" and blocked_by == ["step:publish_certified_schema"]
    assert "marts/fact_voice_ai_sessions:sessions_reconcile" in message
