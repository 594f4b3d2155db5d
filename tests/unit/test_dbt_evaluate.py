"""The dbt-evaluate command's pure pieces: the packages it installs, the dbt commands it runs and
how it reads the evaluator's results (tests/integration/test_dbt_evaluate.py runs it for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from voice_analytics_dagster.tools.dbt_evaluate import (
    EvaluateError,
    Report,
    RuleResult,
    dbt_commands,
    not_run,
    package_name,
    packages_yml,
    render,
    rule_results,
)


def test_packages_are_installed_as_local_paths():
    text = packages_yml([Path("/tmp/x/dbt_project_evaluator"), Path("/tmp/x/dbt_utils")])
    assert yaml.safe_load(text) == {"packages": [{"local": "/tmp/x/dbt_project_evaluator"},
                                                 {"local": "/tmp/x/dbt_utils"}]}


def test_the_build_selects_the_evaluator_package_only():
    deps, build = dbt_commands()
    assert deps == ["deps"]
    assert build == ["build", "--select", "package:dbt_project_evaluator"]
    assert dbt_commands('{"a": 1}')[1][-2:] == ["--vars", '{"a": 1}']


def test_package_name_is_read_from_its_project_file(tmp_path):
    (tmp_path / "dbt_project.yml").write_text("name: dbt_utils\nversion: '1'\n")
    assert package_name(tmp_path) == "dbt_utils"
    with pytest.raises(EvaluateError, match="no dbt_project.yml"):
        package_name(tmp_path / "missing")


def _manifest():
    return {"nodes": {
        "model.dbt_project_evaluator.fct_root_models": {
            "resource_type": "model", "name": "fct_root_models", "package_name": "dbt_project_evaluator",
            "relation_name": '"db"."marts"."fct_root_models"'},
        "model.dbt_project_evaluator.fct_model_fanout": {
            "resource_type": "model", "name": "fct_model_fanout", "package_name": "dbt_project_evaluator",
            "relation_name": '"db"."marts"."fct_model_fanout"'},
        "test.dbt_project_evaluator.is_empty_fct_root_models_": {
            "resource_type": "test", "name": "is_empty_fct_root_models_", "package_name": "dbt_project_evaluator",
            "depends_on": {"nodes": ["model.dbt_project_evaluator.fct_root_models"]}},
        "test.dbt_project_evaluator.is_empty_fct_model_fanout_": {
            "resource_type": "test", "name": "is_empty_fct_model_fanout_", "package_name": "dbt_project_evaluator",
            "depends_on": {"nodes": ["model.dbt_project_evaluator.fct_model_fanout"]}},
        "test.voice_analytics.unique_fact_session_id": {
            "resource_type": "test", "name": "unique_fact_session_id", "package_name": "voice_analytics",
            "depends_on": {"nodes": ["model.voice_analytics.fact"]}},
    }}


def test_rules_are_the_evaluator_tests_named_by_their_model():
    run_results = {"results": [
        {"unique_id": "test.dbt_project_evaluator.is_empty_fct_root_models_", "status": "pass", "failures": 0},
        {"unique_id": "test.dbt_project_evaluator.is_empty_fct_model_fanout_", "status": "warn", "failures": 2},
        {"unique_id": "model.dbt_project_evaluator.fct_model_fanout", "status": "success", "failures": None},
        {"unique_id": "test.voice_analytics.unique_fact_session_id", "status": "fail", "failures": 3},
    ]}
    rules = rule_results(run_results, _manifest())
    assert [(r.rule, r.status, r.failures, r.warns) for r in rules] == [
        ("fct_model_fanout", "warn", 2, True), ("fct_root_models", "pass", 0, False)]
    assert rules[0].relation == '"db"."marts"."fct_model_fanout"'


def test_render_lists_the_warning_rules_with_their_rows():
    report = Report([
        RuleResult("fct_model_fanout", "t1", "warn", 1, None, ("parent", "leaf_children"),
                   (("fact_voice_ai_sessions", "a, b, c"),)),
        RuleResult("fct_root_models", "t2", "pass", 0),
    ])
    text = render(report)
    assert "-- fct_model_fanout (warn, 1 failing) --" in text
    assert "fact_voice_ai_sessions | a, b, c" in text
    assert "fct_root_models" not in text.split("\n\n")[0].replace("fct_model_fanout", "")
    assert text.splitlines()[-1] == "1 of 2 dbt-project-evaluator rules warn: fct_model_fanout"
    assert render(Report([RuleResult("r", "t", "pass", 0)])).splitlines()[-1] == \
        "0 of 1 dbt-project-evaluator rules warn"


def test_errored_or_skipped_nodes_are_reported():
    run_results = {"results": [
        {"unique_id": "model.dbt_project_evaluator.a", "status": "error"},
        {"unique_id": "test.dbt_project_evaluator.b", "status": "skipped"},
        {"unique_id": "test.dbt_project_evaluator.c", "status": "warn"},
    ]}
    assert not_run(run_results) == ["model.dbt_project_evaluator.a", "test.dbt_project_evaluator.b"]
