"""What the adapters write satisfies the export contract: each file loads with the real loader into
a real database. The columns the manifest declares not (or only partly) recorded by the platform
load as NULL (the loader's nullable columns, from the manifest): no row is quarantined, every
empty field is NULL in raw, never 0 or 'no'. The same files loaded as a CSV export (no nullable
columns) are quarantined for exactly those empty required columns: the manifest, not a weaker
contract, is what lets them in.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.unit.adapters_support import FIXTURES
from voice_analytics_dagster.defs.ingestion.adapters import AdapterSettings, convert
from voice_analytics_dagster.defs.ingestion.copy import load_file
from voice_analytics_dagster.defs.ingestion.sources import nullable_columns
from voice_analytics_dagster.lib import contract

pytestmark = [pytest.mark.integration]

SOURCES = {"lex-v2": FIXTURES / "lex-v2" / "text-logs", "dialogflow-cx": FIXTURES / "dialogflow-cx" / "history",
           "rasa": FIXTURES / "rasa" / "conversations"}


def data_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_every_row_loads_with_its_not_recorded_columns_as_null(db, tmp_path, fmt):
    result = convert(SOURCES[fmt], tmp_path / "out", fmt, AdapterSettings())
    declared = result.manifest["columns_not_recorded"]
    partly = result.manifest["columns_partly_recorded"]
    empty_seen = 0
    for t in contract.TABLES:
        path = tmp_path / "out" / t.file
        rows = data_rows(path)
        nullable = nullable_columns(result.manifest, t)
        with db.connect() as conn:
            res = load_file(conn, t, path, nullable=nullable)
            conn.commit()
        assert (res.rows_read, res.rows_loaded, res.rows_quarantined) == (len(rows), len(rows), 0), t.name
        may_be_empty = set(declared.get(t.name, {})) | set(partly.get(t.name, {}))
        loaded = {r[0]: r[1:] for r in db.rows(
            f"select _source_line, {', '.join(t.column_names)} from raw.{t.name} where _batch_id = %s",
            (res.batch_id,))}
        for i, row in enumerate(rows):
            empty_required = {c.name for c in t.columns if c.required and row[c.name] == ""}
            assert empty_required <= may_be_empty, (t.name, row, "an empty column the manifest does not declare")
            values = dict(zip(t.column_names, loaded[i + 2], strict=True))
            for c in empty_required:
                assert values[c] is None, (t.name, i + 2, c, values[c])  # NULL, never 0 or false
                empty_seen += 1
    assert empty_seen > 0  # the platform leaves required columns empty, and they loaded as NULL


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_without_the_manifest_the_same_rows_are_quarantined_for_their_empty_columns(fresh_db, tmp_path, fmt):
    """The CSV path is unchanged: a required value left empty is quarantined ("got nothing").
    A database of its own: the module's already holds these files (loaded once per checksum)."""
    from voice_analytics_dagster.defs.ingestion.sql import bootstrap_raw_sql

    db = fresh_db
    convert(SOURCES[fmt], tmp_path / "out", fmt, AdapterSettings())
    t = contract.VOICE_TURNS  # every turn leaves turn_duration_sec empty
    path = tmp_path / "out" / t.file
    rows = data_rows(path)
    with db.connect() as conn:
        conn.execute(bootstrap_raw_sql())
        res = load_file(conn, t, path)
        conn.commit()
    assert (res.rows_loaded, res.rows_quarantined) == (0, len(rows))
    reasons = [r[0] for r in db.rows("select reason from raw.quarantine where batch_id = %s", (res.batch_id,))]
    assert reasons and all(r.endswith("got nothing") for r in reasons)


def test_values_load_with_the_contract_types(db, tmp_path):
    """The rows keep the adapter's values (outcome, reason, dates, yes/no, derived rates), and what
    Lex does not record is NULL: a session of one entry has no duration, a caller whose bot set
    no attribute has none."""
    result = convert(SOURCES["lex-v2"], tmp_path / "out", "lex-v2", AdapterSettings())

    def load(t):
        return load_file(conn, t, tmp_path / "out" / t.file, nullable=nullable_columns(result.manifest, t))

    with db.connect() as conn:
        sessions, metrics, users = load(contract.VOICE_SESSIONS), load(contract.VOICE_AI_METRICS), load(contract.USERS)
        conn.commit()
    assert db.rows("select session_id, final_outcome, transfer_reason, created_at::text, total_duration_sec "
                   "from raw.voice_sessions where _batch_id = %s order by session_id", (sessions.batch_id,)) == [
        ("a1b2c3d4-0001", "completed", None, "2025-03-04", 40),
        ("a1b2c3d4-0002", "transferred", "repeated_errors", "2025-03-04", 20),
        ("a1b2c3d4-0003", "transferred", "user_request", "2025-03-04", 10),
        ("a1b2c3d4-0004", "abandoned", None, "2025-03-04", None),  # one entry each: no duration, not 0
        ("a1b2c3d4-0004#2", "completed", None, "2025-03-04", None)]
    row = db.rows("select avg_asr_confidence, silence_rate, recovery_success, escalation_flag "
                  "from raw.voice_ai_metrics where _batch_id = %s and session_id = 'a1b2c3d4-0001'",
                  (metrics.batch_id,))[0]
    assert row[0] == pytest.approx(0.805) and row[1] == pytest.approx(0.125) and row[2:] == (True, False)
    assert db.rows("select user_id, region, disability_flag, first_time_digital_user from raw.users "
                   "where _batch_id = %s order by user_id", (users.batch_id,)) == [
        ("a1b2c3d4-0002", None, None, None), ("a1b2c3d4-0003", "urban", None, None),
        ("a1b2c3d4-0004", None, None, None), ("caller-0788000111", "rural", False, True)]
