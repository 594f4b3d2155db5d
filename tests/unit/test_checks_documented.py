"""docs/CHECKS.md lists every check with its severity (the one place the brief asks for)."""

from __future__ import annotations

import json
import re

from voice_analytics_dagster.defs.transform.project import dbt_project
from voice_analytics_dagster.lib.settings import PROJECT_ROOT

DOC = (PROJECT_ROOT / "docs" / "CHECKS.md").read_text()


def _python_checks():
    from voice_analytics_dagster.definitions import defs
    from voice_analytics_dagster.defs.transform.assets import voice_dbt_models, voice_dbt_session_models

    graph = defs.resolve_asset_graph()
    dbt_checks = set(voice_dbt_models.check_keys) | set(voice_dbt_session_models.check_keys)
    return {k for k in graph.asset_check_keys if k not in dbt_checks}


def test_every_python_check_is_documented_with_its_severity():
    checks = _python_checks()
    assert len(checks) >= 4
    for key in checks:
        row = [line for line in DOC.splitlines() if line.startswith(f"| `{key.name}`")]
        assert row, f"docs/CHECKS.md does not list the check {key.name}"
        assert re.search(r"\| (error|warn) \|", row[0]), f"no severity for {key.name}"


def test_every_kind_of_dbt_test_and_severity_is_documented():
    manifest = json.loads(dbt_project.manifest_path.read_text())
    kinds = set()
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test":
            continue
        name = (node.get("test_metadata") or {}).get("name") or "singular"
        kinds.add((name, node["config"]["severity"].lower()))
    assert kinds
    for name, severity in kinds:
        rows = [line for line in DOC.splitlines() if f"`{name}`" in line]
        assert any(f"| {severity} |" in r for r in rows), f"docs/CHECKS.md lacks dbt test {name} with severity {severity}"


def test_no_not_null_test_repeats_an_enforced_not_null_constraint():
    """A not_null test on a column whose enforced contract already declares NOT NULL cannot fail
    (PostgreSQL refuses the row when the model is built): it only costs a scan. Key columns keep
    theirs, by the convention that every key is tested unique and not_null."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    nodes = manifest["nodes"]
    keys: dict[str, set[str]] = {}
    for t in nodes.values():
        md = t.get("test_metadata") or {}
        if t["resource_type"] == "test" and md.get("name") == "unique":
            keys.setdefault(t["attached_node"], set()).add(md["kwargs"]["column_name"])
        if t["resource_type"] == "test" and md.get("name") == "unique_combination":
            keys.setdefault(t["attached_node"], set()).update(md["kwargs"].get("columns") or [])
    redundant = []
    for t in nodes.values():
        md = t.get("test_metadata") or {}
        if t["resource_type"] != "test" or md.get("name") != "not_null":
            continue
        model, column = nodes[t["attached_node"]], md["kwargs"]["column_name"]
        enforced = model["config"].get("contract", {}).get("enforced")
        constrained = any(c["type"] == "not_null" for c in model["columns"].get(column, {}).get("constraints", []))
        if enforced and constrained and column not in keys.get(t["attached_node"], set()):
            redundant.append(f"{model['name']}.{column}")
    assert not redundant, redundant
