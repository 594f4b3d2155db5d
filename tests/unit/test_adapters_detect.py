"""Format detection (each platform, the contract's CSV, ambiguous, unknown, empty) and the files
an adapter cannot read at all (clear errors with file, line and column)."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest

from tests.unit.adapters_support import FIXTURES, folder_of, run
from voice_analytics_dagster.defs.ingestion.adapters import (
    AdapterError,
    DetectionError,
    convert,
    detect_format,
)
from voice_analytics_dagster.defs.ingestion.adapters.base import FileStats, read_records
from voice_analytics_dagster.lib import contract


@pytest.mark.parametrize("folder,fmt,evidence", [
    (FIXTURES / "rasa" / "conversations", "rasa", "rasa: 4 file(s) hold objects with sender_id and events"),
    (FIXTURES / "lex-v2" / "text-logs", "lex-v2", "lex-v2: 3 file(s) hold Lex V2 log entries"),
    (FIXTURES / "dialogflow-cx" / "history", "dialogflow-cx", "dialogflow-cx: 2 file(s) hold conversation history rows"),
])
def test_each_platform(folder, fmt, evidence):
    d = detect_format(folder)
    assert d.format == fmt and d.evidence.startswith(evidence)


def test_csv_export(tmp_path):
    for t in contract.TABLES:
        (tmp_path / t.file).write_text(",".join(t.column_names) + "\n")
    d = detect_format(tmp_path)
    assert d.format == "csv" and d.evidence.startswith("csv: the five contract files are present")
    with pytest.raises(ValueError, match="nothing to convert"):
        convert(tmp_path, tmp_path / "out")


def test_ambiguous_says_what_it_found(tmp_path):
    src = folder_of(tmp_path, FIXTURES / "rasa" / "bad_records.jsonl", FIXTURES / "lex-v2" / "truncated.jsonl")
    with pytest.raises(DetectionError) as info:
        detect_format(src)
    msg = str(info.value)
    assert "more than one format found" in msg and "lex-v2: 1 file(s)" in msg and "rasa: 1 file(s)" in msg
    assert "pass --format" in msg


def test_unknown_and_empty(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "users.csv").write_text("user_id\n")
    with pytest.raises(DetectionError) as info:
        detect_format(tmp_path)
    msg = str(info.value)
    assert "1 of the 5 contract CSV files (users.csv)" in msg and "1 JSON file(s) of no known platform (a.json)" in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DetectionError, match="no CSV or JSON files"):
        detect_format(empty)
    with pytest.raises(AdapterError, match="no platform records here"):
        convert(empty, tmp_path / "out", "rasa")


def test_unrecognised_files_beside_a_format_are_named_and_quarantined(tmp_path):
    src = folder_of(tmp_path, *sorted((FIXTURES / "rasa" / "conversations").iterdir()))
    (src / "notes.json").write_text(json.dumps({"hello": "world"}) + "\n")
    d = detect_format(src)
    assert d.format == "rasa" and "1 JSON file(s) match no format" in d.evidence and "notes.json" in d.evidence
    out = run(src, tmp_path)
    assert [(r["source_file"], r["line"]) for r in out.quarantine] == [("notes.json", "1")]


def test_not_utf8_names_line_and_column(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = json.dumps({"sender_id": "s", "event": "session_started", "timestamp": 1740992400})
    (src / "x.jsonl").write_bytes((good + "\n").encode() + b'{"sender_id": "caf\xe9"}\n')
    with pytest.raises(AdapterError) as info:
        convert(src, tmp_path / "out", "rasa")
    assert (info.value.line, info.value.column) == (2, "19 (character)") and "byte 0xe9" in str(info.value)


def test_not_json_at_all(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "x.json").write_text("this is not json\nat all\n")
    with pytest.raises(AdapterError) as info:
        convert(src, tmp_path / "out", "lex-v2")
    assert info.value.line == 1 and info.value.column == "1 (character)" and "not JSON" in str(info.value)
    assert not list((tmp_path / "out").iterdir())  # the work folder is gone, nothing was moved in


def test_one_document_with_an_array_and_gzip(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    rows = [json.loads(line) for line in (FIXTURES / "dialogflow-cx" / "history" / "export-000000000000.jsonl")
            .read_text().splitlines()]
    (src / "page.json").write_text(json.dumps(rows, indent=2))
    with gzip.open(src / "more.jsonl.gz", "wt") as fh:
        shutil.copyfileobj(open(FIXTURES / "dialogflow-cx" / "history" / "export-000000000001.jsonl"), fh)
    stats = FileStats("page.json")
    records = list(read_records(src / "page.json", stats))
    assert [r.path for r in records] == [f"[{i}]" for i in range(5)] and stats.records == 5
    out = run(src, tmp_path)
    assert out.result.format == "dialogflow-cx" and out.manifest["rows"]["voice_sessions"] == 4


def test_blank_lines_and_bom_are_accepted(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    line = json.dumps({"sender_id": "s", "event": "user", "timestamp": 1740992401,
                       "parse_data": {"intent": {"name": "greet", "confidence": 0.9}}})
    (src / "x.jsonl").write_bytes(b"\xef\xbb\xbf\n" + line.encode() + b"\r\n\r\n")
    out = run(src, tmp_path, "rasa")
    assert out.manifest["inputs"][0]["lines"] == 3 and out.manifest["rows"]["voice_turns"] == 1
