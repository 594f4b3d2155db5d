"""The warehouse run lock on the real server: one holder; a waiter times out with the holder's
name; a dead holder releases it at once; a holder that lost its connection takes it back only
if nobody held it meanwhile."""

from __future__ import annotations

import time

import pytest

from voice_analytics_dagster.lib.runlock import RunLock, RunLockBusy, RunLockLost

pytestmark = [pytest.mark.integration]


def _terminate(db, lock: RunLock) -> None:
    """What a server restart does to the lock's connection."""
    pid = lock._conn.info.backend_pid
    assert db.scalar("select pg_terminate_backend(%s)", (pid,))


def test_a_second_holder_waits_then_is_refused_naming_the_first(fresh_db):
    a, b = RunLock(fresh_db.url(), "run=aaaa"), RunLock(fresh_db.url(), "run=bbbb")
    a.acquire(0)
    try:
        waited = []
        start = time.monotonic()
        with pytest.raises(RunLockBusy) as info:
            b.acquire(1, on_wait=waited.append)
        assert 0.9 < time.monotonic() - start < 5
        assert "voice-analytics run lock run=aaaa" in waited[0] and "waiting up to 1 s" in waited[0]
        assert "held by voice-analytics run lock run=aaaa" in str(info.value)
        assert "after waiting 1 s" in str(info.value)
    finally:
        a.release()
    b.acquire(0)  # free again
    b.release()


def test_a_holder_whose_connection_dies_releases_the_lock_at_once(fresh_db):
    a, b = RunLock(fresh_db.url(), "run=aaaa"), RunLock(fresh_db.url(), "run=bbbb")
    a.acquire(0)
    _terminate(fresh_db, a)
    b.acquire(0)
    b.release()


def test_after_a_lost_connection_the_lock_is_taken_back_only_if_nobody_held_it(fresh_db):
    a = RunLock(fresh_db.url(), "run=aaaa")
    a.acquire(0)
    _terminate(fresh_db, a)
    a.verify()  # nobody took it: taken back
    a.verify()  # and held
    _terminate(fresh_db, a)
    b = RunLock(fresh_db.url(), "run=bbbb")
    b.acquire(0)  # another run ran meanwhile...
    with pytest.raises(RunLockLost, match="held by|holds it now"):
        a.verify()
    b.release()  # ...and finished
    with pytest.raises(RunLockLost, match="another run took and released it meanwhile"):
        a.verify()
