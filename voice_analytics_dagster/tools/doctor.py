"""``voice-analytics doctor``: what is wrong with the set-up or an export, before a run.

Checks, in order (a failed step skips the steps that need it):

1. settings: the environment parses (VOICE_ANALYTICS_*);
2. server: the embedded PostgreSQL starts (or runs), or VOICE_ANALYTICS_DATABASE_URL answers;
3. databases: the warehouse and Dagster databases exist, or the user may create them;
4. BI role: it exists, logs in, reads every certified table and nothing in the working schemas;
5. dbt: the manifest that the code location loads exists and is newer than the dbt project;
6. Dagster: dagster.yaml exists and its storage database answers;
7. export (``--source``): its format (given or detected; platform logs are converted into a
   temporary folder first, tools/doctor_sources.py), every file is present, its header matches the contract, and the
   loader's real COPY and validation run on it (into temporary tables, in a transaction that is
   rolled back: nothing is written) to count the rows that would be quarantined, show a sample
   with line, column and reason, and find foreign keys without a parent.

Nothing is changed except that an embedded server that is not running is started (every command
does that). The exit code is 1 when any check FAILs, 0 otherwise (warnings do not fail).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from voice_analytics_dagster.lib.contract import TABLES, Table
from voice_analytics_dagster.lib.settings import Settings, SettingsError, load_settings

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"
CONNECT_TIMEOUT = 5  # seconds; a server that does not answer in 5 s is reported, not waited for

# Foreign keys of the contract and how the dbt relationships test on them blocks publication
# (dbt/models/staging/voice_export/*.yml; tests/unit/test_reliability_units.py keeps the two in agreement).
ORPHAN_SEVERITY = {
    ("voice_sessions", "user_id"): FAIL,
    ("voice_turns", "session_id"): FAIL,
    ("voice_ai_metrics", "session_id"): FAIL,
    ("applications", "session_id"): WARN,
    ("applications", "user_id"): WARN,
}


@dataclass
class Finding:
    status: str
    topic: str
    message: str
    fix: str | None = None
    details: list[str] = field(default_factory=list)


@dataclass
class DoctorReport:
    findings: list[Finding] = field(default_factory=list)

    def add(self, status: str, topic: str, message: str, fix: str | None = None,
            details: list[str] | None = None) -> Finding:
        f = Finding(status, topic, message, fix, list(details or []))
        self.findings.append(f)
        return f

    @property
    def ok(self) -> bool:
        return not any(f.status == FAIL for f in self.findings)

    def render(self) -> str:
        lines = ["voice-analytics doctor"]
        topic = None
        for f in self.findings:
            if f.topic != topic:
                topic = f.topic
                lines.append(f"\n{topic}")
            lines.append(f"  {f.status:<5} {f.message}")
            lines += [f"          {d}" for d in f.details]
            if f.fix:
                lines.append(f"        fix: {f.fix}")
        fails = sum(f.status == FAIL for f in self.findings)
        warns = sum(f.status == WARN for f in self.findings)
        lines.append("")
        if fails:
            lines.append(f"{fails} problem(s), {warns} warning(s): fix the FAIL lines before a run.")
        else:
            lines.append(f"no problem found ({warns} warning(s)).")
        return "\n".join(lines)


# -- the set-up -----------------------------------------------------------------------------------

def _connect(url: str, **kwargs) -> psycopg.Connection:
    """One attempt, a short timeout: the doctor reports an unreachable server, it does not wait."""
    return psycopg.connect(url, connect_timeout=CONNECT_TIMEOUT, **kwargs)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_server(settings: Settings, report: DoctorReport):
    """The server's maintenance ConnInfo, or None when it cannot be reached."""
    from voice_analytics_dagster.lib.warehouse import Warehouse, parse_database_url

    topic = "server"
    if settings.database_url:
        info = parse_database_url(settings.database_url)
        where = f"{info.host}:{info.port}" if not info.host.startswith("/") else info.host
        try:
            with _connect(info.url(), autocommit=True) as conn:
                version = conn.execute("show server_version").fetchone()[0]
        except psycopg.OperationalError as exc:
            report.add(FAIL, topic, f"cannot reach the server of VOICE_ANALYTICS_DATABASE_URL at {where}: "
                                    f"{_first_line(exc)}",
                       fix="start the server, or correct VOICE_ANALYTICS_DATABASE_URL (host, port, user, "
                           "password, database); unset it to use the embedded server")
            return None
        report.add(OK, topic, f"external PostgreSQL {version} reachable at {where} (database {info.dbname})")
        return info
    running = (settings.pgdata / "postmaster.pid").exists()
    try:
        wh = Warehouse(settings)
        info = wh.server()
        with _connect(info.url(dbname="postgres"), autocommit=True) as conn:
            version = conn.execute("show server_version").fetchone()[0]
    except Exception as exc:  # noqa: BLE001 - any failure to start is the finding
        report.add(FAIL, topic, f"the embedded PostgreSQL in {settings.pgdata} does not start: {_first_line(exc)}",
                   fix=f"read {settings.pgdata / 'log'}; `voice-analytics db-stop` then retry, or point "
                       "VOICE_ANALYTICS_HOME at a writable folder")
        return None
    state = "running" if running else "was not running: started"
    report.add(OK, topic, f"embedded PostgreSQL {version} {state} (data {settings.pgdata}, socket {info.host})")
    return info


def check_databases(settings: Settings, server, report: DoctorReport) -> dict[str, bool]:
    from voice_analytics_dagster.lib.warehouse import DAGSTER_DATABASE, Warehouse

    topic = "databases"
    wh = Warehouse(settings)
    warehouse_db = wh.conninfo().dbname
    present: dict[str, bool] = {}
    try:
        with _connect(server.url(dbname="postgres"), autocommit=True) as conn:
            can_create = conn.execute(
                "select rolsuper or rolcreatedb from pg_roles where rolname = current_user").fetchone()[0]
            for db in (warehouse_db, DAGSTER_DATABASE):
                present[db] = bool(conn.execute("select 1 from pg_database where datname = %s", (db,)).fetchone())
    except psycopg.Error:
        # no access to the maintenance database (a managed server): try the databases themselves
        can_create = False
        for db in (warehouse_db, DAGSTER_DATABASE):
            try:
                with _connect(server.url(dbname=db)):
                    present[db] = True
            except psycopg.Error:
                present[db] = False
    for db, role in ((warehouse_db, "warehouse"), (DAGSTER_DATABASE, "Dagster storage")):
        if present[db]:
            report.add(OK, topic, f"{role} database {db!r} present")
        elif can_create:
            report.add(INFO, topic, f"{role} database {db!r} not created yet: the first run creates it")
        else:
            report.add(FAIL, topic, f"{role} database {db!r} missing and user {server.user!r} may not create it",
                       fix=f"create database {db} owned by {server.user}, or grant it CREATEDB")
    return {"warehouse": present[warehouse_db], "dagster": present[DAGSTER_DATABASE]}


def check_warehouse(settings: Settings, report: DoctorReport) -> None:
    """The certified schema, its last publication, and the BI role's privileges."""
    from voice_analytics_dagster.defs.publish.swap import CERTIFIED_SCHEMA
    from voice_analytics_dagster.lib.warehouse import ConnInfo, Warehouse

    topic = "certified schema and BI role"
    wh = Warehouse(settings)
    role = settings.bi_role
    with _connect(wh.url(), autocommit=True) as conn:
        has_analytics = conn.execute("select to_regnamespace('analytics') is not null").fetchone()[0]
        if not has_analytics:
            report.add(INFO, topic, "nothing published yet (no schema analytics): the first run publishes")
        else:
            last = conn.execute(
                "select run_id, status, logged_at from analytics.publication_log order by publication_id desc limit 1"
            ).fetchone() if conn.execute("select to_regclass('analytics.publication_log') is not null").fetchone()[0] \
                else None
            published = conn.execute(
                "select run_id, logged_at, inputs, accepted_shrink from analytics.publication_log "
                "where status = 'published' order by publication_id desc limit 1").fetchone() if last else None
            if published:
                from voice_analytics_dagster.lib.provenance import SYNTHETIC, Inputs

                read = Inputs(published[2] or [])
                details = [f"read: {read.summary()}"] if read.files else ["read: not recorded (published before "
                                                                          "provenance was kept)"]
                details += [f"{f['table']}: {f['path']} sha256 {f['sha256'][:16]}... rows {f['rows_loaded']:,}"
                            for f in read.files[:10]]
                if len(read.files) > 10:
                    details.append(f"... and {len(read.files) - 10} more file(s) (analytics.publication_log.inputs)")
                if published[3]:
                    details.append("published with --accept-shrink (see analytics.publication_log.shrink)")
                report.add(OK, topic, f"last publication: run {published[0]} at {published[1]:%Y-%m-%d %H:%M:%S %Z}",
                           details=details)
                if read.dataset == SYNTHETIC:
                    report.add(WARN, topic, "the certified schema holds synthetic data: dashboards show no real figure",
                               fix="run real exports in a warehouse of their own (VOICE_ANALYTICS_HOME or "
                                   "VOICE_ANALYTICS_DATABASE); the demo has its own home (voice-analytics --demo ...)")
            if last and last[1] == "blocked":
                report.add(WARN, topic, f"the latest run {last[0]} was blocked at {last[2]:%Y-%m-%d %H:%M:%S %Z}",
                           fix='see why: voice-analytics psql -c "select blocked_by, message from '
                               'analytics.publication_log order by publication_id desc limit 1"')
        attrs = conn.execute(
            "select rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolbypassrls from pg_roles where rolname = %s",
            (role,)).fetchone()
        if attrs is None:
            status = INFO if not has_analytics else FAIL
            report.add(status, topic, f"BI role {role!r} does not exist" +
                       (": the first publication creates it" if status == INFO else ""),
                       fix=None if status == INFO else "run the pipeline again: publication (re)creates the role")
            return
        problems = []
        login, superuser, createdb, createrole, bypassrls = attrs
        if not login:
            problems.append("cannot log in")
        if superuser or createdb or createrole or bypassrls:
            problems.append("has administrative attributes (superuser/createdb/createrole/bypassrls)")
        if not conn.execute("select has_database_privilege(%s, current_database(), 'CONNECT')", (role,)).fetchone()[0]:
            problems.append("may not connect to the warehouse database")
        unreadable = []
        if has_analytics:
            if not conn.execute("select has_schema_privilege(%s, 'analytics', 'USAGE')", (role,)).fetchone()[0]:
                problems.append("has no USAGE on schema analytics")
            unreadable = [r[0] for r in conn.execute(
                "select table_name from information_schema.tables where table_schema = %s "
                "and not has_table_privilege(%s, format('%%I.%%I', table_schema, table_name), 'SELECT') order by 1",
                (CERTIFIED_SCHEMA, role)).fetchall()]
            if unreadable:
                problems.append("cannot read " + ", ".join(f"analytics.{t}" for t in unreadable))
        leaks = [r[0] for r in conn.execute(
            # every schema but the certified one (and the catalogs): whatever the pipeline adds later
            "select nspname from pg_namespace where nspname <> %s and nspname not like 'pg\\_%%' "
            "and nspname not in ('information_schema', 'public') "
            "and (has_schema_privilege(%s, oid, 'USAGE') or has_schema_privilege(%s, oid, 'CREATE')) order by 1",
            (CERTIFIED_SCHEMA, role, role)).fetchall()]
        if leaks:
            problems.append("can reach working schema(s) " + ", ".join(leaks) + " (only analytics is certified)")
        writable = [r[0] for r in conn.execute(
            "select nspname from pg_namespace where nspname in ('public', 'analytics') "
            "and has_schema_privilege(%s, oid, 'CREATE') order by 1", (role,)).fetchall()]
        if writable:
            problems.append("may create objects in schema(s) " + ", ".join(writable))
        if problems:
            report.add(FAIL, topic, f"BI role {role!r}: " + "; ".join(problems),
                       fix="run the pipeline again (publication re-applies the grants), and revoke what was "
                           "granted by hand")
            return
        info = wh.conninfo()
        try:
            with _connect(ConnInfo(info.host, info.port, role, settings.bi_password, info.dbname).url()) as bi:
                bi.execute("select 1")
        except psycopg.OperationalError as exc:
            report.add(FAIL, topic, f"BI role {role!r} cannot log in with VOICE_ANALYTICS_BI_PASSWORD: "
                                    f"{_first_line(exc)}",
                       fix="set VOICE_ANALYTICS_BI_PASSWORD to the role's password (publication sets it)")
            return
        report.add(OK, topic, f"BI role {role!r} logs in, reads the certified tables and nothing else")


def check_dbt(report: DoctorReport) -> None:
    from voice_analytics_dagster.defs.transform.dbt_cli import dbt_executable
    from voice_analytics_dagster.defs.transform.parse import manifest_is_stale, manifest_path

    topic = "dbt"
    try:
        report.add(OK, topic, f"dbt executable: {dbt_executable()}")
    except FileNotFoundError as exc:
        report.add(FAIL, topic, str(exc), fix="make setup (installs dbt-core and dbt-postgres)")
    manifest = manifest_path()
    if not manifest.exists():
        report.add(FAIL, topic, f"no dbt manifest at {manifest}: the Dagster code location cannot load",
                   fix="voice-analytics prepare")
    elif manifest_is_stale():
        report.add(WARN, topic, f"the dbt manifest {manifest} is older than the dbt project: `run` re-parses it, "
                                "the UI and the daemon load the old one", fix="voice-analytics prepare")
    else:
        report.add(OK, topic, f"dbt manifest current ({manifest})")


def check_dagster(settings: Settings, server, report: DoctorReport) -> None:
    import yaml

    from voice_analytics_dagster.lib.instance import storage_url
    from voice_analytics_dagster.lib.warehouse import Warehouse

    topic = "Dagster"
    path = settings.dagster_home / "dagster.yaml"
    expected = Warehouse(settings).dagster_storage_url()
    if not path.exists():
        report.add(INFO, topic, f"no {path} yet: the first run or `voice-analytics ui` writes it")
        url = expected
    else:
        try:
            config = yaml.safe_load(path.read_text()) or {}
            url = storage_url(config)
        except (yaml.YAMLError, KeyError, TypeError) as exc:
            report.add(FAIL, topic, f"{path} has no postgres storage URL ({type(exc).__name__})",
                       fix=f"delete {path}; the next run writes it again")
            return
        if url != expected:
            report.add(WARN, topic, f"{path} points to another storage than this server's: the next run rewrites it")
    plain = url.replace("postgresql+psycopg2://", "postgresql://", 1)
    try:
        with _connect(plain, autocommit=True) as conn:
            initialised = conn.execute("select to_regclass('public.runs') is not null").fetchone()[0]
    except psycopg.OperationalError as exc:
        if "does not exist" in str(exc):
            report.add(INFO, topic, "instance storage database not created yet: the first run creates it")
            return
        report.add(FAIL, topic, f"instance storage unreachable: {_first_line(exc)}",
                   fix="check the server (above) and VOICE_ANALYTICS_HOME")
        return
    state = "initialised" if initialised else "empty (initialised by the first run)"
    report.add(OK, topic, f"instance storage reachable, {state} (home {settings.dagster_home})")


# -- the export -------------------------------------------------------------------------------------

def _sample_lines(sample: list[tuple[int, str | None, str]]) -> list[str]:
    return [f"line {line}, column {col or '-'}: {reason}" for line, col, reason in sample]


def _orphans(conn: psycopg.Connection, validated: dict[str, str]) -> Iterator[tuple[Table, str, str, int]]:
    """Foreign keys of the validated files that their parent file lacks (``validated``: table ->
    the relation holding its would-be rows, alive in the caller's rolled-back transaction)."""
    for t in TABLES:
        for column, parent, parent_column in t.foreign_keys:
            if t.name not in validated or parent not in validated:
                continue
            n = conn.execute(
                f'select count(*) from {validated[t.name]} c where c."{column}" is not null and not exists '
                f'(select 1 from {validated[parent]} p where p."{parent_column}" = c."{column}")'
            ).fetchone()[0]
            if n:
                yield t, column, parent, n


def check_export(settings: Settings, source: Path, server, databases: dict[str, bool] | None,
                 report: DoctorReport, sample_size: int = 5, source_format: str | None = None) -> None:
    from voice_analytics_dagster.tools.doctor_sources import export_to_check

    topic = f"export {source}"
    with export_to_check(settings, source, source_format, report, topic, sample_size) as (folder, manifests):
        if folder is not None:
            _check_contract_files(settings, folder, server, databases, report, sample_size, topic, manifests)


def _check_contract_files(settings: Settings, source: Path, server, databases: dict[str, bool] | None,
                          report: DoctorReport, sample_size: int, topic: str, manifests: dict) -> None:
    """The contract files of ``source`` (an export, or a platform's converted logs: then
    ``manifests`` holds each delivery's adapter manifest, whose not-recorded columns may be empty)."""
    from voice_analytics_dagster.defs.ingestion.batches import discover_deliveries
    from voice_analytics_dagster.defs.ingestion.reader import IngestionError
    from voice_analytics_dagster.defs.ingestion.sources import nullable_columns
    from voice_analytics_dagster.lib.warehouse import Warehouse

    try:
        deliveries = discover_deliveries(source)
    except IngestionError as exc:
        report.add(FAIL, topic, str(exc))
        return
    kind = "one export folder" if deliveries[0].name is None else f"{len(deliveries)} dated deliveries"
    report.add(INFO, topic, f"{kind}; contract: {', '.join(t.file for t in TABLES)}")
    conn = None
    if server is not None:
        db_url = Warehouse(settings).url() if (databases or {}).get("warehouse") else server.url(dbname="postgres")
        try:
            conn = _connect(db_url)
        except psycopg.Error as exc:
            report.add(WARN, topic, f"row validation skipped: {_first_line(exc)}")
    else:
        report.add(WARN, topic, "row validation skipped: the server is unreachable (headers checked only)")
    try:
        for delivery in deliveries:
            prefix = f"{delivery.name}/" if delivery.name else ""
            # the loader's own COPY and validation, into temporary tables, rolled back at the end
            scope = conn.transaction(force_rollback=True) if conn is not None else contextlib.nullcontext()
            with scope:
                validated: dict[str, str] = {}
                manifest = manifests.get(delivery.name)
                for t in TABLES:
                    nullable = nullable_columns(manifest, t) if manifest is not None else frozenset()
                    relation = _check_file(settings, conn, t, delivery.file(t), prefix + t.file, report, topic,
                                           sample_size, nullable)
                    if relation:
                        validated[t.name] = relation
                if conn is not None and delivery.name is None:
                    for t, column, parent, n in _orphans(conn, validated):
                        status = ORPHAN_SEVERITY.get((t.name, column), WARN)
                        effect = "blocks publication" if status == FAIL else "warns"
                        report.add(status, topic, f"{prefix}{t.file}: {n:,} row(s) whose {column} is not in "
                                                  f"{parent} ({effect}: dbt relationships test)")
    finally:
        if conn is not None:
            conn.close()


def _check_file(settings: Settings, conn: psycopg.Connection | None, t: Table, path: Path, name: str,
                report: DoctorReport, topic: str, sample_size: int, nullable: frozenset = frozenset()) -> str | None:
    """One file: present, header, and (with a connection) the real validation. Returns the
    relation holding its validated rows (inside the caller's rolled-back transaction), or None."""
    from voice_analytics_dagster.defs.ingestion.assets import RETYPED_SHARE
    from voice_analytics_dagster.defs.ingestion.copy import validate_file
    from voice_analytics_dagster.defs.ingestion.reader import IngestionError, check_header

    if not path.exists():
        report.add(FAIL, topic, f"{name}: missing file", fix=f"the export must contain {t.file}")
        return None
    if conn is None:
        try:
            check_header(t, path)
            report.add(OK, topic, f"{name}: header matches the contract")
        except IngestionError as exc:
            report.add(FAIL, topic, str(exc))
        return None
    try:
        with conn.transaction():
            v = validate_file(conn, t, path, sample_size=sample_size, keep=True, nullable=nullable)
    except IngestionError as exc:
        report.add(FAIL, topic, str(exc))
        return None
    notes = []
    if v.header.reordered:
        notes.append("columns in another order than the contract (accepted)")
    present = {h.lower() for h in _header_columns(path)}
    absent = [c.name for c in t.columns if c.optional_in_file and c.name not in present]
    if absent:
        notes.append("optional column(s) absent: " + ", ".join(absent))
    retyped = [c for c, n in v.failing_by_column.items() if v.rows_read and n >= RETYPED_SHARE * v.rows_read]
    counts = f"read {v.rows_read:,} = would load {v.rows_loaded:,} + quarantine {v.rows_quarantined:,}"
    if retyped:
        report.add(FAIL, topic, f"{name}: column(s) {', '.join(retyped)} no longer parse as their contract type "
                                f"in most rows (retyped?); {counts}", details=_sample_lines(v.sample))
    elif v.rows_read == 0:
        report.add(WARN if len(nullable) < len(t.columns) else INFO, topic, f"{name}: header only, no rows"
                   + ("" if len(nullable) < len(t.columns) else " (the platform does not record this table)"))
    elif v.rows_quarantined > settings.quarantine_tolerance * v.rows_read:
        report.add(FAIL, topic, f"{name}: {counts}; more than VOICE_ANALYTICS_QUARANTINE_TOLERANCE="
                                f"{settings.quarantine_tolerance:g} allows (publication would be blocked). "
                                "First bad rows:",
                   details=_sample_lines(v.sample), fix="correct these rows and deliver the file again")
    elif v.rows_quarantined:
        report.add(WARN, topic, f"{name}: {counts} (within the tolerance)", details=_sample_lines(v.sample))
    else:
        report.add(OK, topic, f"{name}: {counts}" + (f" ({'; '.join(notes)})" if notes else ""))
    return v.relation


def _header_columns(path: Path) -> tuple[str, ...]:
    from voice_analytics_dagster.defs.ingestion.reader import read_header

    return read_header(path).columns


# -- all of it --------------------------------------------------------------------------------------

def run_doctor(source: Path | None = None, sample_size: int = 5, environ=None,
               source_format: str | None = None) -> DoctorReport:
    report = DoctorReport()
    try:
        settings = load_settings(os.environ if environ is None else environ)
    except SettingsError as exc:
        report.add(FAIL, "settings", str(exc))
        return report
    where = "VOICE_ANALYTICS_DATABASE_URL" if settings.database_url else f"embedded server in {settings.pgdata}"
    report.add(OK, "settings", f"{settings.mode} mode, home {settings.home}, warehouse: {where}")
    server = check_server(settings, report)
    databases = None
    if server is not None:
        databases = check_databases(settings, server, report)
        if databases["warehouse"]:
            try:
                check_warehouse(settings, report)
            except psycopg.Error as exc:
                report.add(FAIL, "certified schema and BI role", f"cannot inspect the warehouse: {_first_line(exc)}")
    check_dbt(report)
    if server is not None:
        check_dagster(settings, server, report)
    if source is not None:
        check_export(settings, Path(source), server, databases, report, sample_size, source_format)
    return report
