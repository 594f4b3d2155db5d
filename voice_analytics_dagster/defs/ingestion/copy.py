"""The load of one file: COPY into a new typed table, validated while it streams, then attached as
the batch's partition of ``raw.<table>`` (no second copy of the rows), all in one transaction so
that a killed load leaves nothing behind.

Fast path: the table's CHECK constraints are the contract's rules, so a clean file is checked
during COPY, with no per-row Python and memory independent of its size. Careful path (a rule
broke, or a date word such as 'yesterday' may have been read as a day): COPY again into a table
without constraints, dates as text, then normalise and move rule breakers to ``raw.quarantine``
with every reason, set-based. On both, rows whose value does not parse (skipped by COPY) and keys
repeated within the file are quarantined too, and loaded + quarantined = read. A file whose
content was loaded before is not loaded again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from voice_analytics_dagster.defs.ingestion.batches import (
    KnownBatch,
    close_batch,
    loaded_before,
    loaded_with_checksum,
    lock_table,
    open_batch,
)
from voice_analytics_dagster.defs.ingestion.copy_errors import COPY_ERRORS, Skipped, copy_error, skipped_rows
from voice_analytics_dagster.defs.ingestion.reader import (
    Header,
    HeaderReport,
    IngestionError,
    Padding,
    Streamed,
    check_header,
    data_chunks,
    has_date_words,
)
from voice_analytics_dagster.defs.ingestion.sql import (
    attach_batch_sql,
    batch_table,
    batch_table_ddl,
    bootstrap_raw_sql,
    copy_sql,
    duplicate_candidates_sql,
    embedded_newline_fix_sql,
    embedded_newline_sql,
    normalise_sql,
    padding_check_sql,
    quarantine_duplicates_sql,
    quarantine_rules_sql,
    quarantine_skipped_twins_sql,
    recent_days_sql,
    retype_dates_sql,
    skipped_span_shift_sql,
)
from voice_analytics_dagster.lib.contract import Table
from voice_analytics_dagster.lib.provenance import Origin

FAST_PATH = "checked during COPY"
CAREFUL_PATH = "validated after COPY"
ALREADY_LOADED = "already loaded"


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
    # FAST_PATH (clean file), CAREFUL_PATH (a rule broke) or ALREADY_LOADED
    load_path: str = ""


@dataclass(frozen=True)
class _Copied:
    """What a COPY of the file stored: its rows, what streaming learned, and on which path."""

    loaded: int  # rows COPY stored (skipped rows are not counted)
    streamed: Streamed
    careful: bool


def load_file(conn: psycopg.Connection, t: Table, path: Path, delivery: str | None = None,
              run_id: str | None = None, nullable: Iterable[str] = (), origin: Origin | None = None) -> LoadResult:
    """Load one file into ``raw.<t.name>`` in one transaction. Idempotent by checksum.

    The batch row, the typed rows and the quarantine rows are written in that one transaction:
    a load that is killed, loses its connection or fails leaves no batch behind (tested by
    tests/e2e/test_faults.py::test_kill_during_ingestion_leaves_no_half_loaded_batch).
    Structural CSV errors (a wrong number of fields, an unterminated quote, bytes that are not
    UTF-8) and a header or date format that differs from the contract raise IngestionError
    naming the file, the line and the column.

    ``nullable``: columns that may be empty in this file although the contract requires them
    (a platform adapter's output: the columns its manifest says the platform does not record);
    every other rule holds. Empty by default: a CSV export's required values are required.

    ``origin``: where the file comes from (source folder, format, synthetic or real), written
    on the batch row in the same transaction."""
    return _load(conn, t.with_nullable(nullable), Path(path), delivery, run_id, dry_run=False, origin=origin)


def _load(conn: psycopg.Connection, t: Table, path: Path, delivery: str | None, run_id: str | None,
          dry_run: bool, origin: Origin | None = None) -> LoadResult:
    if not path.exists():
        raise IngestionError(path, None, None, f"missing file: the export must contain {t.file}")
    header, report = check_header(t, path)
    if not dry_run and (known := loaded_before(conn, t, path)) is not None:
        return _already_loaded(t, path, delivery, known, report)
    with _collect_notices(conn) as notices, conn.transaction() as tx:
        _begin(conn, t)
        batch_id = open_batch(conn, t, path, delivery, run_id, header, origin)
        copied = _copy_file(conn, t, batch_id, path, header, notices)
        streamed = copied.streamed
        if not dry_run and (twin := loaded_with_checksum(conn, t, streamed.checksum)) is not None:
            # the same content delivered under another name: nothing new; psycopg's Rollback
            # undoes the batch and leaves the block without an error
            result = _already_loaded(t, path, delivery, KnownBatch(twin, streamed.checksum, streamed.size), report)
            raise psycopg.Rollback(tx)
        read, loaded, quarantined = _settle(conn, t, batch_id, path, header, notices, copied)
        conn.execute(attach_batch_sql(t, batch_id))
        load_path = CAREFUL_PATH if copied.careful else FAST_PATH
        # a dry run (doctor) of a file already loaded must not collide with the loaded batch's
        # checksum (unique): its batch is rolled back anyway
        checksum = f"dry-run:{streamed.checksum}" if dry_run else streamed.checksum
        close_batch(conn, batch_id, checksum, streamed.size, read, loaded, quarantined, load_path)
        result = LoadResult(t.name, str(path), delivery, streamed.checksum, streamed.size, batch_id, False,
                            read, loaded, quarantined, report, load_path)
    return result


def _already_loaded(t: Table, path: Path, delivery: str | None, known: KnownBatch, report: HeaderReport) -> LoadResult:
    return LoadResult(t.name, str(path), delivery, known.checksum, known.size, known.batch_id,
                      skipped=True, header=report, load_path=ALREADY_LOADED)


@contextlib.contextmanager
def _collect_notices(conn: psycopg.Connection) -> Iterator[list[str]]:
    """The server's NOTICEs while the block runs: a COPY reports the rows it skipped in them."""
    notices: list[str] = []

    def on_notice(diag: psycopg.errors.Diagnostic) -> None:
        notices.append(diag.message_primary or "")

    conn.add_notice_handler(on_notice)
    try:
        yield notices
    finally:
        conn.remove_notice_handler(on_notice)


def _begin(conn: psycopg.Connection, t: Table) -> None:
    """The load transaction's lock and settings."""
    lock_table(conn, t)
    # day first for the rare non-ISO date inside an ISO file (the users' locale, Rwanda, writes
    # 01/02/2025 for 1 February); a file in another format is refused before (sniff_date_format)
    conn.execute("set local datestyle = 'ISO, DMY'")
    # no parallel workers for the load's queries (duplicate keys, recent days, counts): ingestion
    # already runs two loads at once on two cores, where workers only add CPU
    conn.execute("set local max_parallel_workers_per_gather = 0")


# -- COPY -------------------------------------------------------------------------------------------

def _copy_file(conn: psycopg.Connection, t: Table, batch_id: int, path: Path, header: Header,
               notices: list[str]) -> _Copied:
    """COPY the file into the batch table on the fast path, or on the careful path when the fast
    one cannot keep it. A file COPY cannot read (its shape, its bytes) raises IngestionError."""
    soft = conn.info.server_version >= 180000
    try:
        copied = _fast_copy(conn, t, batch_id, path, header, soft, notices)
        if copied is None:
            copied = _careful_copy(conn, t, batch_id, path, header, soft, notices)
    except COPY_ERRORS as exc:
        raise copy_error(path, header, exc, t) from None
    return copied


def _fast_copy(conn: psycopg.Connection, t: Table, batch_id: int, path: Path, header: Header, soft: bool,
               notices: list[str]) -> _Copied | None:
    """COPY into a table whose CHECK constraints are the contract's rules, in a savepoint; None
    (the savepoint rolled back) when the file needs the careful path.

    The trim rules wait: they cannot fail in bytes without a space, tab, carriage return or quote
    (reader.Padding), and are checked by one scan after COPY only when such a byte was sent."""
    padding = Padding()
    try:
        with conn.transaction() as savepoint:
            conn.execute(batch_table_ddl(t, batch_id, constrained=True, trim=False))
            loaded, streamed = _copy(conn, t, batch_id, path, header, soft, notices, padding)
            if padding.seen and (check := padding_check_sql(t, batch_table(t, batch_id))):
                conn.execute(check)
            if not _date_words_read_as_days(conn, t, batch_id, path):
                return _Copied(loaded, streamed, careful=False)
            raise psycopg.Rollback(savepoint)
    except psycopg.errors.CheckViolation:
        pass  # the server's error for a broken rule, during COPY or the trim check: the careful path follows
    return None


def _careful_copy(conn: psycopg.Connection, t: Table, batch_id: int, path: Path, header: Header, soft: bool,
                  notices: list[str]) -> _Copied:
    """COPY into a table without rule constraints, dates as text; the rules are applied afterwards
    (_settle), so that every rule breaker is quarantined with every reason."""
    with conn.transaction():
        conn.execute(batch_table_ddl(t, batch_id, constrained=False, text_dates=True))
        loaded, streamed = _copy(conn, t, batch_id, path, header, soft, notices)
    return _Copied(loaded, streamed, careful=True)


def _copy(conn: psycopg.Connection, t: Table, batch_id: int, path: Path, header: Header, soft: bool,
          notices: list[str], padding: Padding | None = None) -> tuple[int, Streamed]:
    streamed = Streamed()
    notices.clear()  # a second COPY (the careful path) reports the skipped rows again
    with conn.cursor() as cur:
        with cur.copy(copy_sql(t, batch_id, header.columns, soft)) as copy:
            for chunk in data_chunks(path, 0, seen=streamed, padding=padding):
                copy.write(chunk)
        loaded = cur.rowcount
    return loaded, streamed


def _date_words_read_as_days(conn: psycopg.Connection, t: Table, batch_id: int, path: Path) -> bool:
    """Whether a word such as 'yesterday' may have been read as a day (see reader.DATE_WORDS):
    only a batch holding such recent days is worth a second read of the file."""
    recent = recent_days_sql(t, batch_id)
    return bool(recent and conn.execute(recent).fetchone()[0] and has_date_words(path))


# -- after COPY -------------------------------------------------------------------------------------

def _settle(conn: psycopg.Connection, t: Table, batch_id: int, path: Path, header: Header, notices: list[str],
            copied: _Copied) -> tuple[int, int, int]:
    """Every row read ends loaded or quarantined, at its line: the rows COPY skipped, repeated
    keys and (careful path) rule breakers go to quarantine. (rows read, loaded, quarantined)."""
    skipped = skipped_rows(t, path, header, notices)
    _quarantine_skipped(conn, t, batch_id, skipped)
    moved = False  # whether a statement below removed or rewrote rows of the table
    if copied.streamed.quoted and conn.execute(embedded_newline_sql(t, batch_id)).fetchone()[0]:
        conn.execute(embedded_newline_fix_sql(t, batch_id))
        moved = True
    if copied.careful and (normalise := normalise_sql(t, batch_id, text_dates=True)) is not None:
        conn.execute(normalise)
    keys = sorted({r.key for r in skipped.rows if r.key})
    if keys and len(t.key) == 1:
        conn.execute(quarantine_skipped_twins_sql(t, batch_id), {"keys": keys})
        moved = True
    moved = _quarantine_duplicates(conn, t, batch_id) or moved
    if copied.careful:
        conn.execute(quarantine_rules_sql(t, batch_id, text_dates=True))
        moved = True
        if (retype := retype_dates_sql(t, batch_id)) is not None:
            conn.execute(retype)
    read = copied.loaded + skipped.count
    quarantined = conn.execute("select count(*) from raw.quarantine where batch_id = %s", (batch_id,)).fetchone()[0]
    # COPY's own count is exact unless a statement above removed rows (then a scan counts them)
    loaded = conn.execute(f"select count(*) from {batch_table(t, batch_id)}").fetchone()[0] if moved else copied.loaded
    if read != loaded + quarantined:  # pragma: no cover - guards the SQL above
        raise RuntimeError(f"{path}: read {read} rows but loaded {loaded} + quarantined {quarantined}")
    return read, loaded, quarantined


def _quarantine_skipped(conn: psycopg.Connection, t: Table, batch_id: int, skipped: Skipped) -> None:
    """The rows COPY skipped, to quarantine with their reasons; the rows after a skipped record
    that spans lines get their line numbers shifted accordingly."""
    if skipped.spans:
        conn.execute(skipped_span_shift_sql(t, batch_id),
                     ([r for r, _ in skipped.spans], [e for _, e in skipped.spans]))
    if skipped.rows:
        with conn.cursor() as cur:
            cur.executemany(
                "insert into raw.quarantine (batch_id, table_name, source_line, column_name, reason, record) "
                "values (%s, %s, %s, %s, %s, %s::jsonb)",
                [(batch_id, t.name, r.line, r.column, r.reason, json.dumps(r.record))
                 for r in skipped.rows])


def _quarantine_duplicates(conn: psycopg.Connection, t: Table, batch_id: int) -> bool:
    """Every row whose key repeats within the file, to quarantine; whether there was one."""
    # the hash aggregate is fastest at a small work_mem (a bigger hash table misses the caches
    # more than spilling costs), so a server-wide larger setting is not inherited
    conn.execute("set local work_mem = '4MB'")
    hashes = conn.execute(duplicate_candidates_sql(t, batch_id)).fetchone()[0]
    if not hashes:
        return False
    conn.execute(quarantine_duplicates_sql(t, batch_id), {"hashes": hashes})
    return True


# -- dry run ----------------------------------------------------------------------------------------

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
                  keep: bool = False, nullable: Iterable[str] = ()) -> Validation:
    """Run the loader's real COPY and validation on ``path`` and return what it found, in a
    savepoint that is rolled back: nothing is written (``doctor``). With ``keep`` the rows stay
    in ``relation`` for the caller, who must roll its own transaction back. ``nullable``: as
    for load_file."""
    path = Path(path)
    t = t.with_nullable(nullable)
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
