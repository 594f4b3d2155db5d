"""Raw ingestion: one asset per source file (``raw/users``, ``raw/voice_sessions``, ...), all five
materialized by one step (``raw_export``) that loads the files two at a time.

Why one step: the run's executor is in-process (a process per step costs more than it saves on
2 cores), so five assets meant five loads one after another, while a COPY keeps one server
process busy and the other core idle. Two loads at once, the largest file first (the
measurement: docs/PERFORMANCE.md).
Each file is still one transaction with its own connection; a file that fails does not undo
the others, and a retry of the step skips what is loaded (idempotent by checksum).

Each asset loads every delivery of its file not loaded before (idempotent by checksum) with
COPY (voice_analytics_dagster/defs/ingestion/copy.py) and carries two blocking checks evaluated in the same
step, so that a failure stops the run before dbt:

- ``file_matches_contract``: the header has exactly the contract's columns (missing, new,
  renamed or duplicated columns fail), and no column is "retyped" (more than half of a file's
  values failing the column's type reads as a changed column, not as bad rows);
- ``quarantine_within_tolerance``: in every active batch (the input of dbt: this export, or the
  current version of every delivery), quarantined rows stay within
  VOICE_ANALYTICS_QUARANTINE_TOLERANCE (default 0: any bad row blocks publication until a
  corrected file is delivered; re-running the same file does not unblock it).

A lost warehouse connection (a restarting server) is retried with exponential backoff (retry.py):
every file is one transaction and loading is idempotent per checksum, so the retry loads exactly
what the failed attempt had not committed. Bad data is never retried (``allow_retries=False``).
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg

from voice_analytics_dagster.defs.ingestion.adapters import load_adapter_settings
from voice_analytics_dagster.defs.ingestion.batches import (
    Delivery,
    activate_batches,
    discover_deliveries,
    record_rejection,
)
from voice_analytics_dagster.defs.ingestion.copy import LoadResult, load_file
from voice_analytics_dagster.defs.ingestion.reader import IngestionError, SchemaDriftError
from voice_analytics_dagster.defs.ingestion.source_assets import EXPORT_KEY
from voice_analytics_dagster.defs.ingestion.sources import (
    converted_root,
    current_conversions,
    nullable_columns,
    resolve_format,
)
from voice_analytics_dagster.defs.ingestion.sql import bootstrap_raw_sql
from voice_analytics_dagster.lib.contract import TABLES, Table
from voice_analytics_dagster.lib.provenance import (
    CSV_FORMAT,
    MixedDatasetsError,
    Origin,
    dataset_of_source,
    held_datasets,
    mixing_problem,
    run_tags,
    stamp_unrecorded,
)
from voice_analytics_dagster.lib.resources import (
    ExportSourceResource,
    WarehouseLockResource,
    WarehouseResource,
)
from voice_analytics_dagster.lib.retry import MAX_RETRIES, backoff_seconds, is_transient_db_error
from voice_analytics_dagster.lib.settings import get_settings
from voice_analytics_dagster.lib.warehouse import Warehouse

CONTRACT_CHECK = "file_matches_contract"
QUARANTINE_CHECK = "quarantine_within_tolerance"
# A column is "retyped" when at least this share of a file's rows fail its type: a handful of
# bad values is bad data (quarantine), a majority is a changed export (schema drift).
RETYPED_SHARE = 0.5

GROUP = "raw"  # groups follow the key prefixes (raw/<table>)


def raw_asset_key(table_name: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", table_name])


def ensure_raw_schema(conn) -> None:
    with conn.transaction():
        conn.execute("select pg_advisory_xact_lock(hashtext('voice_analytics.bootstrap_raw'))")
        conn.execute(bootstrap_raw_sql())


RETYPED_SQL = """
select q.column_name, count(*) as failing, b.rows_read
from raw.quarantine q
join raw.load_batches b using (batch_id)
where q.batch_id = any(%(batches)s)
  and q.reason like q.column_name || ': expected %%'
group by q.column_name, b.batch_id, b.rows_read
having count(*) >= %(share)s * b.rows_read
"""

# The batches that are dbt's input now (activate_batches): bad rows in any of them block.
ACTIVE_BATCHES_SQL = """
select batch_id, coalesce(delivery, file_name) as delivery, rows_read, rows_quarantined
from raw.load_batches
where table_name = %(table)s and active
order by batch_id
"""

QUARANTINE_SAMPLE_SQL = """
select b.file_name, q.source_line, q.column_name, q.reason
from raw.quarantine q join raw.load_batches b using (batch_id)
where q.batch_id = any(%(batches)s)
order by q.batch_id, q.source_line
limit 5
"""


def _describe(results: list[LoadResult]) -> dict:
    """Materialization metadata: every row read is loaded or quarantined, per file and in total."""
    loaded = [r for r in results if not r.skipped]
    return {
        "deliveries_seen": len(results),
        "files_loaded": len(loaded),
        "files_already_loaded": len(results) - len(loaded),
        "rows_read": sum(r.rows_read for r in loaded),
        "rows_loaded": sum(r.rows_loaded for r in loaded),
        "rows_quarantined": sum(r.rows_quarantined for r in loaded),
        "batch_ids": [r.batch_id for r in results],
        "file_checksums": dg.MetadataValue.json(
            {(r.delivery or r.path): {"sha256": r.checksum, "bytes": r.file_bytes, "batch_id": r.batch_id,
                                      "skipped_already_loaded": r.skipped, "rows_read": r.rows_read,
                                      "rows_loaded": r.rows_loaded, "rows_quarantined": r.rows_quarantined}
             for r in results}
        ),
        "columns_reordered": any(r.header.reordered for r in results),
        "load_paths": sorted({r.load_path for r in results}),
    }


# two loads at once on the 2-core machine this is measured on; more would only queue on the CPUs
LOAD_WORKERS = 2
STEP = "raw_export"


def raw_asset_spec(t: Table) -> dg.AssetSpec:
    return dg.AssetSpec(
        key=raw_asset_key(t.name),
        group_name=GROUP,
        kinds={"postgres", "csv"},
        description=(
            f"{t.file} loaded with COPY into raw.{t.name} ({t.grain}, every delivery kept with its batch id and "
            "source line). Bad rows go to raw.quarantine with a reason; a file that breaks the contract fails "
            "with its file, line and column."
        ),
        metadata={"contract_columns": list(t.column_names), "grain": t.grain, "key": list(t.key)},
        deps=[EXPORT_KEY],
        skippable=True,
    )


def raw_check_specs(t: Table) -> list[dg.AssetCheckSpec]:
    key = raw_asset_key(t.name)
    return [
        dg.AssetCheckSpec(CONTRACT_CHECK, asset=key, blocking=True,
                          description="Header has the contract's columns; no column retyped."),
        dg.AssetCheckSpec(QUARANTINE_CHECK, asset=key, blocking=True,
                          description="Quarantined rows within VOICE_ANALYTICS_QUARANTINE_TOLERANCE."),
    ]


def _export_bytes(deliveries: list[Delivery], t: Table) -> int:
    return sum(d.file(t).stat().st_size for d in deliveries if d.file(t).exists())


def _retry(context: dg.AssetExecutionContext, exc: Exception) -> dg.RetryRequested:
    wait = backoff_seconds(context.retry_number)
    context.log.warning(f"lost the warehouse connection while loading ({exc}); "
                        f"retry {context.retry_number + 1}/{MAX_RETRIES} in {wait:g} s")
    return dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait)


@dg.multi_asset(
    name=STEP,
    specs=[raw_asset_spec(t) for t in TABLES],
    check_specs=[spec for t in TABLES for spec in raw_check_specs(t)],
    can_subset=True,
)
def raw_export(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
               export_source: ExportSourceResource, warehouse_lock: WarehouseLockResource):
    source = export_source.folder()
    try:
        fmt, folder, manifests = _export_to_load(source, export_source.format)
        deliveries = discover_deliveries(folder)
        dataset = dataset_of_source([d.folder for d in deliveries])
    except (IngestionError, MixedDatasetsError, ValueError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    wh = warehouse.get()
    try:
        wh.ensure_databases()
        with wh.connect() as conn:
            ensure_raw_schema(conn)
            problem = mixing_problem(dataset, source, held_datasets(conn))
    except Exception as exc:
        if not is_transient_db_error(exc):
            raise
        raise _retry(context, exc) from exc
    if problem:
        raise dg.Failure(description=problem, allow_retries=False)
    # what this run reads, on the run itself: a demo run can be told from a real one in the UI
    context.instance.add_run_tags(context.run_id, run_tags(source, fmt, dataset))
    origin = Origin(Path(source), fmt, dataset)
    tables = [t for t in TABLES if raw_asset_key(t.name) in context.selected_asset_keys]
    # the largest file first, so that the other worker loads the small ones meanwhile
    tables.sort(key=lambda t: -_export_bytes(deliveries, t))
    outcomes: dict[str, tuple[list, Exception | None]] = {}

    def load(t: Table) -> tuple[list, Exception | None]:
        # events are collected and yielded from this (the step's) thread once every load is done
        events: list = []
        try:
            for event in _load_table(context, t, wh, deliveries, events.append, origin, manifests):
                events.append(event)
        except Exception as exc:  # noqa: BLE001 - reported below, after every file's events
            return events, exc
        return events, None

    with ThreadPoolExecutor(max_workers=LOAD_WORKERS, thread_name_prefix="raw-load") as pool:
        for t, outcome in zip(tables, pool.map(load, tables), strict=True):
            outcomes[t.name] = outcome

    failures: list[Exception] = []
    for t in TABLES:
        if t.name not in outcomes:
            continue
        events, exc = outcomes[t.name]
        for event in events:
            if isinstance(event, str):
                context.log.info(event)
            else:
                yield event
        if exc is not None:
            failures.append(exc)
    if not failures:
        return
    transient = [e for e in failures if is_transient_db_error(e)]
    if transient:
        raise _retry(context, transient[0]) from transient[0]
    bad = [e for e in failures if isinstance(e, dg.Failure)]
    if len(bad) == len(failures):
        # bad data: the same files fail the same way again, so no retry
        raise dg.Failure(description="\n".join(e.description or str(e) for e in bad),
                         metadata=bad[0].metadata, allow_retries=False)
    raise next(e for e in failures if not isinstance(e, dg.Failure))


def _export_to_load(source, fmt: str | None) -> tuple[str, object, dict]:
    """(format, the folder to load, adapter manifest per delivery): the source itself for csv,
    else its current conversion (written by the sources/export step of the run)."""
    resolved = resolve_format(source, fmt).format
    if resolved == CSV_FORMAT:
        return resolved, source, {}
    settings = get_settings()
    root = converted_root(settings.home, source, resolved)
    conversions = current_conversions(source, resolved, root, load_adapter_settings())
    return resolved, root, {c.delivery: c.manifest for c in conversions}


def _load_table(context: dg.AssetExecutionContext, t: Table, wh: Warehouse, deliveries: list[Delivery], log,
                origin: Origin, manifests: dict | None = None):
    """The raw asset of table ``t``: load every new delivery, then evaluate its two checks.
    ``log`` takes the progress lines (the caller logs them from the step's thread). A delivery
    converted by a platform adapter (``manifests``) loads the columns its platform does not
    record as NULL; a CSV export's required values stay required. ``origin`` (the run's source,
    format and dataset) is written on every batch this loads."""
    settings = get_settings()
    results: list[LoadResult] = []
    # named, so that pg_stat_activity shows which table a backend is loading
    with wh.connect(application_name=f"voice-analytics raw/{t.name}") as conn:
        for delivery in deliveries:
            path = delivery.file(t)
            manifest = (manifests or {}).get(delivery.name)
            nullable = nullable_columns(manifest, t) if manifest is not None else frozenset()
            try:
                result = load_file(conn, t, path, delivery.name, context.run_id, nullable=nullable, origin=origin)
            except IngestionError as exc:
                if path.exists():
                    record_rejection(conn, t, path, delivery.name, context.run_id, exc)
                if isinstance(exc, SchemaDriftError):
                    yield dg.AssetCheckResult(
                        asset_key=raw_asset_key(t.name), check_name=CONTRACT_CHECK, passed=False,
                        severity=dg.AssetCheckSeverity.ERROR,
                        metadata={"file": exc.path, "line": exc.line or 0, "column": exc.column or "",
                                  "problem": exc.problem},
                    )
                # bad data: the same file fails the same way again, so no retry
                raise dg.Failure(description=str(exc), metadata={"file": exc.path, "line": exc.line or 0,
                                                                 "column": exc.column or ""},
                                 allow_retries=False) from None
            log(
                f"{path}: " + (f"already loaded (batch {result.batch_id})" if result.skipped else
                               f"read {result.rows_read}, loaded {result.rows_loaded}, "
                               f"quarantined {result.rows_quarantined} (batch {result.batch_id})")
            )
            results.append(result)

        stamp_unrecorded(conn, [r.batch_id for r in results], origin)
        activate_batches(conn, t, results)
        new_batches = [r.batch_id for r in results if not r.skipped]
        retyped = conn.execute(RETYPED_SQL, {"batches": new_batches, "share": RETYPED_SHARE}).fetchall()
        current = conn.execute(ACTIVE_BATCHES_SQL, {"table": t.name}).fetchall()
        over = [
            (batch, delivery, read, quarantined)
            for batch, delivery, read, quarantined in current
            if quarantined > settings.quarantine_tolerance * max(read, 1) and quarantined > 0
        ]
        sample = conn.execute(QUARANTINE_SAMPLE_SQL, {"batches": [b for b, *_ in over]}).fetchall()
        # every loaded batch is a partition of raw.<table>: its rows without scanning them
        total_rows = conn.execute(
            "select coalesce(sum(rows_loaded), 0)::bigint from raw.load_batches where table_name = %s and status = 'loaded'",
            (t.name,)).fetchone()[0]
        conn.commit()

    meta = _describe(results)
    meta["dagster/row_count"] = total_rows
    meta.update({"source": str(origin.source), "format": origin.format, "dataset": origin.dataset.label})
    yield dg.MaterializeResult(asset_key=raw_asset_key(t.name), metadata=meta)
    yield dg.AssetCheckResult(
        asset_key=raw_asset_key(t.name),
        check_name=CONTRACT_CHECK,
        passed=not retyped,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "retyped_columns": [
                f"{col}: {failing} of {read} rows fail its type" for col, failing, read in retyped
            ],
            "columns_reordered": meta["columns_reordered"],
        },
        description=None if not retyped else "column(s) no longer parse as their contract type",
    )
    yield dg.AssetCheckResult(
        asset_key=raw_asset_key(t.name),
        check_name=QUARANTINE_CHECK,
        passed=not over,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "tolerance": settings.quarantine_tolerance,
            "failing_count": sum(q for *_, q in over),
            "failing_batches": [f"{d} (batch {b}): {q} of {r} rows quarantined" for b, d, r, q in over],
            # reasons never carry personal data (loader withholds PII values)
            "sample": [f"{f} line {line}: {reason}" for f, line, _col, reason in sample],
        },
    )


raw_assets = [raw_export]
