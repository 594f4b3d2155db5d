"""Property-based tests of the loader on the real server (hypothesis).

Random files of every table of the contract, each cell a random valid or invalid value of its
column's type, written with random quoting, line ends, byte-order mark and column order. For any
such file:

- read = loaded + quarantined = the number of records written;
- a row whose every value is valid (and whose key is unique in the file) loads, with each value
  typed as expected (integers, doubles parsed exactly as Python parses them, dates, booleans,
  text trimmed and case-normalised) and its physical line number;
- any other row is quarantined, its column_name one of its invalid columns (or the key, for a
  duplicate: every copy of a key repeated in the file is quarantined, valid or not) and its
  reason naming that column.

Valid and invalid values are built by construction (not by re-applying the loader's patterns).
Each example loads inside a transaction that is rolled back, so examples do not see each other.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import tempfile
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from voice_analytics_dagster.defs.ingestion.copy import load_file
from voice_analytics_dagster.lib.contract import (
    EARLIEST_DATE,
    MAX_TEXT_LENGTH,
    NO_VALUES,
    TABLES,
    YES_VALUES,
    Column,
    Table,
)

pytestmark = [pytest.mark.integration]

MISSING = object()  # expected NULL


@dataclass(frozen=True)
class Cell:
    text: str
    valid: bool
    value: object = None  # the typed value when valid (MISSING = NULL)


PAD = st.sampled_from(["", " ", "  ", "\t"])
CASE = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])
# text with no case rules may hold any printable character, also commas, quotes and line feeds;
# carriage returns are normalised by the loader (CRLF -> LF) and are left out
ANY_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\r")
                   | st.sampled_from([",", '"', "\n", " "]), min_size=1, max_size=MAX_TEXT_LENGTH)
# text of case-normalised columns: ASCII (PostgreSQL's lower/upper follow the server's locale)
ASCII_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from([",", '"', "\n"]),
                     min_size=1, max_size=MAX_TEXT_LENGTH)


def _strip(s: str) -> str:
    return s.strip(" \t\r\n")


@st.composite
def valid_cell(draw, c: Column) -> Cell:
    pad = draw(PAD)
    if c.type == "integer":
        lo = int(c.minimum) if c.minimum is not None else -(10 ** 17)
        n = draw(st.integers(lo, 10 ** 17))
        text = draw(st.sampled_from([str(n), f"+{n}" if n >= 0 else str(n), f"{n:04d}" if n >= 0 else str(n)]))
        return Cell(pad + text + pad, True, n)
    if c.type == "decimal":
        lo = c.minimum if c.minimum is not None else -1000.0
        hi = c.maximum if c.maximum is not None else 10.0 ** 6
        k = draw(st.integers(0, 8))
        n = draw(st.integers(int(Decimal(str(lo)).scaleb(k)), int(Decimal(str(hi)).scaleb(k))))
        d = Decimal(n).scaleb(-k)
        text = draw(st.sampled_from([str(d), f"{d:f}", f"{d:e}", f"{d:E}"]))
        return Cell(pad + text + pad, True, float(text))
    if c.type == "date":
        # the contract's plausible days: from EARLIEST_DATE to today
        day = draw(st.dates(dt.date.fromisoformat(EARLIEST_DATE), dt.date.today()))
        return Cell(pad + day.isoformat() + pad, True, day)
    if c.type == "yesno":
        word = draw(st.sampled_from(YES_VALUES + NO_VALUES))
        return Cell(pad + draw(CASE)(word) + pad, True, word in YES_VALUES)
    if c.type == "enum":
        word = draw(st.sampled_from(c.accepted))
        return Cell(pad + draw(CASE)(word) + pad, True, word)
    raw = draw(ASCII_TEXT if c.case else ANY_TEXT).replace("\r", "")
    stripped = _strip(raw)
    if not stripped:
        raw, stripped = "x" + raw, _strip("x" + raw)
    stripped = stripped[:MAX_TEXT_LENGTH]
    value = stripped.lower() if c.case == "lower" else stripped.upper() if c.case == "upper" else stripped
    return Cell(stripped, True, value)


@st.composite
def invalid_cell(draw, c: Column) -> Cell:
    options = []
    if c.type == "integer":
        # not "0x10" or "1_000": PostgreSQL 16+ reads them as integers (16, 1000), and so does the loader
        options += ["two", "1.5", "1e3", "12a", "9" * 19, "--1"]
        if c.minimum is not None:
            options.append(str(int(c.minimum) - draw(st.integers(1, 10 ** 6))))
    elif c.type == "decimal":
        options += ["high", "1,5", "NaN", "inf", "1e400", "1e-400", "1.2.3", "--1", "1e"]
        if c.minimum is not None:
            options.append(str(Decimal(str(c.minimum)) - Decimal(draw(st.integers(1, 10 ** 6))).scaleb(-3)))
        if c.maximum is not None:
            options.append(str(Decimal(str(c.maximum)) + Decimal(draw(st.integers(1, 10 ** 6))).scaleb(-3)))
    elif c.type == "date":
        # not here: other spellings of a real day ("2025/01/02", "02-01-2025"), which PostgreSQL's
        # date input reads (day first) when they are a minority of a file (test_loader_inputs.py::
        # test_a_stray_non_iso_date_is_read_day_first)
        options += ["2025-13-01", "2025-00-10", "2025-04-31", "2023-02-29", "0999-01-01", "1999-12-31",
                    "2999-01-01", "yesterday", "today", "soon"]
    elif c.type == "yesno":
        options += ["maybe", "yess", "2", "oui"]
    elif c.type == "enum":
        options += ["x" + c.accepted[0], c.accepted[0] + "s", "?"]
    else:
        options.append("y" * draw(st.integers(MAX_TEXT_LENGTH + 1, MAX_TEXT_LENGTH + 50)))
    if c.required:
        options += ["", "   "]
    return Cell(draw(st.sampled_from(options)), False)


@dataclass
class Case:
    table: Table
    columns: list[str]  # file column order
    rows: list[dict[str, Cell]]
    data: bytes
    lines: list[int]  # physical line of each row


@st.composite
def files(draw) -> Case:
    t = draw(st.sampled_from(TABLES))
    columns = [c.name for c in t.columns if not (c.optional_in_file and draw(st.booleans()))]
    if draw(st.booleans()):
        columns = draw(st.permutations(columns))
    n = draw(st.integers(1, 12))
    rows = []
    for i in range(n):
        row = {}
        for c in t.columns:
            if c.name not in columns:
                row[c.name] = Cell("", True, MISSING)
            elif c.name in t.key:
                if rows and draw(st.integers(0, 7)) == 0:  # a duplicate of an earlier key
                    row[c.name] = draw(st.sampled_from([r[c.name] for r in rows]))
                else:
                    row[c.name] = Cell(f"{draw(PAD)}K{i}{draw(PAD)}", True, f"K{i}")
            elif draw(st.integers(0, 9)) == 0:
                row[c.name] = draw(invalid_cell(c))
            elif not c.required and draw(st.integers(0, 5)) == 0:
                # empty is missing, quoted or not; spaces alone are missing text, but no number,
                # date or yes/no (COPY reads those fields typed: README, What `run` expects)
                blanks = ["", " "] if c.type in ("text", "enum") else [""]
                row[c.name] = Cell(draw(st.sampled_from(blanks)), True, MISSING)
            else:
                row[c.name] = draw(valid_cell(c))
        rows.append(row)
    terminator = draw(st.sampled_from(["\n", "\r\n"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL]))
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=terminator, quoting=quoting)
    writer.writerow(columns)
    lines, line = [], 2
    for row in rows:
        start = out.tell()
        writer.writerow([row[c].text for c in columns])
        lines.append(line)
        line += out.getvalue()[start:].count("\n")
    data = out.getvalue().encode()
    if draw(st.booleans()):
        data = b"\xef\xbb\xbf" + data
    if draw(st.booleans()):
        data = data.rstrip(b"\r\n")  # no final line end
    return Case(t, columns, rows, data, lines)


def expected(case: Case):
    """(loaded rows by line, quarantined (column, invalid columns) by line) for a written case."""
    t = case.table
    key = t.key[0]
    keys = [r[key].value if r[key].valid else None for r in case.rows]
    dup = {k for k in keys if k is not None and keys.count(k) > 1}
    loaded, quarantined = {}, {}
    for row, line, k in zip(case.rows, case.lines, keys, strict=True):
        bad = [c.name for c in t.columns if not row[c.name].valid]
        if bad or k in dup:
            quarantined[line] = (bad[0] if bad else key, bad, k in dup)
        else:
            loaded[line] = tuple(None if row[c.name].value is MISSING else row[c.name].value for c in t.columns)
    return loaded, quarantined


@pytest.fixture(scope="module")
def conn(raw):
    with raw.connect() as c:
        yield c


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow, HealthCheck.data_too_large])
@given(case=files())
def test_every_row_loads_typed_or_is_quarantined_naming_its_columns(conn, case):
    t = case.table
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / t.file
        path.write_bytes(case.data)
        with conn.transaction(force_rollback=True):
            result = load_file(conn, t, path)
            rows = conn.execute(
                f"select _source_line, {', '.join(c.name for c in t.columns)} from raw.{t.name} "
                "where _batch_id = %s", (result.batch_id,)).fetchall()
            quarantine = conn.execute(
                "select source_line, column_name, reason from raw.quarantine where batch_id = %s",
                (result.batch_id,)).fetchall()

    want_loaded, want_quarantined = expected(case)
    assert result.rows_read == len(case.rows)
    assert result.rows_loaded + result.rows_quarantined == result.rows_read
    assert (result.rows_loaded, result.rows_quarantined) == (len(want_loaded), len(want_quarantined))
    assert {r[0]: tuple(r[1:]) for r in rows} == want_loaded
    got = {line: (column, reason) for line, column, reason in quarantine}
    assert set(got) == set(want_quarantined)
    for line, (_first, bad, dup) in want_quarantined.items():
        column, reason = got[line]
        # the reason names its column, one of the row's bad ones (the key for a duplicate);
        # that it names every bad column is tests/integration/test_loader_inputs.py::
        # test_every_bad_column_of_a_row_is_named
        assert column in bad or (dup and column == t.key[0]), (line, column, reason)
        assert f"{column}: " in reason or (dup and f"duplicate {t.key[0]}" in reason), (column, reason)
        if dup and not bad:
            assert f"duplicate {t.key[0]}" in reason
