"""`voice-analytics doctor` on a broken export and with an unreachable server (the healthy set-up
after a published run is in tests/e2e/test_reruns.py)."""

from __future__ import annotations

import socket

import pytest

from tests.conftest import copy_export

pytestmark = [pytest.mark.integration]


def _doctor(capsys, *args: str) -> tuple[int, str]:
    from voice_analytics_dagster.tools.cli import main

    code = main(["doctor", *args])
    return code, capsys.readouterr().out


def _schema_state(db) -> list[tuple]:
    return db.rows("select table_schema, table_name from information_schema.tables "
                   "where table_schema not in ('pg_catalog', 'information_schema') order by 1, 2")


def test_a_broken_export_is_explained_file_by_file_without_side_effects(fresh_db, sample_dir, tmp_path, capsys,
                                                                        dbt_manifest):
    export = copy_export(sample_dir, tmp_path / "export")
    turns = (export / "voice_turns.csv").read_text().splitlines(keepends=True)
    header = turns[0].rstrip("\n").split(",")
    row = turns[4].rstrip("\n").split(",")
    row[header.index("asr_confidence")] = "1.7"
    turns[4] = ",".join(row) + "\n"
    orphan = turns[1].rstrip("\n").split(",")
    orphan[0], orphan[1] = "T_ORPHAN", "S_NOWHERE"
    turns.append(",".join(orphan) + "\n")
    (export / "voice_turns.csv").write_text("".join(turns))
    users = [line.split(",") for line in (export / "users.csv").read_text().splitlines()]
    (export / "users.csv").write_text("".join(",".join(u[:3]) + "\n" for u in users))  # a column dropped
    apps = (export / "applications.csv").read_bytes().splitlines(keepends=True)
    apps[7] = apps[7].replace(b"voice", b"v\xf6ice", 1)  # Latin-1, not UTF-8
    (export / "applications.csv").write_bytes(b"".join(apps))
    (export / "voice_ai_metrics.csv").unlink()
    before = _schema_state(fresh_db)

    code, out = _doctor(capsys, "--source", str(export))

    assert code == 1, out
    assert "voice_sessions.csv: read 1,200 = would load 1,200 + quarantine 0" in out
    assert "voice_turns.csv: read 6,501 = would load 6,500 + quarantine 1" in out
    assert "line 5, column asr_confidence: asr_confidence: expected a number between 0 and 1, got '1.7'" in out
    assert f"{export}/users.csv, line 1, column first_time_digital_user: missing column(s): first_time_digital_user" in out
    assert f"{export}/applications.csv, line 8, column channel: invalid byte sequence" in out
    assert "voice_ai_metrics.csv: missing file" in out
    assert "voice_turns.csv: 1 row(s) whose session_id is not in voice_sessions (blocks publication" in out
    assert "problem(s)" in out
    # nothing was written: the validation ran in temporary tables, rolled back
    assert _schema_state(fresh_db) == before


def test_the_sample_export_is_healthy(fresh_db, sample_dir, capsys, dbt_manifest):
    code, out = _doctor(capsys, "--source", str(sample_dir))
    assert code == 0, out
    assert "FAIL" not in out
    assert "voice_turns.csv: read 6,500 = would load 6,500 + quarantine 0" in out


def test_an_unreachable_server_is_named(server, sample_dir, capsys, monkeypatch):
    from voice_analytics_dagster.lib.settings import reset_settings_cache

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("VOICE_ANALYTICS_DATABASE_URL", f"postgresql://analyst@127.0.0.1:{port}/warehouse")
    reset_settings_cache()
    try:
        code, out = _doctor(capsys, "--source", str(sample_dir))
    finally:
        reset_settings_cache()
    assert code == 1
    assert f"FAIL  cannot reach the server of VOICE_ANALYTICS_DATABASE_URL at 127.0.0.1:{port}" in out
    assert "fix: start the server, or correct VOICE_ANALYTICS_DATABASE_URL" in out
    # what needs no server is still checked
    assert "users.csv: header matches the contract" in out
    assert "row validation skipped: the server is unreachable" in out
