"""The dbt CLI resource of the transform stage, and the environment its dbt processes run in."""

import contextlib
import os
from collections.abc import Iterator

from dagster_dbt import DbtCliResource

from voice_analytics_dagster.defs.transform.dbt_cli import dbt_env, dbt_executable
from voice_analytics_dagster.defs.transform.project import dbt_project
from voice_analytics_dagster.lib.settings import get_settings
from voice_analytics_dagster.lib.warehouse import Warehouse


def dbt_resource() -> DbtCliResource:
    return DbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())


@contextlib.contextmanager
def dbt_environment(warehouse: Warehouse) -> Iterator[None]:
    """Export the dbt connection variables for the dbt subprocess, restoring them after."""
    env = dbt_env(get_settings(), warehouse.conninfo())
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
