"""Deliveries and load batches: where the export files are, and the rows of raw.load_batches that
record each file's load (or rejection), its checksum and whether its rows are dbt's input.

A file is loaded once per table and content (SHA-256); the batches of the source being run are
the active ones (``activate_batches``).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from voice_analytics_dagster.defs.ingestion.reader import Header, IngestionError, file_checksum, read_header
from voice_analytics_dagster.lib.contract import TABLES, Table
from voice_analytics_dagster.lib.provenance import Origin

if TYPE_CHECKING:
    from voice_analytics_dagster.defs.ingestion.copy import LoadResult

DATED_FOLDER_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


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


# -- batches -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KnownBatch:
    """A loaded batch with the content of the file at hand."""

    batch_id: int
    checksum: str
    size: int


def lock_table(conn: psycopg.Connection, t: Table) -> None:
    """One loader (or activation) per table at a time, until the transaction ends: a second
    waits here rather than racing the checksum."""
    conn.execute("select pg_advisory_xact_lock(hashtext('voice_analytics.load.' || %s))", (t.name,))


def loaded_before(conn: psycopg.Connection, t: Table, path: Path) -> KnownBatch | None:
    """The batch that loaded this very file (same path, size and SHA-256), or None. The checksum
    is read only when the path and size match, so a new file costs one query."""
    size = path.stat().st_size
    with conn.transaction():
        row = conn.execute(
            "select batch_id, file_checksum from raw.load_batches where table_name = %s and file_path = %s "
            "and file_bytes = %s and status = 'loaded' order by batch_id desc limit 1",
            (t.name, str(path.resolve()), size),
        ).fetchone()
    if row is None:
        return None
    checksum, size = file_checksum(path)
    return KnownBatch(row[0], checksum, size) if checksum == row[1] else None


def loaded_with_checksum(conn: psycopg.Connection, t: Table, checksum: str) -> int | None:
    """The batch that loaded this content under any name, or None."""
    row = conn.execute(
        "select batch_id from raw.load_batches where table_name = %s and file_checksum = %s and status = 'loaded'",
        (t.name, checksum)).fetchone()
    return row[0] if row else None


def open_batch(conn: psycopg.Connection, t: Table, path: Path, delivery: str | None, run_id: str | None,
               header: Header, origin: Origin | None = None) -> int:
    """The batch row of a load in progress (its checksum a placeholder until the file has streamed),
    with its provenance (``origin``), so that the batch is never committed without it."""
    stat = path.stat()
    provenance = origin.values() if origin is not None else (None, None, None, None)
    return conn.execute(
        """insert into raw.load_batches (table_name, file_name, file_path, delivery, file_checksum,
               file_bytes, file_mtime, header, status, dagster_run_id, started_at,
               source_folder, source_format, dataset, generator_seed)
           values (%s, %s, %s, %s, %s, %s, %s, %s, 'loaded', %s, clock_timestamp(), %s, %s, %s, %s)
           returning batch_id""",
        (t.name, path.name, str(path.resolve()), delivery, f"pending:{uuid.uuid4()}", stat.st_size,
         stat.st_mtime, list(header.columns), run_id, *provenance),
    ).fetchone()[0]


def close_batch(conn: psycopg.Connection, batch_id: int, checksum: str, size: int, read: int, loaded: int,
                quarantined: int, load_path: str) -> None:
    conn.execute(
        "update raw.load_batches set file_checksum = %s, file_bytes = %s, rows_read = %s, rows_loaded = %s, "
        "rows_quarantined = %s, load_path = %s where batch_id = %s",
        (checksum, size, read, loaded, quarantined, load_path, batch_id),
    )


def activate_batches(conn: psycopg.Connection, t: Table, results: list[LoadResult]) -> None:
    """Make the batches of this run's source the input of dbt for table ``t``.

    A single export folder is a snapshot: exactly its batch is active, earlier loads of the
    table are not (the certified tables describe the export that was run). Dated delivery
    folders are increments: each delivery's current file replaces that delivery's earlier
    versions, and deliveries not in the folder any more (archived) stay active."""
    with conn.transaction():
        lock_table(conn, t)
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
