"""The sources stage as Dagster assets: the step materialized on its own (it converts files and
writes no database) on each kind of input, its metadata, its blocking check, and where it sits in
the graph."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest

from tests.unit.adapters_support import FIXTURES
from voice_analytics_dagster.defs.ingestion.source_assets import (
    ADAPTER_CHECK,
    EXPORT_KEY,
    adapter_check,
    adapter_metadata,
    source_adapters,
    source_key,
)
from voice_analytics_dagster.defs.ingestion.sources import DeliveryConversion
from voice_analytics_dagster.lib import contract
from voice_analytics_dagster.lib.provenance import FORMAT_TAG, SOURCE_TAG
from voice_analytics_dagster.lib.resources import ExportSourceResource


def materialize(source: Path, fmt: str | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize([source_adapters], instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                          resources={"export_source": ExportSourceResource(source_dir=str(source), format=fmt)})


def materialized(result) -> dict[str, dict]:
    out = {}
    for e in result.get_asset_materialization_events():
        m = e.event_specific_data.materialization
        out[m.asset_key.to_user_string()] = {k: getattr(v, "value", v) for k, v in m.metadata.items()}
    return out


def checks(result) -> dict[str, object]:
    return {f"{e.asset_key.to_user_string()}:{e.check_name}": e for e in
            (ev.event_specific_data for ev in result.all_events
             if ev.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION)}


def test_platform_logs_materialize_their_platform_and_the_export():
    result = materialize(FIXTURES / "rasa" / "conversations")
    assert result.success
    meta = materialized(result)
    assert set(meta) == {"sources/rasa", "sources/export"}
    rasa, export = meta["sources/rasa"], meta["sources/export"]
    assert rasa["format"] == "rasa" and rasa["deliveries"] == 1 and rasa["records_quarantined"] == 0
    assert rasa["sessions"] == rasa["dagster/row_count"] > 0 and rasa["turns"] > rasa["sessions"]
    assert rasa["columns_not_recorded"]["voice_turns"]["asr_confidence"].startswith("Rasa receives text")
    assert export["format"] == "rasa" and export["format_detected"] and export["detection"].startswith("rasa: ")
    assert export["loaded_from"] == rasa["converted_folder"] and "/converted/rasa-" in export["loaded_from"]
    assert export["source"] == str(FIXTURES / "rasa" / "conversations")
    [check] = checks(result).values()
    assert check.asset_key == source_key("rasa") and check.check_name == ADAPTER_CHECK and check.passed


def test_the_run_is_tagged_with_the_format_and_the_original_folder(tmp_path):
    instance = dg.DagsterInstance.ephemeral()
    source = FIXTURES / "lex-v2" / "text-logs"
    result = dg.materialize([source_adapters], instance=instance,
                            resources={"export_source": ExportSourceResource(source_dir=str(source))})
    tags = instance.get_run_by_id(result.run_id).tags
    assert tags[FORMAT_TAG] == "lex-v2" and tags[SOURCE_TAG] == str(source)


def test_unmappable_records_fail_the_blocking_check_and_nothing_is_loaded(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURES / "rasa" / "bad_records.jsonl", src)
    result = materialize(src, "rasa")
    assert not result.success  # a failed blocking check fails the step: the raw assets would not run
    assert set(materialized(result)) == {"sources/rasa"}  # not sources/export
    check = checks(result)[f"sources/rasa:{ADAPTER_CHECK}"]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    meta = {k: getattr(v, "value", v) for k, v in check.metadata.items()}
    assert meta["failing_count"] > 0 and meta["sample"][0].startswith("bad_records.jsonl line 1, field ")
    assert "the rasa adapter quarantined" in check.description


def test_a_csv_export_materializes_the_export_alone(tmp_path):
    for t in contract.TABLES:
        (tmp_path / t.file).write_text(",".join(t.column_names) + "\n")
    result = materialize(tmp_path)
    assert result.success
    meta = materialized(result)
    assert set(meta) == {"sources/export"} and meta["sources/export"]["format"] == "csv"
    assert meta["sources/export"]["loaded_from"] == str(tmp_path) and not checks(result)


@pytest.mark.parametrize("fmt", ["lex-v2", "rasa"])
def test_a_truncated_file_stops_the_step_naming_file_line_and_column(tmp_path, fmt):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(FIXTURES / fmt / "truncated.jsonl", src)
    result = materialize(src, fmt)
    assert not result.success and not materialized(result)
    [failure] = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    data = failure.event_specific_data.user_failure_data
    assert "truncated.jsonl, line " in data.description and "column" in data.description
    assert "truncated file?" in data.description
    meta = {k: getattr(v, "value", v) for k, v in data.metadata.items()}
    assert meta["file"].endswith("truncated.jsonl") and meta["line"] > 0 and meta["column"]


def test_metadata_and_check_sum_the_deliveries(tmp_path):
    def conversion(name, records, quarantined, sessions):
        manifest = {"inputs": [{"records": records}], "conversations": sessions, "records_quarantined": quarantined,
                    "rows": {"voice_sessions": sessions, "voice_turns": 3 * sessions, "users": sessions},
                    "quarantine_reasons": {"unknown Rasa event type 'dance'": quarantined} if quarantined else {},
                    "events_ignored": {"slot": 2}, "columns_not_recorded": {"voice_turns": {"x": "y"}}}
        return DeliveryConversion(name, tmp_path / name, tmp_path / "out" / name, manifest)

    both = [conversion("2025-03-03", 10, 0, 4), conversion("2025-03-04", 20, 2, 6)]
    meta = adapter_metadata("rasa", tmp_path, tmp_path / "out", both)
    assert {k: meta[k] for k in ("deliveries", "records_read", "sessions", "turns", "records_quarantined",
                                 "conversations", "dagster/row_count")} == {
        "deliveries": 2, "records_read": 30, "sessions": 10, "turns": 30, "records_quarantined": 2,
        "conversations": 10, "dagster/row_count": 10}
    assert meta["events_ignored"].value == {"slot": 4}
    assert meta["columns_not_recorded"].value == {"voice_turns": {"x": "y"}}
    failed = adapter_check("rasa", both, 0.0)
    assert not failed.passed and failed.metadata["failing_count"].value == 2
    assert failed.metadata["failing_deliveries"].value[0].startswith("2025-03-04: 2 of 20 records quarantined")
    assert adapter_check("rasa", both, 0.1).passed  # 2 of 20 is within a 10% tolerance
    assert adapter_check("rasa", both[:1], 0.0).passed


def test_the_raw_assets_depend_on_the_export_which_depends_on_each_platform():
    from voice_analytics_dagster.definitions import defs

    graph = defs.resolve_asset_graph()
    platforms = {source_key(f) for f in ("lex-v2", "dialogflow-cx", "rasa")}
    assert graph.get(EXPORT_KEY).parent_keys == platforms
    for t in contract.TABLES:
        assert graph.get(dg.AssetKey(["raw", t.name])).parent_keys == {EXPORT_KEY}
    assert {k.to_user_string() for k in platforms} == {"sources/lex_v2", "sources/dialogflow_cx", "sources/rasa"}
    specs = {s.key: s for s in source_adapters.specs}
    assert all(specs[k].skippable for k in platforms) and all(specs[k].group_name == "sources" for k in specs)
    assert all(c.blocking for c in source_adapters.check_specs)


def test_a_failed_adapter_check_blocks_until_a_run_reads_other_records(tmp_path):
    """Publication refuses while the latest evaluation of an error check upstream failed
    (lib/eventlog.latest_failed_checks). A later run that reads a CSV export (or corrected logs)
    plans the check again: it no longer reads as failed, so a fixed source is not blocked forever."""
    from voice_analytics_dagster.lib.eventlog import latest_failed_checks

    instance = dg.DagsterInstance.ephemeral()
    keys = [dg.AssetCheckKey(source_key(f), ADAPTER_CHECK) for f in ("lex-v2", "dialogflow-cx", "rasa")]
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(FIXTURES / "rasa" / "bad_records.jsonl", bad)
    csv = tmp_path / "csv"
    csv.mkdir()
    for t in contract.TABLES:
        (csv / t.file).write_text(",".join(t.column_names) + "\n")

    def run(source):
        return dg.materialize([source_adapters], instance=instance, raise_on_error=False,
                              resources={"export_source": ExportSourceResource(source_dir=str(source))})

    assert not run(bad).success
    assert [c.name for c in latest_failed_checks(instance, keys)] == [f"sources/rasa:{ADAPTER_CHECK}"]
    assert run(csv).success
    assert latest_failed_checks(instance, keys) == []
    assert not run(bad).success and latest_failed_checks(instance, keys)
    assert run(FIXTURES / "rasa" / "conversations").success  # the same platform, records fixed
    assert latest_failed_checks(instance, keys) == []
