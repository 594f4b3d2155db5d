"""Shared by the adapter tests: convert a fixture folder and read back what was written."""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from voice_analytics_dagster.defs.ingestion.adapters import AdapterSettings, convert

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"


@dataclass
class Output:
    result: object
    folder: Path

    def rows(self, name: str) -> list[dict]:
        with open(self.folder / name, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def table(self, table: str, key: str) -> dict[str, dict]:
        return {r[key]: r for r in self.rows(f"{table}.csv")}

    def turns(self, session_id: str) -> list[dict]:
        return [r for r in self.rows("voice_turns.csv") if r["session_id"] == session_id]

    @property
    def quarantine(self) -> list[dict]:
        return self.rows("adapter_quarantine.csv")

    @property
    def manifest(self) -> dict:
        return json.loads((self.folder / "adapter_manifest.json").read_text())


def run(source: Path, tmp_path: Path, fmt: str | None = None, settings: AdapterSettings | None = None) -> Output:
    out = tmp_path / "out"
    result = convert(source, out, fmt, settings or AdapterSettings())
    return Output(result, out)


def folder_of(tmp_path: Path, *files: Path, name: str = "in") -> Path:
    """A folder holding copies of ``files`` (a fixture file alone, or several together)."""
    folder = tmp_path / name
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder
