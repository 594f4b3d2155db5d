"""Publication: the last asset. It publishes every certified working table into ``analytics`` in one
transaction, each by what changed since the last publication (swap.py), and never runs after a
failed blocking check:

1. Dagster skips it when a blocking check upstream fails in the same run;
2. it then reads the latest evaluation of every error-severity check upstream, across runs, and
   refuses if one failed (covers checks evaluated in an earlier run, and a run that selects
   publication alone);
3. it refuses a version that would empty a certified table or drop too many sessions, unless
   the run accepts the shrink (``voice-analytics run --accept-shrink``).

Each published table carries two checks evaluated right after the swap, so that the Dagster UI
shows on every asset BI reads what certified it: its rows are the certified model's, and the BI
role can read it and nothing more. A lost connection is retried with backoff: the swap is one
transaction, so a retry publishes the whole version or nothing.
"""

import json

import dagster as dg
from pydantic import Field

from voice_analytics_dagster.defs.publish.swap import (
    CERTIFIED_SCHEMA,
    FACT_TABLE,
    CertifiedTable,
    ShrinkRefused,
    ensure_analytics,
    ensure_bi_role,
    publish_tables,
)
from voice_analytics_dagster.defs.transform.assets import dbt_model_key
from voice_analytics_dagster.defs.transform.project import dbt_project
from voice_analytics_dagster.lib.eventlog import latest_failed_checks
from voice_analytics_dagster.lib.provenance import inputs as read_inputs
from voice_analytics_dagster.lib.resources import WarehouseLockResource, WarehouseResource
from voice_analytics_dagster.lib.retry import MAX_RETRIES, backoff_seconds, is_transient_db_error
from voice_analytics_dagster.lib.runlock import RunLockError
from voice_analytics_dagster.lib.settings import get_settings

GROUP = CERTIFIED_SCHEMA  # groups follow the key prefixes (analytics/<table>)
MATCHES_CHECK = "matches_certified_model"
GRANTS_CHECK = "readable_by_bi_role_only"


def certified_dbt_tables() -> list[CertifiedTable]:
    """dbt models whose YAML says ``meta: {certified: true}``."""
    manifest = json.loads(dbt_project.manifest_path.read_text())
    out = []
    for node in manifest["nodes"].values():
        meta = {**(node.get("meta") or {}), **((node.get("config") or {}).get("meta") or {})}
        if node["resource_type"] == "model" and meta.get("certified"):
            out.append(CertifiedTable(node["name"], node["schema"], node.get("description", ""),
                                      meta.get("publish_by_day")))
    return sorted(out, key=lambda t: t.name)


def certified_tables() -> list[tuple[CertifiedTable, dg.AssetKey]]:
    """Every certified table with the asset that builds it. Python outputs reach BI through dbt
    models too (dbt/models/staging/analysis -> marts/fct_abandonment_*)."""
    return [(t, dbt_model_key(t.name)) for t in certified_dbt_tables()]


def published_key(name: str) -> dg.AssetKey:
    return dg.AssetKey([CERTIFIED_SCHEMA, name])


def upstream_error_checks(context: dg.AssetExecutionContext) -> list[dg.AssetCheckKey]:
    """Every check of the code location outside ``analytics``. The whole graph, also when this run
    selected publication alone (a job subset's graph holds only its selection)."""
    graph = context.job_def.asset_layer.asset_graph
    graph = getattr(graph, "source_asset_graph", graph)
    return [k for k in graph.asset_check_keys if k.asset_key.path[0] != CERTIFIED_SCHEMA]


# One query for both checks of every published table: the published table's row count and the
# sum of its whole rows' hash_record_extended (which hashes the values without writing them as
# text), compared with the working table's, which publication took in its own transaction
# (swap.table_fingerprint: the same formula; nothing writes the working tables between the two,
# the run holds the warehouse lock); and the BI role's rights. Publication may have left a table
# unchanged or replaced some of its days: this is what says the result equals the tested model.
VERIFY_SQL = """
select (select count(*) from {published}),
       (select coalesce(sum(hash_record_extended(p, 0)::numeric), 0)::text from {published} p),
       has_table_privilege(%(role)s, %(published_name)s, 'select'),
       has_table_privilege(%(role)s, %(published_name)s, 'insert, update, delete, truncate'),
       has_table_privilege(%(role)s, %(working_name)s, 'select')
"""


def verify_published(conn, t: CertifiedTable, role: str, action: str,
                     working: dict) -> tuple[dg.AssetCheckResult, dg.AssetCheckResult]:
    """``working``: the working table's {"rows", "hash"} (swap.table_fingerprint)."""
    from psycopg import sql

    published = sql.SQL("{}.{}").format(sql.Identifier(CERTIFIED_SCHEMA), sql.Identifier(t.name))
    query = sql.SQL(VERIFY_SQL).format(published=published)
    n_pub, h_pub, can_read, can_write, reads_working = conn.execute(query, {
        "role": role, "published_name": f"{CERTIFIED_SCHEMA}.{t.name}", "working_name": f"{t.schema}.{t.name}",
    }).fetchone()
    n_work, h_work = working["rows"], working["hash"]
    asset = published_key(t.name)
    matches = dg.AssetCheckResult(
        asset_key=asset, check_name=MATCHES_CHECK, passed=bool(n_pub == n_work and h_pub == h_work),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"published_rows": n_pub, "certified_rows": n_work, "certified_model": f"{t.schema}.{t.name}",
                  "fingerprint_of": "every row", "fingerprints_equal": bool(h_pub == h_work),
                  "publication": action})
    grants = dg.AssetCheckResult(
        asset_key=asset, check_name=GRANTS_CHECK, passed=bool(can_read and not can_write and not reads_working),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={"bi_role": role, "can_select": bool(can_read), "can_write": bool(can_write),
                  "can_read_working_table": bool(reads_working)})
    return matches, grants


class PublishConfig(dg.Config):
    """Run configuration of publication (ops: {publish_certified_schema: {config: ...}})."""

    accept_shrink: bool = Field(
        default=False, description="Publish even if a certified table would be emptied or the fact would lose more "
                                   "sessions than VOICE_ANALYTICS_MAX_SESSION_DROP allows (logged).")


def _check_specs(t: CertifiedTable) -> list[dg.AssetCheckSpec]:
    key = published_key(t.name)
    return [
        dg.AssetCheckSpec(MATCHES_CHECK, asset=key, description=(
            f"The published table holds the rows of the tested model {t.schema}.{t.name}: the same row count "
            "and the same fingerprint of every row, after publication (copied, left unchanged or replaced by day).")),
        dg.AssetCheckSpec(GRANTS_CHECK, asset=key, description=(
            "The read-only BI role can select this table, cannot change it, and cannot read its working table.")),
    ]


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

    @dg.multi_asset(specs=specs, check_specs=[s for t, _ in tables for s in _check_specs(t)],
                    name="publish_certified_schema", can_subset=False, group_name=GROUP)
    def publish_certified_schema(context: dg.AssetExecutionContext, config: PublishConfig,
                                 warehouse: WarehouseResource, warehouse_lock: WarehouseLockResource):
        """Publish every certified table into analytics in one transaction (what changed), or say why not."""
        settings = get_settings()
        wh = warehouse.get()
        failures = latest_failed_checks(context.instance, upstream_error_checks(context))
        if failures:
            names = [f.name for f in failures]
            raise dg.Failure(description="not published: the latest evaluation of blocking checks failed: "
                                         + ", ".join(names), metadata={"blocked_by": names}, allow_retries=False)
        try:
            warehouse_lock.verify()
        except RunLockError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        try:
            with wh.connect(application_name="voice-analytics publish") as conn:
                ensure_analytics(conn)
                ensure_bi_role(conn, settings)
                inputs = read_inputs(conn)
                publication = publish_tables(conn, [t for t, _ in tables], settings, context.run_id, inputs,
                                             accept_shrink=config.accept_shrink)
                checks = [c for t, _ in tables
                          for c in verify_published(conn, t, settings.bi_role, publication.actions[t.name],
                                                    publication.fingerprints[t.name])]
        except ShrinkRefused as exc:
            raise dg.Failure(
                description="not published: " + "; ".join(exc.problems)
                + ". If this export is meant to replace the data, run again with --accept-shrink.",
                metadata={"shrink": dg.MetadataValue.json(exc.shrink)}, allow_retries=False) from None
        except Exception as exc:
            if not is_transient_db_error(exc):
                raise
            wait = backoff_seconds(context.retry_number)
            context.log.warning(f"lost the warehouse connection while publishing ({exc}); "
                                f"retry {context.retry_number + 1}/{MAX_RETRIES} in {wait:g} s")
            raise dg.RetryRequested(max_retries=MAX_RETRIES, seconds_to_wait=wait) from exc
        provenance = {"read": inputs.summary(), "sources": inputs.sources, "dataset": inputs.dataset}
        for t, _ in tables:
            # every input file with its checksum once, on the fact (analytics.publication_log has them too)
            files = {"input_files": dg.MetadataValue.json(inputs.files)} if t.name == FACT_TABLE else {}
            yield dg.MaterializeResult(
                asset_key=published_key(t.name),
                metadata={"dagster/row_count": publication.counts[t.name], "published_from": f"{t.schema}.{t.name}",
                          "publication": publication.actions[t.name], "readable_by": settings.bi_role,
                          **provenance, **files},
            )
        yield from checks

    return publish_certified_schema


publish_certified_schema = build_publish_asset()
