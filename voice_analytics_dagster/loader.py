"""Raw ingestion: one CSV file -> one typed raw table, with COPY and one set-based INSERT ... SELECT.

How a file is loaded (all in one transaction, so a killed load leaves nothing behind):
1. The header is read in Python and compared with the export contract (missing, extra, renamed,
   duplicated columns are schema drift: a clear error naming the file, line 1 and the column).
2. The file's SHA-256 decides whether it was loaded before (same table + same checksum = skip).
3. The bytes stream into a temporary all-text landing table with PostgreSQL ``COPY ... FROM STDIN``
   (no per-row Python, memory independent of the file size). Structural CSV errors (wrong number
   of fields, an unterminated quote, bytes that are not UTF-8) stop the load with the file, line
   and column.
4. One ``INSERT ... SELECT`` validates every row against the contract (types, ranges, accepted
   values, lengths, duplicate keys within the file) and casts it into ``raw.<table>``; rows that
   fail go to ``raw.quarantine`` with every reason. loaded + quarantined = read, asserted.

The SQL is built by pure functions (``landing_ddl``, ``validate_and_insert_sql``) so that it can
be unit-tested without a database.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .contract import MAX_TEXT_LENGTH, NO_VALUES, TABLES, YES_VALUES, Column, Table

CHUNK = 1 << 20  # 1 MiB: COPY throughput is flat above ~256 KiB chunks
BOM = b"\xef\xbb\xbf"
DATE_RE = r"^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
INTEGER_RE = r"^[+-]?[0-9]{1,18}$"
DECIMAL_RE = r"^[+-]?([0-9]{1,30}([.][0-9]{0,30})?|[.][0-9]{1,30})([eE][+-]?[0-9]{1,3})?$"
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


def check_header(t: Table, path: Path) -> tuple[Header, HeaderReport]:
    header = read_header(path)
    report = compare_header(t, header.columns)
    if not report.ok:
        first = (report.missing or report.extra or report.duplicated)[0]
        raise SchemaDriftError(path, 1, first, "; ".join(report.problems()) + f" (the contract of {t.file}: "
                               + ", ".join(t.column_names) + ")")
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


def data_chunks(path: Path, skip: int, line_end: bytes = b"\n") -> Iterator[bytes]:
    """The file's bytes after the header, in chunks, with blank lines at the very end removed
    and a final line end added when missing (so a last line without newline loads)."""
    with open(path, "rb") as fh:
        fh.seek(skip)
        pending = b""
        while chunk := fh.read(CHUNK):
            if pending:
                yield pending
            pending = chunk
        tail = pending.rstrip(b"\r\n")
        if tail:
            yield tail + line_end


# -- SQL builders (pure) -----------------------------------------------------------------------

def _q(ident: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", ident):
        raise ValueError(f"not a plain identifier: {ident!r}")
    return '"' + ident + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def landing_ddl(file_columns: tuple[str, ...]) -> str:
    cols = ",\n".join(f"    {_q(c.lower())} text" for c in file_columns)
    return (
        "create temporary table _landing (\n"
        "    _rn bigint generated always as identity,\n"
        f"{cols}\n) on commit drop"
    )


def copy_sql(file_columns: tuple[str, ...]) -> str:
    cols = ", ".join(_q(c.lower()) for c in file_columns)
    return f"copy _landing ({cols}) from stdin with (format csv, header false, encoding 'UTF8')"


def normalised(c: Column, present: bool) -> str:
    """SQL expression: the landing value trimmed, empty as NULL, case-normalised."""
    if not present:
        return "null::text"
    expr = f"nullif(btrim({_q(c.name)}, E' \\t\\r\\n'), '')"
    if c.case == "lower" or c.type in ("enum", "yesno"):
        expr = f"lower({expr})"
    elif c.case == "upper":
        expr = f"upper({expr})"
    return expr


def _shown(c: Column, v: str) -> str:
    """The offending value in a reason, except for PII columns (never copied into reasons)."""
    if c.pii:
        return "' (value withheld: personal data)'"
    return f"', got ' || quote_literal(left({v}, 40))"


def reason_expr(c: Column, v: str) -> str:
    """SQL CASE giving the first problem of column ``c`` with normalised value ``v``, or NULL.

    CASE evaluates its branches in order, so a cast is only reached after its regex passed
    (AND does not guarantee evaluation order in PostgreSQL)."""
    exp = _lit(f"{c.name}: expected {c.expectation()}")
    branches = []
    if c.required:
        branches.append(f"when {v} is null then {_lit(c.name + ': missing, expected ' + c.expectation())}")
    else:
        branches.append(f"when {v} is null then null")
    if c.type == "integer":
        branches.append(f"when {v} !~ {_lit(INTEGER_RE)} then {exp} || {_shown(c, v)}")
        cast = f"{v}::bigint"
    elif c.type == "decimal":
        branches.append(f"when {v} !~ {_lit(DECIMAL_RE)} then {exp} || {_shown(c, v)}")
        cast = f"{v}::double precision"
    elif c.type == "date":
        branches.append(f"when {v} !~ {_lit(DATE_RE)} then {exp} || {_shown(c, v)}")
        # the day must exist in its month (2025-02-30 passes the pattern, not the calendar)
        branches.append(
            f"when substr({v}, 9, 2)::int > extract(day from make_date(substr({v}, 1, 4)::int, "
            f"substr({v}, 6, 2)::int, 1) + interval '1 month - 1 day') "
            f"then {_lit(c.name + ': not a calendar date')} || {_shown(c, v)}"
        )
        cast = None
    elif c.type == "yesno":
        accepted = ", ".join(_lit(x) for x in (*YES_VALUES, *NO_VALUES))
        branches.append(f"when {v} not in ({accepted}) then {exp} || {_shown(c, v)}")
        cast = None
    elif c.type == "enum":
        accepted = ", ".join(_lit(x) for x in c.accepted)
        branches.append(f"when {v} not in ({accepted}) then {exp} || {_shown(c, v)}")
        cast = None
    else:
        cast = None
    branches.append(
        f"when length({v}) > {MAX_TEXT_LENGTH} then "
        f"{_lit(c.name + ': value too long')} || ' (' || length({v}) || ' characters, at most {MAX_TEXT_LENGTH})'"
    )
    if cast is not None and (c.minimum is not None or c.maximum is not None):
        conds = []
        if c.minimum is not None:
            conds.append(f"{cast} < {c.minimum!r}")
        if c.maximum is not None:
            conds.append(f"{cast} > {c.maximum!r}")
        branches.append(f"when {' or '.join(conds)} then {exp} || {_shown(c, v)}")
    return "case " + " ".join(branches) + " end"


def cast_expr(c: Column, v: str) -> str:
    if c.type == "integer":
        return f"{v}::bigint"
    if c.type == "decimal":
        return f"{v}::double precision"
    if c.type == "date":
        return f"{v}::date"
    if c.type == "yesno":
        return f"({v} in ({', '.join(_lit(x) for x in YES_VALUES)}))"
    return v


def validate_and_insert_sql(t: Table, file_columns: tuple[str, ...], quoted: bool, schema: str = RAW_SCHEMA) -> str:
    """One statement: validate every landing row, insert the good ones into ``schema.<table>``
    and the others into ``schema.quarantine``; returns (read, loaded, quarantined).

    Parameters: %(batch_id)s. ``quoted`` says whether the file contains a double quote at all:
    only then can a field hold a line break, and the physical line of each record must be
    counted (a running sum, skipped for the common unquoted file)."""
    present = {c.lower() for c in file_columns}
    norm = {c.name: normalised(c, c.name in present) for c in t.columns}
    reasons = ",\n            ".join(reason_expr(c, norm[c.name]) for c in t.columns)
    first_col = "\n".join(
        f"            when ({reason_expr(c, norm[c.name])}) is not null then {_lit(c.name)}" for c in t.columns
    )
    if quoted:
        newlines = " + ".join(
            f"coalesce(length({_q(c.lower())}) - length(replace({_q(c.lower())}, E'\\n', '')), 0)"
            for c in file_columns
        )
        line = (
            f"_rn + 1 + coalesce(sum({newlines}) over (order by _rn rows between unbounded preceding "
            "and 1 preceding), 0)"
        )
    else:
        line = "_rn + 1"
    key_cols = ", ".join(f"n_{k}" for k in t.key)
    key_label = ", ".join(t.key)
    key_value = " || ', ' || ".join(f"quote_literal(c.n_{k})" for k in t.key)
    key_not_null = " and ".join(f"n_{k} is not null" for k in t.key)
    selected = ",\n        ".join(f"{norm[c.name]} as n_{c.name}" for c in t.columns)
    insert_cols = ", ".join(_q(c.name) for c in t.columns)
    casts = ", ".join(cast_expr(c, f"c.n_{c.name}") for c in t.columns)
    record = ", ".join(f"{_lit(c.lower())}, {_q(c.lower())}" for c in file_columns)
    pii_in_key = any(t.column(k).pii for k in t.key)
    dup_value = "' (value withheld: personal data)'" if pii_in_key else key_value
    return f"""
with checked as materialized (
    select
        _rn,
        {line} as _line,
        jsonb_build_object({record}) as _record,
        {selected},
        nullif(concat_ws('; ',
            {reasons}
        ), '') as _reason,
        case
{first_col}
        end as _reason_column
    from _landing
),
dups as (
    select {key_cols}, count(*) as n, min(_line) as first_line
    from checked
    where {key_not_null}
    group by {key_cols}
    having count(*) > 1
),
judged as (
    select c.*,
        nullif(concat_ws('; ', c._reason,
            case when d.n is not null then
                'duplicate {key_label} ' || {dup_value} || ': ' || d.n || ' rows in this file (first at line ' || d.first_line || ')'
            end), '') as _why,
        coalesce(c._reason_column, case when d.n is not null then {_lit(t.key[0])} end) as _why_column
    from checked c
    left join dups d using ({key_cols})
),
loaded as (
    insert into {schema}.{t.name} ({insert_cols}, _batch_id, _source_line)
    select {casts}, %(batch_id)s, c._line
    from judged c
    where c._why is null
    returning 1
),
quarantined as (
    insert into {schema}.quarantine (batch_id, table_name, source_line, column_name, reason, record)
    select %(batch_id)s, {_lit(t.name)}, _line, _why_column, _why, _record
    from judged
    where _why is not null
    returning 1
)
select (select count(*) from checked), (select count(*) from loaded), (select count(*) from quarantined)
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
    header text[] not null,
    rows_read bigint not null default 0,
    rows_loaded bigint not null default 0,
    rows_quarantined bigint not null default 0,
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
create table if not exists raw.quarantine (
    batch_id bigint not null references raw.load_batches (batch_id),
    table_name text not null,
    source_line bigint not null,
    column_name text,
    reason text not null,
    record jsonb not null
);
create index if not exists quarantine_batch on raw.quarantine (batch_id);
create index if not exists load_batches_active on raw.load_batches (table_name) where active;
"""


def bootstrap_raw_sql() -> str:
    from .contract import raw_table_ddl

    ddl = [RAW_BOOTSTRAP_SQL]
    for t in TABLES:
        ddl.append(raw_table_ddl(t) + ";")
        ddl.append(f"create index if not exists {t.name}_batch on raw.{t.name} (_batch_id);")
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


_COPY_CONTEXT = re.compile(r"COPY _landing, line (\d+)(?:, column (\w+))?")


def _copy_error(path: Path, header: Header, exc: psycopg.Error) -> IngestionError:
    """Turn a COPY failure into an error naming the file, the line and the column."""
    context = (exc.diag.context or "") if exc.diag else ""
    m = _COPY_CONTEXT.search(context)
    line = int(m.group(1)) + 1 if m else None  # COPY counts from the line after the header
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


def load_file(
    conn: psycopg.Connection,
    t: Table,
    path: Path,
    delivery: str | None = None,
    run_id: str | None = None,
) -> LoadResult:
    """Load one file into ``raw.<t.name>`` in one transaction. Idempotent by checksum."""
    path = Path(path)
    if not path.exists():
        raise IngestionError(path, None, None, f"missing file: the export must contain {t.file}")
    header, report = check_header(t, path)
    checksum, size = file_checksum(path)
    with open(path, "rb") as fh:
        fh.seek(header.size)
        # a double quote anywhere means a field may span lines; only then count physical lines
        quoted = _contains(fh, b'"')
    with conn.transaction():
        # one loader per table at a time; a second waits here rather than racing the checksum
        conn.execute("select pg_advisory_xact_lock(hashtext('voice_analytics.load.' || %s))", (t.name,))
        row = conn.execute(
            "select batch_id from raw.load_batches where table_name = %s and file_checksum = %s and status = 'loaded'",
            (t.name, checksum),
        ).fetchone()
        if row:
            return LoadResult(t.name, str(path), delivery, checksum, size, row[0], skipped=True, header=report)
        batch_id = conn.execute(
            """insert into raw.load_batches (table_name, file_name, file_path, delivery, file_checksum, file_bytes,
                   header, status, dagster_run_id, started_at)
               values (%s, %s, %s, %s, %s, %s, %s, 'loaded', %s, clock_timestamp()) returning batch_id""",
            (t.name, path.name, str(path.resolve()), delivery, checksum, size, list(header.columns), run_id),
        ).fetchone()[0]
        conn.execute(landing_ddl(header.columns))
        try:
            with conn.transaction():  # savepoint: a COPY error is reported, not left half-done
                with conn.cursor().copy(copy_sql(header.columns)) as copy:
                    for chunk in data_chunks(path, header.size, header.line_end):
                        copy.write(chunk)
        except (psycopg.errors.DataError, psycopg.errors.BadCopyFileFormat,
                psycopg.errors.CharacterNotInRepertoire, psycopg.errors.UntranslatableCharacter) as exc:
            raise _copy_error(path, header, exc) from None
        read, loaded, quarantined = conn.execute(
            validate_and_insert_sql(t, header.columns, quoted), {"batch_id": batch_id}
        ).fetchone()
        if read != loaded + quarantined:  # pragma: no cover - guards the SQL above
            raise RuntimeError(f"{path}: read {read} rows but loaded {loaded} + quarantined {quarantined}")
        conn.execute(
            "update raw.load_batches set rows_read = %s, rows_loaded = %s, rows_quarantined = %s where batch_id = %s",
            (read, loaded, quarantined, batch_id),
        )
    return LoadResult(t.name, str(path), delivery, checksum, size, batch_id, False, read, loaded, quarantined, report)


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


def _contains(fh: io.BufferedReader, needle: bytes) -> bool:
    while chunk := fh.read(CHUNK):
        if needle in chunk:
            return True
    return False


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
