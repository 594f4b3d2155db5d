"""Raw ingestion: one CSV file -> one typed raw table, with COPY, validated while it streams.

How a file is loaded (all in one transaction, so a killed load leaves nothing behind):
1. The header is read in Python and compared with the export contract (missing, extra, renamed,
   duplicated columns, or a changed date format, are schema drift: a clear error naming the
   file, the line and the column).
2. A file already loaded (same table, path, size and SHA-256) is skipped; the same content under
   another name is recognised by its checksum after streaming and not loaded twice.
3. The bytes stream with PostgreSQL ``COPY ... FROM STDIN`` straight into a new typed table whose
   CHECK constraints are the contract's rules (types, ranges, accepted values, lengths): a clean
   file is validated during COPY, with no per-row Python and memory independent of its size.
   Values that do not parse are skipped by COPY (PostgreSQL 18 ``ON_ERROR ignore``) and
   quarantined from the server's notices (line, column, value). A broken rule makes the load
   fall back: COPY again without the constraints, normalise case and whitespace, and move rule
   breakers to ``raw.quarantine`` with every reason, set-based. Keys repeated within the file go
   to quarantine too. Structural CSV errors (wrong number of fields, an unterminated quote,
   bytes that are not UTF-8) stop the load with the file, line and column.
4. The table is attached as the batch's partition of ``raw.<table>`` (no second copy of the
   rows). loaded + quarantined = read, asserted.

The SQL is built by pure functions (``batch_table_ddl``, ``column_rule``, ``quarantine_rules_sql``,
``quarantine_duplicates_sql``) so that it can be unit-tested without a database.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .contract import EARLIEST_DATE, MAX_TEXT_LENGTH, TABLES, Column, Table

CHUNK = 1 << 20  # 1 MiB: COPY throughput is flat above ~256 KiB chunks
BOM = b"\xef\xbb\xbf"
DATED_FOLDER_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

RAW_SCHEMA = "raw"


class IngestionError(Exception):
    """A file cannot be loaded. The message names the file, the line and the column."""

    def __init__(self, path: Path | str, line: int | None, column: str | None, problem: str):
        self.path = str(path)
        self.line = line
        self.column = column
        self.problem = problem
        where = self.path
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {problem}")


class SchemaDriftError(IngestionError):
    """The file's columns differ from the contract (new, missing, renamed or retyped columns)."""


# -- header -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    columns: tuple[str, ...]
    has_bom: bool
    size: int  # bytes of BOM + header line including its line end
    line_end: bytes = b"\n"  # the file's line terminator (COPY refuses a mix)


def read_header(path: Path) -> Header:
    """Parse the first line of ``path`` as the CSV header."""
    with open(path, "rb") as fh:
        head = fh.read(CHUNK)
    if not head.strip():
        raise IngestionError(path, 1, None, "empty file: expected a header line with the column names")
    has_bom = head.startswith(BOM)
    body = head[len(BOM):] if has_bom else head
    end = body.find(b"\n")
    if end == -1:
        if len(head) == CHUNK:
            raise IngestionError(path, 1, None, f"header line longer than {CHUNK} bytes")
        end = len(body)
        line = body
        size = len(head)
    else:
        line = body[:end]
        size = (len(BOM) if has_bom else 0) + end + 1
    try:
        text = line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as exc:
        raise IngestionError(path, 1, None, f"header is not UTF-8 (byte 0x{line[exc.start]:02x})") from None
    columns = next(csv.reader([text]))
    line_end = b"\r\n" if line.endswith(b"\r") else b"\n"
    return Header(tuple(c.strip() for c in columns), has_bom, size, line_end)


@dataclass(frozen=True)
class HeaderReport:
    missing: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    duplicated: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()  # (found, expected) at the same position
    reordered: bool = False

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.duplicated)

    def problems(self) -> list[str]:
        out = []
        for found, expected in self.renamed:
            out.append(f"column {found!r} found where {expected!r} was expected (renamed?)")
        renamed_found = {f for f, _ in self.renamed}
        renamed_expected = {e for _, e in self.renamed}
        missing = [m for m in self.missing if m not in renamed_expected]
        extra = [e for e in self.extra if e not in renamed_found]
        if missing:
            out.append("missing column(s): " + ", ".join(missing))
        if extra:
            out.append("unexpected new column(s): " + ", ".join(extra))
        if self.duplicated:
            out.append("duplicated column(s): " + ", ".join(self.duplicated))
        return out


def compare_header(t: Table, columns: tuple[str, ...]) -> HeaderReport:
    """Compare a file header with the contract. Pure."""
    names = [c.lower() for c in columns]
    expected_all = list(t.column_names)
    required = set(t.required_file_columns)
    seen: set[str] = set()
    duplicated = tuple(sorted({n for n in names if n in seen or seen.add(n)}))
    missing = tuple(c for c in expected_all if c in required and c not in names)
    extra = tuple(n for n in names if n not in expected_all)
    renamed = []
    if missing and extra:
        # a missing and a new column at the same position reads as a rename
        present_expected = [c for c in expected_all if c in names or c in missing]
        for i, n in enumerate(names):
            if n in extra and i < len(present_expected) and present_expected[i] in missing:
                renamed.append((n, present_expected[i]))
    in_file_order = [n for n in names if n in expected_all]
    contract_order = [c for c in expected_all if c in in_file_order]
    return HeaderReport(
        missing=missing,
        extra=extra,
        duplicated=duplicated,
        renamed=tuple(renamed),
        reordered=in_file_order != contract_order,
    )


ISO_DATE = re.compile(r"^\s*\d{4}-\d{2}-\d{2}\s*$")
SNIFF_LINES = 1000


def sniff_date_format(t: Table, path: Path, header: Header) -> None:
    """The first rows' dates must be ISO (YYYY-MM-DD). PostgreSQL's date input also reads other
    spellings, and "02/01/25" would silently become 2002-01-25: a file whose dates are mostly
    not ISO is a changed export (schema drift), not a few bad rows."""
    date_cols = [c.name for c in t.columns if c.type == "date" and c.name in header.columns]
    if not date_cols:
        return
    index = {c: header.columns.index(c) for c in date_cols}
    bad: dict[str, list[tuple[int, str]]] = {c: [] for c in date_cols}
    seen = 0
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        for line_no, row in enumerate(reader, start=2):
            if seen >= SNIFF_LINES:
                break
            seen += 1
            for c, i in index.items():
                if i < len(row) and row[i].strip() and not ISO_DATE.match(row[i]):
                    bad[c].append((line_no, row[i]))
    for c, found in bad.items():
        if seen and len(found) > seen / 2:
            line, value = found[0]
            raise SchemaDriftError(path, line, c, f"dates are not YYYY-MM-DD (found {value!r} in {len(found)} of "
                                                  f"the first {seen} rows): the export's date format changed")


def check_header(t: Table, path: Path) -> tuple[Header, HeaderReport]:
    header = read_header(path)
    report = compare_header(t, header.columns)
    if not report.ok:
        first = (report.missing or report.extra or report.duplicated)[0]
        raise SchemaDriftError(path, 1, first, "; ".join(report.problems()) + f" (the contract of {t.file}: "
                               + ", ".join(t.column_names) + ")")
    sniff_date_format(t, path, header)
    return header, report


# -- checksum and streaming ---------------------------------------------------------------------

def file_checksum(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class _Streamed:
    """What streaming a file to COPY learned on the way: checksum, size, quotes."""

    def __init__(self) -> None:
        self.sha = hashlib.sha256()
        self.size = 0
        self.quoted = False

    @property
    def checksum(self) -> str:
        return self.sha.hexdigest()


def file_chunks(path: Path, header: Header, seen: _Streamed) -> Iterator[bytes]:
    """The whole file (header included, COPY skips it) in chunks, hashed on the way, with blank
    lines at the very end removed and a final line end added when missing."""
    with open(path, "rb") as fh:
        pending = b""
        while chunk := fh.read(CHUNK):
            seen.sha.update(chunk)
            seen.size += len(chunk)
            seen.quoted = seen.quoted or b'"' in chunk
            if pending:
                yield pending
            pending = chunk
        tail = pending.rstrip(b"\r\n")
        if tail:
            yield tail + header.line_end


# -- SQL builders (pure) -----------------------------------------------------------------------

def _q(ident: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", ident):
        raise ValueError(f"not a plain identifier: {ident!r}")
    return '"' + ident + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def batch_table(t: Table, batch_id: int) -> str:
    return f"{RAW_SCHEMA}.{_q(f'{t.name}__b{batch_id}')}"


def column_rule(c: Column) -> str:
    """SQL that is true when a typed value obeys the contract (NULL where the rule cannot say)."""
    n = _q(c.name)
    parts = []
    if c.required:
        parts.append(f"{n} is not null")
    if c.type in ("text", "enum"):
        parts.append(f"({n} <> '' and {n} = btrim({n}) and length({n}) <= {MAX_TEXT_LENGTH})")
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
        parts.append(f"({n} >= date {_lit(EARLIEST_DATE)} and {n} <= current_date + 1)")
    if not parts:
        return "true"
    rule = " and ".join(parts)
    return rule if c.required else f"({n} is null or ({rule}))"


def batch_table_ddl(t: Table, batch_id: int, constrained: bool) -> str:
    """The typed table that one file is COPYed into, attached afterwards as the batch's
    partition of ``raw.<table>``. With ``constrained``, every contract rule is a CHECK constraint
    evaluated during COPY (the fast path for clean files: no second pass over the rows)."""
    cols = [f"    {_q(c.name)} {c.pg_type}" for c in t.columns]
    cols.append(f"    _batch_id bigint not null default {int(batch_id)} check (_batch_id = {int(batch_id)})")
    # identity from 2: the n-th record of a file is on line n + 1 (line 1 is the header),
    # corrected afterwards only when a quoted field spans lines
    cols.append("    _source_line bigint generated by default as identity (start with 2 cache 10000)")
    if constrained:
        for c in t.columns:
            rule = column_rule(c)
            if rule != "true":
                cols.append(f"    constraint {_q('rule_' + c.name)} check ({rule})")
    return f"create table {batch_table(t, batch_id)} (\n" + ",\n".join(cols) + "\n)"


def copy_sql(t: Table, batch_id: int, file_columns: tuple[str, ...], soft_errors: bool) -> str:
    cols = ", ".join(_q(c.lower()) for c in file_columns)
    # PostgreSQL 18: a value that does not parse skips its row with a NOTICE naming line,
    # column and value (quarantined below); older servers stop at the first such value
    opts = ", on_error ignore, log_verbosity verbose" if soft_errors else ""
    return (f"copy {batch_table(t, batch_id)} ({cols}) from stdin "
            f"with (format csv, header true, encoding 'UTF8'{opts})")


def normalise_sql(t: Table, batch_id: int) -> str | None:
    """Fallback path: trim, empty-as-NULL and case-normalise text values in place."""
    sets, wheres = [], []
    for c in t.columns:
        if c.type not in ("text", "enum"):
            continue
        n = _q(c.name)
        expr = f"nullif(btrim({n}, E' \\t\\r\\n'), '')"
        if c.case == "lower" or c.type == "enum":
            expr = f"lower({expr})"
        elif c.case == "upper":
            expr = f"upper({expr})"
        sets.append(f"{n} = {expr}")
        wheres.append(f"{n} is distinct from {expr}")
    if not sets:
        return None
    return f"update {batch_table(t, batch_id)} set {', '.join(sets)} where {' or '.join(wheres)}"


def _shown(c: Column, v: str) -> str:
    """The offending value in a reason, except for PII columns (never copied into reasons)."""
    if c.pii:
        return "' (value withheld: personal data)'"
    return f"', got ' || coalesce(quote_literal(left({v}::text, 40)), 'nothing')"


def reason_expr(c: Column) -> str:
    """SQL giving why a typed value breaks its rule, or NULL when it obeys it."""
    n = _q(c.name)
    return (f"case when ({column_rule(c)}) is not true then "
            f"{_lit(c.name + ': expected ' + c.expectation())} || {_shown(c, n)} end")


def quarantine_rules_sql(t: Table, batch_id: int) -> str:
    """Fallback path: move rows that break a rule into raw.quarantine with every reason."""
    rules = " and ".join(f"({column_rule(c)})" for c in t.columns)
    reasons = ",\n        ".join(reason_expr(c) for c in t.columns)
    first = "\n".join(f"        when ({column_rule(c)}) is not true then {_lit(c.name)}" for c in t.columns)
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
    to_jsonb(bad) - '_batch_id' - '_source_line'
from bad
"""


def quarantine_duplicates_sql(t: Table, batch_id: int) -> str:
    """Move every row whose key repeats within the file into raw.quarantine.

    Two steps keep it cheap on millions of rows: group on a 64-bit hash of the key (fixed-width,
    hashes in memory), then compare the few candidate keys exactly."""
    table = batch_table(t, batch_id)
    keys = ", ".join(_q(k) for k in t.key)
    hashed = " # ".join(f"hashtextextended(coalesce({_q(k)}, ''), {i})" for i, k in enumerate(t.key))
    pii_in_key = any(t.column(k).pii for k in t.key)
    shown = "' (value withheld: personal data)'" if pii_in_key else " || ', ' || ".join(
        f"quote_literal(m._dup_{k})" for k in t.key)
    return f"""
with candidates as (
    select {hashed} as h from {table} group by 1 having count(*) > 1
),
dups as (
    select {keys}, count(*) as n, min(_source_line) as first_line
    from {table}
    where {hashed} in (select h from candidates)
    group by {keys}
    having count(*) > 1
),
moved as (
    delete from {table} p using dups d
    where {' and '.join(f'p.{_q(k)} = d.{_q(k)}' for k in t.key)}
    returning p.*, d.n, d.first_line, {', '.join(f'd.{_q(k)} as _dup_{k}' for k in t.key)}
)
insert into raw.quarantine (batch_id, table_name, source_line, column_name, reason, record)
select _batch_id, {_lit(t.name)}, _source_line, {_lit(t.key[0])},
    'duplicate {", ".join(t.key)} ' || {shown}
        || ': ' || n || ' rows in this file (first at line ' || first_line || ')',
    to_jsonb(m) - '_batch_id' - '_source_line' - 'n' - 'first_line' - {' - '.join(_lit('_dup_' + k) for k in t.key)}
from moved m
"""


def embedded_newline_fix_sql(t: Table, batch_id: int) -> str:
    """When a quoted field holds line breaks, later records start further down the file: shift
    each record's line by the line breaks in the records before it (rare: a window over the file)."""
    table = batch_table(t, batch_id)
    text_cols = [c for c in t.columns if c.type in ("text", "enum")]
    nl = " + ".join(
        f"coalesce(length({_q(c.name)}) - length(replace({_q(c.name)}, E'\\n', '')), 0)" for c in text_cols)
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
    ddl = [RAW_BOOTSTRAP_SQL]
    for t in TABLES:
        cols = [f"    {_q(c.name)} {c.pg_type}" for c in t.columns]
        cols += ["    _batch_id bigint not null", "    _source_line bigint not null"]
        ddl.append(f"create table if not exists raw.{t.name} (\n" + ",\n".join(cols)
                   + "\n) partition by list (_batch_id);")
    return "\n".join(ddl)


# -- the load itself ---------------------------------------------------------------------------

@dataclass
class LoadResult:
    table: str
    path: str
    delivery: str | None
    checksum: str
    file_bytes: int
    batch_id: int
    skipped: bool = False
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    header: HeaderReport = field(default_factory=HeaderReport)
    # "checked during COPY" (clean file), "validated after COPY" (a rule broke), or "already loaded"
    load_path: str = ""


_COPY_CONTEXT = re.compile(r"COPY \S+, line (\d+)(?:, column (\w+))?")
_SKIPPED = re.compile(r'at line (\d+) for column "(\w+)": (.*)$', re.S)


def _copy_error(path: Path, header: Header, exc: psycopg.Error, t: Table) -> IngestionError:
    """Turn a COPY failure into an error naming the file, the line and the column."""
    context = (exc.diag.context or "") if exc.diag else ""
    m = _COPY_CONTEXT.search(context)
    line = int(m.group(1)) if m else None  # COPY reads the header too: its lines are the file's
    column = m.group(2) if m and m.group(2) else None
    problem = (exc.diag.message_primary if exc.diag and exc.diag.message_primary else str(exc)).strip()
    if "invalid byte sequence" in problem:
        problem += " (the file must be UTF-8)"
        if line is not None and column is None:
            column = _column_of_bad_byte(path, line, header.columns)
    elif "missing data for column" in problem:
        problem += f": the line has fewer fields than the header's {len(header.columns)} (truncated line?)"
        mm = re.search(r'column "(\w+)"', problem)
        column = column or (mm.group(1) if mm else None)
    elif "extra data after last expected column" in problem:
        problem += f": the line has more fields than the header's {len(header.columns)} (unquoted comma?)"
    elif "unterminated CSV quoted field" in problem:
        problem += " (a quote opened and never closed: truncated file?)"
    elif column is not None:
        # a value that does not parse on a server without soft COPY errors (PostgreSQL < 18)
        try:
            problem += f" (expected {t.column(column).expectation()})"
        except KeyError:
            pass
    return IngestionError(path, line, column, problem)


def _column_of_bad_byte(path: Path, line_no: int, columns: tuple[str, ...]) -> str | None:
    """The column of the first non-UTF-8 byte on a physical line (for the error message)."""
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            if i == line_no:
                try:
                    raw.decode("utf-8")
                    return None
                except UnicodeDecodeError as exc:
                    field_index = raw[: exc.start].count(b",")
                    return columns[field_index] if field_index < len(columns) else None
    return None


def _lines_of(path: Path, wanted: set[int]) -> dict[int, str]:
    """The text of a few physical lines (for quarantine records of rows COPY skipped)."""
    out: dict[int, str] = {}
    if not wanted:
        return out
    last = max(wanted)
    with open(path, "rb") as fh:
        for i, raw in enumerate(fh, start=1):
            if i in wanted:
                out[i] = raw.decode("utf-8", "replace").rstrip("\r\n")[:1000]
            if i >= last:
                break
    return out


class _AlreadyLoaded(Exception):
    def __init__(self, batch_id: int, checksum: str, size: int):
        self.batch_id, self.checksum, self.size = batch_id, checksum, size


def _copy(conn: psycopg.Connection, t: Table, batch_id: int, path: Path, header: Header,
          soft: bool, notices: list) -> tuple[int, _Streamed]:
    seen = _Streamed()
    notices.clear()
    with conn.cursor().copy(copy_sql(t, batch_id, header.columns, soft)) as copy:
        for chunk in file_chunks(path, header, seen):
            copy.write(chunk)
    loaded = conn.execute(f"select count(*) from {batch_table(t, batch_id)}").fetchone()[0]
    return loaded, seen


def load_file(
    conn: psycopg.Connection,
    t: Table,
    path: Path,
    delivery: str | None = None,
    run_id: str | None = None,
) -> LoadResult:
    """Load one file into ``raw.<t.name>`` in one transaction. Idempotent by checksum.

    Fast path: COPY into a new typed table whose CHECK constraints are the contract's rules, so
    a clean file is validated while it streams; then one pass for duplicate keys, and the table
    is attached as the batch's partition of raw.<table>. Fallback (a rule broke): COPY again
    into an unconstrained table, normalise, move rule breakers to quarantine with reasons."""
    path = Path(path)
    if not path.exists():
        raise IngestionError(path, None, None, f"missing file: the export must contain {t.file}")
    header, report = check_header(t, path)
    stat = path.stat()
    soft = conn.info.server_version >= 180000
    notices: list = []

    def on_notice(diag) -> None:
        notices.append(diag.message_primary or "")

    conn.add_notice_handler(on_notice)
    try:
        with conn.transaction():
            # one loader per table at a time; a second waits here rather than racing the checksum
            conn.execute("select pg_advisory_xact_lock(hashtext('voice_analytics.load.' || %s))", (t.name,))
            # day first for the rare non-ISO date inside an ISO file (the users' locale, Rwanda,
            # writes 01/02/2025 for 1 February); a file in another format is refused above
            conn.execute("set local datestyle = 'ISO, DMY'")
            # a file seen before at this path with this size: confirm by checksum, skip the load
            row = conn.execute(
                "select batch_id, file_checksum from raw.load_batches where table_name = %s and file_path = %s "
                "and file_bytes = %s and status = 'loaded' order by batch_id desc limit 1",
                (t.name, str(path.resolve()), stat.st_size),
            ).fetchone()
            if row:
                checksum, size = file_checksum(path)
                if checksum == row[1]:
                    raise _AlreadyLoaded(row[0], checksum, size)
            batch_id = conn.execute(
                """insert into raw.load_batches (table_name, file_name, file_path, delivery, file_checksum,
                       file_bytes, file_mtime, header, status, dagster_run_id, started_at)
                   values (%s, %s, %s, %s, %s, %s, %s, %s, 'loaded', %s, clock_timestamp()) returning batch_id""",
                (t.name, path.name, str(path.resolve()), delivery, f"pending:{uuid.uuid4()}", stat.st_size,
                 stat.st_mtime, list(header.columns), run_id),
            ).fetchone()[0]
            table = batch_table(t, batch_id)
            load_path = "checked during COPY"
            try:
                with conn.transaction():  # savepoint: a broken rule falls back, a broken file errors
                    conn.execute(batch_table_ddl(t, batch_id, constrained=True))
                    loaded, seen = _copy(conn, t, batch_id, path, header, soft, notices)
            except psycopg.errors.CheckViolation:
                load_path = "validated after COPY"
                try:
                    with conn.transaction():
                        conn.execute(batch_table_ddl(t, batch_id, constrained=False))
                        loaded, seen = _copy(conn, t, batch_id, path, header, soft, notices)
                except _COPY_ERRORS as exc:
                    raise _copy_error(path, header, exc, t) from None
            except _COPY_ERRORS as exc:
                raise _copy_error(path, header, exc, t) from None

            existing = conn.execute(
                "select batch_id from raw.load_batches where table_name = %s and file_checksum = %s "
                "and status = 'loaded'", (t.name, seen.checksum)).fetchone()
            if existing:  # the same content delivered under another name: nothing new
                raise _AlreadyLoaded(existing[0], seen.checksum, seen.size)

            skipped = _quarantine_skipped(conn, t, batch_id, path, notices)
            if seen.quoted and conn.execute(
                f"select exists (select 1 from {table} where "
                + " or ".join(f"strpos({_q(c.name)}, E'\\n') > 0" for c in t.columns if c.type in ("text", "enum"))
                + ")"
            ).fetchone()[0]:
                conn.execute(embedded_newline_fix_sql(t, batch_id))
            if load_path == "validated after COPY":
                if (sql_ := normalise_sql(t, batch_id)) is not None:
                    conn.execute(sql_)
                conn.execute(quarantine_rules_sql(t, batch_id))
            conn.execute(quarantine_duplicates_sql(t, batch_id))
            quarantined = conn.execute(
                "select count(*) from raw.quarantine where batch_id = %s", (batch_id,)).fetchone()[0]
            final = conn.execute(f"select count(*) from {table}").fetchone()[0]
            read = loaded + skipped
            if read != final + quarantined:  # pragma: no cover - guards the SQL above
                raise RuntimeError(f"{path}: read {read} rows but loaded {final} + quarantined {quarantined}")
            conn.execute(f"alter table {table} alter column _source_line drop identity")
            conn.execute(f"alter table raw.{_q(t.name)} attach partition {table} for values in ({int(batch_id)})")
            conn.execute(
                "update raw.load_batches set file_checksum = %s, file_bytes = %s, rows_read = %s, rows_loaded = %s, "
                "rows_quarantined = %s, load_path = %s where batch_id = %s",
                (seen.checksum, seen.size, read, final, quarantined, load_path, batch_id),
            )
    except _AlreadyLoaded as known:
        return LoadResult(t.name, str(path), delivery, known.checksum, known.size, known.batch_id,
                          skipped=True, header=report, load_path="already loaded")
    finally:
        conn.remove_notice_handler(on_notice)
    return LoadResult(t.name, str(path), delivery, seen.checksum, seen.size, batch_id, False, read, final,
                      quarantined, report, load_path)


_COPY_ERRORS = (
    psycopg.errors.DataError,
    psycopg.errors.BadCopyFileFormat,
    psycopg.errors.CharacterNotInRepertoire,
    psycopg.errors.UntranslatableCharacter,
    psycopg.errors.InvalidTextRepresentation,
    psycopg.errors.NotNullViolation,
)


def _quarantine_skipped(conn: psycopg.Connection, t: Table, batch_id: int, path: Path, notices: list) -> int:
    """Rows COPY skipped because a value did not parse: one quarantine row each, from the
    server's NOTICE (line, column, value). Returns how many were skipped."""
    rows = []
    total = 0
    for message in notices:
        m = _SKIPPED.search(message)
        if m:
            rows.append((int(m.group(1)), m.group(2), m.group(3)))
            continue
        mm = re.match(r"(\d+) rows? (?:was|were) skipped", message)
        if mm:
            total = int(mm.group(1))
    total = max(total, len(rows))
    if not rows:
        return total
    texts = _lines_of(path, {line for line, _, _ in rows})
    records = []
    for line, column, value in rows:
        try:
            col = t.column(column)
            shown = " (value withheld: personal data)" if col.pii else f", got {value[:40]}"
            reason = f"{column}: expected {col.expectation()}{shown}"
        except KeyError:
            reason = f"{column}: value does not parse"
        # the raw line stays in schema raw (like the raw tables); reasons never carry PII
        record = {"line": texts.get(line, "")}
        records.append((batch_id, t.name, line, column, reason, json.dumps(record)))
    with conn.cursor() as cur:
        cur.executemany(
            "insert into raw.quarantine (batch_id, table_name, source_line, column_name, reason, record) "
            "values (%s, %s, %s, %s, %s, %s::jsonb)", records)
    return total


def activate_batches(conn: psycopg.Connection, t: Table, results: list[LoadResult]) -> None:
    """Make the batches of this run's source the input of dbt for table ``t``.

    A single export folder is a snapshot: exactly its batch is active, earlier loads of the
    table are not (the certified tables describe the export that was run). Dated delivery
    folders are increments: each delivery's current file replaces that delivery's earlier
    versions, and deliveries not in the folder any more (archived) stay active."""
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('voice_analytics.load.' || %s))", (t.name,))
        snapshot = [r.batch_id for r in results if r.delivery is None]
        if snapshot:
            conn.execute(
                "update raw.load_batches set active = (batch_id = any(%s)) where table_name = %s "
                "and (active or batch_id = any(%s))",
                (snapshot, t.name, snapshot),
            )
            return
        for r in results:
            conn.execute(
                "update raw.load_batches set active = (batch_id = %s) where table_name = %s "
                "and (delivery = %s or delivery is null) and (active or batch_id = %s)",
                (r.batch_id, t.name, r.delivery, r.batch_id),
            )


def record_rejection(conn: psycopg.Connection, t: Table, path: Path, delivery: str | None, run_id: str | None,
                     error: IngestionError) -> None:
    """Keep a trace of a file that could not be loaded (its batch holds no rows)."""
    try:
        checksum, size = file_checksum(path)
    except OSError:
        checksum, size = "", 0
    try:
        columns = list(read_header(path).columns)
    except (IngestionError, OSError):
        columns = []
    with conn.transaction():
        conn.execute(
            """insert into raw.load_batches (table_name, file_name, file_path, delivery, file_checksum, file_bytes,
                   header, status, error, dagster_run_id, started_at)
               values (%s, %s, %s, %s, %s, %s, %s, 'rejected', %s, %s, clock_timestamp())""",
            (t.name, Path(path).name, str(path), delivery, checksum, size, columns, str(error), run_id),
        )


# -- deliveries --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Delivery:
    name: str | None  # the dated folder name, or None for a single export folder
    folder: Path

    def file(self, t: Table) -> Path:
        return self.folder / t.file


def discover_deliveries(source: Path) -> list[Delivery]:
    """An export folder (the five CSV files) is one delivery; a landing folder holds dated
    sub-folders (YYYY-MM-DD), each a delivery, in date order."""
    source = Path(source)
    if not source.is_dir():
        raise IngestionError(source, None, None, "source folder not found")
    if any((source / t.file).exists() for t in TABLES):
        return [Delivery(None, source)]
    dated = sorted(p for p in source.iterdir() if p.is_dir() and DATED_FOLDER_RE.match(p.name))
    if not dated:
        raise IngestionError(
            source, None, None,
            "no export found: expected the five CSV files (" + ", ".join(t.file for t in TABLES)
            + ") or dated sub-folders YYYY-MM-DD holding them",
        )
    return [Delivery(p.name, p) for p in dated]
