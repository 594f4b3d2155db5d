"""The sources stage: what a run reads, before the raw assets load it.

One step, ``source_adapters``, with four assets (group ``sources``):

- ``sources/lex_v2``, ``sources/dialogflow_cx``, ``sources/rasa``: the platform's records of the
  run's source converted onto the export contract (defs/ingestion/adapters/, docs/SOURCES.md).
  Only the run's format is materialized (a CSV run materializes none of them), with the
  conversion's figures as metadata, and a blocking check ``records_mapped_or_quarantined``:
  the records the adapter could not map (adapter_quarantine.csv) stay within
  VOICE_ANALYTICS_QUARANTINE_TOLERANCE, the loader's own tolerance: a bad record blocks
  publication as a bad CSV row does, and is never dropped silently.
- ``sources/export``: the export the raw assets load (the source folder itself for csv, the
  converted folder otherwise), its format and why. Always materialized: the raw assets depend
  on it alone. Had they depended on the three platform assets, the two a run does not
  materialize would skip the load (Dagster skips a step whose upstream output was not
  produced), so the platform assets feed it inside the step instead.

The format is the resource's (``voice-analytics run --format``) or detected from the files.
"""

import dagster as dg

from voice_analytics_dagster.defs.ingestion.adapters import load_adapter_settings
from voice_analytics_dagster.defs.ingestion.reader import IngestionError
from voice_analytics_dagster.defs.ingestion.sources import (
    PLATFORM_FORMATS,
    DeliveryConversion,
    SourceFormat,
    convert_source,
    converted_root,
    over_tolerance,
    quarantine_sample,
    resolve_format,
)
from voice_analytics_dagster.lib.provenance import (
    CSV_FORMAT,
    MixedDatasetsError,
    dataset_of_source,
    run_tags,
)
from voice_analytics_dagster.lib.resources import ExportSourceResource
from voice_analytics_dagster.lib.settings import SettingsError, get_settings

GROUP = "sources"
STEP = "source_adapters"
EXPORT_KEY = dg.AssetKey(["sources", "export"])
ADAPTER_CHECK = "records_mapped_or_quarantined"

PLATFORM_NAMES = {"lex-v2": "Amazon Lex V2 conversation logs", "dialogflow-cx": "Dialogflow CX conversation history",
                  "rasa": "Rasa trackers"}


def source_key(fmt: str) -> dg.AssetKey:
    return dg.AssetKey(["sources", fmt.replace("-", "_")])


def adapter_spec(fmt: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=source_key(fmt),
        group_name=GROUP,
        kinds={"json", "csv"},
        description=(f"{PLATFORM_NAMES[fmt]} mapped onto the export contract (docs/SOURCES.md): the five CSV files, "
                     "adapter_quarantine.csv (every record that could not be mapped, with file, line and field) and "
                     "adapter_manifest.json. Materialized by runs whose source is in this format."),
        skippable=True,
    )


def export_spec() -> dg.AssetSpec:
    return dg.AssetSpec(
        key=EXPORT_KEY,
        deps=[source_key(f) for f in PLATFORM_FORMATS],
        group_name=GROUP,
        kinds={"csv"},
        description=("The export the raw assets load: the source folder itself when it holds the contract's CSV "
                     "files, else the files its platform's adapter converted; its format and why."),
        # not yielded when the adapter's check failed: the raw assets then do not run
        skippable=True,
    )


def adapter_check_spec(fmt: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        ADAPTER_CHECK, asset=source_key(fmt), blocking=True,
        description="Every record read is mapped or quarantined with its file, line and field; quarantined records "
                    "within VOICE_ANALYTICS_QUARANTINE_TOLERANCE of the records read, per delivery.")


def adapter_metadata(fmt: str, source, converted, conversions: list[DeliveryConversion]) -> dict:
    """Materialization metadata of a platform asset: the conversion's figures, summed over the
    deliveries, and what the platform does not record. Pure."""
    manifests = [c.manifest for c in conversions]

    def total(path: tuple[str, ...]) -> int:
        out = 0
        for m in manifests:
            v = m
            for p in path:
                v = (v or {}).get(p, 0) if isinstance(v, dict) else 0
            out += int(v or 0)
        return out

    reasons: dict[str, int] = {}
    ignored: dict[str, int] = {}
    for m in manifests:
        for k, v in (m.get("quarantine_reasons") or {}).items():
            reasons[k] = reasons.get(k, 0) + int(v)
        for k, v in (m.get("events_ignored") or {}).items():
            ignored[k] = ignored.get(k, 0) + int(v)
    first = manifests[0] if manifests else {}
    return {
        "format": fmt,
        "source": str(source),
        "converted_folder": str(converted),
        "deliveries": len(conversions),
        "deliveries_converted": sum(1 for c in conversions if not c.reused),
        "deliveries_reused": sum(1 for c in conversions if c.reused),
        "input_files": sum(len(m.get("inputs", [])) for m in manifests),
        "records_read": sum(c.records_read for c in conversions),
        "conversations": total(("conversations",)),
        "sessions": total(("rows", "voice_sessions")),
        "turns": total(("rows", "voice_turns")),
        "users": total(("rows", "users")),
        "records_quarantined": sum(c.quarantined for c in conversions),
        "quarantine_reasons": dg.MetadataValue.json(reasons),
        "events_ignored": dg.MetadataValue.json(ignored),
        "duplicate_events_skipped": total(("duplicate_events_skipped",)),
        "sessions_without_turns_skipped": total(("sessions_without_turns_skipped",)),
        "columns_not_recorded": dg.MetadataValue.json(first.get("columns_not_recorded") or {}),
        "columns_partly_recorded": dg.MetadataValue.json(first.get("columns_partly_recorded") or {}),
        "adapter_version": str(first.get("adapter_version", "")),
        "dagster/row_count": total(("rows", "voice_sessions")),
    }


def adapter_check(fmt: str, conversions: list[DeliveryConversion], tolerance: float) -> dg.AssetCheckResult:
    """The blocking check of a platform asset: quarantined records within the tolerance. Pure."""
    failing = over_tolerance(conversions, tolerance)
    sample = [line for c in failing for line in quarantine_sample(c)][:5]
    return dg.AssetCheckResult(
        asset_key=source_key(fmt),
        check_name=ADAPTER_CHECK,
        passed=not failing,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "tolerance": tolerance,
            "records_read": sum(c.records_read for c in conversions),
            "failing_count": sum(c.quarantined for c in failing),
            "failing_deliveries": [f"{c.name}: {c.quarantined} of {c.records_read} records quarantined "
                                   f"({c.out / 'adapter_quarantine.csv'})" for c in failing],
            "sample": sample,
        },
        description=None if not failing else (
            f"the {fmt} adapter quarantined {sum(c.quarantined for c in failing)} record(s) it could not map "
            f"(tolerance {tolerance:g}); first: {sample[0] if sample else '-'}"),
    )


def _failure(exc: Exception) -> dg.Failure:
    metadata = {}
    if isinstance(exc, IngestionError):
        metadata = {"file": exc.path, "line": exc.line or 0, "column": exc.column or ""}
    # bad input: the same files fail the same way again, so no retry
    return dg.Failure(description=str(exc), metadata=metadata, allow_retries=False)


@dg.multi_asset(
    name=STEP,
    specs=[*(adapter_spec(f) for f in PLATFORM_FORMATS), export_spec()],
    check_specs=[adapter_check_spec(f) for f in PLATFORM_FORMATS],
    can_subset=True,
)
def source_adapters(context: dg.AssetExecutionContext, export_source: ExportSourceResource):
    source = export_source.folder()
    try:
        fmt: SourceFormat = resolve_format(source, export_source.format)
    except (IngestionError, ValueError) as exc:
        raise _failure(exc) from None
    context.log.info(f"{source}: {fmt.describe()}")
    settings = get_settings()
    conversions: list[DeliveryConversion] = []
    loaded_from = source
    if fmt.format != CSV_FORMAT:
        root = converted_root(settings.home, source, fmt.format)
        try:
            conversions = convert_source(source, fmt.format, root, load_adapter_settings())
        except (IngestionError, SettingsError) as exc:
            raise _failure(exc) from None
        for c in conversions:
            context.log.info(f"{c.name}: {'reused' if c.reused else 'converted'} into {c.out}: "
                             f"{c.records_read} records read, {c.quarantined} quarantined")
        loaded_from = root
        key = source_key(fmt.format)
        check = adapter_check(fmt.format, conversions, settings.quarantine_tolerance)
        if key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata=adapter_metadata(fmt.format, source, root, conversions))
            yield check
        if not check.passed:
            if key not in context.selected_asset_keys:
                raise dg.Failure(description=check.description, allow_retries=False)
            return  # the failed blocking check fails the step: nothing is loaded
    try:
        folders = [c.out for c in conversions] or [source]
        dataset = dataset_of_source(folders)
    except MixedDatasetsError as exc:
        raise _failure(exc) from None
    context.instance.add_run_tags(context.run_id, run_tags(source, fmt.format, dataset))
    if EXPORT_KEY in context.selected_asset_keys:
        yield dg.MaterializeResult(asset_key=EXPORT_KEY, metadata={
            "format": fmt.format,
            "format_detected": fmt.detected,
            "detection": fmt.evidence or "given (--format)",
            "source": str(source),
            "loaded_from": str(loaded_from),
            "dataset": dataset.label,
        })


source_assets = [source_adapters]
