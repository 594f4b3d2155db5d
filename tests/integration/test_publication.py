"""Publication on the real server (defs/publish/swap.py): an unchanged table is not written again
and keeps only the BI role's select; a table published by day has only its changed days written;
a new column or a NULL day makes it a whole copy. Each time, the published table equals the
working one."""

from __future__ import annotations

import pytest

from voice_analytics_dagster.defs.publish.swap import (
    CertifiedTable,
    ensure_analytics,
    ensure_bi_role,
    publish_tables,
)

pytestmark = [pytest.mark.integration]

KPIS = CertifiedTable("kpis", "marts", "One row per metric (grain: metric).")
FACT = CertifiedTable("fact", "marts", "One row per session (grain: session_id).", day_column="session_date")


@pytest.fixture
def publish(fresh_db):
    from voice_analytics_dagster.lib.settings import get_settings

    settings = get_settings()
    with fresh_db.connect(autocommit=True) as conn:
        conn.execute("create schema marts")
        conn.execute("create table marts.kpis (metric text primary key, value double precision)")
        conn.execute("insert into marts.kpis values ('sessions', 6), ('abandonment', 0.25)")
        conn.execute("create table marts.fact (session_id text primary key, session_date date, turns integer)")
        conn.execute("insert into marts.fact select 'S' || i, date '2026-05-01' + (i % 3), i from generate_series(1, 6) i")
        ensure_analytics(conn)
        ensure_bi_role(conn, settings)
    runs = iter(range(1, 100))

    def _publish(verify: bool = False):
        from voice_analytics_dagster.defs.publish.assets import verify_published

        with fresh_db.connect() as conn:
            publication = publish_tables(conn, [FACT, KPIS], settings, f"run-{next(runs)}")
            if not verify:
                return publication.actions
            return {t.name: verify_published(conn, t, settings.bi_role, publication.actions[t.name],
                                             publication.fingerprints[t.name])[0].passed for t in (FACT, KPIS)}
    return _publish


def xmins(db, table: str) -> dict[str, str]:
    return dict(db.rows(f"select {'session_id' if 'fact' in table else 'metric'}, xmin::text from {table}"))


def same(db, name: str) -> bool:
    return db.rows(f"select * from analytics.{name} except all select * from marts.{name}") == [] and \
        db.scalar(f"select count(*) from analytics.{name}") == db.scalar(f"select count(*) from marts.{name}")


def test_only_what_changed_is_written(publish, fresh_db):
    db = fresh_db
    assert publish() == {"fact": "copied", "kpis": "copied"}
    fact1, kpis1 = xmins(db, "analytics.fact"), xmins(db, "analytics.kpis")

    # nothing changed: nothing written; a write right granted by hand is taken back
    with db.connect(autocommit=True) as conn:
        conn.execute("grant insert on analytics.kpis to metabase")
    assert publish() == {"fact": "unchanged", "kpis": "unchanged"}
    assert xmins(db, "analytics.fact") == fact1 and xmins(db, "analytics.kpis") == kpis1
    assert db.scalar("select has_table_privilege('metabase', 'analytics.kpis', 'insert')") is False
    assert db.scalar("select has_table_privilege('metabase', 'analytics.kpis', 'select')") is True

    # a session changed on one day, another added on a new day: those two days only
    with db.connect(autocommit=True) as conn:
        conn.execute("update marts.fact set turns = 60 where session_id = 'S6'")  # 2026-05-01
        conn.execute("insert into marts.fact values ('S7', '2026-05-09', 7)")
        conn.execute("update marts.kpis set value = 7 where metric = 'sessions'")
    assert publish() == {"fact": "2 days replaced", "kpis": "copied"}
    fact3 = xmins(db, "analytics.fact")
    days = dict(db.rows("select session_id, session_date::text from marts.fact"))
    assert {s for s in fact3 if fact3[s] != fact1.get(s)} == {s for s, d in days.items()
                                                              if d in ("2026-05-01", "2026-05-09")}
    assert same(db, "fact") and same(db, "kpis")

    # a day that left the fact is deleted from the published one
    with db.connect(autocommit=True) as conn:
        conn.execute("delete from marts.fact where session_date = '2026-05-09'")
    assert publish()["fact"] == "1 days replaced" and same(db, "fact")


def test_a_new_column_or_a_null_day_is_copied_whole(publish, fresh_db):
    db = fresh_db
    publish()
    with db.connect(autocommit=True) as conn:
        conn.execute("alter table marts.fact add column channel text")
    assert publish()["fact"] == "copied" and same(db, "fact")
    with db.connect(autocommit=True) as conn:
        conn.execute("insert into marts.fact values ('S8', null, 1, 'voice')")
    assert publish()["fact"] == "copied" and same(db, "fact")
    assert publish()["fact"] == "unchanged"
    with db.connect(autocommit=True) as conn:
        conn.execute("delete from marts.fact where session_date is null")
    assert publish()["fact"] == "copied" and same(db, "fact")  # recorded without days: once more whole
    assert publish()["fact"] == "unchanged"


def test_the_check_finds_a_published_table_changed_behind_publication(publish, fresh_db):
    """Publication leaves a table whose working rows did not change: matches_certified_model is
    what notices that its published copy did (here by hand), and a copy heals it."""
    assert publish(verify=True) == {"fact": True, "kpis": True}
    with fresh_db.connect(autocommit=True) as conn:
        conn.execute("update analytics.kpis set value = 0.5 where metric = 'abandonment'")
        conn.execute("update analytics.fact set turns = 0 where session_id = 'S1'")
    assert publish(verify=True) == {"fact": False, "kpis": False}
    with fresh_db.connect(autocommit=True) as conn:  # the working tables change: copied, by day
        conn.execute("update marts.kpis set value = 0.3 where metric = 'abandonment'")
        conn.execute("update marts.fact set turns = 10 where session_id = 'S1'")
    assert publish(verify=True) == {"fact": True, "kpis": True}
