"""The one reader of Dagster's event log: which checks failed in a run, which steps failed, which
checks' latest evaluations failed across runs. Used by the publish asset (defence in depth: it refuses to publish after any failed
error-severity check of its run, blocking or not), by ``voice-analytics run`` and by the run-status
sensor, which log blocked runs in ``analytics.publication_log``.

Why read the event log: a failed asset check does not fail a Dagster run (Dagster issue #29896),
so the run's status alone cannot say whether publication was blocked.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg


@dataclass(frozen=True)
class FailedCheck:
    asset: str
    check: str
    severity: str
    description: str | None
    failing_count: int | None

    @property
    def name(self) -> str:
        return f"{self.asset}:{self.check}"

    @property
    def blocking(self) -> bool:
        return self.severity == "ERROR"


@dataclass(frozen=True)
class FailedStep:
    step: str
    message: str


def failing_count(metadata) -> int | None:
    for key in ("failing_count", "dagster_dbt/failed_row_count"):
        value = metadata.get(key)
        if value is not None:
            raw = getattr(value, "value", value)
            try:
                return int(raw)
            except (TypeError, ValueError):
                return None
    return None


def failed_checks(instance: dg.DagsterInstance, run_id: str) -> list[FailedCheck]:
    """Every failed check evaluation of a run, error severity first."""
    out = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.event_specific_data
        if evaluation.passed:
            continue
        out.append(
            FailedCheck(
                asset=evaluation.asset_key.to_user_string(),
                check=evaluation.check_name,
                severity=evaluation.severity.value,
                description=evaluation.description,
                failing_count=failing_count(evaluation.metadata),
            )
        )
    return sorted(out, key=lambda c: (c.severity != "ERROR", c.asset, c.check))


def failed_steps(instance: dg.DagsterInstance, run_id: str) -> list[FailedStep]:
    out = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        error = entry.dagster_event.event_specific_data.error
        # the user's exception is the cause of Dagster's wrapper error
        while error is not None and error.cause is not None and error.cls_name.startswith("Dagster"):
            error = error.cause
        message = error.message.strip() if error else ""
        # a dg.Failure raised by our assets carries the clear message as its description
        user = entry.dagster_event.event_specific_data.user_failure_data
        if user is not None and user.description:
            message = user.description
        out.append(FailedStep(entry.dagster_event.step_key or "", message))
    return out


def block_summary(checks: list[FailedCheck], steps: list[FailedStep]) -> tuple[list[str], str]:
    """(names of what blocked, a human message) for the publication log and the CLI."""
    blocking = [c for c in checks if c.blocking]
    names = [c.name for c in blocking] + [f"step:{s.step}" for s in steps]
    lines = []
    for c in blocking:
        count = f", {c.failing_count} failing" if c.failing_count is not None else ""
        detail = f": {c.description}" if c.description else ""
        lines.append(f"check failed: {c.name} (severity {c.severity}{count}){detail}")
    for s in steps:
        first = s.message.splitlines()[0] if s.message else ""
        lines.append(f"step failed: {s.step}: {first}")
    return names, "\n".join(lines) if lines else "run did not publish"


def latest_failed_checks(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]) -> list[FailedCheck]:
    """Error-severity checks among ``keys`` whose latest evaluation, in any run, failed."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    failures = []
    for key, record in records.items():
        # the record's status enum lives in a private module: compared by its value
        if record.status.value != "FAILED":
            continue
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        severity = evaluation.severity.value if evaluation is not None else "ERROR"
        if severity != "ERROR":
            continue
        failures.append(FailedCheck(key.asset_key.to_user_string(), key.name, severity,
                                    evaluation.description if evaluation else None, None))
    return sorted(failures, key=lambda c: c.name)


def evaluation_records(instance: dg.DagsterInstance, after: int | None, limit: int, ascending: bool = True):
    # The storage's own method: DagsterInstance.get_event_records is deprecated in 1.13 and has no
    # replacement for check evaluations across all assets.
    return instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(event_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after),
        limit=limit, ascending=ascending,
    )


def latest_evaluation_id(instance: dg.DagsterInstance) -> int:
    records = evaluation_records(instance, None, limit=1, ascending=False)
    return records[0].storage_id if records else 0


def step_events(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, str, str]]:
    """(timestamp, event type, step key) of every step's start, success and failure in a run."""
    out = []
    for entry in instance.all_logs(run_id):
        ev = entry.dagster_event
        if ev is not None and ev.step_key and ev.event_type_value in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE"):
            out.append((entry.timestamp, ev.event_type_value, ev.step_key))
    return out
