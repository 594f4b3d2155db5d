"""Which failures a retry can help, and how long to wait. Pure: no I/O, unit-tested.

A retry helps when the warehouse connection was lost or refused (a restarting server, a network
blip, a deadlock or serialization failure): the same work succeeds once the server is back, and
every stage is safe to repeat (the loader is idempotent per file and writes one transaction per
file, dbt rebuilds its models, publication is one transaction). A retry cannot help bad data: a
file that breaks the contract, a quarantined row, a failing dbt test or a SQL error fail the same
way every time, so they fail at once, without retry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

# Attempts after the first. With the delays below the last retry starts about 2 + 4 + 8 = 14 s
# after the failure; the embedded server restarts in about 1 s and recovers after an unclean stop
# within a few seconds (TOOLCHAIN-NOTES.md), an external server's failover takes longer: the
# budget covers restarts, not outages.
MAX_RETRIES = 3
BASE_DELAY_SECONDS = 2.0
MAX_DELAY_SECONDS = 30.0

# SQLSTATEs of a lost or refused connection (class 08), a server shutting down or starting up
# (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now), and of conflicts that
# succeed when repeated (40001 serialization failure, 40P01 deadlock).
TRANSIENT_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "40001", "40P01"})
TRANSIENT_SQLSTATE_CLASSES = frozenset({"08"})

# What a lost connection looks like in a message (dbt reports the driver's text, not a SQLSTATE).
CONNECTION_LOST = re.compile(
    r"server closed the connection unexpectedly"
    r"|terminating connection due to administrator command"
    r"|the database system is (starting up|shutting down|in recovery mode|not yet accepting connections)"
    r"|could not connect to server"
    r"|connection to server .* failed"
    r"|connection refused"
    r"|connection already closed"
    r"|the connection is (closed|lost)"
    r"|no connection to the server"
    r"|SSL SYSCALL error"
    r"|connection reset by peer"
    r"|could not receive data from server"
    r"|could not send data to server"
    r"|consuming input failed",
    re.IGNORECASE,
)


def backoff_seconds(retry_number: int, base: float = BASE_DELAY_SECONDS, cap: float = MAX_DELAY_SECONDS) -> float:
    """Exponential backoff: base x 2^n for the n-th retry (from 0), at most ``cap``."""
    return min(cap, base * (2 ** max(0, retry_number)))


def sqlstate_is_transient(sqlstate: str | None) -> bool:
    if not sqlstate:
        return False
    return sqlstate in TRANSIENT_SQLSTATES or sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES


def is_transient_db_error(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause) is a lost/refused connection or a retryable conflict.

    psycopg 3 raises ``OperationalError`` without a SQLSTATE when the client side loses the
    connection, and with one when the server says why; psycopg2 (Dagster's storage) and
    SQLAlchemy wrap the same conditions. Data and programming errors are never transient."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        sqlstate = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
        if sqlstate_is_transient(sqlstate):
            return True
        name = type(exc).__name__
        if name == "OperationalError" and not sqlstate and CONNECTION_LOST.search(str(exc)):
            return True
        if name in {"ConnectionTimeout", "ConnectionFailure", "AdminShutdown", "CrashShutdown",
                    "CannotConnectNow"}:
            return True
        exc = getattr(exc, "orig", None) or exc.__cause__
    return False


def dbt_failure_is_transient(run_results: Mapping[str, Any] | None, error_messages: Iterable[str] = ()) -> bool:
    """Whether a failed ``dbt build`` failed because the warehouse connection was lost.

    True iff at least one node errored with a lost-connection message, no node errored for any
    other reason and no test failed (a failed test is bad data: repeating the build fails it
    again). Without run_results (dbt stopped before writing them), the error lines decide."""
    if run_results is None:
        return any(CONNECTION_LOST.search(m or "") for m in error_messages)
    lost = 0
    for result in run_results.get("results", []):
        status = result.get("status")
        if status == "fail":
            return False
        if status == "error":
            if CONNECTION_LOST.search(result.get("message") or ""):
                lost += 1
            else:
                return False
    if lost:
        return True
    # dbt failed without a node error (e.g. it could not open its first connection)
    return any(CONNECTION_LOST.search(m or "") for m in error_messages)
