"""dagster.yaml as rendered for this project, validated against Dagster's own instance schema."""

import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster._core.run_coordinator import QueuedRunCoordinator

from voice_analytics_dagster.defs.automation.jobs import pipeline_job
from voice_analytics_dagster.lib.instance import WAREHOUSE_TAG, render_dagster_yaml, storage_url
from voice_analytics_dagster.lib.warehouse import ConnInfo

SOCKET_URL = ConnInfo("/tmp/va home/pgdata", 5432, "postgres", "", "x").url(dbname="dagster", driver="psycopg2")
TCP_URL = ConnInfo("db.internal", 5433, "etl", "p@ss:w/rd", "x").url(dbname="dagster", driver="psycopg2")


def test_storage_is_postgres_through_psycopg2_in_its_own_database():
    for url in (SOCKET_URL, TCP_URL):
        config = yaml.safe_load(render_dagster_yaml(url))
        assert "storage" not in config
        for key in ("run_storage", "event_log_storage", "schedule_storage"):
            assert config[key]["module"] == "voice_analytics_dagster.lib.compat"
            stored = config[key]["config"]["postgres_url"]
            # plain postgresql:// would let SQLAlchemy 2.1 pick psycopg 3 (TOOLCHAIN-NOTES.md)
            assert stored.startswith("postgresql+psycopg2://") and stored == url
            assert "/dagster" in stored
        assert storage_url(config) == url
    assert "host=%2Ftmp%2Fva+home%2Fpgdata" in SOCKET_URL
    assert "p%40ss%3Aw%2Frd@db.internal:5433/dagster" in TCP_URL


def test_one_warehouse_writer_at_a_time():
    coordinator = yaml.safe_load(render_dagster_yaml(TCP_URL, max_concurrent_runs=3))["run_coordinator"]
    assert coordinator["class"] == "QueuedRunCoordinator"
    assert coordinator["config"]["max_concurrent_runs"] == 3
    assert coordinator["config"]["tag_concurrency_limits"] == [{"key": WAREHOUSE_TAG, "value": "write", "limit": 1}]
    # the pipeline's runs carry the tag the limit counts
    assert pipeline_job.tags[WAREHOUSE_TAG] == "write"
    assert validate_config(QueuedRunCoordinator.config_type(), coordinator["config"]).success


def test_rendered_yaml_passes_dagsters_instance_schema(tmp_path):
    (tmp_path / "dagster.yaml").write_text(render_dagster_yaml(SOCKET_URL))
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    assert config["telemetry"]["enabled"] is False
    assert config["run_monitoring"]["enabled"] is True


def test_the_compose_stacks_dagster_yaml_names_the_same_pooled_storages(tmp_path, monkeypatch):
    """docker/dagster.yaml (the compose stack's instance, its URL from environment variables)
    uses the classes render_dagster_yaml names, the same run queue, and passes Dagster's schema."""
    import shutil
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "docker" / "dagster.yaml"
    stack = yaml.safe_load(path.read_text())
    ours = yaml.safe_load(render_dagster_yaml(SOCKET_URL))
    for key in ("run_storage", "event_log_storage", "schedule_storage"):
        assert (stack[key]["module"], stack[key]["class"]) == (ours[key]["module"], ours[key]["class"])
        assert stack[key]["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    assert "storage" not in stack
    assert stack["run_coordinator"]["config"]["tag_concurrency_limits"] == (
        ours["run_coordinator"]["config"]["tag_concurrency_limits"])
    for var in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(var, "x")
    shutil.copy(path, tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None and config["telemetry"]["enabled"] is False
