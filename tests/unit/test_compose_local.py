"""The pure pieces that run docker-compose.yml's processes without Docker (tests/compose_topology.py):
Compose's interpolation, the env file, the image's CMD/ENV/COPY, and the rewriting of service
names, ports and container paths to this machine's. The real files are read where they matter."""

from __future__ import annotations

import pytest
import yaml

from tests.compose_topology import (
    DAGSTER_YAML,
    DOCKERFILE,
    ENV_EXAMPLE,
    WORKSPACE_YAML,
    ComposeError,
    dockerfile_image,
    graphql_launch_run,
    interpolate,
    load_compose,
    localize_command,
    localize_environment,
    localize_instance_yaml,
    localize_workspace,
    read_env_file,
    service_command,
    service_environment,
)


@pytest.mark.parametrize("text, env, expected", [
    ("${A}", {"A": "x"}, "x"),
    ("${A}", {}, ""),
    ("${A:-d}", {"A": ""}, "d"),
    ("${A-d}", {"A": ""}, ""),
    ("${A-d}", {}, "d"),
    ("${A:-0 2 * * *}", {}, "0 2 * * *"),
    ("a$${A}b", {"A": "x"}, "a${A}b"),
    ("postgresql://${U:-voice}:${P:?set P}@postgres:5432/${D:-db}", {"P": "pw"}, "postgresql://voice:pw@postgres:5432/db"),
])
def test_interpolation_follows_compose(text, env, expected):
    assert interpolate(text, env) == expected


@pytest.mark.parametrize("text, env", [("${P:?set P in .env}", {}), ("${P:?set P in .env}", {"P": ""}),
                                       ("${P?unset}", {})])
def test_a_required_variable_refuses_like_compose(text, env):
    with pytest.raises(ComposeError, match="P: "):
        interpolate(text, env)


def test_env_file_lines():
    assert read_env_file("# c\n\nA=1\nB=\nC=0 2 * * *\n") == {"A": "1", "B": "", "C": "0 2 * * *"}
    with pytest.raises(ComposeError):
        read_env_file("NOT A PAIR\n")


def test_the_real_compose_file_needs_the_secrets_dotenv_example_leaves_empty():
    env = read_env_file(ENV_EXAMPLE.read_text())
    with pytest.raises(ComposeError, match="POSTGRES_PASSWORD"):
        service_environment(load_compose(), "postgres", env)


def test_the_dockerfile_gives_the_code_server_command_env_and_copied_files():
    image = dockerfile_image(DOCKERFILE.read_text())
    assert image.cmd[:3] == ["dagster", "code-server", "start"]
    assert image.env["DAGSTER_HOME"] and image.env["VOICE_ANALYTICS_HOME"]
    assert image.copies[image.env["DAGSTER_HOME"] + "/dagster.yaml"] == "docker/dagster.yaml"
    assert "docker/workspace.yaml" in image.copies.values()
    text = 'FROM x\nENV A=1 \\\n    B="two words"\nCOPY a /b/c.yaml\nCOPY d ./\nCMD ["run", "-p", "1"]\n'
    assert dockerfile_image(text) == type(image)(["run", "-p", "1"], {"A": "1", "B": "two words"}, {"/b/c.yaml": "a"})
    with pytest.raises(ComposeError):
        dockerfile_image("FROM x\nCMD run\n")


def test_service_commands_come_from_compose_or_the_image():
    compose = {"services": {"a": {"command": ["x", "-w", "${W:-/w.yaml}"]}, "b": {}, "c": {"command": "y --n 1"}}}
    assert service_command(compose, "a", {}, ["img"]) == ["x", "-w", "/w.yaml"]
    assert service_command(compose, "b", {}, ["img", "-p", "4"]) == ["img", "-p", "4"]
    assert service_command(compose, "c", {}, []) == ["y", "--n", "1"]


def test_commands_listen_on_this_machine():
    cmd = ["dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", "/opt/dagster/workspace.yaml"]
    assert localize_command(cmd, "127.0.0.1", 41234, {"/opt/dagster/workspace.yaml": "/tmp/w.yaml"}) == [
        "dagster-webserver", "-h", "127.0.0.1", "-p", "41234", "-w", "/tmp/w.yaml"]
    assert localize_command(["d", "run", "-w", "/x"], "127.0.0.1") == ["d", "run", "-w", "/x"]


def test_environment_service_names_ports_and_paths_become_local():
    env = {"URL": "postgresql://voice:p%40ss@postgres:5432/db", "HOST": "postgres", "DIR": "/data/landing",
           "OTHER": "http://localhost:3000", "CRON": "0 2 * * *", "NAME": "postgresql"}
    assert localize_environment(env, {"postgres": "127.0.0.1"}, {5432: 6001}, {"/data/landing": "/tmp/l"}) == {
        "URL": "postgresql://voice:p%40ss@127.0.0.1:6001/db", "HOST": "127.0.0.1", "DIR": "/tmp/l",
        "OTHER": "http://localhost:3000", "CRON": "0 2 * * *", "NAME": "postgresql"}


def test_the_real_instance_and_workspace_point_at_local_ports():
    text = localize_instance_yaml(DAGSTER_YAML.read_text(), 6001)
    storages = yaml.safe_load(text)
    for key in ("run_storage", "event_log_storage", "schedule_storage"):
        assert storages[key]["config"]["postgres_db"]["port"] == 6001
        assert storages[key]["config"]["postgres_db"]["hostname"] == {"env": "DAGSTER_PG_HOST"}
    with pytest.raises(ComposeError):
        localize_instance_yaml("run_storage: {}\n", 6001)
    workspace = localize_workspace(yaml.safe_load(WORKSPACE_YAML.read_text()), {"code-location": "127.0.0.1"}, 4555)
    [entry] = workspace["load_from"]
    assert entry["grpc_server"] == {"host": "127.0.0.1", "port": 4555, "location_name": "voice_analytics"}


def test_launch_run_request():
    request = graphql_launch_run("loc", "job", {"resources": {}}, {"k": "v"})
    assert "launchRun(executionParams: $params)" in request["query"]
    assert request["variables"]["params"] == {
        "selector": {"repositoryLocationName": "loc", "repositoryName": "__repository__", "jobName": "job"},
        "runConfigData": {"resources": {}}, "executionMetadata": {"tags": [{"key": "k", "value": "v"}]}}


def _image_tags():
    """Every image the compose files name, with their defaults interpolated, and the Dockerfile's base."""
    from tests.compose_topology import COMPOSE_FILE, PROJECT_ROOT

    env = {"POSTGRES_PASSWORD": "x", "MB_DB_PASS": "x", "VOICE_ANALYTICS_HASH_KEY": "x",
           "VOICE_ANALYTICS_BI_PASSWORD": "x", "MB_ADMIN_PASSWORD": "x"}
    tags = []
    for path in (COMPOSE_FILE, PROJECT_ROOT / ".devcontainer" / "docker-compose.devcontainer.yml"):
        for service in (yaml.safe_load(path.read_text()).get("services") or {}).values():
            if "image" in service:
                tags.append(interpolate(service["image"], env))
    tags += [line.split()[1] for line in DOCKERFILE.read_text().splitlines() if line.startswith("FROM ")]
    return tags


def test_every_image_is_pinned_to_a_release():
    tags = _image_tags()
    assert any(t.startswith("metabase/metabase:") for t in tags) and any(t.startswith("postgres:") for t in tags)
    for tag in tags:
        if tag.startswith("voice-analytics:"):
            continue  # built from this repository's Dockerfile
        name, _, version = tag.partition(":")
        assert version and version != "latest", tag
        # the parts that name one release: PostgreSQL major.minor, Python and Metabase x.y.z
        # (postgres:17 or python:3.11 would move to each new release)
        parts = {"postgres": 2, "python": 3, "metabase/metabase": 3}[name]
        assert len(version.lstrip("v").split("-")[0].split(".")) >= parts, tag
