"""The Metabase dashboards in the Dagster asset graph: one external asset per dashboard, downstream
of the published tables its cards read, so the lineage runs raw -> ... -> analytics -> metabase.
dagster-dbt does not turn dbt exposures into assets (only models, seeds and snapshots), so these
are built from the same specs as the exposures. Nothing materializes them: Metabase reads
the tables when someone opens a dashboard."""

import dagster as dg

from voice_analytics_dagster.defs.bi.spec import load_collection, tables_read

GROUP = "metabase"  # the key prefix of the dashboards (metabase/<dashboard>)


def dashboard_key(slug: str) -> dg.AssetKey:
    return dg.AssetKey(["metabase", slug])


def dashboard_specs() -> list[dg.AssetSpec]:
    collection = load_collection()
    specs = []
    for d in collection.dashboards:
        tables = sorted({t for c in d.cards for _, t in tables_read(c.sql)})
        specs.append(dg.AssetSpec(
            dashboard_key(d.slug),
            deps=[dg.AssetKey(["analytics", t]) for t in tables],
            group_name=GROUP,
            kinds={"metabase"},
            description=f"Metabase dashboard '{d.name}' (collection '{collection.name}', "
                        f"metabase/dashboards/{d.file}). {d.description}",
            metadata={"cards": dg.MetadataValue.json([c.name for c in d.cards])},
        ))
    return specs
