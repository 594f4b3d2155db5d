"""The SQL of a load, built by pure functions from the contract (unit-tested without a database):
the typed batch table whose CHECK constraints are the contract's rules, the COPY statement, the
careful path's normalisation and rule checks, the quarantine of rule breakers and repeated keys,
and the raw schema's DDL.
"""

from __future__ import annotations

import re

from voice_analytics_dagster.defs.ingestion.reader import RELATIVE_DAYS_BACK, WHITESPACE
from voice_analytics_dagster.lib.contract import EARLIEST_DATE, MAX_TEXT_LENGTH, TABLES, Column, Table
from voice_analytics_dagster.lib.provenance import BATCH_PROVENANCE_DDL

RAW_SCHEMA = "raw"
# A quarantined record keeps at most this many characters per field: enough to read and fix the
# row, while a runaway field (a broken quote that swallowed megabytes) does not bloat quarantine.
QUARANTINE_VALUE_MAX = 1000


def ident(name: str) -> str:
    """A plain lower-case identifier, quoted; anything else is refused (no SQL from file headers)."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise ValueError(f"not a plain identifier: {name!r}")
    return '"' + name + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def batch_table(t: Table, batch_id: int) -> str:
    return f"{RAW_SCHEMA}.{ident(f'{t.name}__b{batch_id}')}"


# -- the contract's rules ---------------------------------------------------------------------------

def _canonical(value: str) -> bool:
    """An accepted value as the text rules want it: non-empty, trimmed, lower case, short."""
    return value != "" and value == value.strip(WHITESPACE) and value == value.lower() and len(value) <= MAX_TEXT_LENGTH


def _needs_trim(c: Column) -> bool:
    """Whether the column's rule says "no surrounding whitespace" (see trim_rule)."""
    return c.type in ("text", "enum") and not (c.type == "enum" and all(_canonical(a) for a in c.accepted))


def trim_rule(c: Column) -> str | None:
    """The part of a text column's rule that says its value has no surrounding whitespace."""
    n = ident(c.name)
    return f"{n} = btrim({n}, E'{WHITESPACE}')" if _needs_trim(c) else None


def column_rule(c: Column, text_dates: bool = False, trim: bool = True) -> str:
    """SQL that is true when a typed value obeys the contract (NULL where the rule cannot say).

    ``text_dates``: date columns hold their text (the careful path); the rule then also says
    that the text reads as a date, and refuses words such as 'yesterday'.
    ``trim=False`` leaves trim_rule out (the fast path: see padding_check_sql)."""
    n = ident(c.name)
    parts = []
    if c.required:
        parts.append(f"{n} is not null")
    if c.type == "enum" and all(_canonical(a) for a in c.accepted):
        # membership alone: every accepted value is non-empty, trimmed, lower case and short,
        # so the text rules below are implied and cost nothing during COPY
        parts.append(f"{n} in ({', '.join(_lit(a) for a in c.accepted)})")
    elif _needs_trim(c):  # text, or an enum whose accepted values are not all canonical
        trimmed = f" and {trim_rule(c)}" if trim else ""
        # characters are never more than bytes: the byte length (read off the value's header)
        # answers for nearly every value, the character count (a scan) only for long ones
        parts.append(f"({n} <> ''{trimmed} and (octet_length({n}) <= {MAX_TEXT_LENGTH} "
                     f"or length({n}) <= {MAX_TEXT_LENGTH}))")
        if c.case == "lower" or c.type == "enum":
            parts.append(f"{n} = lower({n})")
        elif c.case == "upper":
            parts.append(f"{n} = upper({n})")
        if c.type == "enum":
            parts.append(f"{n} in ({', '.join(_lit(a) for a in c.accepted)})")
    if c.type in ("integer", "decimal"):
        if c.type == "decimal":
            # double precision accepts NaN and infinities; the contract does not
            parts.append(f"({n} > '-Infinity' and {n} < 'Infinity')")
        if c.minimum is not None:
            parts.append(f"{n} >= {c.minimum!r}")
        if c.maximum is not None:
            parts.append(f"{n} <= {c.maximum!r}")
    if c.type == "date":
        plausible = f"({{v}} >= date {_lit(EARLIEST_DATE)} and {{v}} <= current_date + 1)"
        if text_dates:
            # CASE: the cast is reached only for text that reads as a date
            parts.append(
                f"(case when {n} ~ '[A-Za-z]' or not pg_input_is_valid({n}, 'date') then false "
                f"else {plausible.format(v=f'{n}::date')} end)")
        else:
            parts.append(plausible.format(v=n))
    if not parts:
        return "true"
    rule = " and ".join(parts)
    return rule if c.required else f"({n} is null or ({rule}))"


# -- the batch table and its COPY -----------------------------------------------------------------

def batch_table_ddl(t: Table, batch_id: int, constrained: bool, text_dates: bool = False, trim: bool = True) -> str:
    """The typed table that one file is COPYed into, attached afterwards as the batch's
    partition of ``raw.<table>``. With ``constrained``, every contract rule is a CHECK constraint
    evaluated during COPY (the fast path for clean files: no second pass over the rows).
    ``text_dates`` (careful path) keeps date columns as text until they are checked.
    ``trim=False``: the rules leave out trim_rule (see padding_check_sql)."""
    def pg_type(c: Column) -> str:
        return "text" if text_dates and c.type == "date" else c.pg_type

    cols = [f"    {ident(c.name)} {pg_type(c)}" for c in t.columns]
    cols.append(f"    _batch_id bigint not null default {int(batch_id)} check (_batch_id = {int(batch_id)})")
    # identity from 2: the n-th record of a file is on line n + 1 (line 1 is the header),
    # corrected afterwards only when a quoted field spans lines
    cols.append("    _source_line bigint generated by default as identity (start with 2 cache 10000)")
    if constrained:
        for c in t.columns:
            rule = column_rule(c, text_dates, trim)
            if rule != "true":
                cols.append(f"    constraint {ident('rule_' + c.name)} check ({rule})")
    return f"create table {batch_table(t, batch_id)} (\n" + ",\n".join(cols) + "\n)"


def padding_check_sql(t: Table, table: str) -> str | None:
    """The trim rules of ``t``'s text columns as one CHECK constraint added to a loaded table
    (validated by one scan; a broken one raises CheckViolation as during COPY), or None when the
    table has no such column. Run only when the bytes COPY read could hold a padded value (see
    reader.Padding): otherwise the rules cannot fail and are not evaluated at all."""
    rules = [r for c in t.columns if (r := trim_rule(c))]
    if not rules:
        return None
    return f"alter table {table} add constraint rule_trimmed check ({' and '.join(rules)})"


def copy_sql(t: Table, batch_id: int, file_columns: tuple[str, ...], soft_errors: bool) -> str:
    cols = ", ".join(ident(c.lower()) for c in file_columns)
    # PostgreSQL 18: a value that does not parse skips its row with a NOTICE naming line,
    # column and value (quarantined afterwards); older servers stop at the first such value
    opts = ", on_error ignore, log_verbosity verbose" if soft_errors else ""
    # force_null: an empty field is missing whether or not it is quoted (writers that quote
    # every field write "" for an empty one).
    # freeze: the batch table is created in the same (sub)transaction, so its rows can be written
    # frozen: their first reader does not rewrite every page to set hint bits, and vacuum has
    # nothing to do.
    return (f"copy {batch_table(t, batch_id)} ({cols}) from stdin "
            f"with (format csv, header true, encoding 'UTF8', force_null ({cols}), freeze true{opts})")


def recent_days_sql(t: Table, batch_id: int) -> str | None:
    """Whether a date column of the batch holds a day that a relative date word would give (see
    reader.DATE_WORDS); None when the table has no date column."""
    dates = [c for c in t.columns if c.type == "date"]
    if not dates:
        return None
    near = " or ".join(f"{ident(c.name)} >= current_date - {RELATIVE_DAYS_BACK}" for c in dates)
    return f"select exists (select 1 from {batch_table(t, batch_id)} where {near})"


def attach_batch_sql(t: Table, batch_id: int) -> str:
    """The loaded table becomes the batch's partition of ``raw.<table>`` (its _batch_id CHECK
    spares the attach a scan); the line numbers are final by then."""
    table = batch_table(t, batch_id)
    return (f"alter table {table} alter column _source_line drop identity;\n"
            f"alter table {RAW_SCHEMA}.{ident(t.name)} attach partition {table} for values in ({int(batch_id)})")


# -- line numbers -----------------------------------------------------------------------------------

def embedded_newline_sql(t: Table, batch_id: int) -> str:
    """Whether a text value of the batch holds a line break (a quoted field spanning lines)."""
    found = " or ".join(f"strpos({ident(c.name)}, E'\\n') > 0" for c in t.columns if c.type in ("text", "enum"))
    return f"select exists (select 1 from {batch_table(t, batch_id)} where {found})"


def embedded_newline_fix_sql(t: Table, batch_id: int) -> str:
    """When a quoted field holds line breaks, later records start further down the file: shift
    each record's line by the line breaks in the records before it (rare: a window over the file)."""
    table = batch_table(t, batch_id)
    text_cols = [c for c in t.columns if c.type in ("text", "enum")]
    nl = " + ".join(
        f"coalesce(length({ident(c.name)}) - length(replace({ident(c.name)}, E'\\n', '')), 0)" for c in text_cols)
    return f"""
update {table} p set _source_line = x.line
from (
    select _source_line as rn,
           _source_line + coalesce(sum({nl}) over (order by _source_line
               rows between unbounded preceding and 1 preceding), 0) as line
    from {table}
) x
where p._source_line = x.rn and x.line <> x.rn
"""


def skipped_span_shift_sql(t: Table, batch_id: int) -> str:
    """Rows after a skipped record that spans lines start that much further down the file.
    Parameters: the skipped records' identity values and their extra lines (two bigint arrays)."""
    table = batch_table(t, batch_id)
    return (f"update {table} p set _source_line = p._source_line + s.extra from ("
            "select b._source_line as rn, sum(x.extra) as extra from "
            f"{table} b join unnest(%s::bigint[], %s::bigint[]) as x(rn, extra) on x.rn < b._source_line "
            "group by b._source_line) s where p._source_line = s.rn")


# -- the careful path -------------------------------------------------------------------------------

def normalise_sql(t: Table, batch_id: int, text_dates: bool = False) -> str | None:
    """Careful path: trim, empty-as-NULL and case-normalise text values in place."""
    sets, wheres = [], []
    for c in t.columns:
        if c.type not in ("text", "enum") and not (text_dates and c.type == "date"):
            continue
        n = ident(c.name)
        expr = f"nullif(btrim({n}, E'{WHITESPACE}'), '')"
        if c.case == "lower" or c.type == "enum":
            expr = f"lower({expr})"
        elif c.case == "upper":
            expr = f"upper({expr})"
        sets.append(f"{n} = {expr}")
        wheres.append(f"{n} is distinct from {expr}")
    if not sets:
        return None
    return f"update {batch_table(t, batch_id)} set {', '.join(sets)} where {' or '.join(wheres)}"


def retype_dates_sql(t: Table, batch_id: int) -> str | None:
    """Careful path, after the checks: the date columns' text becomes dates (day first for the
    rare non-ISO spelling, as the load's DateStyle says)."""
    dates = [c for c in t.columns if c.type == "date"]
    if not dates:
        return None
    alters = ", ".join(f"alter column {ident(c.name)} type date using {ident(c.name)}::date" for c in dates)
    return f"alter table {batch_table(t, batch_id)} {alters}"


def _shown(c: Column, v: str) -> str:
    """The offending value in a reason, except for PII columns (never copied into reasons)."""
    if c.pii:
        return "' (value withheld: personal data)'"
    return f"', got ' || coalesce(quote_literal(left({v}::text, 40)), 'nothing')"


def reason_expr(c: Column, text_dates: bool = False) -> str:
    """SQL giving why a typed value breaks its rule, or NULL when it obeys it."""
    n = ident(c.name)
    return (f"case when ({column_rule(c, text_dates)}) is not true then "
            f"{_lit(c.name + ': expected ' + c.expectation())} || {_shown(c, n)} end")


def truncated_record_sql(alias: str, drop: tuple[str, ...]) -> str:
    """The row as JSON with every text value cut to QUARANTINE_VALUE_MAX characters."""
    minus = "".join(f" - {_lit(d)}" for d in drop)
    return (f"(select jsonb_object_agg(key, case when jsonb_typeof(value) = 'string' "
            f"then to_jsonb(left(value #>> '{{}}', {QUARANTINE_VALUE_MAX})) else value end) "
            f"from jsonb_each(to_jsonb({alias}){minus}))")


def quarantine_rules_sql(t: Table, batch_id: int, text_dates: bool = False) -> str:
    """Careful path: move rows that break a rule into raw.quarantine with every reason."""
    rules = " and ".join(f"({column_rule(c, text_dates)})" for c in t.columns)
    reasons = ",\n        ".join(reason_expr(c, text_dates) for c in t.columns)
    first = "\n".join(f"        when ({column_rule(c, text_dates)}) is not true then {_lit(c.name)}" for c in t.columns)
    return f"""
with bad as (
    delete from {batch_table(t, batch_id)} where ({rules}) is not true returning *
)
insert into raw.quarantine (batch_id, table_name, source_line, column_name, reason, record)
select _batch_id, {_lit(t.name)}, _source_line,
    case
{first}
    end,
    concat_ws('; ',
        {reasons}
    ),
    {truncated_record_sql('bad', ('_batch_id', '_source_line'))}
from bad
"""


# -- repeated keys ----------------------------------------------------------------------------------

def _key_hash(t: Table) -> str:
    return " # ".join(f"hashtextextended(coalesce({ident(k)}, ''), {i})" for i, k in enumerate(t.key))


def duplicate_candidates_sql(t: Table, batch_id: int) -> str:
    """The 64-bit hashes of the keys that occur more than once in the file (NULL: none), a
    read-only query. Grouping fixed-width hashes keeps it cheap on millions of rows; in a clean
    file there are none and quarantine_duplicates_sql, a second scan, is not run."""
    rows = f"select {_key_hash(t)} as h from {batch_table(t, batch_id)}"
    return f"select array_agg(h) from ({rows} group by 1 having count(*) > 1) c"


def quarantine_duplicates_sql(t: Table, batch_id: int) -> str:
    """Move every row whose key repeats within the file into raw.quarantine. Parameter:
    %(hashes)s, the candidates found by duplicate_candidates_sql (compared exactly here)."""
    table = batch_table(t, batch_id)
    keys = ", ".join(ident(k) for k in t.key)
    hashed = _key_hash(t)
    pii_in_key = any(t.column(k).pii for k in t.key)
    shown = "' (value withheld: personal data)'" if pii_in_key else " || ', ' || ".join(
        f"quote_literal(m._dup_{k})" for k in t.key)
    return f"""
with dups as (
    select {keys}, count(*) as n, min(_source_line) as first_line
    from {table}
    where {hashed} = any(%(hashes)s::bigint[])
    group by {keys}
    having count(*) > 1
),
moved as (
    delete from {table} p using dups d
    where {' and '.join(f'p.{ident(k)} = d.{ident(k)}' for k in t.key)}
    returning p.*, d.n, d.first_line, {', '.join(f'd.{ident(k)} as _dup_{k}' for k in t.key)}
)
insert into raw.quarantine (batch_id, table_name, source_line, column_name, reason, record)
select _batch_id, {_lit(t.name)}, _source_line, {_lit(t.key[0])},
    'duplicate {", ".join(t.key)} ' || {shown}
        || ': ' || n || ' rows in this file (first at line ' || first_line || ')',
    {truncated_record_sql('m', ('_batch_id', '_source_line', 'n', 'first_line', *('_dup_' + k for k in t.key)))}
from moved m
"""


def quarantine_skipped_twins_sql(t: Table, batch_id: int) -> str:
    """Rows whose key is also the key of a row COPY skipped (its value did not parse): the key
    repeats within the file, so every copy goes to quarantine, as for any duplicate.
    Parameter: %(keys)s, the skipped rows' keys (first key column; single-column keys)."""
    table = batch_table(t, batch_id)
    k = ident(t.key[0])
    shown = "' (value withheld: personal data)'" if t.column(t.key[0]).pii else f"quote_literal(m.{k})"
    return f"""
with moved as (
    delete from {table} where {k} = any(%(keys)s) returning *
)
insert into raw.quarantine (batch_id, table_name, source_line, column_name, reason, record)
select _batch_id, {_lit(t.name)}, _source_line, {_lit(t.key[0])},
    'duplicate {t.key[0]} ' || {shown} || ': another row of this file with this key was quarantined',
    {truncated_record_sql('m', ('_batch_id', '_source_line'))}
from moved m
"""


# -- the raw schema ---------------------------------------------------------------------------------

RAW_BOOTSTRAP_SQL = """
create schema if not exists raw;
create table if not exists raw.load_batches (
    batch_id bigint generated always as identity primary key,
    table_name text not null,
    file_name text not null,
    file_path text not null,
    delivery text,
    file_checksum text not null,
    file_bytes bigint not null,
    file_mtime double precision,
    header text[] not null,
    rows_read bigint not null default 0,
    rows_loaded bigint not null default 0,
    rows_quarantined bigint not null default 0,
    load_path text,
    status text not null check (status in ('loaded', 'rejected')),
    -- rows of active batches are the input of dbt (see activate_batches)
    active boolean not null default false,
    error text,
    dagster_run_id text,
    started_at timestamptz not null,
    loaded_at timestamptz not null default clock_timestamp()
);
create unique index if not exists load_batches_once
    on raw.load_batches (table_name, file_checksum) where status = 'loaded';
create index if not exists load_batches_active on raw.load_batches (table_name) where active;
create table if not exists raw.quarantine (
    batch_id bigint not null references raw.load_batches (batch_id),
    table_name text not null,
    source_line bigint not null,
    column_name text,
    reason text not null,
    record jsonb not null
);
create index if not exists quarantine_batch on raw.quarantine (batch_id);
"""


def bootstrap_raw_sql() -> str:
    """Idempotent DDL of the raw schema: each raw table is partitioned by load batch (a load
    attaches its batch's table as a partition: no second copy of the rows)."""
    ddl = [RAW_BOOTSTRAP_SQL, BATCH_PROVENANCE_DDL]
    for t in TABLES:
        cols = [f"    {ident(c.name)} {c.pg_type}" for c in t.columns]
        cols += ["    _batch_id bigint not null", "    _source_line bigint not null"]
        ddl.append(f"create table if not exists raw.{t.name} (\n" + ",\n".join(cols)
                   + "\n) partition by list (_batch_id);")
    return "\n".join(ddl)
