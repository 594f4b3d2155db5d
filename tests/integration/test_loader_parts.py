"""A big file loads in two parts at once (loader.plan_split, two connections); the result must be
the one of the file loaded whole: the same rows with the same line numbers, the same quarantine,
the same errors, the same checksum, and nothing left behind by a load that fails or is killed.

Each case loads the same bytes whole and in parts (the size threshold lowered to 0 so that small
files split) into the same database, and compares everything the load wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_loader_inputs import TURN_HEADER, turn, write
from voice_analytics_dagster.defs.ingestion.loader import (
    SPLIT_MIN_BYTES,
    IngestionError,
    load_file,
    plan_split,
    read_header,
)
from voice_analytics_dagster.lib import contract

pytestmark = [pytest.mark.integration]

TURNS = contract.table("voice_turns")
ROWS = 400
COLUMNS = ", ".join(c.name for c in TURNS.columns) + ", _source_line"


def turns_file(folder: Path, change: dict[int, dict] | None = None, extra: dict[int, str] | None = None) -> Path:
    """ROWS turns, row i changed by ``change[i]`` or replaced by the raw line ``extra[i]``."""
    change, extra = change or {}, extra or {}
    lines = [TURN_HEADER] + [extra.get(i) or turn(i, **change.get(i, {})) for i in range(1, ROWS + 1)]
    return write(folder, "voice_turns.csv", "\n".join(lines) + "\n")


def forget(db, batch_id: int) -> None:
    """Remove a batch entirely, so that the same bytes can be loaded again."""
    with db.connect() as conn:
        conn.execute(f'drop table if exists raw."voice_turns__b{batch_id}"')
        conn.execute("delete from raw.quarantine where batch_id = %s", (batch_id,))
        conn.execute("delete from raw.load_batches where batch_id = %s", (batch_id,))
        conn.commit()


def leftovers(db) -> list[str]:
    """Tables of the raw schema named after a batch that no partitioned table holds."""
    return [r[0] for r in db.rows(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace "
        "where n.nspname = 'raw' and c.relkind in ('r', 'p') and c.relname ~ '__b[0-9]+' and not c.relispartition")]


def outcome(db, path: Path, parts: bool):
    """(result, rows, quarantine, kind of the batch table) of one load, then the batch is forgotten;
    or the IngestionError, the load having left no batch and no table behind."""
    batches = db.scalar("select count(*) from raw.load_batches")
    with db.connect() as conn:
        try:
            result = load_file(conn, TURNS, path, connect=db.connect if parts else None,
                               split_min_bytes=0 if parts else SPLIT_MIN_BYTES)
        except IngestionError as err:
            assert db.scalar("select count(*) from raw.load_batches") == batches
            assert leftovers(db) == []
            return err
        conn.commit()
    rows = db.rows(f"select {COLUMNS} from raw.voice_turns where _batch_id = %s order by _source_line",
                   (result.batch_id,))
    quarantine = db.rows("select source_line, column_name, reason, record from raw.quarantine where batch_id = %s "
                         "order by source_line, reason", (result.batch_id,))
    kind = db.scalar("select c.relkind from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                     "where n.nspname = 'raw' and c.relname = %s", (f"voice_turns__b{result.batch_id}",))
    forget(db, result.batch_id)
    assert leftovers(db) == []
    return result, rows, quarantine, kind


def same_in_parts(db, path: Path):
    """Load ``path`` whole and in parts; assert that both wrote the same; return the parts' outcome."""
    whole = outcome(db, path, parts=False)
    split = outcome(db, path, parts=True)
    if isinstance(whole, IngestionError):
        assert isinstance(split, IngestionError), split
        assert (split.line, split.column, split.problem) == (whole.line, whole.column, whole.problem)
        return split
    (w, w_rows, w_quarantine, w_kind), (s, s_rows, s_quarantine, _) = whole, split
    assert w_kind == "r"
    assert s_rows == w_rows
    assert s_quarantine == w_quarantine
    assert (s.checksum, s.file_bytes, s.rows_read, s.rows_loaded, s.rows_quarantined, s.load_path) == \
        (w.checksum, w.file_bytes, w.rows_read, w.rows_loaded, w.rows_quarantined, w.load_path)
    return split


def test_a_clean_file_loads_in_two_parts_with_its_line_numbers(db, tmp_path):
    path = turns_file(tmp_path)
    result, rows, quarantine, kind = same_in_parts(db, path)
    assert kind == "p", "the batch table of a file loaded in parts is partitioned by line"
    assert (result.rows_loaded, quarantine) == (ROWS, [])
    assert [r[-1] for r in rows] == list(range(2, ROWS + 2))
    assert rows[0][0] == "T1" and rows[-1][0] == f"T{ROWS}"


def test_values_that_do_not_parse_in_either_part_are_quarantined_at_their_lines(db, tmp_path):
    path = turns_file(tmp_path, change={10: {"turn_number": "ten"}, ROWS - 10: {"intent_confidence": "high"}})
    result, _, quarantine, kind = same_in_parts(db, path)
    assert kind == "p" and result.rows_quarantined == 2
    assert [(line, column) for line, column, *_ in quarantine] == [(11, "turn_number"),
                                                                  (ROWS - 9, "intent_confidence")]


def test_a_key_repeated_across_the_parts_quarantines_both_rows(db, tmp_path):
    path = turns_file(tmp_path, change={5: {"turn_id": "T_SAME"}, ROWS - 5: {"turn_id": "T_SAME"}})
    result, _, quarantine, kind = same_in_parts(db, path)
    assert kind == "p" and result.rows_quarantined == 2
    assert [line for line, *_ in quarantine] == [6, ROWS - 4]
    assert "duplicate turn_id 'T_SAME': 2 rows in this file (first at line 6)" in quarantine[1][2]


def test_repeated_keys_of_either_hash_parity_are_all_found(db, tmp_path):
    # each part's thread searches the key hashes of one parity over both parts: eight keys, one
    # within each part and the rest across them, cover both parities
    change = {}
    for k in range(8):
        change[10 + k] = {"turn_id": f"T_DUP{k}"}
        change[(20 + k) if k == 0 else (ROWS - 20 - k) if k == 1 else (ROWS - 50 - k)] = {"turn_id": f"T_DUP{k}"}
    change[ROWS - 1] = {"turn_id": "T_LATE"}
    change[ROWS - 2] = {"turn_id": "T_LATE"}
    path = turns_file(tmp_path, change=change)
    result, _, quarantine, kind = same_in_parts(db, path)
    assert kind == "p" and result.rows_quarantined == 18
    assert {reason.split("'")[1] for _, _, reason, _ in quarantine} == {f"T_DUP{k}" for k in range(8)} | {"T_LATE"}


def test_a_broken_rule_in_the_second_part_loads_the_file_whole_on_the_careful_path(db, tmp_path):
    path = turns_file(tmp_path, change={ROWS - 3: {"asr_confidence": "1.5"}})
    result, _, quarantine, kind = same_in_parts(db, path)
    assert kind == "r" and result.load_path == "validated after COPY"
    assert [(line, column) for line, column, *_ in quarantine] == [(ROWS - 2, "asr_confidence")]


@pytest.mark.parametrize("padded", [" T_PAD", "T_PAD\t"], ids=["leading space", "trailing tab"])
def test_a_padded_value_in_the_second_part_is_found_by_the_check_after_copy(db, tmp_path, padded):
    """The fast path leaves the trim rules out of COPY's constraints and checks them after COPY
    when the bytes held whitespace: a padded value takes the file to the careful path, which trims it."""
    path = turns_file(tmp_path, change={ROWS - 3: {"turn_id": padded}})
    result, rows, quarantine, kind = same_in_parts(db, path)
    assert kind == "r" and result.load_path == "validated after COPY" and quarantine == []
    assert (rows[ROWS - 4][0], rows[ROWS - 4][-1]) == ("T_PAD", ROWS - 2)


def test_spaces_inside_values_keep_the_file_on_the_fast_path(db, tmp_path):
    path = turns_file(tmp_path, change={3: {"detected_intent": "service lookup"}, ROWS - 3: {"session_id": "S 1"}})
    result, rows, quarantine, kind = same_in_parts(db, path)
    assert kind == "p" and result.load_path == "checked during COPY" and quarantine == []
    assert (rows[2][4], rows[ROWS - 4][1]) == ("service lookup", "S 1")


@pytest.mark.parametrize("where", ["first", "second"])
def test_a_line_with_missing_fields_names_its_line_in_either_part(db, tmp_path, where):
    i = 7 if where == "first" else ROWS - 7
    path = turns_file(tmp_path, extra={i: "T_SHORT,S1,3"})
    err = same_in_parts(db, path)
    assert (err.line, err.column) == (i + 1, "speaker")
    assert "fewer fields than the header's 10" in err.problem


def test_a_part_left_by_a_killed_load_is_dropped_by_the_next_load(db, tmp_path):
    # what a load killed between its second part's commit and its own leaves: a table no batch holds
    with db.connect() as conn:
        conn.execute('create table raw."voice_turns__b987654_2" (turn_id text)')
        conn.commit()
    assert leftovers(db) == ["voice_turns__b987654_2"]
    same_in_parts(db, turns_file(tmp_path))
    assert leftovers(db) == []


def test_crlf_line_ends_and_a_byte_order_mark_load_in_parts(db, tmp_path):
    lines = [TURN_HEADER] + [turn(i) for i in range(1, ROWS + 1)]
    path = write(tmp_path, "voice_turns.csv", b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n\r\n").encode())
    result, rows, _, kind = same_in_parts(db, path)
    assert kind == "p" and [r[-1] for r in rows][-1] == ROWS + 1


# -- where the cut falls (no database) ---------------------------------------------------------------

def plan(path: Path):
    return plan_split(path, read_header(path), path.stat().st_size, 0)


def test_the_cut_starts_a_line_near_the_middle_after_a_line_that_is_not_blank(tmp_path):
    path = turns_file(tmp_path)
    data = path.read_bytes()
    split = plan(path)
    assert split is not None
    assert data[split.cut - 1:split.cut] == b"\n" and data[split.cut:split.cut + 1] == b"T"
    assert abs(split.cut - len(data) / 2) < 100
    assert split.lines_before == data[:split.cut].count(b"\n")
    assert data.splitlines()[split.first_line - 1].startswith(b"T")


def test_no_cut_below_the_size_or_when_the_first_half_holds_a_quote(tmp_path):
    path = turns_file(tmp_path)
    assert plan_split(path, read_header(path), path.stat().st_size, path.stat().st_size + 1) is None
    quoted = turns_file(tmp_path / "q", change={3: {"detected_intent": '"service, lookup"'}})
    assert plan(quoted) is None
    late = turns_file(tmp_path / "late", change={ROWS - 1: {"detected_intent": '"service, lookup"'}})
    assert plan(late) is not None, "a quote after the cut does not prevent the split"


def test_the_cut_skips_blank_lines(tmp_path):
    lines = [TURN_HEADER] + [turn(i) for i in range(1, 11)]
    text = "\n".join(lines[:6]) + "\n\n\n" + "\n".join(lines[6:]) + "\n"
    path = write(tmp_path, "voice_turns.csv", text)
    split = plan(path)
    data = path.read_bytes()
    assert split is not None
    assert data[split.cut - 2:split.cut] != b"\n\n" and data[split.cut:split.cut + 1] not in (b"\n", b"\r")
