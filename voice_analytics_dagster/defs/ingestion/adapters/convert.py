"""The adapters' one entry point: a folder of a platform's records -> the five contract CSV files,
``adapter_quarantine.csv`` and ``adapter_manifest.json`` in an output folder.

The output is written to a temporary folder inside ``out_dir`` and moved into place only when the
conversion finished: a conversion that fails leaves no partial contract files behind.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from voice_analytics_dagster.defs.ingestion.adapters.base import (
    MANIFEST_FILE,
    QUARANTINE_FILE,
    AdapterError,
    BuildContext,
    ContractWriter,
    Event,
    EventStore,
    FileStats,
    MapContext,
    QuarantineWriter,
    Record,
    UserStore,
    input_files,
    join_path,
    read_records,
    without_duplicates,
)
from voice_analytics_dagster.defs.ingestion.adapters.model import (
    MAX_SESSION_ID_LENGTH,
    Rejected,
    Session,
    session_rows,
)
from voice_analytics_dagster.defs.ingestion.adapters.settings import AdapterSettings, load_adapter_settings
from voice_analytics_dagster.lib import contract

# What no adapter records (the platforms log conversations, not service applications or turn
# timings); each adapter adds its own.
COMMON_NOT_RECORDED = {
    "voice_turns": {"turn_duration_sec": "no platform logs how long a turn lasted"},
    "applications": {"*": "no rows: the platforms do not record service applications"},
}


class Adapter:
    """A platform: how one record maps to events, and how a conversation's events become sessions."""

    format: ClassVar[str]
    version: ClassVar[str] = "1"
    # table -> column -> why: columns this platform never records (written empty)
    not_recorded: ClassVar[dict[str, dict[str, str]]] = {}
    # table -> column -> when: columns recorded for some rows only (empty for the others)
    partly_recorded: ClassVar[dict[str, dict[str, str]]] = {}

    def __init__(self, settings: AdapterSettings):
        self.settings = settings

    def map(self, record: Record, ctx: MapContext) -> None:
        """Emit the record's events (``ctx.emit``); raise Rejected to quarantine the record."""
        raise NotImplementedError

    def build(self, conv: str, events: list[Event], ctx: BuildContext) -> list[Session]:
        raise NotImplementedError

    @classmethod
    def columns_not_recorded(cls) -> dict[str, dict[str, str]]:
        out = {t: dict(cols) for t, cols in COMMON_NOT_RECORDED.items()}
        for t, cols in cls.not_recorded.items():
            out.setdefault(t, {}).update(cols)
        return out


@dataclass(frozen=True)
class ConversionResult:
    format: str
    out_dir: Path
    inputs: tuple[FileStats, ...]
    rows: dict[str, int]
    quarantined: int
    ignored: dict[str, int]
    duplicates: int
    sessions_without_turns: int
    manifest: dict
    evidence: str = ""

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / MANIFEST_FILE

    @property
    def quarantine_path(self) -> Path:
        return self.out_dir / QUARANTINE_FILE


def adapters() -> dict[str, type[Adapter]]:
    from voice_analytics_dagster.defs.ingestion.adapters.dialogflow_cx import DialogflowCxAdapter
    from voice_analytics_dagster.defs.ingestion.adapters.lex_v2 import LexV2Adapter
    from voice_analytics_dagster.defs.ingestion.adapters.rasa import RasaAdapter

    return {a.format: a for a in (LexV2Adapter, DialogflowCxAdapter, RasaAdapter)}


def convert(source: Path, out_dir: Path, fmt: str | None = None,
            settings: AdapterSettings | None = None) -> ConversionResult:
    """Convert the platform records under ``source`` into the export contract in ``out_dir``.

    ``fmt`` is one of lex-v2, dialogflow-cx, rasa; None detects it (detect.detect_format). The
    folder of the contract's own CSV files ("csv") needs no conversion and is refused here."""
    from voice_analytics_dagster.defs.ingestion.adapters.detect import detect_format

    source, out_dir = Path(source), Path(out_dir)
    evidence = ""
    if fmt is None:
        detection = detect_format(source)
        fmt, evidence = detection.format, detection.evidence
    known = adapters()
    if fmt == "csv":
        raise ValueError(f"{source} holds the contract's CSV files: load it as it is, there is nothing to convert")
    if fmt not in known:
        raise ValueError(f"unknown format {fmt!r}; expected one of csv, {', '.join(known)}")
    settings = settings or load_adapter_settings()
    adapter = known[fmt](settings)
    files = input_files(source)
    if not files:
        raise AdapterError(source, None, None,
                           "no platform records here: expected .json, .jsonl or .ndjson files (or .gz of them)")
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".adapter-", dir=out_dir))
    try:
        result = _convert(adapter, source, files, work, out_dir, evidence)
        for name in [t.file for t in contract.TABLES] + [QUARANTINE_FILE, MANIFEST_FILE]:
            os.replace(work / name, out_dir / name)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _relative(path: Path, source: Path) -> str:
    try:
        return str(path.relative_to(source)) if source.is_dir() else path.name
    except ValueError:
        return str(path)


def _convert(adapter: Adapter, source: Path, files: list[Path], work: Path, out_dir: Path,
             evidence: str) -> ConversionResult:
    names = [_relative(p, source) for p in files]
    store = EventStore(work / "events.sqlite")
    users = UserStore(work / "users.sqlite")
    quarantine = QuarantineWriter(work)
    writer = ContractWriter(work)
    ignored: Counter = Counter()
    stats: list[FileStats] = []
    build = BuildContext(names, quarantine)
    duplicates = empty_sessions = conversations = 0
    try:
        for i, path in enumerate(files):
            st = FileStats(names[i])
            stats.append(st)
            for record in read_records(path, st):
                ctx = MapContext(i, names[i], record, store, quarantine, ignored)
                try:
                    adapter.map(record, ctx)
                except Rejected as exc:
                    quarantine.add(names[i], record.line, join_path(record.path, exc.field), exc.reason, record.value)
        for conv, events in store.conversations():
            conversations += 1
            events, dropped = without_duplicates(events)
            duplicates += dropped
            for s in adapter.build(conv, events, build):
                if not s.turns:
                    empty_sessions += 1
                    continue
                if len(s.session_id) > MAX_SESSION_ID_LENGTH or len(s.user_id) > contract.MAX_TEXT_LENGTH:
                    f, line = s.origin or (0, None)
                    quarantine.add(names[f], line, "session id / user id",
                                   f"session id longer than {MAX_SESSION_ID_LENGTH} or user id longer than "
                                   f"{contract.MAX_TEXT_LENGTH} characters: the contract cannot hold it",
                                   {"session_id": s.session_id, "user_id": s.user_id})
                    continue
                session, turns, metrics = session_rows(s)
                writer.write("voice_sessions", session)
                for row in turns:
                    writer.write("voice_turns", row)
                writer.write("voice_ai_metrics", metrics)
                users.add(s.user_id, s.attributes)
        for row in users.rows():
            writer.write("users", row)
    finally:
        writer.close()
        quarantine.close()
        store.close()
        users.close()
    manifest = {
        "format": adapter.format,
        "adapter_version": adapter.version,
        "converted_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": str(source),
        "detection": evidence or None,
        "inputs": [asdict(s) for s in stats],
        "conversations": conversations,
        "rows": {t.name: writer.rows[t.name] for t in contract.TABLES},
        "records_quarantined": quarantine.count,
        "quarantine_reasons": dict(quarantine.by_reason),
        "events_ignored": dict(sorted(ignored.items())),
        "duplicate_events_skipped": duplicates,
        "sessions_without_turns_skipped": empty_sessions,
        "columns_not_recorded": adapter.columns_not_recorded(),
        "columns_partly_recorded": adapter.partly_recorded,
        "empty_values": {t: dict(c) for t, c in writer.empty.items() if c},
        "settings": asdict(adapter.settings),
    }
    (work / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return ConversionResult(adapter.format, out_dir, tuple(stats), manifest["rows"], quarantine.count,
                            manifest["events_ignored"], duplicates, empty_sessions, manifest, evidence)
