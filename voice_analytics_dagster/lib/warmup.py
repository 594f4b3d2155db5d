"""Imports that later steps of a run need, done in a background thread while dbt builds.

The in-process executor runs the steps one after another in one Python process. The dbt step
spends its time waiting for dbt (a subprocess) and PostgreSQL, while the abandonment model's first
second went to importing statsmodels and scikit-learn (1.25 s after Dagster and the definitions,
measured 1 Dec; at 10,000 sessions half the model step). An asset module registers the modules its
step imports (``register``); the dbt step starts their import (``start``) when its run includes
that asset, so the model step finds them loaded. Python's per-module import locks make the
concurrent import safe; an import that fails here fails again, with its traceback, in the step.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterable

import dagster as dg

_modules_by_key: dict[dg.AssetKey, tuple[str, ...]] = {}
_started: set[str] = set()
_lock = threading.Lock()


def register(key: dg.AssetKey, modules: Iterable[str]) -> None:
    """``key``'s step imports ``modules`` (module level of the asset's module, at import)."""
    _modules_by_key[key] = tuple(modules)


def modules_for(selected: Iterable[dg.AssetKey]) -> list[str]:
    """The registered modules of the selected assets, in registration order, once each."""
    wanted = set(selected)
    out: list[str] = []
    for key, modules in _modules_by_key.items():
        if key in wanted:
            out += [m for m in modules if m not in out]
    return out


def _import_all(modules: list[str]) -> None:
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 - the step's own import reports it
            pass


def start(selected: Iterable[dg.AssetKey]) -> threading.Thread | None:
    """Import the selected assets' modules in a daemon thread (each module once per process)."""
    with _lock:
        modules = [m for m in modules_for(selected) if m not in _started]
        _started.update(modules)
    if not modules:
        return None
    thread = threading.Thread(target=_import_all, args=(modules,), name="voice-analytics warmup", daemon=True)
    thread.start()
    return thread
