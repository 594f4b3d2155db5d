"""Pure parts of the reliability work, without a database: which failures are retried, the run
lock's messages, the loader's byte-level helpers, the doctor's view of the dbt tests, the CLI."""

from __future__ import annotations

import json

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voice_analytics_dagster.defs.ingestion.copy_errors import (
    DECIMAL_RE,
    first_bad_byte_line,
    unclosed_quote_line,
)
from voice_analytics_dagster.defs.ingestion.reader import data_chunks
from voice_analytics_dagster.lib import retry

# -- retry: what a retry can help -------------------------------------------------------------------


@pytest.mark.parametrize("exc,transient", [
    (psycopg.errors.AdminShutdown("terminating connection due to administrator command"), True),
    (psycopg.errors.CannotConnectNow("the database system is starting up"), True),
    (psycopg.errors.ConnectionFailure("x"), True),
    (psycopg.errors.SerializationFailure("x"), True),
    (psycopg.errors.DeadlockDetected("x"), True),
    (psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"), True),
    (psycopg.OperationalError("connection failed: connection to server on socket \"/x/.s.PGSQL.5432\" failed: "
                              "No such file or directory"), True),
    (psycopg.errors.LockNotAvailable("could not obtain lock"), False),
    (psycopg.errors.QueryCanceled("canceling statement due to statement timeout"), False),
    (psycopg.errors.NumericValueOutOfRange("out of range"), False),
    (psycopg.errors.UndefinedTable("relation does not exist"), False),
    (psycopg.errors.UniqueViolation("duplicate key"), False),
    (ValueError("bad data"), False),
], ids=lambda v: type(v).__name__ if isinstance(v, Exception) else str(v))
def test_only_lost_connections_and_conflicts_are_transient(exc, transient):
    assert retry.is_transient_db_error(exc) is transient


def test_a_wrapped_lost_connection_is_transient():
    class Wrapper(Exception):
        pass

    try:
        try:
            raise psycopg.errors.AdminShutdown("terminating connection")
        except psycopg.Error as inner:
            raise Wrapper("step failed") from inner
    except Wrapper as outer:
        assert retry.is_transient_db_error(outer)


def test_backoff_doubles_up_to_a_cap():
    assert [retry.backoff_seconds(n) for n in range(6)] == [2, 4, 8, 16, 30, 30]


def _results(*nodes):
    return {"results": [{"unique_id": u, "status": s, "message": m} for u, s, m in nodes]}


LOST = "Database Error in model fact (models/marts/fact.sql)\n  server closed the connection unexpectedly"


@pytest.mark.parametrize("run_results,messages,transient", [
    (_results(("model.a", "success", None), ("model.fact", "error", LOST), ("test.t", "skipped", None)), [], True),
    (_results(("model.fact", "error", "terminating connection due to administrator command")), [], True),
    # a failed test is bad data, even when a connection was lost elsewhere in the same build
    (_results(("model.fact", "error", LOST), ("test.unique_x", "fail", "Got 2 results")), [], False),
    (_results(("test.unique_x", "fail", "Got 2 results, configured to fail if != 0")), [], False),
    (_results(("model.fact", "error", 'column "x" does not exist')), [], False),
    (_results(("model.fact", "error", LOST), ("model.b", "error", "division by zero")), [], False),
    (None, ["Encountered an error:\nDatabase Error\n  connection to server at \"h\" failed: Connection refused"], True),
    (None, ["Compilation Error in model fact"], False),
    (_results(("model.a", "success", None)), ["could not connect to server: No such file or directory"], True),
])
def test_a_dbt_build_is_retried_only_after_a_lost_connection(run_results, messages, transient):
    assert retry.dbt_failure_is_transient(run_results, messages) is transient


# -- the run lock's words ------------------------------------------------------------------------------

def test_the_refusal_names_the_holder_and_what_to_do():
    import datetime as dt

    from voice_analytics_dagster.lib.runlock import Holder, application_name, busy_message

    holder = Holder(4242, "voice-analytics run lock cli pid=17@host", dt.datetime(2026, 1, 2, 3, 4, 5), None)
    msg = busy_message(holder, 0)
    assert "another pipeline run is writing this warehouse" in msg
    assert "voice-analytics run lock cli pid=17@host (server pid 4242, since 2026-01-02 03:04:05)" in msg
    assert "refused without waiting" in msg and "VOICE_ANALYTICS_RUN_LOCK_WAIT" in msg
    assert "after waiting 30 s" in busy_message(holder, 30)
    assert len(application_name("run=" + "x" * 80)) <= 63


def test_the_lock_wait_setting():
    from voice_analytics_dagster.lib.settings import SettingsError, load_settings

    assert load_settings({"VOICE_ANALYTICS_HOME": "/tmp/x", "VOICE_ANALYTICS_HASH_KEY": "k" * 32,
                          "VOICE_ANALYTICS_BI_PASSWORD": "p"}).run_lock_wait_seconds == 3600
    s = load_settings({"VOICE_ANALYTICS_HOME": "/tmp/x", "VOICE_ANALYTICS_HASH_KEY": "k" * 32,
                       "VOICE_ANALYTICS_BI_PASSWORD": "p", "VOICE_ANALYTICS_RUN_LOCK_WAIT": "0"})
    assert s.run_lock_wait_seconds == 0
    with pytest.raises(SettingsError, match="RUN_LOCK_WAIT"):
        load_settings({"VOICE_ANALYTICS_HOME": "/tmp/x", "VOICE_ANALYTICS_HASH_KEY": "k" * 32,
                       "VOICE_ANALYTICS_BI_PASSWORD": "p", "VOICE_ANALYTICS_RUN_LOCK_WAIT": "-1"})


# -- the loader's byte-level helpers ---------------------------------------------------------------------

def _expected(data: bytes) -> bytes:
    body = data.rstrip(b"\r\n").replace(b"\r\n", b"\n")
    return body + b"\n" if body else b""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([b"a", b",", b'"', b"\r", b"\n", b"\r\n", b"\xc3\xa9"]), max_size=40),
       st.integers(min_value=1, max_value=9))
def test_data_chunks_normalise_line_ends_whatever_the_read_size(tmp_path_factory, parts, chunk_size):
    data = b"".join(parts)
    path = tmp_path_factory.mktemp("chunks") / "f.csv"
    path.write_bytes(b"h\n" + data)
    assert b"".join(data_chunks(path, 2, chunk_size=chunk_size)) == _expected(data)


def test_the_first_bad_byte_is_found_on_its_physical_line(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b'h,i\n1,"two\nlines"\n3,ok\n4,caf\xe9\n')
    assert first_bad_byte_line(path) == 5
    path.write_bytes(b"h,i\n1,\x00\n")
    assert first_bad_byte_line(path) == 2
    path.write_bytes("h,i\n1,caf\u00e9\n".encode())
    assert first_bad_byte_line(path) is None


def test_an_unclosed_quote_is_found_where_it_opened(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b'h,i\n1,"a ""quoted"" word"\n2,"two\nlines"\n3,"never closed\n4,x\n')
    assert unclosed_quote_line(path, 4) == 5
    path.write_bytes(b'h,i\n1,"closed"\n')
    assert unclosed_quote_line(path, 4) is None


@pytest.mark.parametrize("value,ok", [("1e99", True), ("-1.5E-07", True), ("1e-400", False), ("1e400", False),
                                      (".5", True), ("5.", True), ("1,5", False), ("NaN", False)])
def test_decimals_that_pass_the_pattern_cast_to_double(value, ok):
    import re

    assert bool(re.match(DECIMAL_RE, value)) is ok
    if ok:
        float(value)  # and PostgreSQL's double precision range is Python's


# -- the doctor's copy of the dbt relationships tests ------------------------------------------------------

def test_the_doctor_knows_which_orphans_block(dbt_manifest):
    """doctor.ORPHAN_SEVERITY agrees with the relationships tests of the staging models."""
    from voice_analytics_dagster.lib.contract import TABLES
    from voice_analytics_dagster.tools.doctor import FAIL, ORPHAN_SEVERITY, WARN

    manifest = json.loads(dbt_manifest.read_text())
    staged = {}  # staging model -> raw table
    for node in manifest["nodes"].values():
        if node["resource_type"] == "model" and node["name"].startswith("stg_"):
            for dep in node["depends_on"]["nodes"]:
                if dep.startswith("source."):
                    staged[node["unique_id"]] = manifest["sources"][dep]["name"]
    found = {}
    for node in manifest["nodes"].values():
        if node["resource_type"] != "test" or (node.get("test_metadata") or {}).get("name") != "relationships":
            continue
        table = staged.get(node.get("attached_node"))
        if table is None:
            continue
        column = node["column_name"].replace("user_key", "user_id")
        found[(table, column)] = FAIL if node["config"]["severity"].lower() == "error" else WARN
    declared = {(t.name, c) for t in TABLES for c, _, _ in t.foreign_keys}
    assert set(ORPHAN_SEVERITY) == declared
    assert found == ORPHAN_SEVERITY


# -- the command line ---------------------------------------------------------------------------------------

def test_run_and_doctor_arguments():
    from voice_analytics_dagster.tools.cli import build_parser

    p = build_parser()
    args = p.parse_args(["run", "--source", "x", "--no-wait"])
    assert args.no_wait and args.wait is None
    assert p.parse_args(["run", "--source", "x", "--wait", "12"]).wait == 12
    with pytest.raises(SystemExit):
        p.parse_args(["run", "--source", "x", "--wait", "1", "--no-wait"])
    args = p.parse_args(["doctor", "--source", "d", "--sample", "3"])
    assert (args.source, args.sample) == ("d", 3)
