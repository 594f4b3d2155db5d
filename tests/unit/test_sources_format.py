"""Which format a run reads a source in (given, or detected folder by folder in a landing folder),
where its conversion goes, and when a delivery is converted again. No database."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.unit.adapters_support import FIXTURES
from voice_analytics_dagster.defs.ingestion.adapters import AdapterSettings, DetectionError
from voice_analytics_dagster.defs.ingestion.reader import IngestionError
from voice_analytics_dagster.defs.ingestion.sources import (
    STAMP_FILE,
    convert_source,
    converted_root,
    current_conversions,
    is_landing,
    over_tolerance,
    quarantine_sample,
    resolve_format,
)
from voice_analytics_dagster.lib import contract

RASA = FIXTURES / "rasa" / "conversations"
LEX = FIXTURES / "lex-v2" / "text-logs"


def csv_export(folder: Path, tables=contract.TABLES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for t in tables:
        (folder / t.file).write_text(",".join(t.column_names) + "\n")
    return folder


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_a_given_format_is_taken_as_given():
    found = resolve_format(RASA, "lex-v2")  # not checked against the files: the run shows what it makes of them
    assert (found.format, found.detected) == ("lex-v2", False)
    assert found.describe() == "format lex-v2 (given)"
    with pytest.raises(ValueError, match="unknown format 'xml'"):
        resolve_format(RASA, "xml")


@pytest.mark.parametrize("folder,fmt", [(RASA, "rasa"), (LEX, "lex-v2"),
                                        (FIXTURES / "dialogflow-cx" / "history", "dialogflow-cx")])
def test_each_platform_is_detected_with_its_evidence(folder, fmt):
    found = resolve_format(folder)
    assert found.format == fmt and found.detected
    assert found.describe().startswith(f"format {fmt} (detected: {fmt}: ")


def test_a_csv_export_and_one_missing_a_file_are_csv(tmp_path):
    assert resolve_format(csv_export(tmp_path / "full")).format == "csv"
    # the loader names the missing file, as it always did: detection does not refuse the folder
    partial = resolve_format(csv_export(tmp_path / "partial", contract.TABLES[:4]))
    assert partial.format == "csv" and "4 of the 5 contract files present" in partial.evidence


def test_a_landing_folder_is_detected_delivery_by_delivery(tmp_path):
    landing = tmp_path / "landing"
    copy_tree(RASA, landing / "2025-03-03")
    copy_tree(RASA, landing / "2025-03-04")
    assert is_landing(landing) and not is_landing(landing / "2025-03-03")
    found = resolve_format(landing)
    assert found.format == "rasa"
    assert found.evidence.startswith("2 dated deliveries (2025-03-03 .. 2025-03-04), the first: rasa: ")
    csv_export(landing / "2025-03-05")
    with pytest.raises(DetectionError) as info:
        resolve_format(landing)
    assert "more than one format (csv: 2025-03-05; rasa: 2025-03-03, 2025-03-04)" in str(info.value)
    assert "pass --format" in str(info.value)


def test_an_unknown_or_missing_source_says_what_it_found(tmp_path):
    with pytest.raises(DetectionError, match="source folder not found"):
        resolve_format(tmp_path / "nope")
    (tmp_path / "notes.json").write_text(json.dumps({"hello": "world"}))
    with pytest.raises(DetectionError, match="no known format found"):
        resolve_format(tmp_path)
    assert issubclass(DetectionError, IngestionError)  # the CLI's exit 2 for a usage error


def test_the_converted_folder_is_one_per_source_and_format(tmp_path):
    a = converted_root(tmp_path, RASA, "rasa")
    assert a == converted_root(tmp_path, RASA, "rasa") and a.parent == tmp_path / "converted"
    assert a.name.startswith("rasa-conversations-")
    assert converted_root(tmp_path, RASA, "lex-v2") != a and converted_root(tmp_path, LEX, "rasa") != a


def test_a_delivery_is_converted_again_only_when_its_files_change(tmp_path):
    src = copy_tree(RASA, tmp_path / "src")
    root = tmp_path / "converted"
    settings = AdapterSettings()
    first = convert_source(src, "rasa", root, settings)
    assert [(c.delivery, c.out, c.reused) for c in first] == [(None, root, False)]
    assert (root / "voice_sessions.csv").exists() and (root / STAMP_FILE).exists()
    again = convert_source(src, "rasa", root, settings)
    assert again[0].reused and again[0].manifest == first[0].manifest
    assert current_conversions(src, "rasa", root, settings)[0].manifest == first[0].manifest
    # a file rewritten (its modification time moves), or other settings: converted again
    victim = sorted(src.iterdir())[0]
    os.utime(victim, ns=(victim.stat().st_atime_ns, victim.stat().st_mtime_ns + 10**9))
    with pytest.raises(IngestionError, match="no current rasa conversion of this folder"):
        current_conversions(src, "rasa", root, settings)
    assert not convert_source(src, "rasa", root, settings)[0].reused
    other = AdapterSettings(rasa_fallback_intents=("out_of_scope",))
    assert not convert_source(src, "rasa", root, other)[0].reused


def test_a_landing_folder_converts_each_delivery_and_forgets_the_archived_ones(tmp_path):
    landing = tmp_path / "landing"
    copy_tree(RASA, landing / "2025-03-03")
    copy_tree(LEX, tmp_path / "unused")  # not part of the landing
    copy_tree(RASA, landing / "2025-03-04")
    (landing / "2025-03-04" / contract.SYNTHETIC_MARKER).write_text(json.dumps({"seed": 3}))
    root = tmp_path / "converted"
    done = convert_source(landing, "rasa", root, AdapterSettings())
    assert [(c.delivery, c.out.name) for c in done] == [("2025-03-03", "2025-03-03"), ("2025-03-04", "2025-03-04")]
    # the synthetic marker follows its delivery (provenance tells a synthetic export from a real one)
    assert (root / "2025-03-04" / contract.SYNTHETIC_MARKER).exists()
    assert not (root / "2025-03-03" / contract.SYNTHETIC_MARKER).exists()
    shutil.rmtree(landing / "2025-03-03")
    later = convert_source(landing, "rasa", root, AdapterSettings())
    assert [c.delivery for c in later] == ["2025-03-04"] and later[0].reused
    assert sorted(p.name for p in root.iterdir()) == ["2025-03-04"]


def test_quarantined_records_over_the_tolerance_and_their_sample(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURES / "rasa" / "bad_records.jsonl", src)
    shutil.copy(RASA / sorted(p.name for p in RASA.iterdir())[0], src)
    [c] = convert_source(src, "rasa", tmp_path / "out", AdapterSettings())
    assert c.quarantined > 0 and c.records_read > c.quarantined
    assert over_tolerance([c], 0.0) == [c]
    assert over_tolerance([c], c.quarantined / c.records_read) == []  # exactly at the tolerance passes
    sample = quarantine_sample(c, 2)
    assert len(sample) == 2 and sample[0].startswith("bad_records.jsonl line 1, field ")
    assert "parse_data.intent.confidence" in sample[0]


# -- the command line --------------------------------------------------------------------------

def test_run_prints_the_detected_format_and_passes_it_to_the_run(capsys):
    from voice_analytics_dagster.tools.cli import build_parser, source_format
    from voice_analytics_dagster.tools.pipeline import RunOptions, run_config

    assert source_format(RASA, None) == "rasa"
    assert capsys.readouterr().out.startswith(f"source {RASA}: format rasa (detected: rasa: 4 file(s) hold ")
    assert source_format(RASA, "lex-v2") == "lex-v2" and capsys.readouterr().out == ""  # given: nothing to say
    assert source_format(RASA / "missing", None) is None  # the run reports a missing folder (and logs the block)
    args = build_parser().parse_args(["run", "--source", "x", "--format", "dialogflow-cx"])
    assert args.format == "dialogflow-cx"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--source", "x", "--format", "xml"])
    config = run_config(RASA, [], RunOptions(source_format="rasa"), verbose=False)
    assert config["resources"]["export_source"]["config"] == {"source_dir": str(RASA), "format": "rasa"}
    assert "format" not in run_config(RASA, [], RunOptions(), verbose=False)["resources"]["export_source"]["config"]


def test_a_folder_of_no_known_format_exits_2_before_any_run(tmp_path, capsys):
    from voice_analytics_dagster.tools.cli import main

    (tmp_path / "notes.json").write_text(json.dumps({"hello": "world"}))
    (tmp_path / "users.csv").write_text("user_id\n")
    assert main(["run", "--source", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no known format found" in err and "pass --format with one of csv, lex-v2, dialogflow-cx, rasa" in err


def test_launch_tags_name_the_format_and_the_original_folder():
    from voice_analytics_dagster.lib.provenance import FORMAT_TAG, SOURCE_TAG
    from voice_analytics_dagster.tools.pipeline import launch_tags

    assert launch_tags(RASA) == {SOURCE_TAG: str(RASA), FORMAT_TAG: "rasa"}
    assert launch_tags(RASA, "lex-v2")[FORMAT_TAG] == "lex-v2"
