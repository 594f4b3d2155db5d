"""`voice-analytics ui`: the Dagster webserver and daemon for this project, on 127.0.0.1.

The daemon is what runs schedules, sensors and the run queue; without it the UI shows the
schedule but never ticks. Both processes share the project's DAGSTER_HOME (storage in PostgreSQL)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from voice_analytics_dagster.defs.transform.parse import prepare_dbt
from voice_analytics_dagster.lib.instance import ensure_dagster_home
from voice_analytics_dagster.lib.settings import PROJECT_ROOT, get_settings
from voice_analytics_dagster.lib.warehouse import Warehouse


def ui_commands(host: str, port: int, workspace: Path, bin_dir: Path) -> list[list[str]]:
    """The two processes to start. Pure."""
    return [
        [str(bin_dir / "dagster-webserver"), "-h", host, "-p", str(port), "-w", str(workspace)],
        [str(bin_dir / "dagster-daemon"), "run", "-w", str(workspace)],
    ]


def ui_environment(environ: Mapping[str, str], dagster_home: Path) -> dict[str, str]:
    """The processes' environment. Pure. This checkout first on PYTHONPATH: Dagster's code server
    imports the module named in workspace.yaml from sys.path, which may otherwise hold another
    installed copy of the package (an editable install of another checkout)."""
    path = [str(PROJECT_ROOT), *[p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**environ, "DAGSTER_HOME": str(dagster_home), "PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}


def start_ui(host: str = "127.0.0.1", port: int = 3000, log_path: Path | None = None) -> list[subprocess.Popen]:
    """Start webserver and daemon; their output goes to the terminal, or appended to ``log_path``."""
    settings = get_settings()
    ensure_dagster_home(settings, Warehouse(settings))
    prepare_dbt()
    env = ui_environment(os.environ, settings.dagster_home)
    bin_dir = Path(sys.executable).parent
    output = open(log_path, "ab") if log_path is not None else None
    procs = []
    try:
        for cmd in ui_commands(host, port, PROJECT_ROOT / "workspace.yaml", bin_dir):
            # own process group: a terminal's Ctrl-C is handled here, and stopping kills the children
            procs.append(subprocess.Popen(cmd, cwd=PROJECT_ROOT, env=env, start_new_session=True,
                                          stdout=output, stderr=subprocess.STDOUT if output else None))
    except BaseException:
        stop_ui(procs)  # never leave a webserver behind without its daemon
        raise
    finally:
        if output is not None:
            output.close()  # the children hold their own descriptors
    return procs


def stop_ui(procs: list[subprocess.Popen], timeout: float = 20) -> None:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    deadline = time.time() + timeout
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def run_ui(host: str = "127.0.0.1", port: int = 3000) -> int:
    procs = start_ui(host, port)
    print(f"Dagster UI: http://{host}:{port}  (webserver + daemon; Ctrl-C stops both)", flush=True)
    stopping = False

    def _stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        while not stopping and all(p.poll() is None for p in procs):
            time.sleep(0.5)
    finally:
        stop_ui(procs)
    return 0 if stopping else 1
