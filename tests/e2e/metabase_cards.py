"""Runs every Metabase card of metabase/ as the read-only BI role on a published schema (used by
test_analysis_sample.py, which already holds a published run of the real sample: no second run)."""

from __future__ import annotations

from voice_analytics_dagster.defs.bi.spec import load_collection, selected_columns, tables_read

# cards whose rows the real sample cannot fill: it has no asr_model_version column
EMPTY_ON_THE_SAMPLE = {"Error reduction: error rates by ASR model version"}


def check_every_card(conn) -> dict[str, int]:
    """Assert, card by card, what a dashboard relies on; returns suppressed rows per card."""
    suppressed_rows = {}
    for card in load_collection().cards():
        cur = conn.execute(card.sql)
        columns = [d.name for d in cur.description]
        rows = [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]
        assert columns == selected_columns(card.sql), card.name
        assert rows or card.name in EMPTY_ON_THE_SAMPLE, f"{card.name}: no rows"
        [(_, table)] = tables_read(card.sql)
        flags_in_table = {r[0] for r in conn.execute(
            "select column_name from information_schema.columns where table_schema = 'analytics' "
            "and table_name = %s and (column_name = 'suppressed' or column_name like '%%\\_suppressed')", (table,))}
        # a withheld row is recognisable as withheld wherever the table can withhold one
        # (tables with two flags, like the efficiency one, need the one that governs the card's values)
        assert not flags_in_table or flags_in_table & set(columns) or not card.rates, \
            f"{card.name}: select one of {sorted(flags_in_table)} beside the values"
        flags = [c for c in columns if c in flags_in_table]
        suppressed_rows[card.name] = 0
        for row in rows:
            if any(row[f] for f in flags):
                suppressed_rows[card.name] += 1
                # withheld values are NULL (a blank cell), never 0
                for rate in card.rates:
                    for c in (rate.value, *rate.ci):
                        assert row[c] is None, f"{card.name}: withheld {c} = {row[c]!r}"
            else:
                for rate in card.rates:
                    if row[rate.value] is not None:
                        low, high = (row[c] for c in rate.ci)
                        assert low is not None and high is not None and all(row[n] is not None for n in rate.n), \
                            f"{card.name}: {rate.value} shown without its interval or n"
    return suppressed_rows
