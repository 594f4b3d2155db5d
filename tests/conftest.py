"""Shared test fixtures: one embedded PostgreSQL server and one dbt parse per test session.

The server lives in a temporary VOICE_ANALYTICS_HOME (never the developer's own); each test
that needs a clean warehouse gets its own database on that server (``fresh_db``), which costs
milliseconds instead of a server start. Under ``make test``'s two pytest-xdist workers each worker
is a session of its own (its home, its server); what they share, dbt's target folder, is safe to
share: a parse per dbt connection (defs/transform/parse.py), a folder per dbt invocation."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = (PROJECT_ROOT.parent / "shared" / "data" / "irembo-sample").resolve()

# Before any project module reads the settings: a private home for this test session.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="va-tests-"))
os.environ["VOICE_ANALYTICS_HOME"] = str(_SESSION_HOME)
os.environ.pop("VOICE_ANALYTICS_DATABASE_URL", None)
os.environ.pop("VOICE_ANALYTICS_DATABASE", None)
os.environ.setdefault("XDG_RUNTIME_DIR", str(_SESSION_HOME / "runtime"))
(_SESSION_HOME / "runtime").mkdir(mode=0o700, exist_ok=True)


def pytest_sessionfinish(session, exitstatus):
    from dataclasses import replace

    from voice_analytics_dagster.lib.settings import load_settings
    from voice_analytics_dagster.lib.warehouse import stop_embedded

    try:
        settings = load_settings()
        stop_embedded(settings)
        stop_embedded(replace(settings, home=settings.demo_home))  # `voice-analytics demo`'s own server
    finally:
        if os.environ.get("VA_KEEP_TEST_HOME") != "1":
            shutil.rmtree(_SESSION_HOME, ignore_errors=True)


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    if not (SAMPLE_DIR / "voice_sessions.csv").exists():
        pytest.skip(f"the real sample is not available at {SAMPLE_DIR} (../shared is absent)")
    return SAMPLE_DIR


@pytest.fixture(scope="session")
def server():
    """The embedded server, started once; yields its maintenance ConnInfo."""
    from voice_analytics_dagster.lib.settings import get_settings, reset_settings_cache
    from voice_analytics_dagster.lib.warehouse import Warehouse

    reset_settings_cache()
    wh = Warehouse(get_settings())
    wh.ensure_databases()
    return wh.server()


@pytest.fixture(scope="session")
def dbt_manifest():
    """One dbt parse per test session (skipped when the manifest is current)."""
    from voice_analytics_dagster.defs.transform.parse import prepare_dbt

    return prepare_dbt()


class Db:
    """A database of its own on the shared server, selected through the environment so that
    every layer (loader, dbt subprocess, Dagster assets) uses it."""

    def __init__(self, name: str):
        self.name = name

    @property
    def warehouse(self):
        from voice_analytics_dagster.lib.settings import get_settings
        from voice_analytics_dagster.lib.warehouse import Warehouse

        return Warehouse(get_settings())

    def connect(self, **kwargs):
        return self.warehouse.connect(**kwargs)

    def scalar(self, query, params=None):
        return self.warehouse.scalar(query, params)

    def rows(self, query, params=None):
        return self.warehouse.fetchall(query, params)

    def url(self):
        return self.warehouse.url()

    def dbt(self, target: Path, *args: str):
        """dbt by hand against this database (the run's vars), writing to ``target``; it starts
        from the session's parse (dbt_manifest), so it parses partially. The finished process."""
        import json
        import subprocess

        from voice_analytics_dagster.defs.transform.dbt_cli import dbt_env, dbt_executable, dbt_vars
        from voice_analytics_dagster.defs.transform.parse import start_dbt_parse
        from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR, get_settings

        settings = get_settings()
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(start_dbt_parse(settings, self.warehouse.conninfo()).wait(), target)
        return subprocess.run(
            [dbt_executable(), *args, "--vars", json.dumps(dbt_vars(settings), sort_keys=True),
             "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
             "--target-path", str(target), "--log-path", str(target)],
            env={**os.environ, **dbt_env(settings, self.warehouse.conninfo())}, cwd=DBT_PROJECT_DIR,
            capture_output=True, text=True, check=False)


def _use_database(monkeypatch_or_env, name: str):
    from voice_analytics_dagster.lib.settings import reset_settings_cache

    monkeypatch_or_env["VOICE_ANALYTICS_DATABASE"] = name
    reset_settings_cache()


def _drop_database(server, name: str) -> None:
    import psycopg

    with psycopg.connect(server.url(dbname="postgres"), autocommit=True) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture
def fresh_db(server, monkeypatch):
    """A new, empty warehouse database for one test (selected with monkeypatch, so that a test's
    own monkeypatched settings are undone in the same order)."""
    from voice_analytics_dagster.lib.settings import reset_settings_cache

    name = "t_" + uuid.uuid4().hex[:12]
    monkeypatch.setenv("VOICE_ANALYTICS_DATABASE", name)
    reset_settings_cache()
    db = Db(name)
    db.warehouse.ensure_databases()
    yield db
    reset_settings_cache()
    _drop_database(server, name)


@contextlib.contextmanager
def setting(name: str, value: str):
    """A project setting (environment variable ``name``) for the block, for fixtures wider than
    a test (monkeypatch is per test); the previous value is restored afterwards."""
    from voice_analytics_dagster.lib.settings import reset_settings_cache

    previous = os.environ.get(name)
    os.environ[name] = value
    reset_settings_cache()
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
        reset_settings_cache()


@contextlib.contextmanager
def _selected_database(server, name: str):
    """Select database ``name`` through the environment (every layer reads it); afterwards
    restore the previous selection and drop the database."""
    try:
        with setting("VOICE_ANALYTICS_DATABASE", name):
            yield Db(name)
    finally:
        _drop_database(server, name)


@pytest.fixture(scope="module")
def module_db(server):
    """A warehouse database shared by the tests of one module (one pipeline run, many assertions)."""
    with _selected_database(server, "m_" + uuid.uuid4().hex[:12]) as db:
        db.warehouse.ensure_databases()
        yield db


@dataclass(frozen=True)
class PublishedSample:
    db: Db
    run_id: str  # the Dagster run that published it


@pytest.fixture(scope="session")
def sample_template(server, sample_dir, dbt_manifest) -> PublishedSample:
    """The real sample published once per test session by `voice-analytics run`, into a database
    no test uses directly: a module gets its own copy (``published_sample``). One pipeline run
    (about 50 s here) instead of one per module that needs a published sample."""
    from voice_analytics_dagster.tools.cli import main

    with _selected_database(server, "tpl_" + uuid.uuid4().hex[:12]) as db:
        db.warehouse.ensure_databases()
        assert main(["run", "--source", str(sample_dir)]) == 0, "the pipeline did not publish the real sample"
        run_id = db.scalar("select run_id from analytics.publication_log where status = 'published'")
        yield PublishedSample(db, run_id)


@pytest.fixture(scope="module")
def published_sample(server, sample_template) -> PublishedSample:
    """A private copy of the published sample for one module, which may change it freely.
    CREATE DATABASE ... TEMPLATE copies the files (about a second); the database-level grants
    live outside the copy (pg_database), so the BI role's are applied again as a run does."""
    import psycopg

    from voice_analytics_dagster.defs.publish.swap import ensure_bi_role
    from voice_analytics_dagster.lib.settings import get_settings

    name = "m_" + uuid.uuid4().hex[:12]
    template = sample_template.db.name
    with psycopg.connect(server.url(dbname="postgres"), autocommit=True) as conn:
        # a template must have no other session (pooled connections of the run that built it)
        conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where datname = %s", (template,))
        conn.execute(f'create database "{name}" template "{template}"')
    with _selected_database(server, name) as db:
        with db.connect() as conn:
            ensure_bi_role(conn, get_settings())
        yield PublishedSample(db, sample_template.run_id)


@pytest.fixture
def use_db(monkeypatch):
    """Point the environment at an existing database (for tests inside a module_db module)."""
    from voice_analytics_dagster.lib.settings import reset_settings_cache

    def _use(db: Db):
        monkeypatch.setenv("VOICE_ANALYTICS_DATABASE", db.name)
        reset_settings_cache()
        return db

    yield _use
    reset_settings_cache()


def copy_export(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.csv"):
        shutil.copy(f, dst / f.name)
    return dst
