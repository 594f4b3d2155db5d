"""`voice-analytics dbt-evaluate`: dbt Labs' dbt-project-evaluator against the dbt project.

The project ships no dbt package (`dbt deps` cannot reach the package hub here, and the pipeline
needs none), so the evaluator runs on a temporary copy of dbt/ into which the two packages, given
as local folders, are installed (`local:` entries in the copy's packages.yml), against a scratch
database on the warehouse's server that is dropped afterwards. The evaluator's rules are tests of
severity warn on its fct_* models; a rule that warns is printed with its rows
(docs/DBT_CONVENTIONS.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

EVALUATOR_PACKAGE = "dbt_project_evaluator"
UTILS_PACKAGE = "dbt_utils"
# What a copy of the project leaves out: build products and installed packages.
COPY_IGNORE = ("target", "logs", "dbt_packages", "package-lock.yml")


class EvaluateError(RuntimeError):
    """The evaluator could not run; the message says which step and why."""


@dataclass(frozen=True)
class RuleResult:
    """One rule of the evaluator (one test on one of its fct_* models) and its outcome."""

    rule: str            # the model the rule is about, e.g. fct_model_naming_conventions
    test: str            # the test's name
    status: str          # pass, warn, fail or error
    failures: int
    relation: str | None = None
    columns: tuple[str, ...] = ()
    rows: tuple[tuple, ...] = ()

    @property
    def warns(self) -> bool:
        return self.status != "pass"


@dataclass
class Report:
    rules: list[RuleResult] = field(default_factory=list)

    @property
    def warning(self) -> list[RuleResult]:
        return [r for r in self.rules if r.warns]


# -- pure pieces -------------------------------------------------------------------------------

def package_name(path: Path) -> str:
    """The `name:` of the dbt project at ``path`` (its dbt_project.yml)."""
    project_file = path / "dbt_project.yml"
    if not project_file.is_file():
        raise EvaluateError(f"{path} is not a dbt package: no dbt_project.yml in it")
    name = (yaml.safe_load(project_file.read_text()) or {}).get("name")
    if not name:
        raise EvaluateError(f"{project_file}: no `name:`")
    return str(name)


def packages_yml(local_paths: Sequence[Path | str]) -> str:
    """A packages.yml installing each path as a local package."""
    return yaml.safe_dump({"packages": [{"local": str(p)} for p in local_paths]}, sort_keys=False)


def dbt_commands(vars_json: str | None = None) -> list[list[str]]:
    """The dbt commands run in the copy: install the local packages, then build the evaluator's
    models and run its rules (seeds included: its exceptions seed is empty)."""
    build = ["build", "--select", f"package:{EVALUATOR_PACKAGE}"]
    if vars_json:
        build += ["--vars", vars_json]
    return [["deps"], build]


def rule_results(run_results: dict, manifest: dict) -> list[RuleResult]:
    """The evaluator's rules from a build's run_results.json and manifest.json: every test of
    the evaluator package, named by the model it tests (the rule), sorted by rule."""
    nodes = manifest.get("nodes", {})
    out = []
    for result in run_results.get("results", []):
        node = nodes.get(result.get("unique_id", ""))
        if not node or node.get("resource_type") != "test" or node.get("package_name") != EVALUATOR_PACKAGE:
            continue
        parents = [n for n in node.get("depends_on", {}).get("nodes", []) if n.startswith("model.")]
        model = nodes.get(parents[0]) if parents else None
        out.append(RuleResult(
            rule=model["name"] if model else node["name"],
            test=node["name"],
            status=str(result.get("status")),
            failures=int(result.get("failures") or 0),
            relation=model.get("relation_name") if model else None,
        ))
    return sorted(out, key=lambda r: (r.rule, r.test))


def not_run(run_results: dict) -> list[str]:
    """The nodes of a build that errored or were skipped (a rule whose model failed is skipped:
    it says nothing about the project)."""
    return sorted(r["unique_id"] for r in run_results.get("results", [])
                  if str(r.get("status")) in ("error", "skipped", "runtime error"))


def _cell(value: object, width: int = 100) -> str:
    text = "" if value is None else str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "~"


def render(report: Report) -> str:
    """The rules that warn, each with its rows, then a one-line summary."""
    lines = []
    for r in report.warning:
        lines.append(f"-- {r.rule} ({r.status}, {r.failures} failing) --")
        if r.columns:
            lines.append("   " + " | ".join(r.columns))
            lines += ["   " + " | ".join(_cell(v) for v in row) for row in r.rows]
        lines.append("")
    n = len(report.warning)
    lines.append(f"{n} of {len(report.rules)} dbt-project-evaluator rules warn"
                 + (": " + ", ".join(r.rule for r in report.warning) if n else ""))
    return "\n".join(lines)


# -- the run -----------------------------------------------------------------------------------

def copy_project(source: Path, dest: Path) -> Path:
    """A copy of the dbt project without its build products and packages."""
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns(*COPY_IGNORE))
    return dest


def install_packages(project: Path, evaluator: Path, utils: Path) -> None:
    """Copy both packages next to the project copy and declare them as local packages. The
    evaluator's own packages.yml asks the hub for dbt_utils: its copy names the local one."""
    if package_name(evaluator) != EVALUATOR_PACKAGE:
        raise EvaluateError(f"--evaluator {evaluator}: expected the {EVALUATOR_PACKAGE} package")
    if package_name(utils) != UTILS_PACKAGE:
        raise EvaluateError(f"--dbt-utils {utils}: expected the {UTILS_PACKAGE} package")
    packages = project.parent / "packages"
    evaluator_copy = copy_project(evaluator, packages / EVALUATOR_PACKAGE)
    utils_copy = copy_project(utils, packages / UTILS_PACKAGE)
    (evaluator_copy / "packages.yml").write_text(packages_yml([utils_copy]))
    (project / "packages.yml").write_text(packages_yml([evaluator_copy, utils_copy]))


def _run_dbt(args: list[str], project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    from voice_analytics_dagster.defs.transform.dbt_cli import dbt_executable

    return subprocess.run(
        [dbt_executable(), *args, "--project-dir", str(project), "--profiles-dir", str(project)],
        cwd=project, env={**os.environ, **env}, capture_output=True, text=True, check=False)


def _scratch_database(server_url: str, name: str, create: bool) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(server_url, autocommit=True) as conn:
        if create:
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
        else:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


def _fetch_rows(db_url: str, rules: list[RuleResult], limit: int) -> list[RuleResult]:
    import psycopg

    out = []
    with psycopg.connect(db_url, autocommit=True) as conn:
        for r in rules:
            if not r.warns or not r.relation:
                out.append(r)
                continue
            cur = conn.execute(f"select * from {r.relation} limit {int(limit)}")
            out.append(RuleResult(r.rule, r.test, r.status, r.failures, r.relation,
                                  tuple(d.name for d in cur.description), tuple(cur.fetchall())))
    return out


def run_evaluate(evaluator: Path, utils: Path, dbt_project: Path | None = None, keep: bool = False,
                 row_limit: int = 200, say: Callable[[str], None] = lambda m: None) -> Report:
    """Run the evaluator on a temporary copy of ``dbt_project`` (default: the project's dbt/)
    against a scratch database, and return every rule with the rows of those that warn."""
    from voice_analytics_dagster.defs.transform.dbt_cli import dbt_env
    from voice_analytics_dagster.lib.settings import DBT_PROJECT_DIR, get_settings
    from voice_analytics_dagster.lib.warehouse import Warehouse

    settings = get_settings()
    work = Path(tempfile.mkdtemp(prefix="va-dbt-evaluate-"))
    try:
        project = copy_project(dbt_project or DBT_PROJECT_DIR, work / "project")
        install_packages(project, evaluator.resolve(), utils.resolve())
        server = Warehouse(settings).server()
        scratch = f"va_dbt_evaluate_{uuid.uuid4().hex[:8]}"
        say(f"temporary project {project}, scratch database {scratch}")
        _scratch_database(server.url(dbname="postgres"), scratch, create=True)
        try:
            run_results, manifest = _build(project, dbt_env(settings, server.with_dbname(scratch)), say)
            failed = not_run(run_results)
            if failed:
                raise EvaluateError("the evaluator did not run completely: " + ", ".join(failed)
                                    + " (--keep keeps the temporary project and its logs)")
            rules = rule_results(run_results, manifest)
            if not rules:
                raise EvaluateError("the build ran no rule of the evaluator (is it the dbt_project_evaluator package?)")
            return Report(_fetch_rows(server.url(dbname=scratch), rules, row_limit))
        finally:
            _scratch_database(server.url(dbname="postgres"), scratch, create=False)
    finally:
        if keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _build(project: Path, env: dict[str, str], say: Callable[[str], None]) -> tuple[dict, dict]:
    """Install the packages and build the evaluator; its run_results.json and manifest.json."""
    results_file = project / "target" / "run_results.json"
    for args in dbt_commands():
        say("dbt " + " ".join(args))
        done = _run_dbt(args, project, env)
        # a build whose rules warn exits 0; one that could not run has no results to read
        if done.returncode != 0 and not (args[0] == "build" and results_file.exists()):
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
            raise EvaluateError(f"`dbt {' '.join(args)}` failed (exit {done.returncode}):\n{tail}")
    return json.loads(results_file.read_text()), json.loads((project / "target" / "manifest.json").read_text())
