"""Fixtures shared by the loader's integration tests."""

import pytest


@pytest.fixture(scope="module")
def raw(module_db):
    """The test module's own database, with the raw schema the loader writes into."""
    from voice_analytics_dagster.defs.ingestion.sql import bootstrap_raw_sql

    with module_db.connect() as conn:
        conn.execute(bootstrap_raw_sql())
        conn.commit()
    return module_db


@pytest.fixture
def db(raw, use_db):
    return use_db(raw)
