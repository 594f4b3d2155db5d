"""Publication: the last asset. It copies every certified working table into ``analytics`` in one
transaction (voice_analytics_dagster/publish.py) and never runs after a failed blocking check:

1. Dagster itself skips it when a blocking check upstream fails in the same run (a failing
   error-severity dbt test fails the dbt step; Python blocking checks stop their step);
2. it then reads the latest evaluation of every check upstream of it, across runs, and refuses
   if any error-severity check's latest result is a failure (this covers checks that ran in an
   earlier run, and a run that selects publication alone).

It publishes only while its run holds the warehouse run lock (runlock.py; re-checked here because
a server restart drops the lock with its connection). A lost connection is retried with backoff:
the swap is one transaction, so a retry publishes the whole version or nothing.
"""


import json

import dagster as dg
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ..gate import FailedCheck
from ..project import dbt_project
from ..publish import CertifiedTable, ensure_analytics, ensure_bi_role, publish_tables, record_block
from ..resources import WarehouseLockResource, WarehouseResource
from ..retry import MAX_RETRIES, backoff_seconds, is_transient_db_error
from ..runlock import RunLockError
from ..settings import get_settings
from .dbt import dbt_model_key

GROUP = "publish"


def certified_dbt_tables() -> list[CertifiedTable]:
    """dbt models whose YAML says ``meta: {certified: true}``."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    out = []
    for node in manifest["nodes"].values():
        meta = {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}
        if node["resource_type"] == "model" and meta.get("certified"):
            out.append(CertifiedTable(node["name"], node["schema"], node.get("description", "")))
    return sorted(out, key=lambda t: t.name)


def certified_tables() -> list[tuple[CertifiedTable, dg.AssetKey]]:
    """Every certified table with the asset that builds it. Python outputs reach BI through dbt
    models too (dbt/models/staging/analysis -> marts/fct_abandonment_*)."""
    return [(t, dbt_model_key(t.name)) for t in certified_dbt_tables()]


def published_key(name: str) -> dg.AssetKey:
    return dg.AssetKey(["analytics", name])


def latest_check_failures(context: dg.AssetExecutionContext) -> list[FailedCheck]:
    """Error-severity checks (outside analytics) whose latest evaluation failed, in any run."""
    # The whole code location's graph, also when this run selected publication alone (a job
    # subset's graph holds only its selection). From the job: the repository is not available
    # to in-process runs.
    graph = context.job_def.asset_layer.asset_graph
    graph = getattr(graph, "source_asset_graph", graph)
    keys = [k for k in graph.asset_check_keys if k.asset_key.path[0] != "analytics"]
    records = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(keys)
    failures = []
    for key, record in records.items():
        if record.status != AssetCheckExecutionRecordStatus.FAILED:
            continue
        evaluation = record.event.dagster_event.event_specific_data if record.event else None
        severity = evaluation.severity.value if evaluation is not None else "ERROR"
        if severity != "ERROR":
            continue
        failures.append(FailedCheck(key.asset_key.to_user_string(), key.name, severity,
                                    evaluation.description if evaluation else None, None))
    return sorted(failures, key=lambda c: c.name)


def build_publish_asset() -> dg.AssetsDefinition:
    tables = certified_tables()
    specs = [
        dg.AssetSpec(
            published_key(t.name),
            deps=[upstream],
            group_name=GROUP,
            kinds={"postgres"},
            description=f"Certified copy of {t.schema}.{t.name}, readable by the BI role. {t.description}".strip(),
            tags={"certified": ""},
        )
        for t, upstream in tables
    ]

    @dg.multi_asset(specs=specs, name="publish_certified_schema", can_subset=False, group_name=GROUP)
    def publish_certified_schema(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                                 warehouse_lock: WarehouseLockResource):
        """Swap every certified table into analytics in one transaction, or log why not."""
        settings = get_settings()
        wh = warehouse.get()
        failures = latest_check_failures(context)
        try:
            with wh.connect(application_name="voice-analytics publish") as conn:
                if failures:
                    names = [f.name for f in failures]
                    record_block(conn, context.run_id, names, "latest evaluation failed: " + ", ".join(names))
                    raise dg.Failure(
                        description="not published: blocking checks failed: " + ", ".join(names),
                        metadata={"blocked_by": names},
                        allow_retries=False,
                    )
                try:
                    warehouse_lock.verify()
                except RunLockError as exc:
                    raise dg.Failure(description=str(exc), allow_retries=False) from None
                ensure_analytics(conn)
                ensure_bi_role(conn, settings)
                counts = publish_tables(conn, [t for t, _ in tables], settings, context.run_id)
        except Exception as exc:
            if not is_transient_db_error(exc):
                raise
            wait = backoff_seconds(context.retry_number)
            context.log.warning(f"lost the warehouse connection while publishing ({exc}); "
                                f"retry {context.retry_number + 1}/{MAX_RETRIES} in {wait:g} s")
            raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from exc
        for t, _ in tables:
            yield dg.MaterializeResult(
                asset_key=published_key(t.name),
                metadata={"dagster/row_count": counts[t.name], "published_from": f"{t.schema}.{t.name}",
                          "readable_by": settings.bi_role},
            )

    return publish_certified_schema


publish_certified_schema = build_publish_asset()
