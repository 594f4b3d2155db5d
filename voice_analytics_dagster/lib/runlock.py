"""The warehouse run lock: one pipeline run writes a warehouse at a time.

A PostgreSQL session-level advisory lock, held on a dedicated connection for the whole run:
``voice-analytics run`` takes it before the Dagster run starts (pipeline.run_pipeline), and the
``warehouse_lock`` resource takes it when a run starts that was launched some other way (the
daemon, the UI), so that every run that writes the warehouse holds it. A second run waits for it
(up to VOICE_ANALYTICS_RUN_LOCK_WAIT seconds, saying who holds it) or, with ``--no-wait``, is
refused with a message naming the holder. The lock is per database (PostgreSQL scopes advisory
locks to the database) and dies with its connection: a killed run releases it at once, and a run
whose server restarted finds out before publishing (``verify``).

Why not rely on Dagster's run queue alone: the queue (instance.py, tag voice_analytics/warehouse
= write, limit 1) only sees runs submitted through the daemon, not ``execute_in_process`` runs
from the command line or runs of another Dagster instance on the same warehouse.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import psycopg

# pg_advisory_lock(int4, int4): 0x5641 ("VA") identifies the project, 1 the run lock
LOCK_KEYS = (0x5641, 1)
APP_NAME = "voice-analytics run lock"
# Dagster run tags: the warehouse database a run writes, and that it took the run lock
DATABASE_TAG = "voice_analytics/database"
LOCK_TAG = "voice_analytics/run_lock"

HOLDER_SQL = """
select a.pid, a.application_name, a.backend_start, a.client_addr::text
from pg_locks l join pg_stat_activity a on a.pid = l.pid
where l.locktype = 'advisory' and l.granted
  and l.database = (select oid from pg_database where datname = current_database())
  and l.classid = %s and l.objid = %s and l.objsubid = 2
"""

# Every acquisition takes the next number: a run whose connection was lost can tell, on taking
# the lock again, whether another run held it meanwhile (then the working tables may be a mix).
# Sequences are not rolled back; after a crash (not a clean restart) PostgreSQL may skip values,
# which can only make a run refuse to publish, never publish wrongly.
GENERATION_DDL = "create sequence if not exists public.voice_analytics_run_lock_generation"
GENERATION_SQL = "select nextval('public.voice_analytics_run_lock_generation')"
LAST_GENERATION_SQL = "select last_value from public.voice_analytics_run_lock_generation"

MINE_SQL = """
select count(*) from pg_locks
where pid = pg_backend_pid() and locktype = 'advisory' and granted
  and classid = %s and objid = %s and objsubid = 2
"""


class RunLockError(RuntimeError):
    """The run could not take, or lost, the warehouse run lock; the message names the holder."""


class RunLockBusy(RunLockError):
    pass


class RunLockLost(RunLockError):
    pass


@dataclass(frozen=True)
class Holder:
    pid: int
    application_name: str
    since: object
    client: str | None

    def describe(self) -> str:
        since = self.since.strftime("%Y-%m-%d %H:%M:%S %Z").strip() if hasattr(self.since, "strftime") else self.since
        who = self.application_name or "an unnamed session"
        return f"{who} (server pid {self.pid}, since {since})"


def application_name(owner: str) -> str:
    """The lock connection's application_name (PostgreSQL keeps 63 bytes): who holds the lock. Pure."""
    return f"{APP_NAME} {owner} pid={os.getpid()}@{socket.gethostname()}"[:63]


def busy_message(holder: Holder | None, waited: float) -> str:
    """The refusal message. Pure."""
    who = holder.describe() if holder else "another session"
    how = "without waiting" if waited <= 0 else f"after waiting {waited:g} s"
    return (f"another pipeline run is writing this warehouse: the run lock is held by {who}; refused {how}. "
            "Try again when it has finished (`voice-analytics run` waits by default; "
            "VOICE_ANALYTICS_RUN_LOCK_WAIT sets how long).")


class RunLock:
    """The advisory lock on its own autocommit connection."""

    def __init__(self, url: str, owner: str):
        self.url = url
        self.owner = owner
        self._conn: psycopg.Connection | None = None
        self.generation: int | None = None

    def _connect(self) -> psycopg.Connection:
        from voice_analytics_dagster.lib.warehouse import _connect_with_retry

        self._conn = _connect_with_retry(self.url, autocommit=True, application_name=application_name(self.owner))
        return self._conn

    def holder(self) -> Holder | None:
        conn = self._conn or self._connect()
        row = conn.execute(HOLDER_SQL, LOCK_KEYS).fetchone()
        return Holder(*row) if row else None

    def _taken(self, conn: psycopg.Connection) -> None:
        conn.execute(GENERATION_DDL)
        self.generation = conn.execute(GENERATION_SQL).fetchone()[0]

    def acquire(self, wait_seconds: float, on_wait: Callable[[str], None] | None = None) -> None:
        """Take the lock; wait up to ``wait_seconds`` (0: refuse at once) or raise RunLockBusy."""
        conn = self._conn or self._connect()
        if conn.execute("select pg_try_advisory_lock(%s, %s)", LOCK_KEYS).fetchone()[0]:
            self._taken(conn)
            return
        holder = self.holder()
        if wait_seconds <= 0:
            self.close()
            raise RunLockBusy(busy_message(holder, 0))
        if on_wait is not None:
            who = holder.describe() if holder else "another session"
            on_wait(f"waiting up to {wait_seconds:g} s for the warehouse run lock held by {who}")
        try:
            conn.execute(f"set lock_timeout = '{int(wait_seconds * 1000)}ms'")
            conn.execute("select pg_advisory_lock(%s, %s)", LOCK_KEYS)
            conn.execute("reset lock_timeout")
            self._taken(conn)
        except psycopg.errors.LockNotAvailable:
            holder = self.holder()
            self.close()
            raise RunLockBusy(busy_message(holder, wait_seconds)) from None

    def verify(self) -> None:
        """Check that the lock is still held; after a lost connection (a restarted server) take it
        again if it is free and nobody took it meanwhile, else raise RunLockLost (another run may
        have rebuilt working tables meanwhile: publishing could mix two runs)."""
        try:
            if self._conn is not None and self._conn.execute(MINE_SQL, LOCK_KEYS).fetchone()[0]:
                return
        except psycopg.OperationalError:
            pass
        self.close()
        conn = self._connect()
        if conn.execute("select pg_try_advisory_lock(%s, %s)", LOCK_KEYS).fetchone()[0]:
            if conn.execute(LAST_GENERATION_SQL).fetchone()[0] == self.generation:
                return
            self.close()
            raise RunLockLost(
                "this run lost the warehouse run lock (its connection was lost) and another run took and "
                "released it meanwhile: not publishing what may be a mix of two runs; run again")
        holder = self.holder()
        self.close()
        who = holder.describe() if holder else "another session"
        raise RunLockLost(
            f"this run lost the warehouse run lock (its connection was lost) and {who} holds it now: "
            "not publishing what may be a mix of two runs; run again"
        )

    def close(self) -> None:
        """Release the lock by closing its connection (the server releases session locks)."""
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    release = close


def fail_orphaned_runs(instance, database: str, current_run_id: str | None = None) -> list[str]:
    """Mark as failed the Dagster runs of ``database`` that took the run lock and still show as
    in progress: the caller holds the lock now, so their lock connection is gone, i.e. their
    process died (a SIGKILL, an out-of-memory kill, a lost machine).

    Why: Dagster cannot tell that a run executed in-process by `voice-analytics run` died (its
    launcher has no health check), so such a run stays STARTED for ever, and the run queue,
    which admits one warehouse-writing run at a time (instance.py), would then never admit
    another. Returns the run ids marked."""
    import dagster as dg

    runs = instance.get_runs(filters=dg.RunsFilter(
        statuses=[dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING],
        tags={DATABASE_TAG: database, LOCK_TAG: "held"},
    ))
    marked = []
    for run in runs:
        if run.run_id == current_run_id:
            continue
        instance.report_run_failed(
            run, message=f"the run's process ended without finishing (it no longer holds the warehouse run lock, "
                         f"which run {current_run_id or 'a new run'} took): marked failed")
        marked.append(run.run_id)
    return marked


_held: dict[str, RunLock] = {}


def held_by_this_process(url: str) -> RunLock | None:
    """The lock this process holds on the warehouse at ``url`` (the CLI took it before the run)."""
    return _held.get(url)


@contextlib.contextmanager
def hold(url: str, owner: str, wait_seconds: float,
         on_wait: Callable[[str], None] | None = None) -> Iterator[RunLock]:
    """Hold the run lock for the duration of the block (re-entrant within this process)."""
    existing = _held.get(url)
    if existing is not None:
        yield existing
        return
    lock = RunLock(url, owner)
    lock.acquire(wait_seconds, on_wait)
    _held[url] = lock
    try:
        yield lock
    finally:
        _held.pop(url, None)
        lock.release()
