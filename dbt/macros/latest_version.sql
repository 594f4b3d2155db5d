{#-
  The input of dbt from a raw table: rows of active load batches only (the export that was
  run, or the current version of every dated delivery; see loader.activate_batches), and of
  those the latest delivered version of each key: a later delivery of the same key supersedes
  an earlier one (late data, corrected outcomes). Within one file a key is unique (the loader
  quarantines duplicates), so the tie-break on the line number never decides.
-#}
{% macro latest_version(relation, key) -%}
    select distinct on ({{ key }}) *
    from {{ relation }}
    -- = any(array(...)): an init plan, so PostgreSQL prunes the inactive batches' partitions at run time
    where _batch_id = any(array(select batch_id from raw.load_batches where active))
    order by {{ key }}, _batch_id desc, _source_line desc
{%- endmacro %}
