"""What every platform adapter shares: reading JSON streams, quarantine, the on-disk grouping of a
conversation's events, the contract writer and the manifest.

Reading. A file is JSON lines (one JSON value per line, streamed) or one JSON document (an object
or an array, read whole: a Rasa tracker as the HTTP API returns it, a CloudWatch export). A file
that cannot be read (not UTF-8, not JSON, cut off mid-record) stops the conversion with an
:class:`AdapterError` naming the file, the line and the column; nothing is written then.

Grouping. A conversation may be split across files and its records may come in any order, so the
adapters map each record to small events that go to a temporary SQLite table on disk; they are
read back ordered by conversation and time, one conversation in memory at a time. Memory stays
flat in the size of the input (``python -m voice_analytics_dagster.tools.adapter_bench`` measures it).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import itertools
import json
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from voice_analytics_dagster.defs.ingestion.reader import IngestionError
from voice_analytics_dagster.lib import contract

# Files an adapter reads in its source folder (and below); .gz variants are decompressed.
JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")
EXCERPT_MAX = 1000  # characters of a quarantined record kept in adapter_quarantine.csv
QUARANTINE_FILE = "adapter_quarantine.csv"
MANIFEST_FILE = "adapter_manifest.json"
QUARANTINE_COLUMNS = ("source_file", "line", "field", "reason", "excerpt")
_INSERT_BATCH = 5000


class AdapterError(IngestionError):
    """A platform file cannot be read at all; names the file, the line and the column."""


def input_files(source: Path) -> list[Path]:
    """The JSON files under ``source`` (recursively), in path order."""
    if source.is_file():
        return [source]
    return sorted(p for p in source.rglob("*") if p.is_file() and is_json_file(p))


def is_json_file(p: Path) -> bool:
    name = p.name.lower()
    if name == contract.SYNTHETIC_MARKER:
        return False  # the generator's marker of a synthetic export, not a platform record
    return any(name.endswith(s) or name.endswith(s + ".gz") for s in JSON_SUFFIXES)


# -- reading ------------------------------------------------------------------------------------

@dataclass
class FileStats:
    path: str
    sha256: str = ""
    bytes: int = 0
    lines: int = 0
    records: int = 0


class _Hashing(io.RawIOBase):
    """A binary file that hashes and counts the bytes as they are read (one pass over the file)."""

    def __init__(self, fh, stats: FileStats):
        self._fh, self._stats, self._h = fh, stats, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = self._fh.readinto(b)
        if n:
            self._h.update(memoryview(b)[:n])
            self._stats.bytes += n
        return n

    def finish(self) -> None:
        while self._fh.read(1 << 20):  # a gzip stream may stop before the file's last bytes
            pass
        self._stats.sha256 = self._h.hexdigest()


@dataclass(frozen=True)
class Record:
    """One JSON value of a file: where it starts (line), its JSON path inside the document when
    the file is one document ('' for a JSON lines record), and the value."""
    line: int
    path: str
    value: object


def _decode(raw: bytes, path: Path, line_no: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        column = len(raw[:exc.start].decode("utf-8", errors="replace")) + 1
        raise AdapterError(path, line_no, f"{column} (character)",
                           f"not UTF-8: byte 0x{raw[exc.start]:02x} (re-export the file as UTF-8)") from None


def _json_error(path: Path, exc: json.JSONDecodeError, line_offset: int, at_end: bool) -> AdapterError:
    hint = "; the file ends inside this record (truncated file?)" if at_end else ""
    return AdapterError(path, exc.lineno + line_offset, f"{exc.colno} (character)", f"not JSON: {exc.msg}{hint}")


def read_records(path: Path, stats: FileStats) -> Iterator[Record]:
    """The JSON values of ``path`` (see the module docstring); counts lines and records in ``stats``."""
    with open(path, "rb") as raw:
        hashing = _Hashing(raw, stats)
        buffered = io.BufferedReader(hashing, 1 << 16)
        fh = gzip.GzipFile(fileobj=buffered) if path.name.lower().endswith(".gz") else buffered
        lines = iter(fh)
        first_text = None
        for stats.lines, raw_line in enumerate(lines, start=1):
            if stats.lines == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
                raw_line = raw_line[3:]
            line_text = _decode(raw_line, path, stats.lines)
            if line_text.strip():
                first_text = line_text
                break
        if first_text is None:
            hashing.finish()
            return
        first_line = stats.lines
        try:
            value = json.loads(first_text.rstrip("\r\n"))
        except json.JSONDecodeError:
            value = _NOT_A_LINE
        if value is not _NOT_A_LINE:
            stats.records += 1
            yield Record(first_line, "", value)
            yield from _json_lines(path, lines, stats)
        else:
            yield from _document(path, first_text, first_line, lines, stats)
        hashing.finish()


_NOT_A_LINE = object()


def _json_lines(path: Path, lines, stats: FileStats) -> Iterator[Record]:
    for raw_line in lines:
        stats.lines += 1
        line_text = _decode(raw_line, path, stats.lines)
        if not line_text.strip():
            continue
        try:
            value = json.loads(line_text.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            at_end = not any(rest.strip() for rest in lines)
            raise _json_error(path, exc, stats.lines - 1, at_end) from None
        stats.records += 1
        yield Record(stats.lines, "", value)


def _document(path: Path, first_text: str, first_line: int, lines, stats: FileStats) -> Iterator[Record]:
    """A file that is one JSON document: read whole (one tracker, one export page)."""
    parts = [first_text]
    for raw_line in lines:
        stats.lines += 1
        parts.append(_decode(raw_line, path, stats.lines))
    text = "".join(parts)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _json_error(path, exc, first_line - 1, exc.pos >= len(text.rstrip())) from None
    if isinstance(doc, list):
        for i, value in enumerate(doc):
            stats.records += 1
            yield Record(first_line, f"[{i}]", value)
    else:
        stats.records += 1
        yield Record(first_line, "", doc)


def join_path(prefix: str, path: str) -> str:
    """A JSON path inside a record, after the record's own path in its document."""
    if not prefix or not path:
        return prefix or path
    return prefix + ("" if path.startswith("[") else ".") + path


def excerpt(value) -> str:
    try:
        s = json.dumps(value, ensure_ascii=False, sort_keys=False, default=str)
    except (TypeError, ValueError):
        s = repr(value)
    return s[:EXCERPT_MAX]


# -- the on-disk grouping -------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """A mapped event of a conversation, as stored: time, kind, the adapter's data, and where
    the record came from (for ordering ties and quarantine)."""
    ts: float
    kind: str
    data: dict
    file: int
    line: int
    sub: int


class EventStore:
    """Mapped events in a temporary SQLite table, read back one conversation at a time."""

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path)
        # a scratch database: no journal, no fsync; SQLite sorts in temporary files, not in memory
        self.conn.executescript(
            "pragma journal_mode = off; pragma synchronous = off; pragma temp_store = file;"
            "pragma cache_size = -16000;"
            "create table events (conv text not null, ts real not null, file integer not null,"
            " line integer not null, sub integer not null, kind text not null, data text not null);")
        self._batch: list[tuple] = []
        self.count = 0

    def add(self, conv: str, ts: float, file: int, line: int, sub: int, kind: str, data: dict) -> None:
        self._batch.append((conv, ts, file, line, sub, kind, json.dumps(data, separators=(",", ":"))))
        if len(self._batch) >= _INSERT_BATCH:
            self._flush()

    def _flush(self) -> None:
        self.conn.executemany("insert into events values (?, ?, ?, ?, ?, ?, ?)", self._batch)
        self.count += len(self._batch)
        self._batch.clear()

    def conversations(self) -> Iterator[tuple[str, list[Event]]]:
        """(conversation key, its events ordered by time, then file, line and position)."""
        self._flush()
        self.conn.commit()
        self.conn.execute("create index events_order on events (conv, ts, file, line, sub)")
        rows = self.conn.execute(
            "select conv, ts, kind, data, file, line, sub from events order by conv, ts, file, line, sub")
        for conv, group in itertools.groupby(rows, key=lambda r: r[0]):
            yield conv, [Event(ts, kind, json.loads(data), f, ln, sub) for _, ts, kind, data, f, ln, sub in group]

    def close(self) -> None:
        self.conn.close()


def without_duplicates(events: list[Event]) -> tuple[list[Event], int]:
    """The events minus exact repeats (same time, kind and data: a record delivered twice, e.g.
    by overlapping exports), and how many were dropped (reported in the manifest)."""
    seen: set[tuple] = set()
    kept = []
    for e in events:
        key = (e.ts, e.kind, json.dumps(e.data, sort_keys=True))
        if key in seen:
            continue
        seen.add(key)
        kept.append(e)
    return kept, len(events) - len(kept)


class UserStore:
    """One row per user: the latest value (by event time) of each caller attribute seen."""

    ATTRIBUTES = ("region", "disability_flag", "first_time_digital_user")

    def __init__(self, path: Path):
        self.conn = sqlite3.connect(path)
        cols = ", ".join(f"{a} text, {a}_ts real" for a in self.ATTRIBUTES)
        self.conn.executescript("pragma journal_mode = off; pragma synchronous = off;"
                                f"create table users (user_id text primary key, {cols});")

    def add(self, user_id: str, attributes: dict[str, tuple[str, float]]) -> None:
        values = [user_id]
        for a in self.ATTRIBUTES:
            v = attributes.get(a)
            values += [v[0], v[1]] if v else [None, None]
        updates = ", ".join(
            f"{a} = case when excluded.{a} is not null and ({a} is null or excluded.{a}_ts >= {a}_ts)"
            f" then excluded.{a} else {a} end, "
            f"{a}_ts = case when excluded.{a} is not null and ({a} is null or excluded.{a}_ts >= {a}_ts)"
            f" then excluded.{a}_ts else {a}_ts end" for a in self.ATTRIBUTES)
        self.conn.execute(f"insert into users values ({', '.join('?' * len(values))}) "
                          f"on conflict (user_id) do update set {updates}", values)

    def rows(self) -> Iterator[dict]:
        self.conn.commit()
        for r in self.conn.execute(f"select user_id, {', '.join(self.ATTRIBUTES)} from users order by user_id"):
            yield dict(zip(("user_id",) + self.ATTRIBUTES, (v or "" for v in r), strict=True))

    def close(self) -> None:
        self.conn.close()


# -- writing --------------------------------------------------------------------------------------

class ContractWriter:
    """The five contract files (the contract's headers, in its column order), streamed."""

    def __init__(self, folder: Path):
        self._files = {}
        self.writers = {}
        self.rows = Counter()
        self.empty = {t.name: Counter() for t in contract.TABLES}
        for t in contract.TABLES:
            fh = open(folder / t.file, "w", newline="", encoding="utf-8")
            self._files[t.name] = fh
            self.writers[t.name] = csv.writer(fh, lineterminator="\n")
            self.writers[t.name].writerow(t.column_names)

    def write(self, table: str, row: dict) -> None:
        t = contract.table(table)
        values = [row[c] for c in t.column_names]
        for c, v in zip(t.column_names, values, strict=True):
            if v == "":
                self.empty[table][c] += 1
        self.writers[table].writerow(values)
        self.rows[table] += 1

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()


class QuarantineWriter:
    def __init__(self, folder: Path):
        self._fh = open(folder / QUARANTINE_FILE, "w", newline="", encoding="utf-8")
        self._w = csv.writer(self._fh, lineterminator="\n")
        self._w.writerow(QUARANTINE_COLUMNS)
        self.count = 0
        self.by_reason: Counter = Counter()

    def add(self, source_file: str, line: int | None, field_path: str, reason: str, value) -> None:
        self._w.writerow((source_file, "" if line is None else line, field_path, reason, excerpt(value)))
        self.count += 1
        self.by_reason[reason.split(":")[0]] += 1

    def close(self) -> None:
        self._fh.close()


@dataclass
class MapContext:
    """What an adapter's ``map`` gets with each record: emit events, count what it ignores, and
    quarantine a value that it leaves out while mapping the rest of the record."""
    file_index: int
    source_file: str
    record: Record
    store: EventStore
    quarantine: QuarantineWriter
    ignored: Counter
    _sub: int = 0

    def emit(self, conv: str, ts: float, kind: str, data: dict) -> None:
        self._sub += 1
        self.store.add(conv, ts, self.file_index, self.record.line, self._sub, kind, data)

    def ignore(self, kind: str) -> None:
        self.ignored[kind] += 1

    def reject_part(self, field_path: str, reason: str, value) -> None:
        """Quarantine one part of the record (an event of a tracker) and go on with the others."""
        self.quarantine.add(self.source_file, self.record.line, join_path(self.record.path, field_path), reason, value)

    def drop_value(self, field_path: str, reason: str, value) -> None:
        self.quarantine.add(self.source_file, self.record.line, join_path(self.record.path, field_path),
                            f"{reason} (value not used; the rest of the record was mapped)", value)


@dataclass
class BuildContext:
    """What an adapter's ``build`` gets: the input file names (by index) and the quarantine."""
    files: list[str]
    quarantine: QuarantineWriter
    counters: Counter = field(default_factory=Counter)

    def reject(self, event: Event, field_path: str, reason: str, value) -> None:
        self.quarantine.add(self.files[event.file], event.line, field_path, reason, value)


Emit = Callable[[str, float, str, dict], None]
