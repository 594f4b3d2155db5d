"""The dbt project, alone in its module (``dagster-dbt project prepare-and-package --file`` refuses a
file that also defines ``@dbt_assets``). The manifest is prepared at build/dev time: by
``make setup`` / ``voice-analytics prepare``, or by ``prepare_if_dev()`` under ``dagster dev``;
importing this module never runs ``dbt parse``."""

from dagster_dbt import DbtProject

from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
dbt_project.prepare_if_dev()
