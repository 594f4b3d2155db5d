"""Bad and unusual input, file by file, on the real server: each case gives a clear error (file,
line, column, what was expected) or quarantine rows with a reason, and every load accounts for
every row: loaded + quarantined = read, and read = the records Python's csv module counts.

Orphan foreign keys are not the loader's business (a delivery may bring children before their
parents): dbt's relationships tests block them, see tests/e2e/test_gate_blocks_bad_exports.py
(orphan_turn) and the doctor's report (tests/integration/test_doctor.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from voice_analytics_dagster.defs.ingestion.batches import activate_batches, record_rejection
from voice_analytics_dagster.defs.ingestion.copy import load_file
from voice_analytics_dagster.defs.ingestion.reader import IngestionError, SchemaDriftError
from voice_analytics_dagster.defs.ingestion.sql import QUARANTINE_VALUE_MAX
from voice_analytics_dagster.lib import contract
from voice_analytics_dagster.lib.provenance import SYNTHETIC, Dataset, Origin

pytestmark = [pytest.mark.integration]

TURN_HEADER = ("turn_id,session_id,turn_number,speaker,detected_intent,intent_confidence,asr_confidence,"
               "error_type,turn_duration_sec,created_at")
SESSION_HEADER = ("session_id,user_id,channel,language,total_duration_sec,total_turns,final_outcome,"
                  "transfer_reason,created_at,asr_model_version")


def turn(i: int, **change) -> str:
    values = {"turn_id": f"T{i}", "session_id": "S1", "turn_number": str(i), "speaker": "user",
              "detected_intent": "service_lookup", "intent_confidence": "0.8", "asr_confidence": "0.9",
              "error_type": "", "turn_duration_sec": "3.5", "created_at": "2025-01-02"}
    values.update(change)
    return ",".join(values[c] for c in TURN_HEADER.split(","))


def session(sid: str, outcome: str = "completed", day: str = "2025-01-02") -> str:
    return f"{sid},U1,voice,KINYARWANDA,60,4,{outcome},,{day},v1"


def write(folder: Path, name: str, data: bytes | str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def records_in(path: Path) -> int:
    """Data records of a CSV file as an independent parser counts them (blank lines aside)."""
    csv.field_size_limit(1 << 30)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = [r for r in csv.reader(fh) if r]
    return len(rows) - 1


def load(db, table: str, path: Path, delivery: str | None = None):
    t = contract.table(table)
    with db.connect() as conn:
        result = load_file(conn, t, path, delivery)
        conn.commit()
    if not result.skipped:
        assert result.rows_read == records_in(path), "rows read differ from the records in the file"
        assert result.rows_loaded + result.rows_quarantined == result.rows_read
        assert db.scalar(f"select count(*) from raw.{table} where _batch_id = %s", (result.batch_id,)) \
            == result.rows_loaded
        assert db.scalar("select count(*) from raw.quarantine where batch_id = %s", (result.batch_id,)) \
            == result.rows_quarantined
        assert db.rows("select rows_read, rows_loaded, rows_quarantined from raw.load_batches where batch_id = %s",
                       (result.batch_id,))[0] == (result.rows_read, result.rows_loaded, result.rows_quarantined)
    return result


def fails(db, table: str, path: Path) -> IngestionError:
    """The load fails with an IngestionError and leaves no batch and no row behind."""
    batches = db.scalar("select count(*) from raw.load_batches")
    with db.connect() as conn, pytest.raises(IngestionError) as info:
        load_file(conn, contract.table(table), path)
    assert db.scalar("select count(*) from raw.load_batches") == batches
    err = info.value
    assert err.path == str(path) and str(path) in str(err)
    return err


def quarantined(db, result) -> dict[int, tuple[str, str]]:
    return {line: (col, reason) for line, col, reason in db.rows(
        "select source_line, column_name, reason from raw.quarantine where batch_id = %s", (result.batch_id,))}


def loaded(db, result, columns: str) -> list[tuple]:
    return db.rows(f"select {columns} from raw.{result.table} where _batch_id = %s order by _source_line",
                   (result.batch_id,))


# -- files and headers ------------------------------------------------------------------------------

def test_missing_file(db, tmp_path):
    err = fails(db, "voice_turns", tmp_path / "voice_turns.csv")
    assert "missing file: the export must contain voice_turns.csv" in str(err)


@pytest.mark.parametrize("data", [b"", b"\n\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf\r\n"], ids=["zero-bytes", "blank", "bom", "bom-crlf"])
def test_empty_file(db, tmp_path, data):
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", data))
    assert err.line == 1 and "empty file" in err.problem and "expected a header line" in err.problem


@pytest.mark.parametrize("data", [TURN_HEADER, TURN_HEADER + "\n", TURN_HEADER + "\r\n\r\n"])
def test_header_only_loads_zero_rows(db, tmp_path, data):
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", data))
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (0, 0, 0)


@pytest.mark.parametrize("header,column,problem", [
    (TURN_HEADER.replace(",asr_confidence", ""), "asr_confidence", "missing column(s): asr_confidence"),
    (TURN_HEADER + ",mood", "mood", "unexpected new column(s): mood"),
    (TURN_HEADER.replace("asr_confidence", "asr_conf"), "asr_confidence",
     "column 'asr_conf' found where 'asr_confidence' was expected (renamed?)"),
    (TURN_HEADER + ",turn_id", "turn_id", "duplicated column(s): turn_id"),
], ids=["missing", "extra", "renamed", "duplicated"])
def test_header_drift_names_the_column(db, tmp_path, header, column, problem):
    body = ",".join(["x"] * len(header.split(",")))
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", f"{header}\n{body}\n"))
    assert isinstance(err, SchemaDriftError)
    assert (err.line, err.column) == (1, column)
    assert problem in err.problem and "the contract of voice_turns.csv: turn_id, session_id" in err.problem


def test_reordered_columns_load_by_name(db, tmp_path):
    names = TURN_HEADER.split(",")[::-1]
    rows = [dict(zip(TURN_HEADER.split(","), turn(i, turn_id=f"R{i}").split(","), strict=True)) for i in (1, 2)]
    text = ",".join(names) + "\n" + "".join(",".join(r[n] for n in names) + "\n" for r in rows)
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", text))
    assert result.header.reordered
    assert loaded(db, result, "turn_id, turn_number, asr_confidence, created_at::text") == [
        ("R1", 1, 0.9, "2025-01-02"), ("R2", 2, 0.9, "2025-01-02")]


def test_optional_column_may_be_absent(db, tmp_path):
    header = SESSION_HEADER.replace(",asr_model_version", "")
    result = load(db, "voice_sessions", write(tmp_path, "voice_sessions.csv",
                                              f"{header}\n{session('OPT1').rsplit(',', 1)[0]}\n"))
    assert loaded(db, result, "session_id, asr_model_version") == [("OPT1", None)]


# -- values -------------------------------------------------------------------------------------------

BAD_TURNS = [
    # (change, column, the offending value as the reason shows it, or None when not shown)
    ({"turn_number": "two"}, "turn_number", "two"),
    ({"turn_number": "1.5"}, "turn_number", "1.5"),
    ({"turn_number": "0"}, "turn_number", "0"),
    ({"turn_number": "-3"}, "turn_number", "-3"),
    ({"turn_number": "99999999999999999999"}, "turn_number", None),
    ({"intent_confidence": "high"}, "intent_confidence", "high"),
    ({"asr_confidence": "-0.01"}, "asr_confidence", "-0.01"),
    ({"asr_confidence": "1.01"}, "asr_confidence", "1.01"),
    ({"asr_confidence": "1e2"}, "asr_confidence", None),
    ({"asr_confidence": "1e-400"}, "asr_confidence", None),  # no cast overflow
    ({"asr_confidence": "NaN"}, "asr_confidence", None),
    ({"turn_duration_sec": "-1"}, "turn_duration_sec", "-1"),
    ({"turn_duration_sec": "3s"}, "turn_duration_sec", "3s"),
    ({"speaker": "robot"}, "speaker", "robot"),
    ({"error_type": "glitch"}, "error_type", "glitch"),
    ({"created_at": "2025-13-01"}, "created_at", "2025-13-01"),
    ({"created_at": "2025-02-30"}, "created_at", "2025-02-30"),
    ({"created_at": "2023-02-29"}, "created_at", "2023-02-29"),
    ({"created_at": "yesterday"}, "created_at", "yesterday"),  # PostgreSQL's date input reads it as a day
    ({"session_id": ""}, "session_id", None),
    ({"session_id": "   "}, "session_id", None),
    ({"detected_intent": "x" * 201}, "detected_intent", None),
]


def shows(reason: str, column: str, value: str | None) -> bool:
    """The reason names the column, says what was expected, and quotes the value when given
    (either quote style)."""
    return (reason.startswith(f"{column}: ") or f"; {column}: " in reason) and "expected" in reason and (
        value is None or f"'{value}'" in reason or f'"{value}"' in reason)


@pytest.fixture(scope="module")
def bad_turns(raw, tmp_path_factory):
    """One file: good rows, then one row per bad case (line 3 + i), then good rows (enough good
    dates that the file's date format is plainly YYYY-MM-DD)."""
    lines = [TURN_HEADER, turn(1, turn_id="G1")]
    lines += [turn(10 + i, turn_id=f"B{i}", **change) for i, (change, _, _) in enumerate(BAD_TURNS)]
    lines += [turn(100 + i, turn_id=f"G{2 + i}") for i in range(40)]
    path = write(tmp_path_factory.mktemp("bad"), "voice_turns.csv", "\n".join(lines) + "\n")
    result = load(raw, "voice_turns", path)
    return result, quarantined(raw, result)


@pytest.mark.parametrize("i", range(len(BAD_TURNS)), ids=[f"{c}={v[c][:12]!r}" for v, c, _ in BAD_TURNS])
def test_a_bad_value_is_quarantined_with_its_line_column_and_reason(bad_turns, i):
    result, q = bad_turns
    _, column, value = BAD_TURNS[i]
    assert 3 + i in q, f"line {3 + i} ({BAD_TURNS[i][0]}) was loaded"
    assert q[3 + i][0] == column
    assert shows(q[3 + i][1], column, value), q[3 + i][1]


def test_good_rows_around_bad_ones_load_with_their_lines(bad_turns, raw):
    result, q = bad_turns
    assert (result.rows_loaded, result.rows_quarantined) == (41, len(BAD_TURNS))
    lines = raw.rows(f"select turn_id, _source_line from raw.voice_turns where _batch_id = {result.batch_id} "
                     "order by 2")
    assert lines[:2] == [("G1", 2), ("G2", 3 + len(BAD_TURNS))] and lines[-1] == ("G41", 42 + len(BAD_TURNS))


@pytest.mark.parametrize("careful", [False, True], ids=["clean file", "file with a broken rule"])
def test_a_stray_non_iso_date_is_read_day_first(db, tmp_path, careful):
    """The contract's dates are YYYY-MM-DD and a file whose first rows are not is refused (format
    drift, below); a stray other spelling inside an ISO file is read by PostgreSQL's date input,
    day first (DateStyle ISO, DMY: the users' locale), the same on both load paths."""
    rows = [turn(1, turn_id="ND1", created_at="2025/01/03"), turn(2, turn_id="ND2", created_at="04-01-2025")]
    rows += [turn(10 + i, turn_id=f"NG{i}") for i in range(20)]
    if careful:
        rows.append(turn(99, turn_id="NBAD", speaker="robot"))
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", "\n".join([TURN_HEADER, *rows]) + "\n"))
    got = dict(db.rows("select turn_id, created_at::text from raw.voice_turns where _batch_id = %s "
                       "and turn_id in ('ND1', 'ND2')", (result.batch_id,)))
    assert got == {"ND1": "2025-01-03", "ND2": "2025-01-04"}
    assert result.load_path == ("validated after COPY" if careful else "checked during COPY")


def test_a_changed_date_format_is_schema_drift(db, tmp_path):
    """Most of the first rows' dates not YYYY-MM-DD: the export changed its date format, and
    reading "02/01/25" as some date would be silent corruption. The whole file is refused."""
    rows = [turn(i, turn_id=f"DF{i}", created_at=f"{i:02d}/01/2025") for i in range(1, 26)]
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", "\n".join([TURN_HEADER, *rows]) + "\n"))
    assert isinstance(err, SchemaDriftError)
    assert (err.line, err.column) == (2, "created_at")
    assert "date format changed" in err.problem and "'01/01/2025'" in err.problem


def test_text_length_is_counted_in_characters(db, tmp_path):
    """The rule reads the byte length first; a value of more bytes than the limit but not more
    characters (here two bytes each) loads, one character more is quarantined."""
    rows = [turn(1, turn_id="LEN1", detected_intent="é" * contract.MAX_TEXT_LENGTH),
            turn(2, turn_id="LEN2", detected_intent="é" * (contract.MAX_TEXT_LENGTH + 1))]
    rows += [turn(10 + i, turn_id=f"LENG{i}") for i in range(20)]
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", "\n".join([TURN_HEADER, *rows]) + "\n"))
    assert set(quarantined(db, result)) == {3}
    assert loaded(db, result, "turn_id, length(detected_intent), octet_length(detected_intent)")[0] == (
        "LEN1", contract.MAX_TEXT_LENGTH, 2 * contract.MAX_TEXT_LENGTH)


def test_postgresql_integer_spellings_are_read_as_the_integer_they_spell(db, tmp_path):
    """A documented leniency: PostgreSQL 16+'s integer input reads 0x10, 1_000 and +5, and the
    loader takes them as the integer they spell rather than quarantining them."""
    rows = [turn(1, turn_id="IS1", turn_number="0x10"), turn(2, turn_id="IS2", turn_number="1_000"),
            turn(3, turn_id="IS3", turn_number="+5")]
    rows += [turn(10 + i, turn_id=f"ISG{i}") for i in range(20)]
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", "\n".join([TURN_HEADER, *rows]) + "\n"))
    got = dict(db.rows("select turn_id, turn_number from raw.voice_turns where _batch_id = %s "
                       "and turn_id like 'IS_'", (result.batch_id,)))
    assert got == {"IS1": 16, "IS2": 1000, "IS3": 5}
    assert result.rows_quarantined == 0


def test_every_bad_column_of_a_row_is_named(db, tmp_path):
    good = "".join(turn(10 + i, turn_id=f"EB{i}") + "\n" for i in range(20))
    path = write(tmp_path, "voice_turns.csv",
                 f"{TURN_HEADER}\n{turn(1, turn_number='x', speaker='robot', created_at='soon')}\n{good}")
    result = load(db, "voice_turns", path)
    column, reason = quarantined(db, result)[2]
    assert column == "turn_number"  # the first in contract order
    assert all(f"{c}: expected" in reason for c in ("turn_number", "speaker", "created_at"))


def test_a_quarantined_row_keeps_its_record(db, tmp_path):
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", f"{TURN_HEADER}\n{turn(1, speaker='robot')}\n"))
    record = db.scalar("select record from raw.quarantine where batch_id = %s", (result.batch_id,))
    assert record["speaker"] == "robot" and record["turn_id"] == "T1"


def test_personal_data_is_withheld_from_reasons(db, tmp_path):
    path = write(tmp_path, "users.csv", "user_id,region,disability_flag,first_time_digital_user\n"
                                        "U77,mars,yes,no\nU78,rural,yes,no\nU78,urban,no,no\n")
    result = load(db, "users", path)
    q = quarantined(db, result)
    assert q[2][0] == "region" and shows(q[2][1], "region", "mars")
    assert "U78" not in q[3][1] and "value withheld: personal data" in q[3][1]


def test_yes_no_and_case_are_normalised(db, tmp_path):
    path = write(tmp_path, "users.csv", "user_id,region,disability_flag,first_time_digital_user\n"
                                        " N1 ,RURAL, Yes ,0\nN2,Urban,n,TRUE\nN3,urban,maybe,no\n")
    result = load(db, "users", path)
    assert loaded(db, result, "user_id, region, disability_flag, first_time_digital_user") == [
        ("N1", "rural", True, False), ("N2", "urban", False, True)]
    assert quarantined(db, result)[4][0] == "disability_flag"


def test_a_very_long_field_is_quarantined_and_its_record_truncated(db, tmp_path):
    huge = "y" * 1_000_000
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv",
                                           f"{TURN_HEADER}\n{turn(1, detected_intent=huge)}\n{turn(2)}\n"))
    column, reason = quarantined(db, result)[2]
    assert column == "detected_intent"
    assert shows(reason, "detected_intent", None) and "200" in reason
    record = db.scalar("select record from raw.quarantine where batch_id = %s", (result.batch_id,))
    assert len(record["detected_intent"]) <= QUARANTINE_VALUE_MAX
    assert result.rows_loaded == 1


# -- duplicates ----------------------------------------------------------------------------------------

def test_duplicate_ids_within_a_file_are_all_quarantined(db, tmp_path):
    path = write(tmp_path, "voice_turns.csv",
                 "\n".join([TURN_HEADER, turn(1, turn_id="D1"), turn(2, turn_id="D2"), turn(3, turn_id="D1"),
                            turn(4, turn_id=" D1 ")]) + "\n")
    result = load(db, "voice_turns", path)
    q = quarantined(db, result)
    assert set(q) == {2, 4, 5}
    assert all(r[0] == "turn_id" and "duplicate turn_id" in r[1] and "D1" in r[1] for r in q.values())
    assert loaded(db, result, "turn_id") == [("D2",)]


def test_the_same_file_twice_is_loaded_once(db, tmp_path):
    path = write(tmp_path, "voice_turns.csv", f"{TURN_HEADER}\n{turn(1, turn_id='ONCE')}\n")
    first = load(db, "voice_turns", path)
    second = load(db, "voice_turns", path)
    assert second.skipped and second.batch_id == first.batch_id
    assert db.scalar("select count(*) from raw.voice_turns where turn_id = 'ONCE'") == 1


def test_a_batch_is_committed_with_its_provenance(db, tmp_path):
    """Where the file came from is written with its batch row, in the load's transaction: a run
    that dies after the commit cannot leave a synthetic batch that passes for a real one."""
    path = write(tmp_path, "voice_turns.csv", f"{TURN_HEADER}\n{turn(1, turn_id='ORIGIN')}\n")
    origin = Origin(tmp_path, "csv", Dataset(SYNTHETIC, 7))
    with db.connect() as conn:
        result = load_file(conn, contract.table("voice_turns"), path, origin=origin)
        conn.commit()
    assert db.rows("select source_folder, source_format, dataset, generator_seed from raw.load_batches "
                   "where batch_id = %s", (result.batch_id,)) == [(str(tmp_path), "csv", SYNTHETIC, 7)]


def test_the_same_content_under_another_name_is_not_loaded_again(db, tmp_path):
    """Found by its checksum after streaming: the load's transaction is rolled back, leaving no
    batch row and no batch table behind."""
    text = f"{TURN_HEADER}\n{turn(1, turn_id='TWIN')}\n{turn(2, turn_id='TWIN2', speaker='robot')}\n"
    first = load(db, "voice_turns", write(tmp_path / "a", "voice_turns.csv", text))
    batches = db.scalar("select count(*) from raw.load_batches")
    tables = db.scalar("select count(*) from pg_tables where schemaname = 'raw'")
    second = load(db, "voice_turns", write(tmp_path / "b", "voice_turns.csv", text))
    assert second.skipped and second.batch_id == first.batch_id and second.load_path == "already loaded"
    assert (second.checksum, second.file_bytes) == (first.checksum, first.file_bytes)
    assert db.scalar("select count(*) from raw.load_batches") == batches
    assert db.scalar("select count(*) from pg_tables where schemaname = 'raw'") == tables
    assert db.scalar("select count(*) from raw.quarantine where batch_id = %s", (first.batch_id,)) == 1


def test_a_file_rewritten_in_place_with_the_same_size_is_loaded_again(db, tmp_path):
    path = write(tmp_path, "voice_turns.csv", f"{TURN_HEADER}\n{turn(1, turn_id='SIZE1')}\n")
    first = load(db, "voice_turns", path)
    write(tmp_path, "voice_turns.csv", f"{TURN_HEADER}\n{turn(1, turn_id='SIZE2')}\n")
    second = load(db, "voice_turns", path)
    assert not second.skipped and second.batch_id != first.batch_id and first.file_bytes == second.file_bytes
    assert loaded(db, second, "turn_id") == [("SIZE2",)]


def _stg_sessions(db, tmp_path) -> dict[str, str]:
    """Build staging.stg_voice_export__sessions with real dbt (the latest_version macro)."""
    done = db.dbt(tmp_path / "target", "run", "--select", "stg_voice_export__sessions")
    assert done.returncode == 0, done.stdout[-3000:]
    return dict(db.rows("select session_id, final_outcome from staging.stg_voice_export__sessions"))


def test_a_later_delivery_supersedes_an_earlier_one(raw, use_db, tmp_path, dbt_manifest):
    """Across dated deliveries a key's latest delivery wins (late data, corrected outcomes),
    also when an earlier delivery is corrected and delivered again after a later one."""
    db = use_db(raw)
    t = contract.table("voice_sessions")

    def deliver(day: str, rows: list[str], tag: str = ""):
        path = write(tmp_path / f"{day}{tag}", "voice_sessions.csv", SESSION_HEADER + "\n" + "\n".join(rows) + "\n")
        result = load(db, "voice_sessions", path, delivery=day)
        with db.connect() as conn:
            activate_batches(conn, t, [result])
            conn.commit()
        return result

    deliver("2025-01-01", [session("L1", "abandoned", "2025-01-01"), session("L2", "completed", "2025-01-01")])
    # L1's outcome is corrected by the next day's delivery
    deliver("2025-01-02", [session("L1", "transferred", "2025-01-01"), session("L3", "completed", "2025-01-02")])
    # then the first delivery is corrected (L2) and delivered again, after the second one
    deliver("2025-01-01", [session("L1", "abandoned", "2025-01-01"), session("L2", "abandoned", "2025-01-01")],
            tag="-v2")

    # L1: the later delivery wins over the later load; L2: the corrected file replaces its first version
    assert _stg_sessions(db, tmp_path) == {"L1": "transferred", "L2": "abandoned", "L3": "completed"}
    assert db.scalar("select count(*) from raw.load_batches where table_name = 'voice_sessions' and active") == 2


# -- encodings, line ends, quoting ----------------------------------------------------------------------

def test_a_byte_order_mark_is_accepted(db, tmp_path):
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv",
                                           b"\xef\xbb\xbf" + f"{TURN_HEADER}\n{turn(1, turn_id='BOM1')}\n".encode()))
    assert loaded(db, result, "turn_id") == [("BOM1",)]


@pytest.mark.parametrize("ends", [("\r\n", "\r\n", "\r\n"), ("\r\n", "\n", "\r\n"), ("\n", "\r\n", "\n")],
                         ids=["crlf", "mixed-crlf-first", "mixed-lf-first"])
def test_crlf_and_mixed_line_ends_load(db, tmp_path, ends):
    text = TURN_HEADER + ends[0] + turn(1, turn_id=f"E{len(ends[1])}{ends[0]!r}") + ends[1] + turn(2) + ends[2]
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", text))
    assert result.rows_loaded == 2
    assert db.scalar(f"select count(*) from raw.voice_turns where _batch_id = {result.batch_id} "
                     "and (created_at is null or turn_id like '%\r%')") == 0


def test_quoted_commas_and_newlines_keep_later_line_numbers_right(db, tmp_path):
    text = (f"{TURN_HEADER}\r\n"
            + turn(1, turn_id="Q1", detected_intent='"apply, then\r\npay\nlater"') + "\r\n"   # lines 2-4
            + turn(2, turn_id='"Q2"', detected_intent='"say ""hello"""') + "\r\n"            # line 5
            + turn(3, turn_id="Q3", speaker="robot") + "\r\n")                                  # line 6
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", text))
    # a line break inside a quoted field is kept (as LF: the loader reads CRLF as a line end)
    rows = [(i, v.replace("\r\n", "\n"), line) for i, v, line in loaded(db, result, "turn_id, detected_intent, _source_line")]
    assert rows == [("Q1", "apply, then\npay\nlater", 2), ("Q2", 'say "hello"', 5)]
    assert quarantined(db, result)[6][0] == "speaker"


def test_no_final_newline_and_trailing_blank_lines(db, tmp_path):
    a = load(db, "voice_turns", write(tmp_path / "a", "voice_turns.csv", f"{TURN_HEADER}\n{turn(1, turn_id='NF1')}"))
    b = load(db, "voice_turns", write(tmp_path / "b", "voice_turns.csv",
                                      f"{TURN_HEADER}\n{turn(1, turn_id='NF2')}\n\n\r\n\n"))
    assert (a.rows_loaded, b.rows_loaded) == (1, 1)


def test_non_utf8_bytes_name_line_and_column(db, tmp_path):
    data = (f"{TURN_HEADER}\n{turn(1, detected_intent=chr(34) + 'two' + chr(10) + 'lines' + chr(34))}\n"
            f"{turn(2)}\n").encode() + turn(3, detected_intent="caf\u00e9").encode("latin-1") + b"\n"
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", data))
    assert (err.line, err.column) == (5, "detected_intent")
    assert "invalid byte sequence" in err.problem and "UTF-8" in err.problem


def test_a_nul_byte_names_its_line(db, tmp_path):
    data = f"{TURN_HEADER}\n{turn(1)}\n".encode() + turn(2, detected_intent="a\x00b").encode() + b"\n"
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", data))
    assert (err.line, err.column) == (3, "detected_intent") and "NUL byte" in err.problem


def test_a_truncated_last_line_names_line_and_column(db, tmp_path):
    text = f"{TURN_HEADER}\n{turn(1)}\n{turn(2)}\n" + ",".join(turn(3).split(",")[:4])
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", text))
    assert (err.line, err.column) == (4, "detected_intent")
    assert "fewer fields than the header's 10 (truncated line?)" in err.problem


def test_a_file_cut_inside_a_quoted_field_names_where_the_quote_opened(db, tmp_path):
    text = f"{TURN_HEADER}\n{turn(1)}\n{turn(2)}\n" + turn(3, detected_intent='"cut here').rsplit(",", 3)[0]
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", text))
    assert err.line == 4 and "a quote opened on line 4 is never closed" in err.problem


def test_a_line_with_an_unquoted_comma(db, tmp_path):
    text = f"{TURN_HEADER}\n{turn(1)}\n{turn(2, detected_intent='apply, pay')}\n"
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", text))
    assert err.line == 3 and "more fields than the header's 10" in err.problem


def test_a_blank_line_in_the_middle(db, tmp_path):
    err = fails(db, "voice_turns", write(tmp_path, "voice_turns.csv", f"{TURN_HEADER}\n{turn(1)}\n\n{turn(2)}\n"))
    assert err.line == 3 and "empty line" in err.problem


def test_a_rejected_file_is_recorded_with_its_error(db, tmp_path):
    """What the ingestion asset does with a file it cannot load: a 'rejected' batch holding no rows."""
    path = write(tmp_path, "voice_turns.csv", f"{TURN_HEADER}\n{turn(1)}\nbroken\n")
    err = fails(db, "voice_turns", path)
    with db.connect() as conn:
        record_rejection(conn, contract.table("voice_turns"), path, None, "run-x", err)
        conn.commit()
    status, error, loaded_rows = db.rows(
        "select status, error, rows_loaded from raw.load_batches where dagster_run_id = 'run-x'")[0]
    assert status == "rejected" and "line 3" in error and loaded_rows == 0


def test_the_quarantine_record_is_json_of_the_file_columns(db, tmp_path):
    result = load(db, "voice_turns", write(tmp_path, "voice_turns.csv", f"{TURN_HEADER}\n{turn(1, speaker='x')}\n"))
    record = db.scalar("select record::text from raw.quarantine where batch_id = %s", (result.batch_id,))
    assert sorted(json.loads(record)) == sorted(TURN_HEADER.split(","))


# -- a file of many rows: the path it takes, line numbers far down ---------------------------------------

ROWS = 400


def turns_file(folder: Path, change: dict[int, dict] | None = None, extra: dict[int, str] | None = None) -> Path:
    """ROWS turns, row i changed by ``change[i]`` or replaced by the raw line ``extra[i]``."""
    change, extra = change or {}, extra or {}
    lines = [TURN_HEADER] + [extra.get(i) or turn(i, **change.get(i, {})) for i in range(1, ROWS + 1)]
    return write(folder, "voice_turns.csv", "\n".join(lines) + "\n")


@pytest.mark.parametrize("padded", [" T_PAD", "T_PAD\t"], ids=["leading space", "trailing tab"])
def test_a_padded_value_is_found_by_the_check_after_copy_and_trimmed(db, tmp_path, padded):
    """The fast path leaves the trim rules out of COPY's constraints and checks them after COPY
    when the bytes held whitespace: a padded value takes the file to the careful path, which trims it."""
    result = load(db, "voice_turns", turns_file(tmp_path, change={ROWS - 3: {"turn_id": padded}}))
    assert result.load_path == "validated after COPY" and result.rows_quarantined == 0
    assert db.rows("select turn_id, _source_line from raw.voice_turns where _batch_id = %s and turn_id like 'T_PAD%%'",
                   (result.batch_id,)) == [("T_PAD", ROWS - 2)]


def test_spaces_inside_values_keep_the_file_on_the_fast_path(db, tmp_path):
    path = turns_file(tmp_path, change={3: {"detected_intent": "service lookup"}, ROWS - 3: {"session_id": "S 1"}})
    result = load(db, "voice_turns", path)
    assert result.load_path == "checked during COPY" and result.rows_quarantined == 0
    rows = loaded(db, result, "detected_intent, session_id")
    assert (rows[2][0], rows[ROWS - 4][1]) == ("service lookup", "S 1")


def test_a_key_repeated_far_apart_quarantines_both_rows_and_names_the_first(db, tmp_path):
    result = load(db, "voice_turns", turns_file(tmp_path, change={5: {"turn_id": "T_SAME"},
                                                                  ROWS - 5: {"turn_id": "T_SAME"}}))
    q = quarantined(db, result)
    assert sorted(q) == [6, ROWS - 4] and result.rows_loaded == ROWS - 2
    assert "duplicate turn_id 'T_SAME': 2 rows in this file (first at line 6)" in q[ROWS - 4][1]


def test_a_line_with_missing_fields_in_the_middle_names_its_line_and_column(db, tmp_path):
    err = fails(db, "voice_turns", turns_file(tmp_path, extra={ROWS - 7: "T_SHORT,S1,3"}))
    assert (err.line, err.column) == (ROWS - 6, "speaker")
    assert "fewer fields than the header's 10" in err.problem


def test_crlf_line_ends_and_a_byte_order_mark_keep_the_last_line_number(db, tmp_path):
    lines = [TURN_HEADER] + [turn(i) for i in range(1, ROWS + 1)]
    path = write(tmp_path, "voice_turns.csv", b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n\r\n").encode())
    result = load(db, "voice_turns", path)
    assert result.load_path == "checked during COPY"
    assert loaded(db, result, "turn_id, _source_line")[-1] == (f"T{ROWS}", ROWS + 1)
