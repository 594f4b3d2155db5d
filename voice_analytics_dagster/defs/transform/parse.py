"""dbt's project parse, a build-time step: the manifest the code location loads (``prepare_dbt``,
``make setup`` / ``voice-analytics prepare``), and the partial-parse state each run's dbt builds
start from (``start_dbt_parse``): parsed with the run's connection and vars, so that dbt does not
parse the whole project again in every step."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import uuid
from pathlib import Path

from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR, DBT_TARGET_DIR

DBT_SOURCES = ("models", "macros", "tests", "snapshots", "dbt_project.yml", "profiles.yml")


def manifest_path() -> Path:
    return DBT_TARGET_DIR / "manifest.json"


def manifest_is_stale() -> bool:
    """True when the manifest is missing or older than any file of the dbt project."""
    manifest = manifest_path()
    if not manifest.exists():
        return True
    built = manifest.stat().st_mtime
    for name in DBT_SOURCES:
        path = DBT_PROJECT_DIR / name
        files = [path] if path.is_file() else list(path.rglob("*")) if path.exists() else []
        if any(f.is_file() and f.stat().st_mtime > built for f in files):
            return True
    return False


def prepare_dbt(force: bool = False) -> Path:
    """The build-time step: ``dbt parse`` writes the manifest that the code location loads.
    Run by ``make setup`` / ``voice-analytics prepare``, and by ``run`` when the dbt project
    changed since; never at import."""
    from voice_analytics_dagster.defs.transform.dbt_cli import dbt_executable

    if not (force or manifest_is_stale()):
        return manifest_path()
    # one parse at a time per checkout: two runs (or test workers) started after an edit would
    # otherwise write target/ together; the second finds the manifest current once it has the lock
    manifest_path().parent.mkdir(parents=True, exist_ok=True)
    with open(manifest_path().parent / ".prepare.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or manifest_is_stale():
            subprocess.run(
                [dbt_executable(), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR),
                 "--profiles-dir", str(DBT_PROJECT_DIR)],
                check=True,
                cwd=DBT_PROJECT_DIR,
            )
    return manifest_path()


# The dbt connection values and --vars are part of dbt's partial-parse state check
# (dbt/parser/manifest.py: profile_hash hashes host, port, user, database, schema; vars_hash the
# --vars). The build-time parse above uses the profile's defaults and no vars, so every `dbt build`
# of a run found "profile has changed" and re-parsed the whole project, in each of the run's two
# dbt steps: 2 x 3.5 s on an idle machine, measured 25 s + 9 s with the two cores shared
# (dbt.log between "Registered adapter" and "Found 19 models"). Parsing once with the run's own
# connection and vars lets both steps, and every later run on the same warehouse, parse partially.
PARSE_ENV_KEYS = ("VOICE_ANALYTICS_DBT_HOST", "VOICE_ANALYTICS_DBT_PORT", "VOICE_ANALYTICS_DBT_USER",
                  "VOICE_ANALYTICS_DBT_DBNAME")


def parse_fingerprint(env: dict[str, str], dbt_vars: dict) -> str:
    """What the partial-parse state depends on, among what a run varies (no secret in it)."""
    state = {"env": {k: env.get(k) for k in PARSE_ENV_KEYS}, "vars": dbt_vars}
    return hashlib.sha256(json.dumps(state, sort_keys=True).encode()).hexdigest()


def parse_states_dir() -> Path:
    return DBT_TARGET_DIR / "parse"


def parse_state_path(fingerprint: str) -> Path:
    """Where the partial-parse state parsed for ``fingerprint`` is kept: a folder per fingerprint,
    written only by a parse with that fingerprint, so that runs on different warehouses from one
    checkout (two homes, test sessions side by side) never replace each other's state, and the
    state ``dagster-dbt project prepare-and-package`` writes (default profile, no vars) never passes
    for a run's."""
    return parse_states_dir() / fingerprint[:16] / "partial_parse.msgpack"


def latest_parse_state() -> int | None:
    """When a parse last wrote a state (ns), None before the first: a run that parsed moved it."""
    times = [p.stat().st_mtime_ns for p in parse_states_dir().glob("*/partial_parse.msgpack")]
    return max(times, default=None)


class PendingParse:
    """A ``dbt parse`` running in the background (see start_dbt_parse); ``wait`` installs its
    partial-parse state at ``state`` or raises if the parse failed. Idempotent."""

    def __init__(self, process: subprocess.Popen | None, scratch: Path | None, state: Path):
        self.process, self.scratch, self.state = process, scratch, state
        self._done = process is None

    def wait(self) -> Path:
        """The state, once it is installed."""
        import shutil

        if self._done:
            return self.state
        self._done = True
        try:
            if self.process.wait() != 0:
                raise subprocess.CalledProcessError(self.process.returncode, self.process.args)
            self.state.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.scratch / "partial_parse.msgpack", self.state)
        finally:
            shutil.rmtree(self.scratch, ignore_errors=True)
        return self.state


def start_dbt_parse(settings, conn) -> PendingParse:
    """Parse the project with the run's dbt connection and vars unless a state parsed with them is
    kept (parse_state_path). Each of the run's dbt invocations starts from a copy of it
    (invocation_target), so the builds of the run parse partially.

    The parse runs in the background while the files load (it is needed by the dbt step only:
    6 s of a run into a new database, overlapped so with ingestion); ``wait()`` finishes it.
    It writes to a folder of its own and only its partial_parse.msgpack is moved into place (an
    atomic rename): manifest.json, which other processes (code servers, a concurrent run) read, is
    left as the build step wrote it."""
    from voice_analytics_dagster.defs.transform.dbt_cli import dbt_env, dbt_executable, dbt_vars

    prepare_dbt()
    env = dbt_env(settings, conn)
    variables = dbt_vars(settings)
    state = parse_state_path(parse_fingerprint(env, variables))
    if state.exists():
        return PendingParse(None, None, state)
    scratch = DBT_TARGET_DIR / f".parse-{uuid.uuid4().hex[:12]}"
    process = subprocess.Popen(
        [dbt_executable(), "parse", "--quiet", "--vars", json.dumps(variables, sort_keys=True),
         "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
         "--target-path", str(scratch)],
        cwd=DBT_PROJECT_DIR, env={**os.environ, **env},
    )
    return PendingParse(process, scratch, state)


# The background ``dbt parse`` that ``voice-analytics run`` started beside ingestion, waited for by
# the run's dbt step, which executes in the same process (in-process executor).
pending_parse: PendingParse | None = None


def ensure_dbt_parse(settings, conn) -> Path:
    """Before dbt runs: the run's background parse finished and installed, or, in a run the daemon
    launched (the schedule, the sensor, the UI), a parse now unless a state with this run's
    connection and vars is kept; without it each of the run's dbt steps parsed the whole project
    again ("config ... have changed"). The state's path."""
    return (pending_parse or start_dbt_parse(settings, conn)).wait()
