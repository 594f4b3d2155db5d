"""warmup.py: the later steps' imports started in the background by the dbt step."""

import ast
import subprocess
import sys
from pathlib import Path

import dagster as dg

from voice_analytics_dagster import warmup
from voice_analytics_dagster.assets.abandonment import SCORES

ANALYSIS = Path(__file__).resolve().parents[2] / "voice_analytics_dagster" / "analysis" / "abandonment.py"


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


def test_the_model_step_registers_every_library_it_imports_lazily():
    registered = set(warmup.modules_for([SCORES]))
    lazy = _function_level_imports(ANALYSIS)
    assert lazy and lazy <= registered, lazy - registered


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
