"""Raw ingestion: one CSV file -> one typed raw table, with COPY, validated while it streams.

How a file is loaded (in one transaction, so a killed load leaves nothing behind):
1. The header is read in Python and compared with the export contract (missing, extra, renamed,
   duplicated columns, or a changed date format, are schema drift: a clear error naming the
   file, the line and the column).
2. A file already loaded (same table, path, size and SHA-256) is skipped; the same content under
   another name is recognised by its checksum after streaming and not loaded twice.
3. The bytes stream with PostgreSQL ``COPY ... FROM STDIN`` straight into a new typed table whose
   CHECK constraints are the contract's rules (types, ranges, accepted values, lengths): a clean
   file is validated during COPY, with no per-row Python and memory independent of its size.
   One rule waits: "no surrounding whitespace" cannot fail in bytes without a space, tab,
   carriage return or quote (seen while they stream), and is checked by one scan after COPY
   only when such a byte was sent (``padding_check_sql``).
   Values that do not parse are skipped by COPY (PostgreSQL 18 ``ON_ERROR ignore``) and
   quarantined from the server's notices (line, column, value). A broken rule makes the load
   fall back: COPY again without the constraints, normalise case and whitespace, and move rule
   breakers to ``raw.quarantine`` with every reason, set-based. Keys repeated within the file go
   to quarantine too. Structural CSV errors (wrong number of fields, an unterminated quote,
   bytes that are not UTF-8) stop the load with the file, line and column.
4. The table is attached as the batch's partition of ``raw.<table>`` (no second copy of the
   rows). loaded + quarantined = read, asserted.

The SQL is built by pure functions (``batch_table_ddl``, ``column_rule``, ``quarantine_rules_sql``,
``duplicate_candidates_sql``, ``quarantine_duplicates_sql``) so that it can be unit-tested without a database.
"""

from __future__ import annotations

import csv
import datetime as _dt
import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from voice_analytics_dagster.lib.contract import (
    EARLIEST_DATE,
    MAX_TEXT_LENGTH,
    NO_VALUES,
    TABLES,
    YES_VALUES,
    Column,
    Table,
)

CHUNK = 1 << 20  # 1 MiB: COPY throughput is flat above ~256 KiB chunks
BOM = b"\xef\xbb\xbf"
DATED_FOLDER_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# Python's reading of the contract's textual forms: used only on the error path, to name every
# bad column of a row that COPY skipped (COPY stops at the first). The exponent has at most two
# digits: 30 digits and e+-99 stay within double precision.
INTEGER_RE = r"^[+-]?[0-9]{1,18}$"
DECIMAL_RE = r"^[+-]?([0-9]{1,30}([.][0-9]{0,30})?|[.][0-9]{1,30})([eE][+-]?[0-9]{1,2})?$"
# A quarantined record keeps at most this many characters per field: enough to read and fix the
# row, while a runaway field (a broken quote that swallowed megabytes) does not bloat quarantine.
QUARANTINE_VALUE_MAX = 1000
# Date words PostgreSQL's date input accepts that no export should contain. 'epoch' and
# '[-]infinity' read as days the CHECK's plausible range refuses; the words relative to the load
# day ('now', 'today', 'yesterday', 'tomorrow') read as a day in [current_date - 1, current_date + 1]
# that the CHECK accepts. So only a file with such recent days is searched for the words (a
# second read of the file; seen anywhere, lower-cased, the load takes the careful path where date
# fields are checked as text). Searching every file while it streamed cost 2.2 s of client CPU on
# the 363 MB turns file of 1M sessions, on the load's critical path (measured, 2026-11-30).
DATE_WORDS = (b"oday", b"esterday", b"omorrow", b"poch", b"nfinity", b"llballs", b",now", b'"now')
RELATIVE_DAYS_BACK = 1  # 'yesterday'; 'tomorrow' is current_date + 1
WHITESPACE = " \t\r\n"

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
    if not body.strip():
        raise IngestionError(path, 1, None, "empty file (only a byte-order mark): expected a header line")
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
# A format is a property of many rows: below this many dates the file is too small to call its
# format changed, and its odd values are judged row by row.
SNIFF_MIN_DATES = 20


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
        if seen >= SNIFF_MIN_DATES and len(found) > seen / 2:
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

    def see(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        self.size += len(chunk)
        self.quoted = self.quoted or b'"' in chunk


class _Padding:
    """Whether the bytes sent to COPY could hold a value with surrounding whitespace.

    A value is padded only if a whitespace byte of WHITESPACE is part of it: a space, tab or
    carriage return anywhere, or a line feed inside a quoted field (a double quote in the data).
    Bytes with none of these hold no padded value, so the trim rules need not be evaluated. Each
    is one memchr over the chunk; the rules cost 1.9 s of server CPU in the COPY of the 363 MB
    turns file of 1M sessions (three text columns of 5.4 M rows; measured 2026-12-01)."""

    SUSPECT = (b" ", b"\t", b"\r", b'"')

    def __init__(self) -> None:
        self.seen = False

    def see(self, data: bytes) -> None:
        if not self.seen:
            self.seen = any(b in data for b in self.SUSPECT)


def has_date_words(path: Path) -> bool:
    """Whether the file holds one of DATE_WORDS anywhere (any case). A word split across two
    reads is found: each read is searched with the tail of the previous one in front."""
    keep = max(len(w) for w in DATE_WORDS) - 1
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            lowered = tail + chunk.lower()
            if any(w in lowered for w in DATE_WORDS):
                return True
            tail = lowered[-keep:]
    return False


def recent_days_sql(t: Table, batch_id: int) -> str | None:
    """Whether a date column of the batch holds a day that a relative date word would give (see
    DATE_WORDS); None when the table has no date column."""
    dates = [c for c in t.columns if c.type == "date"]
    if not dates:
        return None
    near = " or ".join(f"{_q(c.name)} >= current_date - {RELATIVE_DAYS_BACK}" for c in dates)
    return f"select exists (select 1 from {batch_table(t, batch_id)} where {near})"


def data_chunks(path: Path, skip: int = 0, chunk_size: int = CHUNK, seen: _Streamed | None = None,
                padding: _Padding | None = None) -> Iterator[bytes]:
    """The file's bytes from ``skip`` on, in chunks, with CRLF turned
    into LF (COPY refuses a file that mixes the two), blank lines at the very end removed and a
    final LF added when missing (so a last line without newline loads). ``seen`` (when given)
    hashes the original bytes, the skipped head included; ``padding`` (when given) looks at the
    bytes sent.

    Each chunk's trailing run of CR/LF bytes is held back and put in front of the next chunk, so
    that a CRLF pair split across two reads is still one line end and blank lines at the end of
    the file are dropped however the reads fall. Byte operations only (no per-line Python)."""
    with open(path, "rb") as fh:
        if skip:
            if seen is not None:
                left = skip
                while left and (head := fh.read(min(chunk_size, left))):
                    seen.see(head)
                    left -= len(head)
            else:
                fh.seek(skip)
        held = b""
        sent = False
        while chunk := fh.read(chunk_size):
            if seen is not None:
                seen.see(chunk)
            data = held + chunk
            body = data.rstrip(b"\r\n")
            held = data[len(body):]
            if body:
                out = body.replace(b"\r\n", b"\n")
                if padding is not None:
                    padding.see(out)
                yield out
                sent = True
        if sent:
            yield b"\n"


# -- SQL builders (pure) -----------------------------------------------------------------------

def _q(ident: str) -> str:
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", ident):
        raise ValueError(f"not a plain identifier: {ident!r}")
    return '"' + ident + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def batch_table(t: Table, batch_id: int) -> str:
    return f"{RAW_SCHEMA}.{_q(f'{t.name}__b{batch_id}')}"


def _canonical(value: str) -> bool:
    """An accepted value as the text rules want it: non-empty, trimmed, lower case, short."""
    return value != "" and value == value.strip(WHITESPACE) and value == value.lower() and len(value) <= MAX_TEXT_LENGTH


def _needs_trim(c: Column) -> bool:
    """Whether the column's rule says "no surrounding whitespace" (see trim_rule)."""
    return c.type in ("text", "enum") and not (c.type == "enum" and all(_canonical(a) for a in c.accepted))


def trim_rule(c: Column) -> str | None:
    """The part of a text column's rule that says its value has no surrounding whitespace."""
    n = _q(c.name)
    return f"{n} = btrim({n}, E'{WHITESPACE}')" if _needs_trim(c) else None


def column_rule(c: Column, text_dates: bool = False, trim: bool = True) -> str:
    """SQL that is true when a typed value obeys the contract (NULL where the rule cannot say).

    ``text_dates``: date columns hold their text (the careful path); the rule then also says
    that the text reads as a date, and refuses words such as 'yesterday'.
    ``trim=False`` leaves trim_rule out (the fast path: see padding_check_sql)."""
    n = _q(c.name)
    parts = []
    if c.required:
        parts.append(f"{n} is not null")
    if c.type == "enum" and all(_canonical(a) for a in c.accepted):
        # membership alone: every accepted value is non-empty, trimmed, lower case and short,
        # so the text rules below are implied (they cost ~1 s of a 12 s COPY of 5.4 M turns)
        parts.append(f"{n} in ({', '.join(_lit(a) for a in c.accepted)})")
    elif _needs_trim(c):  # text, or an enum whose accepted values are not all canonical
        trimmed = f" and {trim_rule(c)}" if trim else ""
        # characters are never more than bytes: the byte length (read off the value's header)
        # answers for nearly every value, the character count (a scan) only for long ones
        # (5.4 M turn ids: 0.16 -> 0.07 s of CPU)
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


def batch_table_ddl(t: Table, batch_id: int, constrained: bool, text_dates: bool = False, trim: bool = True) -> str:
    """The typed table that one file is COPYed into, attached afterwards as the batch's
    partition of ``raw.<table>``. With ``constrained``, every contract rule is a CHECK constraint
    evaluated during COPY (the fast path for clean files: no second pass over the rows).
    ``text_dates`` (careful path) keeps date columns as text until they are checked.
    ``trim=False``: the rules leave out trim_rule (see padding_check_sql)."""
    def pg_type(c: Column) -> str:
        return "text" if text_dates and c.type == "date" else c.pg_type

    cols = [f"    {_q(c.name)} {pg_type(c)}" for c in t.columns]
    cols.append(f"    _batch_id bigint not null default {int(batch_id)} check (_batch_id = {int(batch_id)})")
    # identity from 2: the n-th record of a file is on line n + 1 (line 1 is the header),
    # corrected afterwards only when a quoted field spans lines
    cols.append("    _source_line bigint generated by default as identity (start with 2 cache 10000)")
    if constrained:
        for c in t.columns:
            rule = column_rule(c, text_dates, trim)
            if rule != "true":
                cols.append(f"    constraint {_q('rule_' + c.name)} check ({rule})")
    return f"create table {batch_table(t, batch_id)} (\n" + ",\n".join(cols) + "\n)"


def padding_check_sql(t: Table, table: str) -> str | None:
    """The trim rules of ``t``'s text columns as one CHECK constraint added to a loaded table
    (validated by one scan; a broken one raises CheckViolation as during COPY), or None when the
    table has no such column. Run only when the bytes COPY read could hold a padded value (see
    _Padding): otherwise the rules cannot fail and are not evaluated at all."""
    rules = [r for c in t.columns if (r := trim_rule(c))]
    if not rules:
        return None
    return f"alter table {table} add constraint rule_trimmed check ({' and '.join(rules)})"


def copy_sql(t: Table, batch_id: int, file_columns: tuple[str, ...], soft_errors: bool) -> str:
    cols = ", ".join(_q(c.lower()) for c in file_columns)
    # PostgreSQL 18: a value that does not parse skips its row with a NOTICE naming line,
    # column and value (quarantined below); older servers stop at the first such value
    opts = ", on_error ignore, log_verbosity verbose" if soft_errors else ""
    # force_null: an empty field is missing whether or not it is quoted (writers that quote
    # every field write "" for an empty one).
    # freeze: the batch table is created in the same (sub)transaction, so its rows can be written
    # frozen: their first reader does not rewrite every page to set hint bits, and vacuum has
    # nothing to do. First scan of the 5.4 M turns after COPY: 2.0 s without, 0.4 s with.
    return (f"copy {batch_table(t, batch_id)} ({cols}) from stdin "
            f"with (format csv, header true, encoding 'UTF8', force_null ({cols}), freeze true{opts})")


def normalise_sql(t: Table, batch_id: int, text_dates: bool = False) -> str | None:
    """Careful path: trim, empty-as-NULL and case-normalise text values in place."""
    sets, wheres = [], []
    for c in t.columns:
        if c.type not in ("text", "enum") and not (text_dates and c.type == "date"):
            continue
        n = _q(c.name)
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
    alters = ", ".join(f"alter column {_q(c.name)} type date using {_q(c.name)}::date" for c in dates)
    return f"alter table {batch_table(t, batch_id)} {alters}"


def _shown(c: Column, v: str) -> str:
    """The offending value in a reason, except for PII columns (never copied into reasons)."""
    if c.pii:
        return "' (value withheld: personal data)'"
    return f"', got ' || coalesce(quote_literal(left({v}::text, 40)), 'nothing')"


def reason_expr(c: Column, text_dates: bool = False) -> str:
    """SQL giving why a typed value breaks its rule, or NULL when it obeys it."""
    n = _q(c.name)
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


def _key_hash(t: Table) -> str:
    return " # ".join(f"hashtextextended(coalesce({_q(k)}, ''), {i})" for i, k in enumerate(t.key))


def duplicate_candidates_sql(t: Table, batch_id: int) -> str:
    """The 64-bit hashes of the keys that occur more than once in the file (NULL: none), a
    read-only query. Grouping fixed-width hashes keeps it cheap on millions of rows; in a clean
    file there are none and quarantine_duplicates_sql, a second scan, is not run (measured on
    the 5.4 M turns of 1M sessions: the two in one statement 2.45 s, this query alone 1.9 s)."""
    rows = f"select {_key_hash(t)} as h from {batch_table(t, batch_id)}"
    return f"select array_agg(h) from ({rows} group by 1 having count(*) > 1) c"


def quarantine_duplicates_sql(t: Table, batch_id: int) -> str:
    """Move every row whose key repeats within the file into raw.quarantine. Parameter:
    %(hashes)s, the candidates found by duplicate_candidates_sql (compared exactly here)."""
    table = batch_table(t, batch_id)
    keys = ", ".join(_q(k) for k in t.key)
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
    where {' and '.join(f'p.{_q(k)} = d.{_q(k)}' for k in t.key)}
    returning p.*, d.n, d.first_line, {', '.join(f'd.{_q(k)} as _dup_{k}' for k in t.key)}
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
    k = _q(t.key[0])
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


_COPY_CONTEXT = re.compile(r"COPY \S+, line (\d+)(?:, column (\w+))?(: \"(.*)\")?", re.S)
_SKIPPED = re.compile(r'at line (\d+) for column "(\w+)": (.*)$', re.S)


def _copy_error(path: Path, header: Header, exc: psycopg.Error, t: Table) -> IngestionError:
    """Turn a COPY failure into an error naming the file, the line, the column and what was expected.

    COPY reads the header too, so its line numbers are the file's (CRLF became LF, which keeps
    the count; a quoted field spanning lines counts each of its lines). For an encoding error its
    count is off by one after a multi-line field (measured, PostgreSQL 18.4): the bad byte is
    located by a scan of the file instead (error path only)."""
    context = (exc.diag.context or "") if exc.diag else ""
    m = _COPY_CONTEXT.search(context)
    line = int(m.group(1)) if m else None
    column = m.group(2) if m and m.group(2) else None
    shown = m.group(4) if m and m.group(3) else None
    problem = (exc.diag.message_primary if exc.diag and exc.diag.message_primary else str(exc)).strip()
    n = len(header.columns)
    if "invalid byte sequence" in problem:
        if "0x00" in problem:
            problem += " (a NUL byte: expected UTF-8 text)"
        else:
            problem += " (expected UTF-8: re-export the file as UTF-8)"
        line = _first_bad_byte_line(path) or line
        if line is not None and column is None:
            column = _column_of_bad_byte(path, line, header.columns)
    elif "missing data for column" in problem:
        if shown == "":
            problem = f"empty line: expected a record of {n} fields (blank lines are allowed only at the end)"
        else:
            problem += f": the line has fewer fields than the header's {n} (truncated line?)"
        mm = re.search(r'column "(\w+)"', str(exc))
        column = column or (mm.group(1) if mm else None)
    elif "extra data after last expected column" in problem:
        problem += f": the line has more fields than the header's {n} (an unquoted comma?)"
    elif "unterminated CSV quoted field" in problem:
        start = _unclosed_quote_line(path, header.size)
        if start is not None:
            line = start
        problem += (f": a quote opened on line {line} is never closed (truncated file?); "
                    "expected a closing double quote")
    elif column is not None:
        # a value that does not parse on a server without soft COPY errors (PostgreSQL < 18)
        try:
            problem += f" (expected {t.column(column).expectation()})"
        except KeyError:
            pass
    return IngestionError(path, line, column, problem)


def _records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) of every record of the file, header included, the bytes
    decoded as Latin-1 so that any byte survives (error path only: Python reads every row)."""
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))  # a runaway field is what we look for
    with open(path, newline="", encoding="latin-1") as fh:
        if fh.read(3) != BOM.decode("latin-1"):
            fh.seek(0)
        reader = csv.reader(fh)
        start = 1
        try:
            for fields in reader:
                yield start, fields
                start = reader.line_num + 1
        except csv.Error:
            return


def _column_of_bad_byte(path: Path, line_no: int, columns: tuple[str, ...]) -> str | None:
    """The column of the first non-UTF-8 byte in the record that covers physical line ``line_no``."""
    found = None
    for start, fields in _records(path):
        if start > line_no:
            break
        found = fields
    if found is None:
        return None
    for name, value in zip(columns, found, strict=False):
        try:
            value.encode("latin-1").decode("utf-8")
            if "\x00" in value:
                return name
        except UnicodeDecodeError:
            return name
    return None


def _first_bad_byte_line(path: Path) -> int | None:
    """The physical line (1 = header) of the first byte PostgreSQL refuses in UTF-8 text: an
    invalid UTF-8 sequence or a NUL byte. Streams the file; error path only."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            bad = None
            nul = chunk.find(b"\x00")
            try:
                decoder.decode(chunk, final=False)
            except UnicodeDecodeError as exc:
                # exc.object is the decoder's pending bytes followed by this chunk
                bad = exc.start - (len(exc.object) - len(chunk))
            if nul != -1:
                bad = nul if bad is None else min(bad, nul)
            if bad is not None:
                return lines + chunk.count(b"\n", 0, max(bad, 0)) + 1
            lines += chunk.count(b"\n")
    return None


def _unclosed_quote_line(path: Path, skip: int) -> int | None:
    """The physical line (1 = header) where the quote that is never closed opened, or None.

    A quote toggles the quoted state (an escaped quote ``""`` toggles it twice); the state
    left open at the end of the file was opened by the last quote that switched it on."""
    in_quote = False
    opened_at = None
    line = 1
    with open(path, "rb") as fh:
        header = fh.read(skip)
        line += header.count(b"\n")
        while chunk := fh.read(CHUNK):
            last = 0
            for m in re.finditer(b'"', chunk):
                line += chunk.count(b"\n", last, m.start())
                last = m.start()
                in_quote = not in_quote
                if in_quote:
                    opened_at = line
            line += chunk.count(b"\n", last)
    return opened_at if in_quote else None


def _python_reasons(t: Table, values: dict[str, str]) -> list[tuple[str, str]]:
    """(column, reason) for every field of a row that breaks the contract, read by Python.
    Error path only: for the few rows COPY skipped, whose first bad value it names alone."""
    out = []
    for c in t.columns:
        raw = values.get(c.name)
        v = raw.strip(WHITESPACE) if raw is not None else ""
        if c.case == "lower" or c.type in ("enum", "yesno"):
            v = v.lower()
        elif c.case == "upper":
            v = v.upper()
        expected = f"{c.name}: expected {c.expectation()}"
        shown = " (value withheld: personal data)" if c.pii else f", got {v[:40]!r}"
        if not v:
            if c.required:
                out.append((c.name, expected + ", got nothing"))
            continue
        ok = True
        if c.type == "integer":
            ok = bool(re.match(INTEGER_RE, v))
            number = int(v) if ok else None
        elif c.type == "decimal":
            ok = bool(re.match(DECIMAL_RE, v))
            number = float(v) if ok else None
        else:
            number = None
        if ok and number is not None:
            ok = (c.minimum is None or number >= c.minimum) and (c.maximum is None or number <= c.maximum)
        if c.type == "yesno":
            ok = v in YES_VALUES + NO_VALUES
        elif c.type == "enum":
            ok = v in c.accepted
        elif c.type == "date":
            try:
                ok = ISO_DATE.match(v) is not None and str(_dt.date.fromisoformat(v)) >= EARLIEST_DATE
            except ValueError:
                ok = False
        if ok and len(v) > MAX_TEXT_LENGTH:
            ok = False
        if not ok:
            out.append((c.name, expected + shown))
    return out


@dataclass
class _Skipped:
    line: int
    column: str
    reason: str
    record: dict
    key: str | None


def _skipped_rows(t: Table, path: Path, header: Header, notices: list) -> tuple[int, list[_Skipped], list[tuple[int, int]]]:
    """Rows COPY skipped because a value did not parse, from the server's NOTICEs (line, column,
    value), with every bad field named and the record read back from the file."""
    found: list[tuple[int, str, str]] = []
    total = 0
    for message in notices:
        m = _SKIPPED.search(message)
        if m:
            found.append((int(m.group(1)), m.group(2), m.group(3)))
            continue
        mm = re.match(r"(\d+) rows? (?:was|were) skipped", message)
        if mm:
            total += int(mm.group(1))  # one such notice per COPY
    total = max(total, len(found))
    if not found:
        return total, [], []
    # the record covering each reported physical line (a quoted field may span lines: COPY
    # reports the record's last line, the quarantine keeps its first, like every other row)
    wanted = sorted({line for line, _, _ in found})
    # value: (first line, fields, record number from 1, extra lines the record spans)
    records: dict[int, tuple[int, list[str], int, int]] = {}
    previous: tuple[int, list[str], int] | None = None
    it = iter(wanted)
    target = next(it, None)
    for number, (start, fields) in enumerate(_records(path)):
        while target is not None and previous is not None and previous[0] <= target < start:
            records[target] = (previous[0], previous[1], previous[2], start - 1 - previous[0])
            target = next(it, None)
        if target is None:
            break
        previous = (start, fields, number)
    while target is not None and previous is not None and previous[0] <= target:
        records[target] = (previous[0], previous[1], previous[2], target - previous[0])
        target = next(it, None)
    names = [c.lower() for c in header.columns]
    out = []
    spans = []
    for reported, column, value in found:
        line, raw_fields, number, extra = records.get(reported, (reported, [], 0, 0))
        if raw_fields and len(raw_fields) != len(header.columns):
            # a wrong number of fields is the file's shape, whatever value COPY tripped on first
            # (the same error as when every value of the line parses)
            n = len(header.columns)
            if len(raw_fields) < n:
                raise IngestionError(path, line, header.columns[len(raw_fields)],
                                     f'missing data for column "{header.columns[len(raw_fields)]}": the line has '
                                     f"{len(raw_fields)} fields, fewer than the header's {n} (truncated line?)")
            raise IngestionError(path, line, None, f"extra data after last expected column: the line has "
                                                   f"{len(raw_fields)} fields, more than the header's {n} "
                                                   "(an unquoted comma?)")
        if extra and number:
            spans.append((number + 1, extra))  # the record's identity value in the batch table
        fields = [f.encode("latin-1").decode("utf-8", "replace") for f in raw_fields]
        values = dict(zip(names, fields, strict=False))
        reasons = _python_reasons(t, values)
        if not any(col == column for col, _ in reasons):
            try:
                col = t.column(column)
                shown = " (value withheld: personal data)" if col.pii else f", got {value[:40]}"
                reasons.insert(0, (column, f"{column}: expected {col.expectation()}{shown}"))
            except KeyError:
                reasons.insert(0, (column, f"{column}: value does not parse"))
        key = values.get(t.key[0])
        out.append(_Skipped(
            line, reasons[0][0], "; ".join(r for _, r in reasons),
            {k: v[:QUARANTINE_VALUE_MAX] for k, v in values.items()},
            key.strip(WHITESPACE) if key else None,
        ))
    return total, out, spans


class _AlreadyLoaded(Exception):
    def __init__(self, batch_id: int, checksum: str, size: int):
        self.batch_id, self.checksum, self.size = batch_id, checksum, size


class _Careful(Exception):
    """The file needs the careful path (a word such as 'yesterday' where a date may be)."""


def _copy(conn: psycopg.Connection, t: Table, batch_id: int, path: Path, header: Header,
          soft: bool, notices: list, padding: _Padding | None = None) -> tuple[int, _Streamed]:
    seen = _Streamed()
    notices.clear()
    with conn.cursor() as cur:
        with cur.copy(copy_sql(t, batch_id, header.columns, soft)) as copy:
            for chunk in data_chunks(path, 0, seen=seen, padding=padding):
                copy.write(chunk)
        loaded = cur.rowcount  # rows COPY stored (skipped rows are not counted)
    return loaded, seen


def _check_padding(conn: psycopg.Connection, t: Table, table: str, padding: _Padding) -> None:
    """The trim rules left out of a fast-path table's CHECK constraints, checked now if the bytes
    COPY read could break them (raises CheckViolation, as a rule broken during COPY does)."""
    if padding.seen and (check := padding_check_sql(t, table)):
        conn.execute(check)


_COPY_ERRORS = (
    psycopg.errors.DataError,
    psycopg.errors.BadCopyFileFormat,
    psycopg.errors.CharacterNotInRepertoire,
    psycopg.errors.UntranslatableCharacter,
    psycopg.errors.InvalidTextRepresentation,
    psycopg.errors.NotNullViolation,
)


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
    is attached as the batch's partition of raw.<table>. Careful path (a rule broke, or a date
    word such as 'yesterday' appears): COPY again into an unconstrained table with the dates as
    text, normalise, move duplicates and rule breakers to quarantine with reasons, type the dates.

    The batch row, the typed rows and the quarantine rows are written in that one transaction:
    a load that is killed, loses its connection or fails leaves no batch behind (tested by
    tests/e2e/test_faults.py::test_kill_during_ingestion_leaves_no_half_loaded_batch)."""
    return _load(conn, t, Path(path), delivery, run_id, dry_run=False)


def _load(conn: psycopg.Connection, t: Table, path: Path, delivery: str | None, run_id: str | None,
          dry_run: bool) -> LoadResult:
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
            # no parallel workers for the load's queries (duplicate keys, recent days, counts):
            # ingestion already runs two loads at once on two cores, where workers only add CPU
            conn.execute("set local max_parallel_workers_per_gather = 0")
            if not dry_run:
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
            careful = False
            try:
                with conn.transaction():  # savepoint: a broken rule falls back, a broken file errors
                    conn.execute(batch_table_ddl(t, batch_id, constrained=True, trim=False))
                    padding = _Padding()
                    loaded, seen = _copy(conn, t, batch_id, path, header, soft, notices, padding)
                    _check_padding(conn, t, table, padding)
                    recent = recent_days_sql(t, batch_id)
                    recent_found = bool(recent) and conn.execute(recent).fetchone()[0]
                    if recent_found and has_date_words(path):
                        raise _Careful()
            except (psycopg.errors.CheckViolation, _Careful):
                careful = True
                try:
                    with conn.transaction():
                        conn.execute(batch_table_ddl(t, batch_id, constrained=False, text_dates=True))
                        loaded, seen = _copy(conn, t, batch_id, path, header, soft, notices)
                except _COPY_ERRORS as exc:
                    raise _copy_error(path, header, exc, t) from None
            except _COPY_ERRORS as exc:
                raise _copy_error(path, header, exc, t) from None

            if not dry_run:
                existing = conn.execute(
                    "select batch_id from raw.load_batches where table_name = %s and file_checksum = %s "
                    "and status = 'loaded'", (t.name, seen.checksum)).fetchone()
                if existing:  # the same content delivered under another name: nothing new
                    raise _AlreadyLoaded(existing[0], seen.checksum, seen.size)

            skipped_count, skipped, spans = _skipped_rows(t, path, header, notices)
            if spans:
                # rows after a skipped record that spans lines start that much further down
                conn.execute(
                    f"update {table} p set _source_line = p._source_line + s.extra from ("
                    "select b._source_line as rn, sum(x.extra) as extra from "
                    f"{table} b join unnest(%s::bigint[], %s::bigint[]) as x(rn, extra) on x.rn < b._source_line "
                    "group by b._source_line) s where p._source_line = s.rn",
                    ([r for r, _ in spans], [e for _, e in spans]))
            if skipped:
                with conn.cursor() as cur:
                    cur.executemany(
                        "insert into raw.quarantine (batch_id, table_name, source_line, column_name, reason, record) "
                        "values (%s, %s, %s, %s, %s, %s::jsonb)",
                        [(batch_id, t.name, r.line, r.column, r.reason, json.dumps(r.record)) for r in skipped])
            moved = False  # whether a statement below removed or merged rows of the table
            if seen.quoted and conn.execute(
                f"select exists (select 1 from {table} where "
                + " or ".join(f"strpos({_q(c.name)}, E'\\n') > 0" for c in t.columns if c.type in ("text", "enum"))
                + ")"
            ).fetchone()[0]:
                conn.execute(embedded_newline_fix_sql(t, batch_id))
                moved = True
            if careful and (sql_ := normalise_sql(t, batch_id, text_dates=True)) is not None:
                conn.execute(sql_)
            keys = sorted({r.key for r in skipped if r.key})
            if keys and len(t.key) == 1:
                conn.execute(quarantine_skipped_twins_sql(t, batch_id), {"keys": keys})
                moved = True
            # the duplicate-key hash aggregate is fastest at a small work_mem (measured on 5.4 M
            # turns: 2.2 s at 4MB, 3.0 s at 16MB, 4.6 s at 64MB): a bigger hash table misses the
            # caches more than spilling costs, so a server-wide larger setting is not inherited
            conn.execute("set local work_mem = '4MB'")
            hashes = conn.execute(duplicate_candidates_sql(t, batch_id)).fetchone()[0]
            if hashes:
                conn.execute(quarantine_duplicates_sql(t, batch_id), {"hashes": hashes})
                moved = True
            if careful:
                conn.execute(quarantine_rules_sql(t, batch_id, text_dates=True))
                moved = True
                if (sql_ := retype_dates_sql(t, batch_id)) is not None:
                    conn.execute(sql_)
            quarantined = conn.execute(
                "select count(*) from raw.quarantine where batch_id = %s", (batch_id,)).fetchone()[0]
            # rows COPY stored, unless a statement above moved or merged some: then counted
            # (a scan: 0.2-0.36 s at the end of the 5.4 M turns' load, which is ingestion's last)
            final = conn.execute(f"select count(*) from {table}").fetchone()[0] if moved else loaded
            read = loaded + skipped_count
            if read != final + quarantined:  # pragma: no cover - guards the SQL above
                raise RuntimeError(f"{path}: read {read} rows but loaded {final} + quarantined {quarantined}")
            conn.execute(f"alter table {table} alter column _source_line drop identity")
            conn.execute(f"alter table raw.{_q(t.name)} attach partition {table} for values in ({int(batch_id)})")
            load_path = "validated after COPY" if careful else "checked during COPY"
            conn.execute(
                "update raw.load_batches set file_checksum = %s, file_bytes = %s, rows_read = %s, rows_loaded = %s, "
                "rows_quarantined = %s, load_path = %s where batch_id = %s",
                # a dry run (doctor) of a file already loaded must not collide with the loaded
                # batch's checksum (unique): its batch is rolled back anyway
                (f"dry-run:{seen.checksum}" if dry_run else seen.checksum, seen.size, read, final, quarantined, load_path, batch_id),
            )
    except _AlreadyLoaded as known:
        return LoadResult(t.name, str(path), delivery, known.checksum, known.size, known.batch_id,
                          skipped=True, header=report, load_path="already loaded")
    finally:
        conn.remove_notice_handler(on_notice)
    return LoadResult(t.name, str(path), delivery, seen.checksum, seen.size, batch_id, False, read, final,
                      quarantined, report, load_path)


@dataclass
class Validation:
    """What loading a file would do, found without writing anything (``validate_file``)."""

    table: str
    path: str
    header: HeaderReport
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    # (source line, column, reason) of the first quarantined rows, in file order
    sample: list[tuple[int, str | None, str]]
    # column -> rows failing its type or rule, for the "retyped column" rule of the ingestion check
    failing_by_column: dict[str, int]
    # the table holding the rows that would load (exists only inside the caller's transaction)
    relation: str = ""


def validate_file(conn: psycopg.Connection, t: Table, path: Path, sample_size: int = 5,
                  keep: bool = False) -> Validation:
    """Run the loader's real COPY and validation on ``path`` and return what it found, in a
    savepoint that is rolled back: nothing is written (``doctor``). With ``keep`` the rows stay
    in ``relation`` for the caller, who must roll its own transaction back."""
    path = Path(path)
    with conn.transaction() as tx:
        conn.execute(bootstrap_raw_sql())
        result = _load(conn, t, path, None, None, dry_run=True)
        sample = conn.execute(
            "select source_line, column_name, reason from raw.quarantine where batch_id = %s "
            "order by source_line limit %s", (result.batch_id, sample_size)).fetchall()
        failing = dict(conn.execute(
            "select column_name, count(*) from raw.quarantine where batch_id = %s "
            "and reason like column_name || ': expected %%' group by 1", (result.batch_id,)).fetchall())
        if not keep:
            raise psycopg.Rollback(tx)
    return Validation(t.name, str(path), result.header, result.rows_read, result.rows_loaded,
                      result.rows_quarantined, [tuple(r) for r in sample], failing,
                      batch_table(t, result.batch_id))


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
