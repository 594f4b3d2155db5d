"""Alerts end to end: a real pipeline run with genuinely failed checks, the real sensors, a real
HTTP server (the webhook) and a real SMTP server (aiosmtpd) on 127.0.0.1.

One pipeline run for the module: the sample with one turn and one application naming a session
that does not exist. dbt then fails one ERROR check (turns -> sessions relationships: the run
fails, nothing is published) and one WARN check (applications -> sessions relationships), each
with one failing row. Measured: the run takes ~26 s here.
"""

import csv
import email
import email.policy
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from tests.conftest import copy_export

pytestmark = [pytest.mark.e2e]

DAGSTER_URL = "http://dagster.test:3000"
ERROR_ASSET = "staging/stg_voice_export__turns"
ERROR_CHECK = "relationships_stg_voice_export__turns_session_id__session_id__ref_stg_voice_export__sessions_"
WARN_ASSET = "staging/stg_voice_export__applications"
WARN_CHECK = "relationships_stg_voice_export__applications_session_id__session_id__ref_stg_voice_export__sessions_"


# -- the two receivers ---------------------------------------------------------------------------

class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append(
            {"path": self.path, "content_type": self.headers["Content-Type"], "json": json.loads(body)}
        )
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def webhook():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/XXXX"
    yield server
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.messages.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "message": msg})
        return "250 OK"


@pytest.fixture(scope="module")
def smtp():
    from aiosmtpd.controller import Controller

    box = _Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture
def received(webhook, smtp):
    """Empty inboxes for one test."""
    webhook.received.clear()
    smtp.messages.clear()
    return webhook, smtp


def configure(monkeypatch, webhook_url: str, smtp_port: int, on_warn: bool):
    from voice_analytics_dagster.lib.settings import reset_settings_cache

    monkeypatch.setenv("VOICE_ANALYTICS_ALERT_WEBHOOK_URL", webhook_url)
    monkeypatch.setenv("VOICE_ANALYTICS_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("VOICE_ANALYTICS_SMTP_PORT", str(smtp_port))
    monkeypatch.setenv("VOICE_ANALYTICS_ALERT_EMAIL_TO", "data-team@example.org")
    monkeypatch.setenv("VOICE_ANALYTICS_ALERT_EMAIL_FROM", "pipeline@example.org")
    monkeypatch.setenv("VOICE_ANALYTICS_ALERT_ON_WARN", "true" if on_warn else "false")
    monkeypatch.setenv("VOICE_ANALYTICS_DAGSTER_URL", DAGSTER_URL)
    reset_settings_cache()


# -- one failed run ------------------------------------------------------------------------------

def _append_orphan(path: Path, id_value: str):
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    extra = list(rows[1])
    extra[0], extra[1] = id_value, "S_DOES_NOT_EXIST"  # both files: id first, session_id second
    rows.append(extra)
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)


@pytest.fixture(scope="module")
def failed_run(module_db, sample_dir, dbt_manifest, tmp_path_factory):
    """(db, instance, run_id, cursor before the run)."""
    from voice_analytics_dagster.defs.automation.alerts import CheckAlertCursor, write_outbox
    from voice_analytics_dagster.lib.eventlog import latest_evaluation_id
    from voice_analytics_dagster.lib.instance import open_instance
    from voice_analytics_dagster.lib.settings import get_settings
    from voice_analytics_dagster.tools.pipeline import run_pipeline

    export = copy_export(sample_dir, tmp_path_factory.mktemp("orphans") / "export")
    _append_orphan(export / "voice_turns.csv", "T_ORPHAN")
    _append_orphan(export / "applications.csv", "A_ORPHAN")
    instance = open_instance(get_settings())
    write_outbox(instance, [])
    start = CheckAlertCursor(latest_evaluation_id(instance)).to_json()
    outcome = run_pipeline(export)
    assert not outcome.published and not outcome.success, outcome.report()
    yield module_db, instance, outcome.run_id, start
    write_outbox(instance, [])


def evaluate_check_sensor(instance, cursor):
    from voice_analytics_dagster.defs.automation.alerts import check_failure_alerts

    result = check_failure_alerts(dg.build_sensor_context(instance=instance, cursor=cursor))
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    return result.cursor


def body_of(mail) -> str:
    return mail["message"].get_content()


def assert_carries_check(text: str, asset: str, check: str, severity: str, run_id: str):
    for expected in (f"Asset: {asset}", f"Check: {check}", f"Severity: {severity}", "Failing count: 1",
                     f"Run: {run_id}", f"{DAGSTER_URL}/runs/{run_id}"):
        assert expected in text, (expected, text)


# -- the tests -----------------------------------------------------------------------------------

def test_a_failed_error_check_sends_one_webhook_post_and_one_email(failed_run, received, use_db, monkeypatch):
    db, instance, run_id, start = failed_run
    use_db(db)
    webhook, smtp = received
    configure(monkeypatch, webhook.url, smtp.port, on_warn=False)

    cursor = evaluate_check_sensor(instance, start)

    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    post = webhook.received[0]
    assert post["path"] == "/services/T000/B000/XXXX" and post["content_type"] == "application/json"
    assert_carries_check(post["json"]["text"], ERROR_ASSET, ERROR_CHECK, "ERROR", run_id)
    blocks = json.dumps(post["json"]["blocks"])
    assert ERROR_CHECK in blocks and f"<{DAGSTER_URL}/runs/{run_id}|" in blocks
    mail = smtp.messages[0]
    assert mail["to"] == ["data-team@example.org"] and mail["from"] == "pipeline@example.org"
    assert mail["message"]["Subject"] == f"[voice-analytics] ERROR check failed: {ERROR_ASSET} {ERROR_CHECK}"
    assert_carries_check(body_of(mail), ERROR_ASSET, ERROR_CHECK, "ERROR", run_id)

    # the next tick, from the returned cursor: nothing again
    again = evaluate_check_sensor(instance, cursor)
    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    assert json.loads(again)["pending"] == []


def test_a_failed_warn_check_is_alerted_when_enabled(failed_run, received, use_db, monkeypatch):
    db, instance, run_id, start = failed_run
    use_db(db)
    webhook, smtp = received
    configure(monkeypatch, webhook.url, smtp.port, on_warn=True)

    evaluate_check_sensor(instance, start)

    texts = sorted(p["json"]["text"] for p in webhook.received)
    assert len(texts) == 2 and len(smtp.messages) == 2  # one per failed check of the run
    warn = next(t for t in texts if "Severity: WARN" in t)
    assert_carries_check(warn, WARN_ASSET, WARN_CHECK, "WARN", run_id)
    subjects = sorted(m["message"]["Subject"] for m in smtp.messages)
    assert subjects == sorted([f"[voice-analytics] ERROR check failed: {ERROR_ASSET} {ERROR_CHECK}",
                               f"[voice-analytics] WARN check failed: {WARN_ASSET} {WARN_CHECK}"])


def test_a_webhook_that_is_down_is_retried_without_a_second_email(failed_run, received, use_db, monkeypatch):
    db, instance, run_id, start = failed_run
    use_db(db)
    webhook, smtp = received
    closed = f"http://127.0.0.1:{_free_port()}/hook"  # nothing listens there: connection refused
    configure(monkeypatch, closed, smtp.port, on_warn=False)

    cursor = evaluate_check_sensor(instance, start)
    assert len(smtp.messages) == 1 and webhook.received == []
    owed = json.loads(cursor)["pending"]
    assert [p["owed"] for p in owed] == [["webhook"]] and owed[0]["alert"]["check"] == ERROR_CHECK

    configure(monkeypatch, webhook.url, smtp.port, on_warn=False)  # the webhook is back
    cursor = evaluate_check_sensor(instance, cursor)
    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    assert_carries_check(webhook.received[0]["json"]["text"], ERROR_ASSET, ERROR_CHECK, "ERROR", run_id)
    assert json.loads(cursor)["pending"] == []

    evaluate_check_sensor(instance, cursor)
    assert len(webhook.received) == 1 and len(smtp.messages) == 1


def _failure_context(instance, run_id):
    from voice_analytics_dagster.defs.automation.alerts import RUN_ALERT_SENSOR

    run = instance.get_run_by_id(run_id)
    failure = instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE)[0].dagster_event
    return dg.build_run_status_sensor_context(
        sensor_name=RUN_ALERT_SENSOR, dagster_event=failure, dagster_instance=instance, dagster_run=run,
    ).for_run_failure()


def test_a_failed_run_alerts_once_and_records_the_block(failed_run, received, use_db, monkeypatch):
    from voice_analytics_dagster.defs.automation.alerts import run_failure_alerts

    db, instance, run_id, start = failed_run
    use_db(db)
    webhook, smtp = received
    configure(monkeypatch, webhook.url, smtp.port, on_warn=True)
    # the CLI already logged its own run; the sensor must log it by itself
    db.connect(autocommit=True).execute("delete from analytics.publication_log where run_id = %s", (run_id,))

    run_failure_alerts(_failure_context(instance, run_id))

    assert len(webhook.received) == 1 and len(smtp.messages) == 1
    text = webhook.received[0]["json"]["text"]
    assert f"Run: {run_id}" in text and "Job: voice_analytics_pipeline" in text
    assert f"Blocked by: {ERROR_ASSET}:{ERROR_CHECK}" in text and f"{DAGSTER_URL}/runs/{run_id}" in text
    assert smtp.messages[0]["message"]["Subject"] == f"[voice-analytics] run failed: voice_analytics_pipeline {run_id[:8]}"
    status, blocked_by = db.rows("select status, blocked_by from analytics.publication_log where run_id = %s",
                                 (run_id,))[0]
    assert status == "blocked" and f"{ERROR_ASSET}:{ERROR_CHECK}" in blocked_by
    # the WARN check did not block
    assert not any(WARN_CHECK in b for b in blocked_by)


def test_a_run_alert_the_webhook_missed_goes_out_on_the_next_alert_tick(failed_run, received, use_db, monkeypatch):
    from voice_analytics_dagster.defs.automation.alerts import read_outbox, run_failure_alerts

    db, instance, run_id, start = failed_run
    use_db(db)
    webhook, smtp = received
    configure(monkeypatch, f"http://127.0.0.1:{_free_port()}/hook", smtp.port, on_warn=False)
    run_failure_alerts(_failure_context(instance, run_id))
    assert len(smtp.messages) == 1 and webhook.received == []
    assert [(p.alert.key, p.owed) for p in read_outbox(instance)] == [(f"run:{run_id}", ("webhook",))]

    configure(monkeypatch, webhook.url, smtp.port, on_warn=False)
    cursor = evaluate_check_sensor(instance, start)  # its check alert, and the owed run alert
    run_posts = [p for p in webhook.received if "run failed" in p["json"]["text"]]
    assert len(run_posts) == 1 and f"Run: {run_id}" in run_posts[0]["json"]["text"]
    assert len(webhook.received) == 2 and len(smtp.messages) == 2  # + the ERROR check, once per channel
    assert read_outbox(instance) == []
    evaluate_check_sensor(instance, cursor)
    assert len(webhook.received) == 2 and len(smtp.messages) == 2


def test_first_tick_starts_at_the_end_of_the_event_log(failed_run, received, use_db, monkeypatch):
    db, instance, run_id, start = failed_run
    use_db(db)
    webhook, smtp = received
    configure(monkeypatch, webhook.url, smtp.port, on_warn=True)
    cursor = evaluate_check_sensor(instance, None)
    assert json.loads(cursor)["after"] > json.loads(start)["after"]
    assert webhook.received == [] and smtp.messages == []
