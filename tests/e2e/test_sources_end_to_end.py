"""Amazon Lex V2, Dialogflow CX and Rasa logs end to end: `voice-analytics run --source DIR` with
the format detected publishes a certified schema (Dialogflow CX as a landing folder of dated
deliveries, each converted on its own); the publication log names the format and the original
folder; what a platform does not record is NULL in analytics and on the dashboards (as the BI
role sees them), never 0 or 'no'; a truncated file and unmappable records block publication.

Each platform's run is a real CLI process into a database of its own (tests/e2e/platform_logs.py
writes the logs); the module's fixture prints each run's time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.conftest import PROJECT_ROOT, Db, _drop_database
from tests.e2e.platform_logs import Call, write_logs
from tests.unit.adapters_support import FIXTURES

pytestmark = [pytest.mark.e2e]

CONVERSATIONS = 400
LANDING = {"dialogflow-cx"}  # run as a landing folder of dated deliveries; the others as one folder
FORMATS = ("lex-v2", "dialogflow-cx", "rasa")


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environ = {**os.environ, **(env or {})}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "voice_analytics_dagster.tools.cli", *args], env=environ,
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)


@dataclass
class PlatformRun:
    fmt: str
    db: Db
    folder: Path
    calls: list[Call]
    done: subprocess.CompletedProcess
    seconds: float


def run_into_new_database(folder: Path, *args: str) -> tuple[Db, subprocess.CompletedProcess, float]:
    db = Db("src_" + uuid.uuid4().hex[:10])
    start = time.monotonic()
    done = cli("run", "--source", str(folder), *args, env={"VOICE_ANALYTICS_DATABASE": db.name})
    return db, done, time.monotonic() - start


@pytest.fixture(scope="module")
def runs(server, dbt_manifest, tmp_path_factory):
    made: dict[str, PlatformRun] = {}
    try:
        for fmt in FORMATS:
            folder = tmp_path_factory.mktemp(fmt) / "logs"
            calls = write_logs(fmt, folder, CONVERSATIONS, seed=11, by_day=fmt in LANDING)
            db, done, seconds = run_into_new_database(folder)
            made[fmt] = PlatformRun(fmt, db, folder, calls, done, seconds)
            print(f"\n{fmt}: run took {seconds:.1f} s (exit {done.returncode})")
        yield made
    finally:
        for r in made.values():
            _drop_database(server, r.db.name)


@pytest.fixture(params=FORMATS)
def platform(request, runs, use_db) -> PlatformRun:
    r = runs[request.param]
    use_db(r.db)
    return r


def bi_connect(db: Db):
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.lib.warehouse import ConnInfo

    info = db.warehouse.conninfo()
    s = get_settings()
    return psycopg.connect(ConnInfo(info.host, info.port, s.bi_role, s.bi_password, info.dbname).url(), autocommit=True)


def test_each_platform_publishes_a_certified_schema_with_its_format_and_folder(platform):
    r, db = platform, platform.db
    assert r.done.returncode == 0, r.done.stdout + r.done.stderr
    assert f"source {r.folder}: format {r.fmt} (detected: " in r.done.stdout
    assert f"read: real data from {r.folder} ({r.fmt}, " in r.done.stdout
    status, sources, formats, inputs = db.rows(
        "select status, sources, formats, inputs from analytics.publication_log where status = 'published'")[0]
    assert (status, sources, formats) == ("published", [str(r.folder)], [r.fmt])
    # the files loaded are the conversion's (under the home), recorded with the original folder
    assert all("/converted/" in f["path"] and f["source"] == str(r.folder) and f["format"] == r.fmt for f in inputs)
    deliveries = {f["delivery"] for f in inputs}
    if r.fmt in LANDING:
        days = sorted({time.strftime("%Y-%m-%d", time.gmtime(c.start)) for c in r.calls})
        assert sorted(deliveries) == days and len(days) > 1
    else:
        assert deliveries == {""}
    assert db.scalar("select count(*) from analytics.fact_voice_ai_sessions") == CONVERSATIONS
    assert db.scalar("select count(*) from raw.quarantine") == 0
    outcomes = dict(db.rows("select final_outcome, count(*) from analytics.fact_voice_ai_sessions group by 1"))
    planned = {o: sum(1 for c in r.calls if c.outcome == o) for o in ("completed", "abandoned", "transferred")}
    assert outcomes == planned
    # the model: the intent detection rate repeats the error shares on platform logs (no intent on
    # exactly the error turns), so it is left out instead of making the design rank-deficient;
    # sessions with a feature the platform did not record are left out of the fit, counted
    status, unused, dropped = db.rows(
        "select status, unused_features, n_sessions_dropped from analytics.fct_abandonment_model_metrics")[0]
    assert status in ("fitted", "insufficient_data"), status
    assert "intent_detection_rate: a linear combination of misunderstanding_rate, silence_rate" in unused
    assert dropped > 0


def test_what_a_platform_does_not_record_is_null_never_zero(platform):
    r, db = platform, platform.db
    fact = {row[0]: row[1:] for row in db.rows(
        "select session_id, region, has_disability, is_first_time_digital_user, avg_asr_confidence, "
        "asr_confidence_turn_count, turn_duration_sec_total, asr_model_version, language "
        "from analytics.fact_voice_ai_sessions")}
    by_call = {c.i: c for c in r.calls}
    prefix = {"lex-v2": "lex-", "dialogflow-cx": "a/sessions/df-", "rasa": "rasa-"}[r.fmt]
    for session_id, (region, disability, first_time, asr, asr_turns, duration, model, language) in fact.items():
        call = by_call[int(session_id.removeprefix(prefix))]
        attrs = call.attributes
        assert region == attrs.get("region"), session_id  # None when the bot never set it, not a default
        assert disability == ({"yes": True, "no": False}.get(attrs.get("disability_flag"))), session_id
        assert first_time == ({"yes": True, "no": False}.get(attrs.get("first_time_digital_user"))), session_id
        assert duration is None  # no platform logs turn durations: NULL, not 0
        spoken = call.mode == "speech" and r.fmt != "rasa"  # Rasa receives text: no ASR confidence at all
        assert (asr is not None) == spoken and (asr_turns > 0) == spoken, session_id
        assert model == ("telephony" if r.fmt == "dialogflow-cx" and call.mode == "speech" else None)
        if r.fmt == "rasa":
            assert language == (call.language.upper() if call.language else None)
    assert any(v[0] is None for v in fact.values()) and any(v[1] is None for v in fact.values())

    # the KPI over turns with an ASR confidence: not available where none has one (n 0, not withheld)
    low = db.rows("select n_sessions, numerator, denominator, value, ci_low, suppressed from analytics.fct_voice_kpis "
                  "where kpi = 'low_asr_confidence_turn_share' and period_grain = 'overall'")[0]
    if r.fmt == "rasa":
        assert low == (0, 0, 0, None, None, False)
    else:
        spoken = sum(1 for c in r.calls if c.mode == "speech")
        assert low[0] == spoken and low[3] is not None and 0 < low[2] and not low[5]
    efficiency = db.rows("select duration_sec_mean, duration_sec_ci_low, duration_sec_median, "
                         "time_to_completion_sec_mean from analytics.fct_efficiency_by_period where not suppressed")
    assert efficiency and all(row == (None, None, None, None) for row in efficiency)


def test_a_not_recorded_attribute_is_a_segment_of_its_own_in_no_comparison(platform):
    r, db = platform, platform.db
    seg = {row[0]: row[1:] for row in db.rows(
        "select segment_key, segment_label, n_sessions, reference_segment_key, abandonment_gap_verdict, region, "
        "has_disability, asr_confidence_n_sessions, mean_asr_confidence from analytics.fct_accessibility_by_segment")}
    no_region = sum(1 for c in r.calls if "region" not in c.attributes)
    said_no = sum(1 for c in r.calls if c.attributes.get("disability_flag") == "no")
    label, n, reference, verdict, region, disability, _, _ = seg["region=not recorded"]
    assert (label, n, reference, verdict, region) == ("region not recorded", no_region, None, None, None)
    assert seg["disability=not recorded"][0] == "disability not recorded"
    # a NULL disability is not "without disability"
    assert seg["disability=false"][1] == said_no and seg["disability=false"][0] == "without disability"
    assert seg["disability=true"][2] == "disability=false"  # recorded values are still compared
    assert all(v[2] is None and v[3] is None for k, v in seg.items() if "not recorded" in k)
    spoken = sum(1 for c in r.calls if c.mode == "speech") if r.fmt != "rasa" else 0
    assert seg["all"][6] == spoken
    assert (seg["all"][7] is None) == (r.fmt == "rasa")


def test_every_dashboard_card_shows_not_available_as_null_to_the_bi_role(platform):
    from voice_analytics_dagster.defs.bi.spec import load_collection, selected_columns

    r, db = platform, platform.db
    # no platform records applications; one month and one recogniser give nothing to compare; the
    # model claims nothing when too few sessions have every feature recorded
    empty_for_platforms = {"application", "comparisons", "ASR model version", "coefficients", "calibration"}
    with bi_connect(db) as conn:
        for card in load_collection().cards():
            cur = conn.execute(card.sql)
            columns = [d.name for d in cur.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cur.fetchall()]
            assert columns == selected_columns(card.sql), card.name
            if not any(word in card.name for word in empty_for_platforms):
                assert rows, f"{card.name}: no rows"
            for row in rows:
                for rate in card.rates:
                    if row[rate.value] is not None:  # a value is shown with its interval and n
                        assert all(row[c] is not None for c in (*rate.ci, *rate.n)), (card.name, row)
                for column in ("duration_sec_mean", "duration_sec_median", "time_to_completion_sec_mean"):
                    assert row.get(column) is None, (card.name, column, row[column])  # never 0
                if r.fmt == "rasa":
                    assert row.get("mean_asr_confidence") is None, (card.name, row)
                    if row.get("kpi") == "low_asr_confidence_turn_share":
                        assert row["value"] is None and row["ci_low"] is None and not row["suppressed"]


def test_a_truncated_file_stops_the_run_with_its_file_line_and_column(server, dbt_manifest, tmp_path, use_db,
                                                                     capsys):
    """Exit 1 when the file is cut after its first record: the run starts (each file's first
    record names the format) and its sources step stops on the file, as on a CSV file that cannot
    be read; the block is logged. Exit 2 when even the first record is unreadable: detection
    cannot name the format, nothing runs (a usage error, as an unknown format is)."""
    from voice_analytics_dagster.tools.cli import main

    folder = tmp_path / "logs"
    write_logs("lex-v2", folder, 30, seed=3)
    fixture = (FIXTURES / "lex-v2" / "truncated.jsonl").read_text()  # a whole entry, then one cut short
    (folder / "zz-truncated.jsonl").write_text(fixture)
    db, done, _ = run_into_new_database(folder)
    try:
        use_db(db)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "Traceback" not in done.stdout + done.stderr
        assert "format lex-v2 (detected: " in done.stdout
        assert "step failed: source_adapters: " in done.stdout
        assert f"{folder / 'zz-truncated.jsonl'}, line 2, column " in done.stdout
        assert "the file ends inside this record (truncated file?)" in done.stdout
        status, blocked_by, message = db.rows("select status, blocked_by, message from analytics.publication_log")[0]
        assert status == "blocked" and blocked_by == ["step:source_adapters"] and "zz-truncated.jsonl" in message
        assert db.scalar("select to_regclass('raw.load_batches')") is None  # nothing loaded, ever
        assert not db.rows("select 1 from information_schema.tables where table_schema = 'analytics' "
                           "and table_name = 'fact_voice_ai_sessions'")
    finally:
        _drop_database(server, db.name)
    (folder / "zz-truncated.jsonl").write_text(fixture.splitlines()[1])
    assert main(["run", "--source", str(folder)]) == 2
    assert f"{folder / 'zz-truncated.jsonl'}, line 1, column " in capsys.readouterr().err


def test_unmappable_records_are_blocked_by_the_adapter_quarantine_check(server, dbt_manifest, tmp_path, use_db):
    folder = tmp_path / "trackers"
    write_logs("rasa", folder, 30, seed=4)
    shutil.copy(FIXTURES / "rasa" / "bad_records.jsonl", folder)
    db, done, _ = run_into_new_database(folder, "--format", "rasa")
    try:
        use_db(db)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "check failed: sources/rasa:records_mapped_or_quarantined (severity ERROR" in done.stdout
        assert "bad_records.jsonl line 1, field " in done.stdout  # the first record, with its file and field
        status, blocked_by = db.rows("select status, blocked_by from analytics.publication_log")[0]
        assert status == "blocked" and "sources/rasa:records_mapped_or_quarantined" in blocked_by
        assert db.scalar("select to_regclass('raw.load_batches')") is None  # the quarantine stopped the load
    finally:
        _drop_database(server, db.name)
