"""The one place where a run that did not publish is written to ``analytics.publication_log``,
with what blocked it (read from the run's events) and what it read. Called after the run by
``voice-analytics run`` and by the run-failure sensor (the daemon's runs); idempotent per run."""

import dagster as dg

from voice_analytics_dagster.defs.publish.swap import record_block
from voice_analytics_dagster.lib.eventlog import block_summary, failed_checks, failed_steps
from voice_analytics_dagster.lib.provenance import inputs
from voice_analytics_dagster.lib.warehouse import Warehouse


def record_unpublished_run(instance: dg.DagsterInstance, warehouse: Warehouse, run_id: str,
                           failure_message: str | None = None) -> tuple[list[str], str]:
    """(what blocked the run, a message in plain lines), recorded in the publication log."""
    names, message = block_summary(failed_checks(instance, run_id), failed_steps(instance, run_id))
    if not names:
        names = ["run_failed"]
        message = failure_message or "the run ended without publishing (no failed check or step recorded)"
    with warehouse.connect() as conn:
        read = inputs(conn)
        record_block(conn, run_id, names, message, read if read.files else None)
    return names, message
