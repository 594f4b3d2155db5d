"""The Dagster instance: its home under VOICE_ANALYTICS_HOME and its storage in PostgreSQL
(dagster-postgres, in the warehouse's server, database ``dagster``): runs, event logs, schedules
and sensor ticks survive restarts and are shared by the CLI, the webserver and the daemon."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from voice_analytics_dagster.lib.settings import Settings
from voice_analytics_dagster.lib.warehouse import Warehouse

# Runs that write the warehouse carry this tag; the run queue admits one at a time.
WAREHOUSE_TAG = "voice_analytics/warehouse"


def render_dagster_yaml(storage_url: str, max_concurrent_runs: int = 4) -> str:
    """dagster.yaml for this project. Pure."""
    from voice_analytics_dagster.lib.compat import MODULE, STORAGE_CLASSES

    config = {
        # dagster-postgres's three storages, with pooled connections (storage.py)
        **{key: {"module": MODULE, "class": name, "config": {"postgres_url": storage_url}}
           for key, name in STORAGE_CLASSES.items()},
        "run_coordinator": {
            "module": "dagster.core.run_coordinator",
            "class": "QueuedRunCoordinator",
            "config": {
                "max_concurrent_runs": max_concurrent_runs,
                # two runs that write the warehouse never run at once
                "tag_concurrency_limits": [{"key": WAREHOUSE_TAG, "value": "write", "limit": 1}],
            },
        },
        "run_monitoring": {"enabled": True, "poll_interval_seconds": 30},
        "telemetry": {"enabled": False},
    }
    return yaml.safe_dump(config, sort_keys=False)


def storage_url(config: dict) -> str:
    """The storage URL of a dagster.yaml that render_dagster_yaml wrote (KeyError otherwise)."""
    return config["event_log_storage"]["config"]["postgres_url"]


def ensure_dagster_home(settings: Settings, warehouse: Warehouse | None = None) -> Path:
    """Write dagster.yaml (when it changed) and point DAGSTER_HOME at it for this process and
    its children."""
    warehouse = warehouse or Warehouse(settings)
    warehouse.ensure_databases()
    home = settings.dagster_home
    home.mkdir(parents=True, exist_ok=True)
    path = home / "dagster.yaml"
    text = render_dagster_yaml(warehouse.dagster_storage_url())
    if not path.exists() or path.read_text() != text:
        # the storage URL may carry the server's password: readable by the owner only
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)  # also when a stale .tmp existed with other modes
            fh.write(text)
        os.replace(tmp, path)
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def open_instance(settings: Settings, warehouse: Warehouse | None = None):
    import dagster as dg

    ensure_dagster_home(settings, warehouse)
    return dg.DagsterInstance.get()
