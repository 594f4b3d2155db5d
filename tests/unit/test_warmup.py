"""warmup.py: the later steps' imports started in the background by the dbt step."""

import ast
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from voice_analytics_dagster import warmup
from voice_analytics_dagster.assets.abandonment import SCORES
from voice_analytics_dagster.assets.report import REPORT_KEY

ANALYSIS = Path(__file__).resolve().parents[2] / "voice_analytics_dagster" / "analysis"


def _function_level_imports(path: Path) -> set[str]:
    """Modules imported inside functions (the lazy imports a step pays for when it runs)."""
    found = set()
    for fn in ast.walk(ast.parse(path.read_text())):
        if isinstance(fn, ast.FunctionDef):
            for node in ast.walk(fn):
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    found.add(node.module)
                elif isinstance(node, ast.Import):
                    found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize(("key", "module"), [(SCORES, "abandonment.py"), (REPORT_KEY, "report_sections.py")])
def test_the_model_and_report_steps_register_every_library_they_import_lazily(key, module):
    registered = set(warmup.modules_for([key]))
    lazy = _function_level_imports(ANALYSIS / module)
    assert lazy and lazy <= registered, lazy - registered


def test_the_code_location_loads_without_the_later_steps_libraries():
    """What warmup imports is not imported by loading the definitions (else it saves nothing)."""
    code = """
import sys
import voice_analytics_dagster.definitions
from voice_analytics_dagster import warmup
loaded = sorted(m for m in warmup.modules_for(warmup._modules_by_key) if m in sys.modules)
print(",".join(loaded))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout


def test_modules_for_keeps_order_and_names_each_module_once():
    a, b = dg.AssetKey(["test", "a"]), dg.AssetKey(["test", "b"])
    warmup.register(a, ("colorsys", "wave"))
    warmup.register(b, ("wave", "sndhdr_not_a_module"))
    assert warmup.modules_for([b, a]) == ["colorsys", "wave", "sndhdr_not_a_module"]
    assert warmup.modules_for([dg.AssetKey(["test", "unselected"])]) == []


def test_start_imports_in_a_thread_once_and_ignores_a_failing_import():
    # in a fresh interpreter, so that the modules are not already imported
    code = """
import sys, dagster as dg
from voice_analytics_dagster import warmup
key = dg.AssetKey(["test", "k"])
warmup.register(key, ("colorsys", "no_such_module_here", "wave"))
assert "colorsys" not in sys.modules and "wave" not in sys.modules
thread = warmup.start([key])
thread.join(30)
assert "colorsys" in sys.modules and "wave" in sys.modules
assert warmup.start([key]) is None  # once per process
print("ok")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
