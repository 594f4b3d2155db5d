"""The pinned Apache Superset, in a virtualenv of its own (``VOICE_ANALYTICS_SUPERSET_VENV``).

Superset pins SQLAlchemy < 2 and pandas < 2.2, the pipeline SQLAlchemy 2.1 and pandas 3: they
cannot share an environment. Superset 6.1's wheel also misses three of its run-time imports
(rich, cachetools, and a flask-caching that works with its Flask), installed here explicitly;
psycopg2 is its PostgreSQL driver.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

SUPERSET_VERSION = "6.1.0"
REQUIREMENTS = (
    f"apache-superset=={SUPERSET_VERSION}",
    "rich==15.0.0",
    "cachetools==8.0.3",
    "flask-caching==2.3.1",
    "psycopg2-binary==2.9.13",
)
# written last: a virtualenv without it is incomplete (an interrupted install) and is installed again
STAMP = ".voice-analytics-superset"


class InstallError(RuntimeError):
    """pip could not install Superset (the message holds the end of pip's output)."""


def stamp_text() -> str:
    return "\n".join(REQUIREMENTS) + "\n"


def is_installed(venv: Path) -> bool:
    """Whether ``venv`` holds exactly these pins (a venv of other pins is reinstalled)."""
    stamp = venv / STAMP
    return stamp.exists() and stamp.read_text() == stamp_text() and (venv / "bin" / "superset").exists()


def install_commands(venv: Path, python: str = sys.executable) -> list[list[str]]:
    """The commands that create the virtualenv and install the pins. Pure."""
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    return [[python, "-m", "venv", "--clear", str(venv)], [*pip, "--upgrade", "pip"], [*pip, *REQUIREMENTS]]


def ensure_installed(venv: Path, say: Callable[[str], None] = print) -> float | None:
    """Install Superset into ``venv`` unless it is there; the seconds it took, None when it was there."""
    if is_installed(venv):
        return None
    say(f"installing Apache Superset {SUPERSET_VERSION} into {venv} (a few minutes)")
    started = time.monotonic()
    venv.parent.mkdir(parents=True, exist_ok=True)
    for cmd in install_commands(venv, _base_python()):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
            raise InstallError(f"`{' '.join(cmd[:4])} ...` failed (exit {done.returncode}):\n{tail}")
    (venv / STAMP).write_text(stamp_text())
    return time.monotonic() - started


def _base_python() -> str:
    """The interpreter under this process's virtualenv: a venv made from a venv's python would
    see neither, but naming the base interpreter keeps the new one independent of ours."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return str(base) if base.exists() else sys.executable
