"""Dagster resources: the warehouse, the export source and dbt."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import dagster as dg
from dagster_dbt import DbtCliResource

from .dbt_support import dbt_env, dbt_executable
from .project import dbt_project
from .settings import get_settings
from .warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse of this environment (settings come from the environment)."""

    def get(self) -> Warehouse:
        return Warehouse(get_settings())

    @contextlib.contextmanager
    def dbt_environment(self) -> Iterator[None]:
        """Export the dbt connection variables for the dbt subprocess, restoring them after."""
        settings = get_settings()
        env = dbt_env(settings, Warehouse(settings).conninfo())
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


class ExportSourceResource(dg.ConfigurableResource):
    """Where exports come from: an export folder (five CSV files) or a landing folder of dated
    deliveries. Unset: the configured landing folder (VOICE_ANALYTICS_LANDING_DIR)."""

    source_dir: str | None = None

    def folder(self):
        from pathlib import Path

        if self.source_dir:
            return Path(self.source_dir).expanduser().resolve()
        landing = get_settings().landing_dir
        if landing is None:
            raise dg.Failure(
                "no export source: pass --source DIR (run config resources.export_source.config.source_dir) "
                "or set VOICE_ANALYTICS_LANDING_DIR"
            )
        return landing


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())
