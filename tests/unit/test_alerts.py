"""Alert content, channel selection and delivery bookkeeping, without servers or a database."""

import pytest

from voice_analytics_dagster.defs.automation.alerts import (
    EMAIL,
    RETRY_FOR_SECONDS,
    WEBHOOK,
    Alert,
    CheckAlertCursor,
    Pending,
    alert_channels,
    check_alert,
    deliver,
    email_message,
    format_text,
    retry_pending,
    run_alert,
    select_check_alerts,
    should_alert,
    subject,
    webhook_payload,
)
from voice_analytics_dagster.lib.eventlog import FailedCheck
from voice_analytics_dagster.lib.settings import AlertSettings

BASE = "http://dagster.example:3000"
RUN = "0a1b2c3d-1111-2222-3333-444455556666"


def quarantine_alert(run_id=RUN, severity="ERROR", check="quarantine_within_tolerance"):
    failed = FailedCheck("raw/voice_turns", check, severity, None, 1)
    return check_alert(failed, run_id, "voice_analytics_pipeline", BASE + "/")


def test_check_alert_names_asset_check_severity_count_run_and_link():
    a = quarantine_alert()
    assert a.run_url == f"{BASE}/runs/{RUN}"
    text = format_text(a)
    for expected in ("Asset: raw/voice_turns", "Check: quarantine_within_tolerance", "Severity: ERROR",
                     "Failing count: 1", f"Run: {RUN}", f"Link: {BASE}/runs/{RUN}"):
        assert expected in text
    assert subject(a) == "[voice-analytics] ERROR check failed: raw/voice_turns quarantine_within_tolerance"


def test_unknown_failing_count_is_said_not_invented():
    a = check_alert(FailedCheck("staging/x", "unique_x", "WARN", "d", None), RUN, None, BASE)
    assert "Failing count: not reported" in format_text(a)
    assert "Job" not in format_text(a)


def test_webhook_payload_is_slack_compatible_and_escaped():
    a = check_alert(FailedCheck("staging/x", "accepted_values_<a>&b", "ERROR", "1 < 2", 12_345), RUN, "job", BASE)
    payload = webhook_payload(a)
    assert payload["text"] == format_text(a)
    assert payload["blocks"][0]["type"] == "header"
    section = payload["blocks"][1]["text"]["text"]
    assert "accepted_values_&lt;a&gt;&amp;b" in section and "12,345" in section
    assert f"<{BASE}/runs/{RUN}|Open the run in Dagster>" in section
    assert payload["blocks"][2]["text"]["text"] == "1 &lt; 2"


def test_email_message_headers_and_body():
    s = AlertSettings(smtp_host="mail", email_to=("a@x.org", "b@x.org"), email_from="va@x.org")
    msg = email_message(quarantine_alert(), s)
    assert msg["To"] == "a@x.org, b@x.org" and msg["From"] == "va@x.org"
    assert msg["X-Voice-Analytics-Alert"] == f"check:{RUN}:raw/voice_turns:quarantine_within_tolerance"
    assert "Failing count: 1" in msg.get_content()


def test_run_alert_lists_what_blocked():
    a = run_alert(RUN, "voice_analytics_pipeline", ["raw/voice_turns:quarantine_within_tolerance"],
                  "check failed: raw/voice_turns:quarantine_within_tolerance", BASE)
    assert a.key == f"run:{RUN}"
    text = format_text(a)
    assert "Blocked by: raw/voice_turns:quarantine_within_tolerance" in text and f"Run: {RUN}" in text
    assert subject(a) == "[voice-analytics] run failed: voice_analytics_pipeline 0a1b2c3d"


@pytest.mark.parametrize("severity,on_warn,expected", [
    ("ERROR", True, True), ("ERROR", False, True), ("WARN", True, True), ("WARN", False, False),
])
def test_severity_rule(severity, on_warn, expected):
    assert should_alert(severity, on_warn) is expected


def test_one_alert_per_check_per_run():
    error, warn = quarantine_alert(), quarantine_alert(severity="WARN", check="other")
    again, other_run = quarantine_alert(), quarantine_alert(run_id="another-run")
    assert select_check_alerts([error, warn, again, other_run], alert_on_warn=True) == [error, warn, other_run]
    assert select_check_alerts([error, warn], alert_on_warn=False) == [error]
    assert select_check_alerts([error, warn], alert_on_warn=True, already=[error.key]) == [warn]


def test_channel_selection():
    assert alert_channels(AlertSettings()) == ()
    assert alert_channels(AlertSettings(webhook_url="http://h")) == (WEBHOOK,)
    # e-mail needs both a server and recipients
    assert alert_channels(AlertSettings(smtp_host="mail")) == ()
    assert alert_channels(AlertSettings(smtp_host="mail", email_to=("a@x",))) == (EMAIL,)
    assert alert_channels(AlertSettings(webhook_url="http://h", smtp_host="m", email_to=("a@x",))) == (WEBHOOK, EMAIL)


class Recorder:
    def __init__(self, failing=()):
        self.failing = set(failing)
        self.sent: list[tuple[str, str]] = []

    def senders(self):
        def make(channel):
            def send(alert):
                if channel in self.failing:
                    raise ConnectionRefusedError(f"{channel} down")
                self.sent.append((channel, alert.key))
            return send
        return {WEBHOOK: make(WEBHOOK), EMAIL: make(EMAIL)}


def test_a_failed_channel_stays_owed_and_is_not_tried_again_in_the_same_tick():
    r = Recorder(failing={WEBHOOK})
    down: set[str] = set()
    a, b = quarantine_alert(), quarantine_alert(check="other")
    assert deliver(a, (WEBHOOK, EMAIL), r.senders(), down) == (WEBHOOK,)
    assert down == {WEBHOOK}
    r.failing.clear()  # even if it came back, not within this tick
    assert deliver(b, (WEBHOOK, EMAIL), r.senders(), down) == (WEBHOOK,)
    assert r.sent == [(EMAIL, a.key), (EMAIL, b.key)]


def test_retry_sends_only_what_is_owed_and_gives_up_after_a_day():
    r = Recorder()
    fresh = Pending(quarantine_alert(), (WEBHOOK,), since=1000.0)
    stale = Pending(quarantine_alert(check="old"), (WEBHOOK,), since=1000.0 - RETRY_FOR_SECONDS - 1)
    unconfigured = Pending(quarantine_alert(check="mail"), (EMAIL,), since=1000.0)
    remaining, delivered = retry_pending([fresh, stale, unconfigured], (WEBHOOK,), r.senders(), set(), now=1000.0)
    assert remaining == []
    assert r.sent == [(WEBHOOK, fresh.alert.key)]
    assert fresh.alert.key in delivered

    r2 = Recorder(failing={WEBHOOK})
    remaining, delivered = retry_pending([fresh], (WEBHOOK, EMAIL), r2.senders(), set(), now=1000.0)
    assert [(p.owed, p.attempts) for p in remaining] == [((WEBHOOK,), 2)] and delivered == []


def test_cursor_round_trip_keeps_owed_channels():
    c = CheckAlertCursor(42, (Pending(run_alert(RUN, "j", ["a:b"], "m", BASE), (EMAIL,), 5.0, 3),))
    back = CheckAlertCursor.from_json(c.to_json())
    assert back == c
    assert isinstance(back.pending[0].alert, Alert) and back.pending[0].alert.blocked_by == ("a:b",)
    assert CheckAlertCursor.from_json(None).after is None
