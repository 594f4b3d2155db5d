{#-
  The input of dbt from a raw table: rows of active load batches only (the export that was
  run, or the current version of every dated delivery; see loader.activate_batches), and of
  those the latest delivered version of each key: a later delivery of the same key supersedes
  an earlier one (late data, corrected outcomes).

  "Later" is the delivery's date (its folder name, YYYY-MM-DD), not the load order: when an
  earlier delivery is corrected and delivered again after a later one, its keys do not override
  the later delivery's versions (tests/integration/test_loader_inputs.py::
  test_a_later_delivery_supersedes_an_earlier_one). Load order (batch id) breaks ties within a
  delivery; within one file a key is unique (the loader quarantines duplicates), so the line
  number never decides.
-#}
{#- ``where``: an optional condition on the raw rows ``r``, applied before the choice; it must
    keep or drop every version of a key together (incremental runs restrict to affected keys). -#}
{#- The active batches are read when the model is compiled, at the start of its build, and
    written into the SQL as a constant array: PostgreSQL then prunes the other batches' partitions
    when it plans and tests membership with a hash. Read at run time instead (= any(array(select
    ...))), the array is a parameter: every row was compared with every active batch of every
    table in turn, six times slower with 121 daily deliveries active (docs/PERFORMANCE.md). The
    ingestion has finished before dbt starts (the
    warehouse lock), so the list cannot change during the build.

    One active batch (a single export folder, the common case) holds each key once (the loader
    quarantines a key repeated within a file), so the choice is the batch itself, without the
    sort of every row by key that several batches need (docs/PERFORMANCE.md). -#}
{% macro active_batch_ids(relation) -%}
    {#- not at parse time, nor before the first load (no raw.load_batches: nothing is active) -#}
    {%- if not execute or adapter.get_relation(database=target.database, schema='raw',
                                               identifier='load_batches') is none -%}
        {{- return([]) -}}
    {%- endif -%}
    {%- set rows = run_query("select batch_id from raw.load_batches where active and table_name = '"
                             ~ relation.identifier ~ "' order by batch_id") -%}
    {{- return(rows.columns[0].values() | map('int') | list) -}}
{%- endmacro %}

{#- ``among``: an optional list of batch ids that hold every version that can win for the keys
    ``where`` keeps (an incremental run's choice, macros/incremental.sql: candidate_batch_ids);
    only the active ones among them are read. -#}
{% macro latest_version(relation, key, where=none, among=none) -%}
    {%- set batches = active_batch_ids(relation) -%}
    {%- if among is not none -%}
        {%- set batches = batches | select('in', among) | list -%}
    {%- endif -%}
    {%- set rows_of_active_batches -%}
    select r.*
    from {{ relation }} r
    where {{ batch_in('r._batch_id', batches) }}
    {%- if where %}
      and ({{ where }})
    {%- endif %}
    {%- endset -%}
    {%- if batches | length == 1 %}
    {{ rows_of_active_batches }}
    {%- else %}
    select distinct on (r.{{ key }}) r.*
    from (
        {{ rows_of_active_batches }}
        -- a fence: the rows are chosen first, then their deliveries joined. Without it PostgreSQL,
        -- unable to estimate how many keys ``where`` keeps (it guesses 200), joined the kept keys
        -- with every batch before reading the rows (207,892 x 605 = 126 M rows, 84 s of a
        -- one-day build at 1,000,000 sessions, against 12 s)
        offset 0
    ) r
    join raw.load_batches b on b.batch_id = r._batch_id
    order by r.{{ key }}, b.delivery desc nulls last, r._batch_id desc, r._source_line desc
    {%- endif %}
{%- endmacro %}
