"""Where the dbt models that Python reads live, from the dbt manifest: the one place relation names
come from, so that a model moved to another schema or renamed is followed everywhere."""

import json
from functools import cache

from voice_analytics_dagster.defs.transform.project import dbt_project
from voice_analytics_dagster.defs.transform.translator import relation_of


@cache
def _models() -> dict:
    manifest = json.loads(dbt_project.manifest_path.read_text())
    return {n["name"]: n for n in manifest["nodes"].values() if n["resource_type"] in ("model", "snapshot")}


def relation(model: str) -> str:
    """``schema.table`` of a dbt model, e.g. relation("fact_voice_ai_sessions")."""
    try:
        return relation_of(_models()[model])
    except KeyError:
        raise KeyError(f"no dbt model {model!r} in {dbt_project.manifest_path}") from None


FACT = relation("fact_voice_ai_sessions")
STAGED_SESSIONS = relation("stg_voice_export__sessions")
SESSION_EXCLUSIONS = relation("int_session_exclusions")
