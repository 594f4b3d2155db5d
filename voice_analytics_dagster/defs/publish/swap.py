"""Write-audit-publish: copy the tested working tables into the certified schema ``analytics`` in one
transaction, grant the BI role, and log every publication and every block.

dbt rebuilds its tables with ``drop ... cascade``, so BI never reads dbt's own tables: publication
copies each certified table into ``publish_stage`` (invisible to BI) and then, in the same
transaction, swaps it into ``analytics``. A reader sees the whole previous version or the whole new
one (PostgreSQL DDL and DML are transactional), never a mix, an empty or a missing table; the
exclusive locks on ``analytics`` tables are taken only for the final swap.

Only what changed is published. The log keeps a fingerprint of each table it published (rows and
the sum of their 64-bit hashes; per day for a table whose dbt meta names ``publish_by_day``), and
publication compares the working tables' with them: an unchanged table is left as it is, a table
published by day has only its changed days deleted and inserted again, any other change is copied
and swapped whole. Hashing a table is one scan without a sort; copying it writes it and its
indexes again.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import psycopg
from psycopg import sql

from voice_analytics_dagster.lib.provenance import Inputs
from voice_analytics_dagster.lib.settings import Settings

CERTIFIED_SCHEMA = "analytics"
STAGE_SCHEMA = "publish_stage"


@dataclass(frozen=True)
class CertifiedTable:
    """A working table that publication copies to ``analytics.<name>``."""

    name: str
    schema: str
    description: str = ""
    day_column: str | None = None  # dbt meta publish_by_day: published by the days that changed

    @property
    def source(self) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(self.name))


ANALYTICS_BOOTSTRAP = """
create schema if not exists analytics;
create schema if not exists publish_stage;
create table if not exists analytics.publication_log (
    publication_id bigint generated always as identity primary key,
    run_id text not null,
    logged_at timestamptz not null default clock_timestamp(),
    status text not null check (status in ('published', 'blocked')),
    tables jsonb,
    blocked_by text[],
    message text
);
create unique index if not exists publication_log_run on analytics.publication_log (run_id);
alter table analytics.publication_log add column if not exists sources text[];
alter table analytics.publication_log add column if not exists formats text[];
alter table analytics.publication_log add column if not exists dataset text;
alter table analytics.publication_log add column if not exists generator_seeds bigint[];
alter table analytics.publication_log add column if not exists inputs jsonb;
alter table analytics.publication_log add column if not exists accepted_shrink boolean not null default false;
alter table analytics.publication_log add column if not exists shrink jsonb;
alter table analytics.publication_log add column if not exists fingerprints jsonb;
alter table analytics.publication_log add column if not exists actions jsonb;
comment on table analytics.publication_log is
    'One row per pipeline run that reached the gate: what it published (tables and row counts) or which checks blocked it, '
    'and what it read: source folders, format, dataset (real or synthetic, with the generator''s seed), every input file '
    'with its SHA-256 and rows. accepted_shrink: published although it emptied a table or dropped sessions (--accept-shrink). '
    'fingerprints: each published table''s rows and hash (per day for a table published by day); actions: what publication '
    'did to each table (copied, unchanged, or the days it replaced).';
"""


def ensure_analytics(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('voice_analytics.bootstrap_analytics'))")
        conn.execute(ANALYTICS_BOOTSTRAP)


def bi_role_statements(settings: Settings, database: str) -> list[sql.Composable]:
    """Idempotent statements giving the BI role CONNECT, USAGE and SELECT on ``analytics`` only."""
    role = sql.Identifier(settings.bi_role)
    db = sql.Identifier(database)
    return [
        sql.SQL(
            "do $$ begin if not exists (select from pg_roles where rolname = {name}) then "
            "create role {role} login; end if; end $$"
        ).format(name=sql.Literal(settings.bi_role), role=role),
        sql.SQL("alter role {} with login nosuperuser nocreatedb nocreaterole noinherit password {}").format(
            role, sql.Literal(settings.bi_password)
        ),
        # nobody but the owner and the BI role connects or creates temporary tables here
        sql.SQL("revoke all on database {} from public").format(db),
        sql.SQL("grant connect on database {} to {}").format(db, role),
        # PostgreSQL < 15 lets PUBLIC create in schema public: not here
        sql.SQL("revoke create on schema public from public"),
        sql.SQL("grant usage on schema analytics to {}").format(role),
        sql.SQL("grant select on all tables in schema analytics to {}").format(role),
        # tables the pipeline creates directly in analytics later (publication_log) are readable too
        sql.SQL("alter default privileges in schema analytics grant select on tables to {}").format(role),
    ]


def ensure_bi_role(conn: psycopg.Connection, settings: Settings) -> None:
    database = conn.info.dbname
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('voice_analytics.bi_role'))")
        for statement in bi_role_statements(settings, database):
            conn.execute(statement)


FACT_TABLE = "fact_voice_ai_sessions"


class ShrinkRefused(Exception):
    """The new version would empty a certified table or drop too many sessions (see shrink_problems)."""

    def __init__(self, problems: list[str], shrink: dict):
        super().__init__("; ".join(problems))
        self.problems, self.shrink = problems, shrink


def shrink_problems(before: dict[str, int], after: dict[str, int], max_session_drop: float,
                    fact: str = FACT_TABLE) -> list[str]:
    """Why publishing ``after`` over the last publication ``before`` (row counts per table) would
    lose data BI shows: a table that had rows would be empty, or the fact would lose more than
    ``max_session_drop`` of its sessions. Pure."""
    out = []
    for name in sorted(after):
        if before.get(name, 0) > 0 and after[name] == 0:
            out.append(f"analytics.{name} would be emptied (it holds {before[name]:,} rows)")
    was, now = before.get(fact, 0), after.get(fact)
    if was > 0 and now is not None and now > 0 and now < was * (1 - max_session_drop):
        out.append(f"the fact's sessions would drop from {was:,} to {now:,} ({(now - was) / was:+.1%}; "
                   f"the limit is -{max_session_drop:.0%}, VOICE_ANALYTICS_MAX_SESSION_DROP)")
    return out


def last_publication(conn: psycopg.Connection) -> tuple[dict[str, int], dict[str, dict]]:
    """The last publication's row counts and fingerprints (empty when none, or none recorded)."""
    row = conn.execute("select tables, fingerprints from analytics.publication_log where status = 'published' "
                       "order by publication_id desc limit 1").fetchone()
    if row is None:
        return {}, {}
    return {k: int(v) for k, v in (row[0] or {}).items()}, row[1] or {}


def fingerprint_sql(t: CertifiedTable) -> sql.Composed:
    """A table's rows and the sum of their hash_record_extended (a numeric, so equal rows do not
    cancel), per day of ``day_column`` when it has one: (day or NULL, rows, hash) rows."""
    day = sql.SQL("{}::text").format(sql.Identifier(t.day_column)) if t.day_column else sql.SQL("null::text")
    group = sql.SQL(" group by 1") if t.day_column else sql.SQL("")
    return sql.SQL("select {day}, count(*), coalesce(sum(hash_record_extended(w, 0)::numeric), 0)::text "
                   "from {source} w{group}").format(day=day, source=t.source, group=group)


def table_fingerprint(conn: psycopg.Connection, t: CertifiedTable) -> dict:
    """{"rows": n, "hash": h}, and "days": {day: [rows, hash]} for a table published by day (not
    when a day is NULL: such a table is copied whole)."""
    rows = conn.execute(fingerprint_sql(t)).fetchall()
    if not t.day_column:
        return {"rows": rows[0][1], "hash": rows[0][2]}
    days = {day: [n, h] for day, n, h in rows}
    whole = {"rows": sum(n for n, _ in days.values()), "hash": str(sum(int(h) for _, h in days.values()))}
    return whole if None in days else {**whole, "days": days}


def publication_action(before: dict | None, now: dict, same_columns: bool) -> tuple[str, list[str]]:
    """What publication does to a table, from the fingerprint it last published (``before``;
    None: none recorded) and the working table's (``now``): ("unchanged", []), ("days", the days
    to replace) or ("copy", []). Copied whole when the columns differ, when nothing is recorded, or
    when either has no days (a NULL day cannot be replaced by day). Pure."""
    if before is None or not same_columns:
        return "copy", []
    if before.get("rows") == now["rows"] and before.get("hash") == now["hash"] and \
            before.get("days") == now.get("days"):
        return "unchanged", []
    if "days" in now and "days" in before:
        days = set(before["days"]) | set(now["days"])
        return "days", sorted(d for d in days if before["days"].get(d) != now["days"].get(d))
    return "copy", []


_COLUMNS_SQL = ("select coalesce(array_agg(attname || ' ' || format_type(atttypid, atttypmod) order by attnum), '{}') "
                "from pg_attribute where attrelid = to_regclass(%s) and attnum > 0 and not attisdropped")


def same_columns(conn: psycopg.Connection, t: CertifiedTable) -> bool:
    """The published table exists and has the working table's columns, in its order and types."""
    published = conn.execute(_COLUMNS_SQL, (f"{CERTIFIED_SCHEMA}.{t.name}",)).fetchone()[0]
    working = conn.execute(_COLUMNS_SQL, (f"{t.schema}.{t.name}",)).fetchone()[0]
    return bool(published) and published == working


def _provenance_values(inputs: Inputs | None) -> tuple:
    if inputs is None:
        return None, None, None, None, None
    return inputs.sources, inputs.formats, inputs.dataset, inputs.seeds, json.dumps(inputs.files)


@dataclass(frozen=True)
class Publication:
    counts: dict[str, int]  # rows of each published table
    actions: dict[str, str]  # copied, unchanged, or "N days replaced"
    fingerprints: dict[str, dict]  # each working table's, as table_fingerprint took it


def publish_tables(
    conn: psycopg.Connection, tables: Sequence[CertifiedTable], settings: Settings, run_id: str,
    inputs: Inputs | None = None, accept_shrink: bool = False,
) -> Publication:
    """Publish every certified table into ``analytics`` in one transaction, each by what changed
    since the last publication (see the module's docstring).

    Refused (ShrinkRefused, nothing changes) when the new version would empty a table that had
    rows or drop the fact's sessions by more than the setting allows, unless ``accept_shrink``:
    then it publishes and the log says so."""
    role = sql.Identifier(settings.bi_role)
    with conn.transaction():
        # one publisher at a time; a second waits, then publishes its own complete version
        conn.execute("select pg_advisory_xact_lock(hashtext('voice_analytics.publish'))")
        before, published = last_publication(conn)
        fingerprints = {t.name: table_fingerprint(conn, t) for t in tables}
        counts = {name: fp["rows"] for name, fp in fingerprints.items()}
        plans = {t.name: publication_action(published.get(t.name), fingerprints[t.name], same_columns(conn, t))
                 for t in tables}
        problems = shrink_problems(before, counts, settings.max_session_drop)
        shrink = {name: {"published": before.get(name), "new": counts[name]} for name in counts
                  if before.get(name) is not None and counts[name] < before[name]}
        if problems and not accept_shrink:
            raise ShrinkRefused(problems, shrink)
        copied = [t for t in tables if plans[t.name][0] == "copy"]
        for t in copied:
            staged = sql.SQL("publish_stage.{}").format(sql.Identifier(t.name))
            conn.execute(sql.SQL("drop table if exists {}").format(staged))
            conn.execute(sql.SQL("create table {} (like {} including all)").format(staged, t.source))
            conn.execute(sql.SQL("insert into {} select * from {}").format(staged, t.source))
        for t in tables:
            action, days = plans[t.name]
            if action == "days":
                target = sql.SQL("analytics.{}").format(sql.Identifier(t.name))
                day = sql.Identifier(t.day_column)
                conn.execute(sql.SQL("delete from {} where {}::text = any(%s)").format(target, day), (days,))
                conn.execute(sql.SQL("insert into {} select * from {} where {}::text = any(%s)").format(
                    target, t.source, day), (days,))
        # the swap: exclusive locks on analytics tables only from here to commit
        for t in copied:
            target = sql.SQL("analytics.{}").format(sql.Identifier(t.name))
            conn.execute(sql.SQL("drop table if exists {}").format(target))
            conn.execute(sql.SQL("alter table publish_stage.{} set schema analytics").format(sql.Identifier(t.name)))
        for t in tables:  # the BI role's select and nothing else, also on a kept table (a grant by hand goes)
            target = sql.SQL("analytics.{}").format(sql.Identifier(t.name))
            conn.execute(sql.SQL("revoke all on {} from public, {}").format(target, role))
            conn.execute(sql.SQL("grant select on {} to {}").format(target, role))
        for t in tables:  # the description follows the dbt model's, whatever was copied
            comment = conn.execute(
                "select obj_description(%s::regclass, 'pg_class')", (f"{t.schema}.{t.name}",)
            ).fetchone()[0] or t.description
            current = conn.execute("select obj_description(%s::regclass, 'pg_class')",
                                   (f"{CERTIFIED_SCHEMA}.{t.name}",)).fetchone()[0]
            if comment and comment != current:
                conn.execute(sql.SQL("comment on table analytics.{} is {}").format(sql.Identifier(t.name),
                                                                                   sql.Literal(comment)))
        actions = {name: ("copied" if action == "copy" else "unchanged" if action == "unchanged"
                          else f"{len(days)} days replaced") for name, (action, days) in plans.items()}
        n_changed = sum(a != "unchanged" for a in actions.values())
        message = f"published {len(tables)} tables ({n_changed} changed)" + (
            "; shrink accepted (--accept-shrink): " + "; ".join(problems) if problems else "")
        conn.execute(
            "insert into analytics.publication_log (run_id, status, tables, message, sources, formats, dataset, "
            "generator_seeds, inputs, accepted_shrink, shrink, fingerprints, actions) "
            "values (%s, 'published', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "on conflict (run_id) do update set status = excluded.status, tables = excluded.tables, "
            "message = excluded.message, logged_at = clock_timestamp(), sources = excluded.sources, "
            "formats = excluded.formats, dataset = excluded.dataset, generator_seeds = excluded.generator_seeds, "
            "inputs = excluded.inputs, accepted_shrink = excluded.accepted_shrink, shrink = excluded.shrink, "
            "fingerprints = excluded.fingerprints, actions = excluded.actions",
            (run_id, json.dumps(counts), message, *_provenance_values(inputs), bool(problems),
             json.dumps(shrink) if shrink else None, json.dumps(fingerprints), json.dumps(actions)),
        )
    return Publication(counts, actions, fingerprints)


def record_block(conn: psycopg.Connection, run_id: str, blocked_by: Sequence[str], message: str,
                 inputs: Inputs | None = None) -> None:
    """Log that a run did not publish, and why (idempotent per run; a publication is never overwritten)."""
    ensure_analytics(conn)
    with conn.transaction():
        conn.execute(
            "insert into analytics.publication_log (run_id, status, blocked_by, message, sources, formats, dataset, "
            "generator_seeds, inputs) values (%s, 'blocked', %s, %s, %s, %s, %s, %s, %s) on conflict (run_id) do nothing",
            (run_id, list(blocked_by), message[:4000], *_provenance_values(inputs)),
        )
