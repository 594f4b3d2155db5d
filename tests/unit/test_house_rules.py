"""The house rules a Dagster and dbt engineer relies on (issue: "A house a Dagster and dbt engineer
would live in"), checked on the tree itself so that they stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "voice_analytics_dagster"
PRIVATE_IMPORT = re.compile(r"^\s*(from|import)\s+(dagster|dagster_dbt|dagster_postgres|dbt)\._", re.M)
# a framework object's private member: `<something>._name` where the something is not our own self
PRIVATE_MEMBER = re.compile(r"\b(context|instance|invocation|storage|record|dbt|event)\._[a-z]")
DATED = re.compile(r"\b\d{1,2} (Nov|Dec)\b|\((Nov|Dec)\b|\b2026-1[12]-\d\d\b|measured 20\d\d|\(\d{1,2} (Nov|Dec)")


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_private_framework_use_outside_the_compat_module():
    offenders = []
    for path in python_files():
        text = path.read_text()
        if path.name == "compat.py":
            # at most three lines of it, each saying so
            assert len(re.findall(r"\._engine\b", text)) <= 3
            continue
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in PRIVATE_IMPORT.finditer(text)]
        offenders += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in PRIVATE_MEMBER.finditer(text)]
    assert offenders == []


def test_no_python_module_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in python_files() if (n := len(p.read_text().splitlines())) > 600}
    assert long == {}


def test_the_readme_is_a_guide_of_at_most_300_lines():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_no_dated_timing_notes_in_code_or_yaml():
    files = python_files() + sorted((ROOT / "dbt").rglob("*.sql")) + sorted((ROOT / "dbt").rglob("*.yml"))
    files = [f for f in files if "target" not in f.parts and "dbt_packages" not in f.parts]
    dated = [f"{f.relative_to(ROOT)}:{i}: {line.strip()[:80]}" for f in files
             for i, line in enumerate(f.read_text().splitlines(), 1) if DATED.search(line)]
    assert dated == []


def test_no_reference_points_outside_the_repository():
    outside = []
    for f in [*python_files(), *sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md", ROOT / "Makefile"]:
        outside += [f"{f.relative_to(ROOT)}: {m.group(0)}" for m in re.finditer(r"\.\./shared/TOOLCHAIN[\w./-]*", f.read_text())]
    assert outside == []


def test_the_code_location_imports_no_tool():
    """definitions.py assembles the stages; the tools people run are never loaded by Dagster."""
    code = ("import sys; import voice_analytics_dagster.definitions; "
            "print(sorted(m for m in sys.modules if m.startswith('voice_analytics_dagster.tools')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
