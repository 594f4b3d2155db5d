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
{#- One active batch (a single export folder, the common case) holds each key once (the loader
    quarantines a key repeated within a file), so the choice is the batch itself: the first
    branch, without the sort of every row by key that the general branch needs. The two branches'
    conditions on the number of active batches are init plans: PostgreSQL runs only the branch
    whose condition holds. stg_voice_export__turns at 1,000,000 sessions (5.4 M turns; 30 Nov,
    quiet machine): 8.0 s with the sort, 5.7 s without. -#}
{% macro latest_version(relation, key, where=none) -%}
    {%- set active_batches -%}
    (select count(*) from raw.load_batches where active and table_name = '{{ relation.identifier }}')
    {%- endset %}
    (
    select r.*
    from {{ relation }} r
    where r._batch_id = any(array(select batch_id from raw.load_batches where active))
      and {{ active_batches }} = 1
    {%- if where %}
      and ({{ where }})
    {%- endif %}
    )
    union all
    (
    select distinct on (r.{{ key }}) r.*
    from {{ relation }} r
    join raw.load_batches b on b.batch_id = r._batch_id
    -- = any(array(...)): an init plan, so that PostgreSQL can prune inactive batches' partitions at run time
    where r._batch_id = any(array(select batch_id from raw.load_batches where active))
      and {{ active_batches }} <> 1
    {%- if where %}
      and ({{ where }})
    {%- endif %}
    order by r.{{ key }}, b.delivery desc nulls last, r._batch_id desc, r._source_line desc
    )
{%- endmacro %}
