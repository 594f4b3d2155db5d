"""Pure helpers around the dbt CLI: its arguments, its environment and the keyed-hash pads.
No I/O here, so that every rule is unit-tested without a database."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

from voice_analytics_dagster.lib.settings import Settings
from voice_analytics_dagster.lib.warehouse import ConnInfo

HMAC_BLOCK = 64  # SHA-256 block size in bytes


def hmac_pads(key: str) -> tuple[str, str]:
    """HMAC-SHA256's inner and outer padded keys (hex), as RFC 2104 defines them.

    The SQL macro ``anonymise`` computes H(outer || H(inner || m)), which is HMAC(key, m);
    a unit test checks it against Python's ``hmac``."""
    k = key.encode("utf-8")
    if len(k) > HMAC_BLOCK:
        k = hashlib.sha256(k).digest()
    k = k.ljust(HMAC_BLOCK, b"\0")
    inner = bytes(b ^ 0x36 for b in k)
    outer = bytes(b ^ 0x5C for b in k)
    return inner.hex(), outer.hex()


def dbt_env(settings: Settings, conn: ConnInfo) -> dict[str, str]:
    """Environment for a dbt process: where the warehouse is, and the HMAC pads as session
    settings (PGOPTIONS reaches libpq, never the SQL text, manifests or logs)."""
    inner, outer = hmac_pads(settings.hash_key)
    env = {
        "VOICE_ANALYTICS_DBT_HOST": conn.host,
        "VOICE_ANALYTICS_DBT_PORT": str(conn.port),
        "VOICE_ANALYTICS_DBT_USER": conn.user,
        "VOICE_ANALYTICS_DBT_DBNAME": conn.dbname,
        "DBT_ENV_SECRET_VOICE_ANALYTICS_PASSWORD": conn.password,
        "PGOPTIONS": f"-c voice_analytics.hmac_inner={inner} -c voice_analytics.hmac_outer={outer}",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    return env


def dbt_vars(settings: Settings) -> dict[str, object]:
    return {
        "min_cell_size": settings.min_cell_size,
        "asr_low_confidence_threshold": settings.asr_low_confidence_threshold,
    }


def dbt_build_args(settings: Settings, full_refresh: bool = False, extra_vars: dict | None = None) -> list[str]:
    args = ["build", "--vars", json.dumps({**dbt_vars(settings), **(extra_vars or {})}, sort_keys=True)]
    if full_refresh:
        args.append("--full-refresh")
    return args


def dbt_executable() -> str:
    """dbt from this interpreter's environment (the venv may not be on PATH)."""
    candidate = Path(sys.executable).parent / "dbt"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("dbt")
    if not found:
        raise FileNotFoundError("dbt executable not found next to Python or on PATH")
    return found


# dagster-dbt gives every invocation its own target folder, <step>-<run id prefix>-<hash>; the
# dbt step names its own the same way (invocation_folder_name)
INVOCATION_FOLDER = re.compile(r"^[A-Za-z0-9_]+-[0-9a-f]{7}-[0-9a-f]+$")
# target/parse/<fingerprint prefix>: the partial-parse state of one dbt connection and vars
PARSE_STATE_FOLDER = re.compile(r"^[0-9a-f]{16}$")


def invocation_folder_name(step: str, run_id: str, unique: str) -> str:
    """dagster-dbt's name for an invocation's target folder, which the bench reads (a run's
    folders are ``*-<run id prefix>-*``) and the prune recognises."""
    return f"{step}-{run_id[:7]}-{unique}"


def stale_invocation_folders(folders: list[tuple[str, float]], now: float, keep: int,
                             min_age_s: float, pattern: re.Pattern = INVOCATION_FOLDER) -> list[str]:
    """Which of dagster-dbt's per-invocation target folders (name, mtime) to delete: all but the
    ``keep`` newest, and never one younger than ``min_age_s`` (a step of another run may still be
    writing it). Why: dagster-dbt leaves each invocation's folder behind (manifest, compiled SQL,
    logs: several MB each), so a daily schedule filled the disk without bound. Other files of
    dbt's target (the prepared manifest, partial parse state) are not invocation folders. The same
    rule keeps the partial-parse states (``pattern`` PARSE_STATE_FOLDER): one per warehouse a
    checkout has built, 1.6 MB each."""
    ours = sorted((f for f in folders if pattern.match(f[0])), key=lambda f: f[1], reverse=True)
    return [name for name, mtime in ours[keep:] if now - mtime >= min_age_s]
