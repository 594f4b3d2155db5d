"""``doctor --source`` on platform logs (Amazon Lex V2, Dialogflow CX, Rasa): the format and why,
then the adapter's conversion into a temporary folder (removed afterwards: doctor writes
nothing), what it read, mapped and quarantined, and what the platform does not record. The
converted files are then checked like any export (tools/doctor.py), with the columns the
platform does not record accepted as empty, as the loader accepts them."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path

from voice_analytics_dagster.lib.settings import Settings, SettingsError

OK, WARN, FAIL, INFO = "ok", "warn", "FAIL", "info"


def _not_recorded(manifest: dict) -> str:
    parts = []
    for key, word in (("columns_not_recorded", "not recorded"), ("columns_partly_recorded", "partly recorded")):
        cols = [f"{t}.{c}" for t, columns in sorted((manifest.get(key) or {}).items()) for c in columns]
        if cols:
            parts.append(f"{word}: {', '.join(cols)}")
    return "; ".join(parts)


@contextlib.contextmanager
def export_to_check(settings: Settings, source: Path, source_format: str | None, report,
                    topic: str, sample_size: int = 5) -> Iterator[tuple[Path | None, dict]]:
    """(the folder of contract files to check, adapter manifest per delivery): ``source`` itself
    for csv, else its conversion in a temporary folder, alive while the block runs. (None, {})
    when the format cannot be told or a file cannot be read (reported as FAIL)."""
    from voice_analytics_dagster.defs.ingestion.adapters import load_adapter_settings
    from voice_analytics_dagster.defs.ingestion.reader import IngestionError
    from voice_analytics_dagster.defs.ingestion.sources import (
        convert_source,
        over_tolerance,
        quarantine_sample,
        resolve_format,
    )
    from voice_analytics_dagster.lib.provenance import CSV_FORMAT

    try:
        found = resolve_format(source, source_format)
    except (IngestionError, ValueError) as exc:
        report.add(FAIL, topic, str(exc), fix="pass --format with the source's format")
        yield None, {}
        return
    if found.format == CSV_FORMAT:
        if found.detected:
            report.add(INFO, topic, found.describe())
        yield source, {}
        return
    report.add(INFO, topic, found.describe())
    with tempfile.TemporaryDirectory(prefix="va-doctor-") as tmp:
        root = Path(tmp) / "converted"
        try:
            conversions = convert_source(source, found.format, root, load_adapter_settings())
        except (IngestionError, SettingsError) as exc:
            report.add(FAIL, topic, str(exc), fix="re-export or repair this file; a run would stop on it")
            yield None, {}
            return
        failing = {id(c) for c in over_tolerance(conversions, settings.quarantine_tolerance)}
        for c in conversions:
            rows = c.manifest.get("rows", {})
            counts = (f"{c.name}: {found.format} adapter read {c.records_read:,} records -> "
                      f"{rows.get('voice_sessions', 0):,} sessions, {rows.get('voice_turns', 0):,} turns, "
                      f"{rows.get('users', 0):,} users; quarantined {c.quarantined:,}")
            if id(c) in failing:
                report.add(FAIL, topic, f"{counts}: more than VOICE_ANALYTICS_QUARANTINE_TOLERANCE="
                                        f"{settings.quarantine_tolerance:g} allows (publication would be blocked). "
                                        "First records:", details=quarantine_sample(c, sample_size),
                           fix="correct these records (or the adapter settings, docs/SOURCES.md) and deliver again")
            elif c.quarantined:
                report.add(WARN, topic, f"{counts} (within the tolerance)", details=quarantine_sample(c, sample_size))
            else:
                report.add(OK, topic, counts)
        if conversions and (what := _not_recorded(conversions[0].manifest)):
            report.add(INFO, topic, f"{found.format} does not record every contract column ({what}): they load as "
                                    "NULL and show as not available, never as 0")
        yield root, {c.delivery: c.manifest for c in conversions}
