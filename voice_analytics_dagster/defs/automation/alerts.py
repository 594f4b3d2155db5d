"""Alerts on failed asset checks and failed runs, to a Slack-compatible incoming webhook and/or
e-mail over SMTP (VOICE_ANALYTICS_ALERT_WEBHOOK_URL, VOICE_ANALYTICS_SMTP_*; settings.AlertSettings).

Why two sensors: a failed asset check does not fail its run (Dagster issue #29896; a warn-severity
dbt test, or any non-blocking check, leaves the run green), so a run-failure sensor alone never
hears of it.

- ``check_failure_alerts`` reads the asset check evaluations of every run from the instance's
  event log after its cursor (a storage id) and sends one alert per failed check per run (ERROR
  always, WARN unless VOICE_ANALYTICS_ALERT_ON_WARN=false). Its cursor records the last storage id
  it has handled and, for each alert not yet delivered everywhere, the channels still owed: a
  webhook that is down is retried on the next tick without sending the e-mail again.
- ``run_failure_alerts`` (a run-failure sensor, every run of the instance, CLI runs included)
  sends one alert per failed run and records the block in ``analytics.publication_log``
  (idempotent per run id). Dagster advances its cursor even when a delivery fails, so the
  channels it still owes go to an outbox in the instance's key-value storage, which the check
  sensor retries on its ticks.

Delivery is at least once per channel: only a crash between a send and the cursor write repeats
one. Message formatting and channel selection are pure functions (unit-tested); the senders use
the standard library only (urllib, smtplib).
"""

import json
import logging
import smtplib
import ssl
import time
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from email.message import EmailMessage

import dagster as dg

from voice_analytics_dagster.defs.publish.blocks import record_unpublished_run
from voice_analytics_dagster.lib.eventlog import (
    FailedCheck,
    block_summary,
    evaluation_records,
    failed_checks,
    failed_steps,
    failing_count,
    latest_evaluation_id,
)
from voice_analytics_dagster.lib.settings import ENV_PREFIX, AlertSettings, Settings, get_settings
from voice_analytics_dagster.lib.warehouse import Warehouse

log = logging.getLogger(__name__)

CHECK_ALERT_SENSOR = "check_failure_alerts"
RUN_ALERT_SENSOR = "run_failure_alerts"
WEBHOOK = "webhook"
EMAIL = "email"
OUTBOX_KEY = "voice_analytics/alerts/outbox"
SENSOR_INTERVAL_SECONDS = 30
# Evaluations read per tick; the rest wait for the next tick (a full dbt build of this project
# evaluates ~40 checks, so one tick normally covers several runs).
FETCH_LIMIT = 200
# An alert still undelivered after a day is dropped with an error in the daemon log: by then the
# failure is old news, and it stays visible in the Dagster UI.
RETRY_FOR_SECONDS = 24 * 3600
HTTP_TIMEOUT_SECONDS = 10
SMTP_TIMEOUT_SECONDS = 20
SUBJECT_PREFIX = "[voice-analytics]"


# -- what an alert says --------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    kind: str  # "check" or "run"
    run_id: str
    run_url: str
    job: str | None = None
    asset: str | None = None
    check: str | None = None
    severity: str | None = None
    failing_count: int | None = None
    description: str | None = None
    blocked_by: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """One alert per failed check per run, one per failed run."""
        if self.kind == "check":
            return f"check:{self.run_id}:{self.asset}:{self.check}"
        return f"run:{self.run_id}"

    def to_dict(self) -> dict:
        return {**asdict(self), "blocked_by": list(self.blocked_by)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Alert":
        return cls(**{**d, "blocked_by": tuple(d.get("blocked_by") or ())})


def run_url(base_url: str, run_id: str) -> str:
    return f"{base_url.rstrip('/')}/runs/{run_id}"


def check_alert(failed: FailedCheck, run_id: str, job: str | None, base_url: str) -> Alert:
    return Alert("check", run_id, run_url(base_url, run_id), job, failed.asset, failed.check,
                 failed.severity, failed.failing_count, failed.description)


def run_alert(run_id: str, job: str | None, blocked_by: Sequence[str], message: str, base_url: str) -> Alert:
    return Alert("run", run_id, run_url(base_url, run_id), job, description=message,
                 blocked_by=tuple(blocked_by))


def should_alert(severity: str, alert_on_warn: bool) -> bool:
    return severity == "ERROR" or (severity == "WARN" and alert_on_warn)


def select_check_alerts(candidates: Iterable[Alert], alert_on_warn: bool, already: Iterable[str] = ()) -> list[Alert]:
    """Failed checks worth an alert: by severity, at most one per check per run. Pure."""
    seen = set(already)
    out = []
    for a in candidates:
        if not should_alert(a.severity or "ERROR", alert_on_warn) or a.key in seen:
            continue
        seen.add(a.key)
        out.append(a)
    return out


def alert_channels(s: AlertSettings) -> tuple[str, ...]:
    """The configured channels, in delivery order. Pure."""
    return ((WEBHOOK,) if s.webhook_url else ()) + ((EMAIL,) if s.email_enabled else ())


def _count(n: int | None) -> str:
    return "not reported" if n is None else f"{n:,}"


def subject(a: Alert) -> str:
    if a.kind == "check":
        return f"{SUBJECT_PREFIX} {a.severity} check failed: {a.asset} {a.check}"
    return f"{SUBJECT_PREFIX} run failed: {a.job or 'run'} {a.run_id[:8]}"


def fields(a: Alert) -> list[tuple[str, str]]:
    """(label, value) pairs every channel shows, in order. Pure."""
    if a.kind == "check":
        out = [("Asset", a.asset or ""), ("Check", a.check or ""), ("Severity", a.severity or ""),
               ("Failing count", _count(a.failing_count)), ("Run", a.run_id)]
        if a.job:
            out.append(("Job", a.job))
    else:
        out = [("Job", a.job or ""), ("Run", a.run_id),
               ("Blocked by", ", ".join(a.blocked_by) if a.blocked_by else "nothing recorded")]
    out.append(("Link", a.run_url))
    return out


def format_text(a: Alert) -> str:
    """Plain text of an alert (e-mail body, webhook fallback text). Pure."""
    lines = [subject(a).removeprefix(SUBJECT_PREFIX).strip(), ""]
    lines += [f"{label}: {value}" for label, value in fields(a)]
    if a.description:
        lines += ["", a.description]
    return "\n".join(lines)


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(a: Alert) -> dict:
    """Slack incoming-webhook JSON: ``text`` (shown by every Slack-compatible receiver:
    Mattermost, Rocket.Chat, Teams' Slack connector) plus Block Kit ``blocks``. Pure."""
    lines = [f"*{_slack_escape(label)}:* {_slack_escape(value)}" for label, value in fields(a) if label != "Link"]
    lines.append(f"<{a.run_url}|Open the run in Dagster>")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": subject(a)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:3000]}},
    ]
    if a.description:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(a.description)[:3000]}})
    return {"text": format_text(a), "blocks": blocks}


def email_message(a: Alert, s: AlertSettings) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = subject(a)
    msg["From"] = s.email_from
    msg["To"] = ", ".join(s.email_to)
    msg["X-Voice-Analytics-Alert"] = a.key
    msg.set_content(format_text(a))
    return msg


# -- sending -------------------------------------------------------------------------------------

Sender = Callable[[Alert], None]


def post_webhook(url: str, payload: dict, timeout: float = HTTP_TIMEOUT_SECONDS) -> None:
    """POST JSON; an HTTP error status or an unreachable host raises."""
    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # raises HTTPError on >= 400
        response.read()


def send_email(s: AlertSettings, msg: EmailMessage, timeout: float = SMTP_TIMEOUT_SECONDS) -> None:
    # port 465 is SMTP over TLS from the first byte; other ports may upgrade with STARTTLS
    smtp_class = smtplib.SMTP_SSL if s.smtp_port == 465 else smtplib.SMTP
    with smtp_class(s.smtp_host, s.smtp_port, timeout=timeout) as smtp:
        if s.smtp_starttls and smtp_class is smtplib.SMTP:
            smtp.starttls(context=ssl.create_default_context())
        if s.smtp_user:
            smtp.login(s.smtp_user, s.smtp_password or "")
        smtp.send_message(msg)


def default_senders(s: AlertSettings) -> dict[str, Sender]:
    return {
        WEBHOOK: lambda a: post_webhook(s.webhook_url or "", webhook_payload(a)),
        EMAIL: lambda a: send_email(s, email_message(a, s)),
    }


def deliver(alert: Alert, channels: Sequence[str], senders: Mapping[str, Sender], down: set[str],
            logger=log) -> tuple[str, ...]:
    """Send ``alert`` to each channel; returns the channels still owed. A channel that failed
    earlier in this tick (``down``, updated here) is not tried again before the next tick: an
    unreachable webhook would otherwise cost its timeout once per alert."""
    owed = []
    for channel in channels:
        if channel in down:
            owed.append(channel)
            continue
        try:
            senders[channel](alert)
        except Exception as exc:  # any failure of a channel: keep it owed, try the others
            logger.warning(f"alert {alert.key}: delivery to {channel} failed ({type(exc).__name__}: {exc}); "
                           "retrying on the next tick")
            down.add(channel)
            owed.append(channel)
    return tuple(owed)


@dataclass(frozen=True)
class Pending:
    """An alert some channels have not received yet."""

    alert: Alert
    owed: tuple[str, ...]
    since: float
    attempts: int = 1

    def to_dict(self) -> dict:
        return {"alert": self.alert.to_dict(), "owed": list(self.owed), "since": self.since, "attempts": self.attempts}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Pending":
        return cls(Alert.from_dict(d["alert"]), tuple(d["owed"]), float(d["since"]), int(d.get("attempts", 1)))


def retry_pending(entries: Sequence[Pending], channels: Sequence[str], senders: Mapping[str, Sender],
                  down: set[str], now: float, logger=log) -> tuple[list[Pending], list[str]]:
    """Retry what is owed; returns (what is still owed, keys now delivered everywhere). An entry
    older than RETRY_FOR_SECONDS is dropped with an error; a channel no longer configured is not
    owed any more."""
    remaining, delivered = [], []
    for p in entries:
        if now - p.since > RETRY_FOR_SECONDS:
            logger.error(f"alert {p.alert.key}: not delivered to {', '.join(p.owed)} after {p.attempts} attempts "
                         f"over {RETRY_FOR_SECONDS // 3600} h; dropped")
            continue
        owed = deliver(p.alert, [c for c in p.owed if c in channels], senders, down, logger)
        if owed:
            remaining.append(replace(p, owed=owed, attempts=p.attempts + 1))
        else:
            delivered.append(p.alert.key)
    return remaining, delivered


# -- the check sensor ----------------------------------------------------------------------------

@dataclass(frozen=True)
class CheckAlertCursor:
    after: int | None  # storage id of the last evaluation handled; None: not started
    pending: tuple[Pending, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"after": self.after, "pending": [p.to_dict() for p in self.pending]}, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str | None) -> "CheckAlertCursor":
        if not raw:
            return cls(None)
        d = json.loads(raw)
        return cls(d.get("after"), tuple(Pending.from_dict(p) for p in d.get("pending", [])))


@dataclass(frozen=True)
class TickReport:
    cursor: str
    sent: tuple[str, ...]  # alert keys delivered to every channel this tick
    owed: tuple[str, ...]  # alert keys still owed to some channel
    note: str = ""

    def summary(self) -> str:
        text = f"{len(self.sent)} alert(s) sent" + (f", {len(self.owed)} awaiting retry" if self.owed else "")
        return f"{text}; {self.note}" if self.note else text


def _candidate(record, base_url: str) -> Alert | None:
    entry = record.event_log_entry
    evaluation = entry.dagster_event.event_specific_data
    if evaluation.passed:
        return None
    failed = FailedCheck(evaluation.asset_key.to_user_string(), evaluation.check_name, evaluation.severity.value,
                         evaluation.description, failing_count(evaluation.metadata))
    return check_alert(failed, entry.run_id, entry.job_name, base_url)


def read_outbox(instance: dg.DagsterInstance) -> list[Pending]:
    raw = instance.daemon_cursor_storage.get_cursor_values({OUTBOX_KEY}).get(OUTBOX_KEY)
    return [Pending.from_dict(p) for p in json.loads(raw)] if raw else []


def write_outbox(instance: dg.DagsterInstance, entries: Sequence[Pending]) -> None:
    instance.daemon_cursor_storage.set_cursor_values({OUTBOX_KEY: json.dumps([p.to_dict() for p in entries])})


def check_alert_tick(instance: dg.DagsterInstance, cursor: str | None, settings: Settings,
                     senders: Mapping[str, Sender] | None = None, now: float | None = None,
                     logger=log) -> TickReport:
    """One tick: retry what is owed, then alert on the failed evaluations after the cursor."""
    s = settings.alerts
    now = time.time() if now is None else now
    state = CheckAlertCursor.from_json(cursor)
    if state.after is None:
        # First tick: start at the end of the event log (like Dagster's run-status sensors), so
        # that turning alerts on does not replay the history.
        start = CheckAlertCursor(latest_evaluation_id(instance))
        return TickReport(start.to_json(), (), (), f"started after storage id {start.after}")
    channels = alert_channels(s)
    senders = default_senders(s) if senders is None else senders
    down: set[str] = set()

    pending, sent = retry_pending(state.pending, channels, senders, down, now, logger)
    outbox = read_outbox(instance)  # run alerts the run-failure sensor could not deliver
    still_in_outbox: list[Pending] = []
    if outbox:
        still_in_outbox, delivered = retry_pending(outbox, channels, senders, down, now, logger)
        write_outbox(instance, still_in_outbox)
        sent += delivered

    records = evaluation_records(instance, state.after, FETCH_LIMIT)
    after = records[-1].storage_id if records else state.after
    candidates = [c for c in (_candidate(r, s.dagster_base_url) for r in records) if c is not None]
    new_alerts = select_check_alerts(candidates, s.alert_on_warn, already={p.alert.key for p in pending})
    if new_alerts and not channels:
        logger.warning(f"{len(new_alerts)} failed check(s) not alerted: no alert channel configured "
                       f"({ENV_PREFIX}ALERT_WEBHOOK_URL, or {ENV_PREFIX}SMTP_HOST with {ENV_PREFIX}ALERT_EMAIL_TO)")
    for a in new_alerts if channels else []:
        owed = deliver(a, channels, senders, down, logger)
        if owed:
            pending.append(Pending(a, owed, now))
        else:
            sent.append(a.key)
    new_cursor = CheckAlertCursor(after, tuple(pending))
    note = "" if channels else f"no alert channel configured ({ENV_PREFIX}ALERT_WEBHOOK_URL, {ENV_PREFIX}SMTP_HOST)"
    return TickReport(new_cursor.to_json(), tuple(sent), tuple(p.alert.key for p in [*pending, *still_in_outbox]), note)


@dg.sensor(
    name=CHECK_ALERT_SENSOR,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Alerts (webhook and/or e-mail) on every failed asset check evaluation, once per check per run: "
        "a failed check does not fail its run, so the run-failure sensor alone would miss it."
    ),
)
def check_failure_alerts(context: dg.SensorEvaluationContext):
    report = check_alert_tick(context.instance, context.cursor, get_settings(), logger=context.log)
    return dg.SensorResult(cursor=report.cursor, skip_reason=report.summary())


# -- the run-failure sensor ----------------------------------------------------------------------

def handle_failed_run(instance: dg.DagsterInstance, run_id: str, job: str | None, failure_message: str | None,
                      settings: Settings, senders: Mapping[str, Sender] | None = None,
                      logger=log, now: float | None = None) -> tuple[str, ...]:
    """Alert once on a failed run and record its block in analytics.publication_log; returns the
    channels still owed (handed to the outbox)."""
    names, message = block_summary(failed_checks(instance, run_id), failed_steps(instance, run_id))
    if not names:
        names, message = ["run_failed"], failure_message or "the run failed (no failed step or check recorded)"
    alert = run_alert(run_id, job, names, message, settings.alerts.dagster_base_url)
    channels = alert_channels(settings.alerts)
    owed: tuple[str, ...] = ()
    if channels:
        senders = default_senders(settings.alerts) if senders is None else senders
        owed = deliver(alert, channels, senders, set(), logger)
        if owed:
            write_outbox(instance, [*read_outbox(instance), Pending(alert, owed, time.time() if now is None else now)])
    else:
        logger.warning(f"run {run_id} failed; no alert channel configured")
    # after the alert: a run may have failed because the warehouse is down
    try:
        record_unpublished_run(instance, Warehouse(settings), run_id, failure_message)
    except Exception as exc:
        logger.error(f"run {run_id}: could not record the block in analytics.publication_log: {exc}")
    return owed


@dg.run_failure_sensor(
    name=RUN_ALERT_SENSOR,
    # every run of this instance, including `voice-analytics run` (in-process runs have no code location)
    monitor_all_code_locations=True,
    minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Alerts once per failed run and records the block in analytics.publication_log.",
)
def run_failure_alerts(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    handle_failed_run(context.instance, run.run_id, run.job_name, context.failure_event.message,
                      get_settings(), logger=context.log)
