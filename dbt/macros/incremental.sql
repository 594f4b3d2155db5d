{#-
  Incremental processing by session day (docs/ARCHITECTURE.md, "Incremental processing").

  The session-grain models (stg_voice_export__sessions, int_turns_aggregated_to_sessions,
  int_session_exclusions, fact_voice_ai_sessions) are incremental: a run rebuilds only the
  session days it is told are affected and leaves every other day's rows untouched.

  Which days, first match:
    var session_days      a list of 'YYYY-MM-DD' (for a build by hand); [] = no day.
    raw.dbt_rebuild_days  the days the pipeline wrote before this build
                          (voice_analytics_dagster/defs/transform/incremental.py: the session days touched by
                          the load batches that are new, or no longer active, since the last
                          successful build, plus the lookback). A table, not a var: vars that
                          change on every run would make dbt re-parse the project every time.
    var lookback_days     neither of the above: the days from the latest session day already
                          built minus lookback_days onwards (default 3, dbt_project.yml).
  plus var from_date / to_date: a backfill range (either end may be omitted).
  `dbt build --full-refresh` (voice-analytics run --full-refresh) rebuilds everything.
-#}

{% macro _date_literal(value) -%}
    {%- if not modules.re.match('^[0-9]{4}-[0-9]{2}-[0-9]{2}$', value | string) -%}
        {{ exceptions.raise_compiler_error("expected a date YYYY-MM-DD, got " ~ value) }}
    {%- endif -%}
    '{{ value }}'::date
{%- endmacro %}

{#- The predicate "column is an affected session day", for incremental runs. -#}
{% macro session_days_predicate(column) -%}
    {%- set days = var('session_days', none) -%}
    {%- set from_date = var('from_date', none) -%}
    {%- set to_date = var('to_date', none) -%}
    (
    {%- if days is not none %}
        {{ column }} = any(array[{% for d in days %}{{ _date_literal(d) }}{% if not loop.last %}, {% endif %}{% endfor %}]::date[])
    {%- elif _rebuild_days_table() is not none %}
        {{ column }} in (select session_day from {{ _rebuild_days_table() }})
    {%- else %}
        {{ column }} >= (select coalesce(max(session_date), '0001-01-01'::date) from {{ this }}) - {{ var('lookback_days') | int }}
    {%- endif %}
    {%- if from_date is not none or to_date is not none %}
        or {{ column }} between {{ _date_literal(from_date) if from_date is not none else "'-infinity'::date" }}
                            and {{ _date_literal(to_date) if to_date is not none else "'infinity'::date" }}
    {%- endif %}
    )
{%- endmacro %}

{% macro _rebuild_days_table() -%}
    {{- return(adapter.get_relation(database=target.database, schema='raw', identifier='dbt_rebuild_days')) -}}
{%- endmacro %}

{#- True when the affected days are known without reading the model's own relation. -#}
{% macro rebuild_days_known() -%}
    {{- return(var('session_days', none) is not none or _rebuild_days_table() is not none) -}}
{%- endmacro %}

{#- The rows an incremental run replaces in a model: those of the affected days and those
    without a day (orphans, re-selected by every incremental run). -#}
{% macro replaced_rows(column) -%}
    {{ session_days_predicate(column) }} or {{ column }} is null
{%- endmacro %}

{#- In a model: every row on a full build, the affected days' rows on an incremental one. -#}
{% macro session_days_filter(column) -%}
    {%- if is_incremental() -%}{{ session_days_predicate(column) }}{%- else -%}true{%- endif -%}
{%- endmacro %}

{#-
  incremental_strategy='replace_days': delete the target's rows of the affected days (config
  day_column, default session_date) and those without a day (orphan turns or metrics, whose
  session was never delivered: the incremental select returns every current one, so an orphan
  whose batch is no longer active disappears), delete the rows whose unique_key the new rows carry (a
  session whose day changed, or every row when the fact's join gates flipped), insert the new
  rows. delete+insert alone would keep the rows of an affected day that has no row any more
  (a session superseded onto another day, or newly excluded).
-#}
{% macro get_incremental_replace_days_sql(arg_dict) %}
    {%- set target = arg_dict['target_relation'] -%}
    {%- set source = arg_dict['temp_relation'] -%}
    {%- set unique_key = arg_dict['unique_key'] -%}
    {%- set cols = get_quoted_csv(arg_dict['dest_columns'] | map(attribute='name')) -%}
    {%- set day_column = config.get('day_column', 'session_date') %}
    -- rows without a day (orphans of the staging tables) are re-selected by every incremental run
    delete from {{ target }} where {{ replaced_rows(day_column) }};
    delete from {{ target }} t using {{ source }} s where t.{{ unique_key }} = s.{{ unique_key }};
    insert into {{ target }} ({{ cols }}) select {{ cols }} from {{ source }}
{% endmacro %}

{#- Session ids of the affected days (any delivered version on such a day), for filters applied
    to raw rows before the latest-version choice. -#}
{% macro affected_session_ids() -%}
    select session_id from {{ source('voice_export', 'voice_sessions') }}
    where {{ session_days_predicate('created_at') }}
{%- endmacro %}

{#- The fact's join decisions, from this build's measurements, in one row (int_join_gates: a
    gate opens only if all its measurements pass; no measurement at all keeps it closed). -#}
{% macro fact_join_gates() -%}
    select
        coalesce(bool_or(is_open) filter (where gate = 'ai_metrics'), false) as join_ai_metrics,
        coalesce(bool_or(is_open) filter (where gate = 'applications'), false) as join_applications
    from {{ ref('int_join_gates') }}
{%- endmacro %}

{#-
  The active load batches of ``relation`` that the last successful build had not read: the rows
  delivered since (raw.dbt_built_batches, written by the pipeline once dbt succeeded:
  voice_analytics_dagster/defs/transform/incremental.py). The staging models find their orphans (rows whose
  session was never delivered) among these and among the orphans they already hold, instead of
  comparing every raw row with every session: a row of an older batch was placed by the build
  that read it, and stays where it was unless its session's days are rebuilt (then the model
  re-reads it by its key). At 1,000,000 sessions and 121 daily deliveries that comparison hashed
  all 5.4 M raw turns against 1 M sessions (spilling), twice the work of the rest of a day's
  staged turns (docs/PERFORMANCE.md, "L").

  Returns none (compare everything, as a first build does) when there is nothing to compare
  with: no build recorded (for this table), or a batch the last build read is no longer active (its rows must
  leave, and the orphans it carried are known only by a full comparison). Read when the model is
  compiled, at the start of its build, like active_batch_ids (the ingestion has finished).
-#}
{% macro unbuilt_batch_ids(relation) -%}
    {%- if not execute or adapter.get_relation(database=target.database, schema='raw',
                                               identifier='dbt_built_batches') is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set built = run_query(
        "select b.batch_id, l.active from raw.dbt_built_batches b join raw.load_batches l using (batch_id)"
        ~ " where l.table_name = '" ~ relation.identifier ~ "'") -%}
    {%- if built.rows | length == 0 or false in built.columns[1].values() -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set seen = built.columns[0].values() | map('int') | list -%}
    {{- return(active_batch_ids(relation) | reject('in', seen) | list) -}}
{%- endmacro %}

{#- ``column = any(those batches)`` as a constant array, so that PostgreSQL prunes the other
    batches' partitions. -#}
{% macro batch_in(column, batch_ids) -%}
    {{ column }} = any('{ {{- batch_ids | join(',') -}} }'::bigint[])
{%- endmacro %}

{#-
  The keys an incremental staging model re-reads when unbuilt_batch_ids gave it batches to look
  at (not none): the rows the last build placed on an affected day or left without a session (an
  orphan), and every row of ``relation`` delivered since. A row of an older batch whose session is
  on an affected day is among the first, a new row or a new orphan among the last. One rule for
  the staged turns and AI metrics (it was written out in both).
-#}
{% macro keys_to_reread(key, relation, unbuilt) -%}
    select {{ key }} from {{ this }}
    where {{ replaced_rows('session_date') }}
    union
    select {{ key }} from {{ relation }}
    where {{ batch_in('_batch_id', unbuilt) }}
{%- endmacro %}

{#-
  The batches that hold every version able to win for the rows an incremental run re-reads: the
  batch of each such row's current version in the model (``column``, its source batch) and the
  batches delivered since (``unbuilt``). Every other version was read by the build that placed
  the row and lost to the current one then; nothing about those batches changed since (a batch
  that went inactive makes unbuilt_batch_ids none, a current version's batch that is not active
  any more makes this none: then every active batch is read). Read when the model is compiled.
  ``rows``: the condition on the model's rows that selects the ones to re-read.

  Why: the re-read of the staged turns by turn id otherwise scans all 5.4 M raw turns of 121
  daily deliveries for the 0.2 M turns of four days (1,000,000 sessions): 3.5 s of the 5.0 s of
  the model's select on a quiet machine (docs/PERFORMANCE.md, "L").
-#}
{% macro candidate_batch_ids(relation, rows, column, unbuilt) -%}
    {%- if not execute or unbuilt is none -%}
        {{- return(none) -}}
    {%- endif -%}
    {%- set current = run_query("select distinct " ~ column ~ " from " ~ this ~ " where (" ~ rows ~ ")"
                                ~ " and " ~ column ~ " is not null").columns[0].values() | map('int') | list -%}
    {%- set active = active_batch_ids(relation) -%}
    {%- for b in current if b not in active -%}
        {{- return(none) -}}
    {%- endfor -%}
    {{- return((current + unbuilt) | unique | list) -}}
{%- endmacro %}
