"""Which export a run loads: the source folder itself (the contract's five CSV files), or the
contract files a platform adapter converted from it (Amazon Lex V2, Dialogflow CX, Rasa logs).

- ``resolve_format``: the format given (``--format``), or detected, with the evidence. A landing
  folder (dated delivery folders YYYY-MM-DD) is detected folder by folder; they must agree.
- ``convert_source``: each delivery converted on its own into a folder under
  ``$VOICE_ANALYTICS_HOME/converted/`` (``converted_root``: the same source and format always
  convert to the same folder, so that the loader's checksums skip what it loaded before). A
  delivery whose input files are unchanged (names, sizes, modification times, adapter version
  and settings) is not converted again.
- ``nullable_columns``: the columns the loader accepts as NULL in a converted file (the ones the
  adapter's manifest says the platform does not record, or records for some rows only).
- ``over_tolerance``: conversions whose quarantined records exceed the loader's tolerance.

The Dagster side (the ``sources/*`` assets) is source_assets.py; this module has no Dagster in it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from voice_analytics_dagster.defs.ingestion.adapters import (
    FORMATS,
    MANIFEST_FILE,
    QUARANTINE_FILE,
    AdapterSettings,
    Detection,
    DetectionError,
    adapters,
    convert,
    detect_format,
)
from voice_analytics_dagster.defs.ingestion.adapters.base import input_files, is_json_file
from voice_analytics_dagster.defs.ingestion.batches import DATED_FOLDER_RE
from voice_analytics_dagster.defs.ingestion.reader import IngestionError
from voice_analytics_dagster.lib.contract import SYNTHETIC_MARKER, TABLES, Table
from voice_analytics_dagster.lib.provenance import CSV_FORMAT

CONVERTED_DIR = "converted"
# Beside a converted delivery: what its input files were when it was converted (see _stamp).
STAMP_FILE = ".source_stamp"
PLATFORM_FORMATS = tuple(f for f in FORMATS if f != CSV_FORMAT)


@dataclass(frozen=True)
class SourceFormat:
    """The format of a run's source, and why: ``evidence`` is empty when it was given."""

    format: str
    evidence: str = ""

    @property
    def detected(self) -> bool:
        return bool(self.evidence)

    def describe(self) -> str:
        return f"format {self.format} (detected: {self.evidence})" if self.detected else f"format {self.format} (given)"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


# -- the source's layout and format ---------------------------------------------------------------

def dated_folders(source: Path) -> list[Path]:
    return sorted(p for p in source.iterdir() if p.is_dir() and DATED_FOLDER_RE.match(p.name))


def is_landing(source: Path) -> bool:
    """A landing folder holds dated delivery folders and no export of its own (neither contract
    CSV files nor platform files directly inside it)."""
    if not source.is_dir() or any((source / t.file).exists() for t in TABLES):
        return False
    loose = [p for p in source.iterdir() if p.is_file() and is_json_file(p)]
    return bool(dated_folders(source)) and not loose


def _detect_folder(folder: Path) -> Detection:
    """detect_format, except that a folder holding contract CSV files and no JSON file is csv
    even when some of the five are missing: the loader then names the missing file, as it
    always did, instead of detection refusing the folder."""
    present = [t.file for t in TABLES if (folder / t.file).is_file()]
    if present and len(present) < len(TABLES) and not input_files(folder):
        return _csv_detection(present)
    return detect_format(folder)


def _csv_detection(present: list[str]) -> Detection:
    return Detection(CSV_FORMAT, f"csv: {len(present)} of the 5 contract files present ({', '.join(present)}) "
                                 "and no platform files")


def resolve_format(source: Path, fmt: str | None = None) -> SourceFormat:
    """The format of ``source``: ``fmt`` when given, else detected. DetectionError (an
    IngestionError) says what was found when the format cannot be told."""
    source = Path(source)
    if fmt is not None:
        return SourceFormat(check_format(fmt))
    if not source.exists():
        raise DetectionError(source, None, None, "source folder not found")
    if not is_landing(source):
        d = _detect_folder(source)
        return SourceFormat(d.format, d.evidence)
    found: dict[str, list[str]] = {}
    first: dict[str, str] = {}
    for folder in dated_folders(source):
        d = _detect_folder(folder)
        found.setdefault(d.format, []).append(folder.name)
        first.setdefault(d.format, d.evidence)
    if len(found) > 1:
        what = "; ".join(f"{f}: {', '.join(names[:3])}{' ...' if len(names) > 3 else ''}"
                         for f, names in sorted(found.items()))
        raise DetectionError(source, None, None, f"the dated deliveries hold more than one format ({what}): "
                                                 f"keep one format per landing folder, or pass --format")
    [(fmt, names)] = found.items()
    return SourceFormat(fmt, f"{len(names)} dated deliveries ({names[0]} .. {names[-1]}), the first: {first[fmt]}")


# -- conversion ---------------------------------------------------------------------------------

def converted_root(home: Path, source: Path, fmt: str) -> Path:
    """Where the conversion of ``source`` in ``fmt`` goes: one folder per source and format, the
    same on every run (its name: the format, the source's name and a hash of its full path)."""
    source = Path(source).resolve()
    digest = hashlib.sha256(str(source).encode()).hexdigest()[:12]
    name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in source.name)[:40] or "source"
    return Path(home) / CONVERTED_DIR / f"{fmt}-{name}-{digest}"


def platform_deliveries(source: Path) -> list[tuple[str | None, Path]]:
    """(delivery name, folder): a landing folder's dated folders, each converted on its own, or
    the whole folder as one delivery (None)."""
    source = Path(source)
    if is_landing(source):
        return [(p.name, p) for p in dated_folders(source)]
    return [(None, source)]


@dataclass(frozen=True)
class DeliveryConversion:
    """One delivery of platform records and the contract files converted from it."""

    delivery: str | None  # the dated folder's name, None for a single folder
    source: Path  # the delivery's own folder of platform records
    out: Path  # its converted folder (five CSV files, adapter_quarantine.csv, adapter_manifest.json)
    manifest: dict
    reused: bool = False  # converted by an earlier run from the same input files

    @property
    def records_read(self) -> int:
        return sum(int(i.get("records", 0)) for i in self.manifest.get("inputs", []))

    @property
    def quarantined(self) -> int:
        return int(self.manifest.get("records_quarantined", 0))

    @property
    def name(self) -> str:
        return self.delivery or self.source.name


def _stamp(folder: Path, fmt: str, settings: AdapterSettings) -> str:
    """What a conversion depends on, without reading the files: every input file's path, size
    and modification time, the adapter's version and the settings."""
    files = [[str(p.relative_to(folder)), (st := p.stat()).st_size, st.st_mtime_ns] for p in input_files(folder)]
    state = {"format": fmt, "adapter_version": adapters()[fmt].version, "settings": asdict(settings),
             "files": files}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise IngestionError(path, None, None, f"unreadable adapter manifest: {exc}") from None


def _current(folder: Path, out: Path, fmt: str, settings: AdapterSettings) -> dict | None:
    """The manifest of ``out`` when it was converted from ``folder`` as it is now, else None."""
    stamp = out / STAMP_FILE
    if not stamp.exists() or stamp.read_text() != _stamp(folder, fmt, settings):
        return None
    return read_manifest(out)


def _prune(root: Path, deliveries: Sequence[tuple[str | None, Path]]) -> None:
    """Remove converted deliveries the source no longer holds (an archived dated folder), and
    the other layout's files when a source changed between one folder and a landing folder."""
    if not root.exists():
        return
    names = {name for name, _ in deliveries}
    for p in dated_folders(root):
        if p.name not in names:
            shutil.rmtree(p)
    if None not in names:
        for name in [t.file for t in TABLES] + [QUARANTINE_FILE, MANIFEST_FILE, STAMP_FILE, SYNTHETIC_MARKER]:
            (root / name).unlink(missing_ok=True)


def convert_source(source: Path, fmt: str, root: Path, settings: AdapterSettings) -> list[DeliveryConversion]:
    """Convert every delivery of ``source`` into ``root`` (converted_root), each on its own,
    reusing a delivery's earlier conversion when its input files did not change. A file that
    cannot be read raises AdapterError (file, line, column); bad records are quarantined."""
    deliveries = platform_deliveries(source)
    _prune(root, deliveries)
    out = []
    for name, folder in deliveries:
        target = root / name if name else root
        manifest = _current(folder, target, fmt, settings)
        if manifest is not None:
            out.append(DeliveryConversion(name, folder, target, manifest, reused=True))
            continue
        target.mkdir(parents=True, exist_ok=True)
        (target / STAMP_FILE).unlink(missing_ok=True)  # a failed conversion leaves nothing current
        result = convert(folder, target, fmt, settings)
        # a synthetic delivery stays recognisable as synthetic once converted (provenance.dataset_of)
        marker = folder / SYNTHETIC_MARKER
        if marker.exists():
            shutil.copy(marker, target / SYNTHETIC_MARKER)
        else:
            (target / SYNTHETIC_MARKER).unlink(missing_ok=True)
        (target / STAMP_FILE).write_text(_stamp(folder, fmt, settings))
        # as written (JSON): the same manifest as a later run that reuses the conversion reads
        out.append(DeliveryConversion(name, folder, target, read_manifest(result.out_dir) or {}))
    return out


def current_conversions(source: Path, fmt: str, root: Path, settings: AdapterSettings) -> list[DeliveryConversion]:
    """The conversions of ``source`` that are current (converted from its files as they are now),
    for the loader; IngestionError naming the delivery when one is missing or out of date."""
    out = []
    for name, folder in platform_deliveries(source):
        target = root / name if name else root
        manifest = _current(folder, target, fmt, settings)
        if manifest is None:
            raise IngestionError(folder, None, None,
                                 f"no current {fmt} conversion of this folder in {target}: materialize "
                                 "sources/export first (voice-analytics run does)")
        out.append(DeliveryConversion(name, folder, target, manifest, reused=True))
    return out


# -- what the loader and the checks need from a conversion -------------------------------------

def nullable_columns(manifest: Mapping, t: Table) -> frozenset[str]:
    """Columns of ``t`` that a converted file may leave empty: those the manifest declares not
    recorded or partly recorded by the platform ("*": every column, for a table the platform
    has no rows of). A column the contract does not have is an error (a manifest from an
    adapter of another version)."""
    columns: set[str] = set()
    for key in ("columns_not_recorded", "columns_partly_recorded"):
        declared = (manifest.get(key) or {}).get(t.name) or {}
        if "*" in declared:
            return frozenset(t.column_names)
        columns |= set(declared)
    unknown = columns - set(t.column_names)
    if unknown:
        raise ValueError(f"the adapter manifest names column(s) {', '.join(sorted(unknown))} that {t.name} does not have")
    return frozenset(columns)


def over_tolerance(conversions: Sequence[DeliveryConversion], tolerance: float) -> list[DeliveryConversion]:
    """Conversions that quarantined more records than the tolerance allows (the loader's rule:
    more than ``tolerance`` x records read, and at least one)."""
    return [c for c in conversions if c.quarantined > 0 and c.quarantined > tolerance * max(c.records_read, 1)]


def quarantine_sample(conversion: DeliveryConversion, limit: int = 5) -> list[str]:
    """The first quarantined records of a conversion, as 'file line N, field F: reason'."""
    path = conversion.out / QUARANTINE_FILE
    if not path.exists():
        return []
    out = []
    prefix = f"{conversion.delivery}/" if conversion.delivery else ""
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            line = f" line {row['line']}" if row["line"] else ""
            field = f", field {row['field']}" if row["field"] else ""
            out.append(f"{prefix}{row['source_file']}{line}{field}: {row['reason']}")
            if len(out) >= limit:
                break
    return out
