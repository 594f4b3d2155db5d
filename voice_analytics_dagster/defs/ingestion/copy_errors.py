"""What went wrong in a COPY, read back from the file (error path only).

A COPY that fails becomes an IngestionError naming the file, the line, the column and what was
expected; the rows a COPY skipped (PostgreSQL 18 ``ON_ERROR ignore``: a value that does not
parse) become quarantine records naming every bad field, not only the first one COPY reports.
Python reads the file here, which a clean load never pays for.
"""

from __future__ import annotations

import codecs
import csv
import datetime as _dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg

from voice_analytics_dagster.defs.ingestion.reader import (
    BOM,
    CHUNK,
    ISO_DATE,
    WHITESPACE,
    Header,
    IngestionError,
)
from voice_analytics_dagster.defs.ingestion.sql import QUARANTINE_VALUE_MAX
from voice_analytics_dagster.lib.contract import EARLIEST_DATE, MAX_TEXT_LENGTH, NO_VALUES, YES_VALUES, Table

# Python's reading of the contract's textual forms, to name every bad column of a row that COPY
# skipped. The exponent has at most two digits: 30 digits and e+-99 stay within double precision.
INTEGER_RE = r"^[+-]?[0-9]{1,18}$"
DECIMAL_RE = r"^[+-]?([0-9]{1,30}([.][0-9]{0,30})?|[.][0-9]{1,30})([eE][+-]?[0-9]{1,2})?$"

# The errors of a COPY that the file causes (its shape or its bytes), as opposed to a broken rule
# (CheckViolation, which sends the load to the careful path) or a lost connection.
COPY_ERRORS = (
    psycopg.errors.DataError,
    psycopg.errors.BadCopyFileFormat,
    psycopg.errors.CharacterNotInRepertoire,
    psycopg.errors.UntranslatableCharacter,
    psycopg.errors.InvalidTextRepresentation,
    psycopg.errors.NotNullViolation,
)

_COPY_CONTEXT = re.compile(r"COPY \S+, line (\d+)(?:, column (\w+))?(: \"(.*)\")?", re.S)
_SKIPPED = re.compile(r'at line (\d+) for column "(\w+)": (.*)$', re.S)


def copy_error(path: Path, header: Header, exc: psycopg.Error, t: Table) -> IngestionError:
    """Turn a COPY failure into an error naming the file, the line, the column and what was expected.

    COPY reads the header too, so its line numbers are the file's (CRLF became LF, which keeps
    the count; a quoted field spanning lines counts each of its lines). For an encoding error its
    count is off by one after a multi-line field (PostgreSQL 18.4): the bad byte is located by a
    scan of the file instead."""
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
        line = first_bad_byte_line(path) or line
        if line is not None and column is None:
            column = column_of_bad_byte(path, line, header.columns)
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
        start = unclosed_quote_line(path, header.size)
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


# -- scans of the file ----------------------------------------------------------------------------

def records(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, fields) of every record of the file, header included, the bytes
    decoded as Latin-1 so that any byte survives."""
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


def column_of_bad_byte(path: Path, line_no: int, columns: tuple[str, ...]) -> str | None:
    """The column of the first non-UTF-8 byte in the record that covers physical line ``line_no``."""
    found = None
    for start, fields in records(path):
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


def first_bad_byte_line(path: Path) -> int | None:
    """The physical line (1 = header) of the first byte PostgreSQL refuses in UTF-8 text: an
    invalid UTF-8 sequence or a NUL byte. Streams the file."""
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


def unclosed_quote_line(path: Path, skip: int) -> int | None:
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


# -- rows COPY skipped ----------------------------------------------------------------------------

def python_reasons(t: Table, values: dict[str, str]) -> list[tuple[str, str]]:
    """(column, reason) for every field of a row that breaks the contract, read by Python, for
    the few rows COPY skipped, whose first bad value it names alone."""
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
class SkippedRow:
    line: int
    column: str
    reason: str
    record: dict
    key: str | None


@dataclass
class Skipped:
    """The rows COPY skipped: how many, each read back from the file, and the records that span
    lines (their identity in the batch table, extra lines) so that later lines can be shifted."""

    count: int
    rows: list[SkippedRow]
    spans: list[tuple[int, int]]


def _reported(notices: list[str]) -> tuple[int, list[tuple[int, str, str]]]:
    """(rows skipped, (line, column, value) of each) from the server's NOTICEs of one COPY."""
    found: list[tuple[int, str, str]] = []
    total = 0
    for message in notices:
        m = _SKIPPED.search(message)
        if m:
            found.append((int(m.group(1)), m.group(2), m.group(3)))
            continue
        mm = re.match(r"(\d+) rows? (?:was|were) skipped", message)
        if mm:
            total += int(mm.group(1))
    return max(total, len(found)), found


def _covering_records(path: Path, wanted: list[int]) -> dict[int, tuple[int, list[str], int, int]]:
    """For each physical line in ``wanted`` (sorted), the record covering it: (first line,
    fields, record number from 1, extra lines the record spans). A quoted field may span lines:
    COPY reports the record's last line, the quarantine keeps its first, like every other row."""
    found: dict[int, tuple[int, list[str], int, int]] = {}
    previous: tuple[int, list[str], int] | None = None
    it = iter(wanted)
    target = next(it, None)
    for number, (start, fields) in enumerate(records(path)):
        while target is not None and previous is not None and previous[0] <= target < start:
            found[target] = (previous[0], previous[1], previous[2], start - 1 - previous[0])
            target = next(it, None)
        if target is None:
            break
        previous = (start, fields, number)
    while target is not None and previous is not None and previous[0] <= target:
        found[target] = (previous[0], previous[1], previous[2], target - previous[0])
        target = next(it, None)
    return found


def _wrong_field_count(path: Path, header: Header, line: int, fields: int) -> IngestionError:
    """A wrong number of fields is the file's shape, whatever value COPY tripped on first (the
    same error as when every value of the line parses)."""
    n = len(header.columns)
    if fields < n:
        return IngestionError(path, line, header.columns[fields],
                              f'missing data for column "{header.columns[fields]}": the line has '
                              f"{fields} fields, fewer than the header's {n} (truncated line?)")
    return IngestionError(path, line, None, f"extra data after last expected column: the line has "
                                            f"{fields} fields, more than the header's {n} (an unquoted comma?)")


def skipped_rows(t: Table, path: Path, header: Header, notices: list[str]) -> Skipped:
    """Rows COPY skipped because a value did not parse, from the server's NOTICEs (line, column,
    value), with every bad field named and the record read back from the file."""
    total, found = _reported(notices)
    if not found:
        return Skipped(total, [], [])
    covering = _covering_records(path, sorted({line for line, _, _ in found}))
    names = [c.lower() for c in header.columns]
    rows, spans = [], []
    for reported, column, value in found:
        line, raw_fields, number, extra = covering.get(reported, (reported, [], 0, 0))
        if raw_fields and len(raw_fields) != len(header.columns):
            raise _wrong_field_count(path, header, line, len(raw_fields))
        if extra and number:
            spans.append((number + 1, extra))  # the record's identity value in the batch table
        fields = [f.encode("latin-1").decode("utf-8", "replace") for f in raw_fields]
        values = dict(zip(names, fields, strict=False))
        reasons = python_reasons(t, values)
        if not any(col == column for col, _ in reasons):
            try:
                col = t.column(column)
                shown = " (value withheld: personal data)" if col.pii else f", got {value[:40]}"
                reasons.insert(0, (column, f"{column}: expected {col.expectation()}{shown}"))
            except KeyError:
                reasons.insert(0, (column, f"{column}: value does not parse"))
        key = values.get(t.key[0])
        rows.append(SkippedRow(
            line, reasons[0][0], "; ".join(r for _, r in reasons),
            {k: v[:QUARANTINE_VALUE_MAX] for k, v in values.items()},
            key.strip(WHITESPACE) if key else None,
        ))
    return Skipped(total, rows, spans)
