"""What publication does to each certified table (defs/publish/swap.py), decided without a
database: left unchanged, replaced by day, or copied whole."""

from __future__ import annotations

from voice_analytics_dagster.defs.publish.swap import CertifiedTable, fingerprint_sql, publication_action

DAYS = {"2026-05-01": [10, "11"], "2026-05-02": [12, "13"]}
BY_DAY = {"rows": 22, "hash": "24", "days": DAYS}


def test_an_unchanged_table_is_left_as_it_is():
    assert publication_action({"rows": 5, "hash": "9"}, {"rows": 5, "hash": "9"}, True) == ("unchanged", [])
    assert publication_action(BY_DAY, {**BY_DAY, "days": dict(DAYS)}, True) == ("unchanged", [])


def test_a_table_published_by_day_replaces_the_days_that_changed_appeared_or_left():
    now = {"rows": 0, "hash": "0", "days": {"2026-05-01": [10, "11"], "2026-05-02": [12, "99"],
                                             "2026-05-03": [1, "1"]}}
    assert publication_action(BY_DAY, now, True) == ("days", ["2026-05-02", "2026-05-03"])
    gone = {"rows": 10, "hash": "11", "days": {"2026-05-01": [10, "11"]}}
    assert publication_action(BY_DAY, gone, True) == ("days", ["2026-05-02"])


def test_a_table_is_copied_whole_when_nothing_is_recorded_its_columns_changed_or_it_has_no_days():
    assert publication_action(None, BY_DAY, True) == ("copy", [])
    assert publication_action(BY_DAY, BY_DAY, False) == ("copy", [])  # a new column: the same rows are not enough
    assert publication_action({"rows": 5, "hash": "9"}, {"rows": 5, "hash": "8"}, True) == ("copy", [])
    # a table with a NULL day has no days (table_fingerprint): it cannot be replaced by day
    assert publication_action(BY_DAY, {"rows": 23, "hash": "25"}, True) == ("copy", [])
    # recorded whole (before the table was published by day): copied once, then by day
    assert publication_action({"rows": 22, "hash": "24"}, BY_DAY, True) == ("copy", [])


def test_the_fingerprint_hashes_whole_rows_per_day_only_for_a_table_published_by_day():
    whole = fingerprint_sql(CertifiedTable("fct_voice_kpis", "marts")).as_string()
    assert whole == ('select null::text, count(*), coalesce(sum(hash_record_extended(w, 0)::numeric), 0)::text '
                     'from "marts"."fct_voice_kpis" w')
    daily = fingerprint_sql(CertifiedTable("fact_voice_ai_sessions", "marts", day_column="session_date")).as_string()
    assert daily.startswith('select "session_date"::text, count(*), ') and daily.endswith(" w group by 1")
