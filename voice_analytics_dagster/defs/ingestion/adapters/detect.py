"""Which format a folder holds, and the evidence: the contract's five CSV files ("csv"), or the
records of Amazon Lex V2, Dialogflow CX or Rasa, recognised by the keys of each JSON file's first
record. Ambiguous or unrecognised folders are an error that says what was found and how to pass
``--format``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from voice_analytics_dagster.defs.ingestion.adapters.base import (
    AdapterError,
    FileStats,
    input_files,
    read_records,
)
from voice_analytics_dagster.lib import contract

FORMATS = ("csv", "lex-v2", "dialogflow-cx", "rasa")

# format -> what its records hold, in the words of the evidence
SIGNATURES = {
    "rasa": "objects with sender_id and events (trackers) or sender_id and event (tracker store events)",
    "lex-v2": "Lex V2 log entries (sessionId with bot, interpretations or sessionState)",
    "dialogflow-cx": "conversation history rows (conversation_name and turn_position)",
}


class DetectionError(AdapterError):
    """The folder's format cannot be told (none found, or more than one)."""


@dataclass(frozen=True)
class Detection:
    format: str
    evidence: str


def record_format(value) -> str | None:
    """The platform a record belongs to, from its keys; None when none matches."""
    if not isinstance(value, dict):
        return None
    if "sender_id" in value and ("events" in value or "event" in value or "type_name" in value):
        return "rasa"
    if "conversation_name" in value and "turn_position" in value:
        return "dialogflow-cx"
    if "sessionId" in value and ({"bot", "interpretations", "sessionState", "inputTranscript"} & value.keys()):
        return "lex-v2"
    if "sessionId" not in value and isinstance(value.get("message"), str):
        try:
            return record_format(json.loads(value["message"]))  # a CloudWatch Logs event
        except json.JSONDecodeError:
            return None
    if isinstance(value.get("events"), list) and value["events"]:
        return record_format(value["events"][0])  # a page of CloudWatch Logs events
    return None


def file_format(path: Path) -> str | None:
    """The format of a JSON file's first record (the file is read no further for JSON lines)."""
    for record in read_records(path, FileStats(str(path))):
        return record_format(record.value)
    return None


def detect_format(source: Path) -> Detection:
    source = Path(source)
    if not source.exists():
        raise DetectionError(source, None, None, "no such file or folder")
    csv_files = [t.file for t in contract.TABLES if (source / t.file).is_file()] if source.is_dir() else []
    found: dict[str, list[str]] = defaultdict(list)
    unrecognised: list[str] = []
    for path in input_files(source):
        name = str(path.relative_to(source)) if source.is_dir() else path.name
        fmt = file_format(path)
        (found[fmt] if fmt else unrecognised).append(name)
    if len(csv_files) == len(contract.TABLES):
        found["csv"] = csv_files
    usage = f"pass --format with one of {', '.join(FORMATS)}"
    if len(found) == 1:
        fmt, files = next(iter(found.items()))
        if fmt == "csv":
            evidence = "csv: the five contract files are present (" + ", ".join(files) + ")"
        else:
            evidence = f"{fmt}: {len(files)} file(s) hold {SIGNATURES[fmt]}"
        if unrecognised:
            evidence += (f"; {len(unrecognised)} JSON file(s) match no format and will be quarantined record "
                         f"by record: {_names(unrecognised)}")
        return Detection(fmt, evidence)
    what = "; ".join(f"{fmt}: {len(files)} file(s) ({_names(files)})" for fmt, files in sorted(found.items()))
    if found:
        raise DetectionError(source, None, None, f"more than one format found ({what}): {usage}")
    seen = []
    if csv_files:
        seen.append(f"{len(csv_files)} of the 5 contract CSV files ({', '.join(csv_files)})")
    if unrecognised:
        seen.append(f"{len(unrecognised)} JSON file(s) of no known platform ({_names(unrecognised)})")
    raise DetectionError(source, None, None,
                         "no known format found: " + ("; ".join(seen) if seen else "no CSV or JSON files") + "; "
                         + usage)


def _names(files: list[str], shown: int = 3) -> str:
    return ", ".join(files[:shown]) + (f" and {len(files) - shown} more" if len(files) > shown else "")
