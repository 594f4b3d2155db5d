"""Superset's own state under ``VOICE_ANALYTICS_SUPERSET_HOME``: its configuration, its metadata
database (SQLite: one local user, no workers), the admin, and the web server in the background
(gunicorn, a pid file and a log file)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from voice_analytics_dagster.lib.settings import SupersetSettings
from voice_analytics_dagster.tools.superset.install import SUPERSET_VERSION

CONFIG_FILE = "superset_config.py"
PID_FILE = "superset.pid"
LOG_FILE = "superset.log"
# written after the metadata database is migrated and Superset's roles exist
INITIALISED = f".initialised-{SUPERSET_VERSION}"
ADMIN_EMAIL = "admin@voice-analytics.local"


class SupersetServerError(RuntimeError):
    """Superset did not initialise or start (the message holds the end of its output)."""


def config_text(home: Path) -> str:
    """superset_config.py. Pure. Secrets are not in it: SECRET_KEY comes from the environment of
    the processes started here (SUPERSET_SECRET_KEY, which Superset's own config reads)."""
    return (
        "# Written by `voice-analytics superset up` on every start (voice_analytics_dagster/tools/superset/server.py).\n"
        f"SQLALCHEMY_DATABASE_URI = {('sqlite:///' + str(home / 'superset.db') + '?check_same_thread=false')!r}\n"
        f"DATA_DIR = {str(home)!r}\n"
        # one user on 127.0.0.1: no examples, no telemetry, no async queries
        "SUPERSET_LOAD_EXAMPLES = False\n"
        # every chart of a dashboard renders, not only those scrolled into view (screenshots, tests)
        "FEATURE_FLAGS = {'DASHBOARD_VIRTUALIZATION': False}\n"
        "ROW_LIMIT = 10000\n"
        "SQL_MAX_ROW = 10000\n"
    )


def environment(ss: SupersetSettings, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of every Superset process. Pure. Ours minus what would leak the pipeline's
    virtualenv or settings into Superset's interpreter."""
    env = {k: v for k, v in environ.items()
           if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not k.startswith("VOICE_ANALYTICS_")}
    env.update({
        "SUPERSET_CONFIG_PATH": str(ss.home / CONFIG_FILE),
        "SUPERSET_SECRET_KEY": ss.secret_key,
        "SUPERSET_HOME": str(ss.home),
        "FLASK_APP": "superset.app:create_app()",
        "PATH": f"{ss.venv / 'bin'}{os.pathsep}{environ.get('PATH', '')}",
    })
    return env


def init_commands(ss: SupersetSettings) -> list[tuple[list[str], str | None]]:
    """Migrate the metadata database, create the admin, create Superset's roles; each with its
    standard input (the admin's password is typed at the prompt, never put on a command line). Pure."""
    superset = str(ss.venv / "bin" / "superset")
    password_twice = f"{ss.admin_password}\n{ss.admin_password}\n"
    return [
        ([superset, "db", "upgrade"], None),
        ([superset, "fab", "create-admin", "--username", ss.admin_user, "--firstname", "Voice",
          "--lastname", "Analytics", "--email", ADMIN_EMAIL], password_twice),
        ([superset, "init"], None),
    ]


def reset_password_command(ss: SupersetSettings) -> tuple[list[str], str]:
    """The admin's password set again (it changed in the environment since the admin was created). Pure."""
    return ([str(ss.venv / "bin" / "superset"), "fab", "reset-password", "--username", ss.admin_user],
            f"{ss.admin_password}\n{ss.admin_password}\n")


def serve_command(ss: SupersetSettings) -> list[str]:
    """gunicorn with one worker process and threads: two cores are shared with the pipeline. Pure."""
    return [str(ss.venv / "bin" / "gunicorn"), "--workers", "1", "--worker-class", "gthread", "--threads", "8",
            "--timeout", "120", "--bind", f"{ss.host}:{ss.port}", "--limit-request-line", "0",
            "--limit-request-field_size", "0", "superset.app:create_app()"]


def write_config(ss: SupersetSettings) -> None:
    ss.home.mkdir(parents=True, exist_ok=True)
    path = ss.home / CONFIG_FILE
    path.write_text(config_text(ss.home))
    path.chmod(0o600)


def _run(cmd: list[str], stdin: str | None, env: dict[str, str], log: Path) -> None:
    with open(log, "ab") as out:
        out.write(f"\n$ {' '.join(cmd[:4])}\n".encode())
        out.flush()
        done = subprocess.run(cmd, input=stdin.encode() if stdin else None, stdout=out, stderr=subprocess.STDOUT,
                              env=env, cwd=log.parent)
    if done.returncode != 0:
        raise SupersetServerError(f"`{' '.join(cmd[1:4])}` failed (exit {done.returncode}); "
                                  f"the end of {log}:\n{tail(log)}")


def initialise(ss: SupersetSettings, say: Callable[[str], None]) -> bool:
    """Migrate, create the admin and the roles once per home and Superset version; True when it did."""
    write_config(ss)
    if (ss.home / INITIALISED).exists():
        return False
    say("initialising Superset's metadata database and admin (about a minute)")
    env = environment(ss, os.environ)
    for cmd, stdin in init_commands(ss):
        _run(cmd, stdin, env, ss.home / LOG_FILE)
    (ss.home / INITIALISED).write_text(SUPERSET_VERSION + "\n")
    return True


def reset_admin_password(ss: SupersetSettings) -> None:
    cmd, stdin = reset_password_command(ss)
    _run(cmd, stdin, environment(ss, os.environ), ss.home / LOG_FILE)


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


def running_pid(ss: SupersetSettings) -> int | None:
    """The pid of the server this home started, if it still runs."""
    path = ss.home / PID_FILE
    if not path.exists():
        return None
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        path.unlink(missing_ok=True)  # a stale pid file: the server is gone
        return None
    except PermissionError:
        pass  # alive, another user's
    return pid


def healthy(ss: SupersetSettings, timeout: float = 5) -> bool:
    try:
        with urllib.request.urlopen(f"{ss.url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return False


def start(ss: SupersetSettings, say: Callable[[str], None], timeout: float = 300) -> bool:
    """Start the web server in the background unless it runs; wait until /health answers.
    True when it was started here."""
    if running_pid(ss) is not None and healthy(ss):
        return False
    if running_pid(ss) is None and healthy(ss):
        raise SupersetServerError(f"something else answers on {ss.url}: set VOICE_ANALYTICS_SUPERSET_PORT")
    log = ss.home / LOG_FILE
    if running_pid(ss) is None:
        say(f"starting Superset on {ss.url} (log: {log})")
        with open(log, "ab") as out:
            # a session of its own: it outlives this command, and `down` stops its whole group
            proc = subprocess.Popen(serve_command(ss), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=environment(ss, os.environ), cwd=ss.home, start_new_session=True)
        (ss.home / PID_FILE).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while not healthy(ss):
        if running_pid(ss) is None:
            raise SupersetServerError(f"Superset exited during start-up; the end of {log}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise SupersetServerError(f"Superset did not answer {ss.url}/health within {timeout:.0f} s; "
                                      f"the end of {log}:\n{tail(log)}")
        time.sleep(1)
    return True


def stop(ss: SupersetSettings, timeout: float = 30) -> bool:
    """Stop the server this home started (its process group); True when it was running."""
    pid = running_pid(ss)
    if pid is None:
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.3)
    else:
        os.killpg(pid, signal.SIGKILL)
    (ss.home / PID_FILE).unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    """A server started by this very process (the tests) stays a zombie until waited for."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def status(ss: SupersetSettings) -> dict[str, object]:
    pid = running_pid(ss)
    return {"running": pid is not None, "pid": pid, "healthy": pid is not None and healthy(ss),
            "url": ss.url, "home": str(ss.home), "venv": str(ss.venv), "log": str(ss.home / LOG_FILE)}


def status_text(state: Mapping[str, object]) -> str:
    """What `superset status` prints. Pure."""
    if not state["running"]:
        return f"Superset is not running (home {state['home']}); `voice-analytics superset up` starts it"
    health = "answers" if state["healthy"] else "does not answer /health yet"
    return f"Superset runs (pid {state['pid']}) on {state['url']} and {health}; log: {state['log']}"


