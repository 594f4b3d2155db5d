"""A TCP listener on 127.0.0.1 for the embedded server, for BI tools (``VOICE_ANALYTICS_EMBEDDED_TCP_PORT``,
also turned on by ``voice-analytics superset up``).

The embedded server normally listens on a unix socket only. A BI tool such as Superset connects
over TCP with a password, so when a port is set the server is (re)started with
``-h 127.0.0.1 -p PORT`` and its ``pg_hba.conf`` lets exactly one login in over TCP: the read-only
BI role, on the warehouse database, from 127.0.0.1, with scram-sha-256. Every other TCP login
(the pipeline's superuser included) is rejected; the pipeline keeps using the socket. PostgreSQL
has one port for both listeners, so the socket file is named after the TCP port too: callers take
the port from the running server (``postmaster.pid``), never assume 5432.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import psycopg

from voice_analytics_dagster.lib.runlock import LOCK_KEYS
from voice_analytics_dagster.lib.settings import SettingsError

log = logging.getLogger(__name__)

TCP_HOST = "127.0.0.1"
HBA_HEADER = "# Written by voice_analytics_dagster/lib/warehouse_tcp.py; rewritten when the BI role or database changes.\n"
# the warehouse run lock held in any database: a restart would kill the run holding it
RUN_LOCK_SQL = ("select count(*) from pg_locks where locktype = 'advisory' and granted "
                "and classid = %s and objid = %s and objsubid = 2")


class TcpListenerError(SettingsError):
    """The embedded server cannot listen on the requested port now (the message says why); a
    settings error to the command line (exit 2, the message alone)."""


def hba_rules(database: str, bi_role: str) -> str:
    """The whole pg_hba.conf of an embedded server with a TCP listener. Pure.

    The socket stays as initdb set it (trust: the socket lives in the data folder, which only the
    server's user can enter). Over TCP: the BI role alone, on the warehouse database alone, from
    127.0.0.1, with a SCRAM password; anything else on TCP matches the reject lines."""
    return (
        HBA_HEADER
        + "# TYPE  DATABASE     USER         ADDRESS        METHOD\n"
        + "local   all          all                         trust\n"
        + "local   replication  all                         trust\n"
        + f"host    {database}  {bi_role}  {TCP_HOST}/32  scram-sha-256\n"
        + "host    all          all          0.0.0.0/0      reject\n"
        + "host    all          all          ::/0           reject\n"
    )


def tcp_options(port: int, socket_dir: Path) -> str:
    """The postgres options (pg_ctl -o) of a server on the socket and on 127.0.0.1:PORT. Pure."""
    return f"-h {TCP_HOST} -p {int(port)} -k {shlex.quote(str(socket_dir))}"


def listens_on(hostname: str | None, port: int | None, wanted_port: int) -> bool:
    """Whether a server whose postmaster.pid names ``hostname`` and ``port`` listens on
    127.0.0.1:wanted_port. Pure."""
    return (hostname or "").split(",")[0].strip() == TCP_HOST and port == wanted_port


def write_hba(pgdata: Path, content: str) -> bool:
    """Replace pg_hba.conf with ``content`` (atomically, keeping the file's owner: the server runs
    as another system user when we are root). True when it changed."""
    path = pgdata / "pg_hba.conf"
    if path.exists() and path.read_text() == content:
        return False
    st = path.stat()
    tmp = path.with_name("pg_hba.conf.tmp")
    tmp.write_text(content)
    os.chown(tmp, st.st_uid, st.st_gid)
    tmp.chmod(0o600)
    os.replace(tmp, path)
    return True


def hba_errors(url: str) -> list[str]:
    """Lines of pg_hba.conf that the server could not parse (pg_hba_file_rules)."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [f"line {n}: {e}" for n, e in conn.execute(
            "select line_number, error from pg_hba_file_rules where error is not null").fetchall()]


@contextlib.contextmanager
def restart_lock(home: Path) -> Iterator[None]:
    """One process at a time decides whether to restart the embedded server."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / ".tcp-listener.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def refuse_restart_during_run(maintenance_url: str, port: int) -> None:
    """Restarting the server ends every connection: refuse while a pipeline run holds a warehouse."""
    with psycopg.connect(maintenance_url, autocommit=True) as conn:
        if conn.execute(RUN_LOCK_SQL, LOCK_KEYS).fetchone()[0]:
            raise TcpListenerError(
                f"the embedded server must restart to listen on {TCP_HOST}:{port}, but a pipeline run "
                "holds the warehouse: try again when it has finished")


def check_port_free(port: int) -> None:
    """Refuse before the restart rather than leave the server stopped on a port taken by another program."""
    import socket

    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((TCP_HOST, port))
        except OSError as exc:
            raise TcpListenerError(f"{TCP_HOST}:{port} is taken by another program ({exc.strerror}): "
                                   "choose another VOICE_ANALYTICS_EMBEDDED_TCP_PORT") from exc
