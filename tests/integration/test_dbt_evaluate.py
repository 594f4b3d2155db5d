"""`voice-analytics dbt-evaluate` for real: a copy of the project's dbt/ with two local packages
installed by `dbt deps`, built against a scratch database on the session's server, the warning
rules read back with their rows, and nothing left behind.

The two packages here are small stand-ins written by the test (the real dbt-project-evaluator
and dbt-utils are fetched by the developer, never committed): an "evaluator" whose one rule
lists the models in the project's marts folder named outside fct_/dim_, from dbt's graph as the real rules do, and
whose packages.yml asks the package hub for dbt_utils, as the real one does (unreachable here:
the command must point it at the local copy)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


@pytest.fixture
def packages(tmp_path):
    utils = tmp_path / "utils"
    _write(utils / "dbt_project.yml", """\
        name: dbt_utils
        version: '0.1.0'
        config-version: 2
        macro-paths: ["macros"]
        """)
    _write(utils / "macros" / "quoted.sql", """\
        {% macro quoted(text) %}'{{ text }}'{% endmacro %}
        """)
    evaluator = tmp_path / "evaluator"
    _write(evaluator / "dbt_project.yml", """\
        name: dbt_project_evaluator
        version: '1.0.0'
        config-version: 2
        models:
          dbt_project_evaluator:
            +materialized: table
        """)
    _write(evaluator / "packages.yml", """\
        packages:
          - package: dbt-labs/dbt_utils
            version: [">=1.0.0", "<2.0.0"]
        """)
    _write(evaluator / "models" / "fct_marts_named_outside_prefixes.sql", """\
        {%- set names = [] %}
        {%- for node in graph.nodes.values() if node.resource_type == 'model'
              and node.package_name == project_name and node.path.startswith('marts/')
              and not (node.name.startswith('fct_') or node.name.startswith('dim_')) %}
          {%- do names.append(node.name) %}
        {%- endfor %}
        {%- for name in names %}
        select {{ dbt_utils.quoted(name) }}::text as resource_name{% if not loop.last %} union all{% endif %}
        {%- endfor %}
        {%- if not names %}select null::text as resource_name where false{% endif %}
        """)
    _write(evaluator / "models" / "fct_nothing_wrong.sql", "select 1 as x where false\n")
    _write(evaluator / "models" / "rules.yml", """\
        version: 2
        models:
          - name: fct_marts_named_outside_prefixes
            data_tests: [is_empty]
          - name: fct_nothing_wrong
            data_tests: [is_empty]
        """)
    _write(evaluator / "tests" / "generic" / "is_empty.sql", """\
        {% test is_empty(model) %}
            {{ config(severity='warn', fail_calc='n_records') }}
            select count(*) as n_records from {{ model }}
        {% endtest %}
        """)
    return evaluator, utils


def _databases(server) -> set[str]:
    import psycopg

    with psycopg.connect(server.url(dbname="postgres"), autocommit=True) as conn:
        return {r[0] for r in conn.execute("select datname from pg_database")}


def test_the_evaluator_runs_on_a_copy_and_reports_the_warning_rules(server, packages, tmp_path, monkeypatch):
    from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR
    from voice_analytics_dagster.tools.dbt_evaluate import render, run_evaluate

    evaluator, utils = packages
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    before = _databases(server)
    project_files = sorted(p.name for p in DBT_PROJECT_DIR.iterdir())

    report = run_evaluate(evaluator, utils)

    by_rule = {r.rule: r for r in report.rules}
    assert set(by_rule) == {"fct_marts_named_outside_prefixes", "fct_nothing_wrong"}
    assert not by_rule["fct_nothing_wrong"].warns
    named = by_rule["fct_marts_named_outside_prefixes"]
    assert named.status == "warn" and named.columns == ("resource_name",)
    # the session fact keeps the name the design fixes (docs/DBT_CONVENTIONS.md)
    assert {row[0] for row in named.rows} == {"fact_voice_ai_sessions"}
    assert named.failures == len(named.rows)
    assert render(report).splitlines()[-1] == \
        "1 of 2 dbt-project-evaluator rules warn: fct_marts_named_outside_prefixes"
    # nothing left behind: no scratch database, no temporary project, the project untouched
    assert _databases(server) == before
    assert list((tmp_path / "tmp").iterdir()) == []
    assert sorted(p.name for p in DBT_PROJECT_DIR.iterdir()) == project_files
    assert not (DBT_PROJECT_DIR / "packages.yml").exists()


def test_a_folder_that_is_not_the_package_is_refused(server, packages):
    from voice_analytics_dagster.tools.dbt_evaluate import EvaluateError, run_evaluate

    evaluator, utils = packages
    with pytest.raises(EvaluateError, match="expected the dbt_project_evaluator package"):
        run_evaluate(utils, evaluator)
