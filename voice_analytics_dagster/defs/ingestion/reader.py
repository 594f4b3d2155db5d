"""Reading one export file without the database: its header against the contract, its date
format, its checksum, and the byte stream COPY reads (CRLF as LF, blank lines at the end dropped).

A file whose header or date format differs from the contract is refused here, before anything is
written, with an error naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from voice_analytics_dagster.lib.contract import Table

CHUNK = 1 << 20  # 1 MiB: COPY throughput is flat above ~256 KiB chunks
BOM = b"\xef\xbb\xbf"
WHITESPACE = " \t\r\n"
# Date words PostgreSQL's date input accepts that no export should contain. 'epoch' and
# '[-]infinity' read as days the CHECK's plausible range refuses; the words relative to the load
# day ('now', 'today', 'yesterday', 'tomorrow') read as a day in [current_date - 1, current_date + 1]
# that the CHECK accepts. So only a file with such recent days is searched for the words (a
# second read of the file, kept off the common path; seen anywhere, lower-cased, the load takes
# the careful path where date fields are checked as text).
DATE_WORDS = (b"oday", b"esterday", b"omorrow", b"poch", b"nfinity", b"llballs", b",now", b'"now')
RELATIVE_DAYS_BACK = 1  # 'yesterday'; 'tomorrow' is current_date + 1


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
    """The file's header and its comparison with the contract; SchemaDriftError when the columns
    or the date format differ."""
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
    """SHA-256 and size of the file's bytes."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class Streamed:
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


class Padding:
    """Whether the bytes sent to COPY could hold a value with surrounding whitespace.

    A value is padded only if a whitespace byte of WHITESPACE is part of it: a space, tab or
    carriage return anywhere, or a line feed inside a quoted field (a double quote in the data).
    Bytes with none of these hold no padded value, so the trim rules, a large share of the COPY's
    server CPU, need not be evaluated; each test is one memchr over the chunk."""

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


def data_chunks(path: Path, skip: int = 0, chunk_size: int = CHUNK, seen: Streamed | None = None,
                padding: Padding | None = None) -> Iterator[bytes]:
    """The file's bytes from ``skip`` on, in chunks, with CRLF turned into LF (COPY refuses a file
    that mixes the two), blank lines at the very end removed and a final LF added when missing
    (so a last line without newline loads). ``seen`` (when given) hashes the original bytes, the
    skipped head included; ``padding`` (when given) looks at the bytes sent.

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
