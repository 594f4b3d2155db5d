"""docker-compose.yml, its dev-container override and .env.example, checked without a Docker engine
(none on these machines): valid against the Compose specification's JSON schema (the copy that
the check-jsonschema package vendors from the compose-spec project), every variable documented,
no secret committed, health checks and named volumes in place."""

from __future__ import annotations

import copy
import importlib.resources
import json
import re

import jsonschema
import pytest
import yaml

from voice_analytics_dagster.lib.settings import PROJECT_ROOT

COMPOSE = PROJECT_ROOT / "docker-compose.yml"
OVERRIDE = PROJECT_ROOT / ".devcontainer" / "docker-compose.devcontainer.yml"
DEVCONTAINER = PROJECT_ROOT / ".devcontainer" / "devcontainer.json"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
VARIABLE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")
SECRET_NAME = re.compile(r"PASS|PASSWORD|SECRET|HASH_KEY|DATABASE_URL")


@pytest.fixture(scope="module")
def validator():
    schema = json.loads((importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
                         / "compose-spec.json").read_text())
    assert schema["$id"] == "compose_spec.json"
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _load(path):
    return yaml.safe_load(path.read_text())


@pytest.mark.parametrize("path", [COMPOSE, OVERRIDE], ids=["docker-compose.yml", "devcontainer override"])
def test_the_compose_files_follow_the_compose_specification(validator, path):
    errors = sorted(validator.iter_errors(_load(path)), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_the_schema_check_catches_a_broken_file(validator):
    broken = copy.deepcopy(_load(COMPOSE))
    broken["services"]["postgres"]["helthcheck"] = broken["services"]["postgres"].pop("healthcheck")
    broken["services"]["metabase"]["ports"] = "3030:3000"  # a string where a list is required
    assert len(list(validator.iter_errors(broken))) >= 2


def test_every_variable_is_in_env_example_and_every_entry_is_used():
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    listed = {line.split("=", 1)[0] for line in ENV_EXAMPLE.read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    assert used - listed == set(), "variables of docker-compose.yml missing from .env.example"
    assert listed - used == set(), ".env.example lists variables docker-compose.yml does not use"


def _environments(compose):
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment as a mapping, please"
        yield name, env


def test_no_secret_is_committed():
    compose = _load(COMPOSE)
    for name, env in _environments(compose):
        for key, value in env.items():
            if SECRET_NAME.search(key):
                refs = re.findall(r"\$\{([A-Z_0-9]+):\?[^}]+\}", str(value))
                assert refs, f"{name}.{key} must come from a required variable (${{VAR:?...}}), not the file"
    # and .env.example leaves every secret empty
    for line in ENV_EXAMPLE.read_text().splitlines():
        if "=" in line and not line.startswith("#") and SECRET_NAME.search(line.split("=")[0]):
            assert line.split("=", 1)[1] == "", f".env.example must not carry a secret: {line}"
    assert ".env" in (PROJECT_ROOT / ".gitignore").read_text().split()


def test_services_health_volumes_and_metabase_storage():
    compose = _load(COMPOSE)
    services = compose["services"]
    assert {"postgres", "code-location", "webserver", "daemon", "metabase", "metabase-provision"} <= set(services)
    for name, service in services.items():
        if name != "metabase-provision":
            assert "test" in service.get("healthcheck", {}), f"{name} has no health check"
    assert services["metabase-provision"]["restart"] == "no"
    assert "metabase" in services["metabase-provision"]["command"] and "provision" in services["metabase-provision"]["command"]
    # Metabase keeps its application data in PostgreSQL, not in its default H2 file
    mb = services["metabase"]["environment"]
    assert mb["MB_DB_TYPE"] == "postgres" and mb["MB_DB_HOST"] == "postgres"
    # every volume a service mounts by name is declared as a named volume
    declared = set(compose["volumes"])
    for name, service in services.items():
        for v in service.get("volumes", []):
            source = v.split(":")[0]
            if not source.startswith((".", "/")):
                assert source in declared, f"{name} mounts undeclared volume {source}"
    assert {"pgdata"} <= declared
    # the webserver and daemon load the code location over gRPC
    workspace = yaml.safe_load((PROJECT_ROOT / "docker" / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["grpc_server"]["host"] == "code-location"


def test_the_dev_container_opens_the_code_location_service():
    dev = json.loads(DEVCONTAINER.read_text())
    assert dev["service"] in _load(COMPOSE)["services"]
    assert dev["service"] in _load(OVERRIDE)["services"]
    assert dev["postCreateCommand"] == "make setup"
    for f in dev["dockerComposeFile"]:
        assert (DEVCONTAINER.parent / f).resolve().is_file(), f


def test_the_dockerfile_copies_what_exists():
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    for line in text.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (PROJECT_ROOT / source).exists(), f"Dockerfile copies a missing path: {source}"
    assert "voice_analytics_dagster.definitions" in text
