"""The commands `demo` prints must run as printed, in the user's shell: `make` puts .venv/bin on
its own PATH only, so a bare `voice-analytics` would not be found (issue: first contact)."""

import sys

from voice_analytics_dagster.tools.cli import me


def test_a_hint_names_the_script_relative_to_the_current_folder(tmp_path, monkeypatch):
    script = tmp_path / ".venv" / "bin" / "voice-analytics"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    monkeypatch.setenv("PATH", str(script.parent))  # on make's PATH, still not printed bare
    assert me() == ".venv/bin/voice-analytics"


def test_a_hint_outside_the_folder_is_absolute(tmp_path, monkeypatch):
    script = tmp_path / "bin" / "voice-analytics"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    elsewhere = tmp_path / "work"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setattr(sys, "argv", [str(script), "demo"])
    assert me() == str(script)


def test_run_as_a_module_the_hint_is_the_module(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["-m", "demo"])
    assert me() == f"{sys.executable} -m voice_analytics_dagster.tools.cli"
