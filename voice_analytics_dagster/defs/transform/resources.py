"""The dbt CLI resource of the transform stage, and the environment its dbt processes run in."""

import contextlib
import os
from collections.abc import Iterator

from dagster_dbt import DbtCliResource

from voice_analytics_dagster.defs.transform.dbt_cli import dbt_env, dbt_executable
from voice_analytics_dagster.defs.transform.project import dbt_project
from voice_analytics_dagster.lib.settings import get_settings
from voice_analytics_dagster.lib.warehouse import Warehouse


class LeanDbtCliResource(DbtCliResource):
    """dagster-dbt's DbtCliResource without two costs it pays on every ``cli()`` call that this
    project has no use for (measured with cProfile on a run of the real sample, 30 Nov):

    - an in-process dbt adapter (loads the profile, project and macros: 2.7 s per call), used only
      by ``fetch_column_metadata`` / ``fetch_row_counts``, which no asset here calls;
    - ``dbt --version`` in a subprocess (2.3 s, once per process) to learn the version of the dbt
      it runs: that is the dbt-core installed with this package (``dbt_executable()``), whose
      version the package metadata gives.

    A run has two dbt steps: ~7.5 s less per run, whatever the data size."""

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 - dagster-dbt's signature
        return None

    @property
    def _cli_version(self):
        from importlib.metadata import version as installed

        from packaging import version

        return version.parse(installed("dbt-core"))


def dbt_resource() -> DbtCliResource:
    return LeanDbtCliResource(project_dir=dbt_project, dbt_executable=dbt_executable())


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
