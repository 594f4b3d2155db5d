{#-
  Tests of an incremental model look at the rows this build wrote (docs: README, "Incremental
  processing and history").

  A daily build rewrites one day or a few of the session-grain models (macros/incremental.sql)
  and leaves every other row as it was: same content, same PostgreSQL xmin. Those rows passed
  their tests in the build that wrote them; re-testing them every day made a one-day run cost
  as much as a full one (measured at 1,000,000 sessions: 58 tests on the six incremental models,
  the `unique` test on 5.4 M staged turns alone 8 s). So, in a `dbt build` that builds the model
  itself, its tests read only the rows written since the build started: every row after a full
  refresh or a first build, every row when the fact's join gates flipped (it rewrites them all),
  the rebuilt days' rows otherwise. A row edited by hand between builds is not re-tested by an
  incremental build; `--full-refresh` tests everything again.

  Still whole-table:
    - `dbt test`, and a `dbt build` that selects the tests but not the model (Dagster re-running a
      check): nothing is written, so the whole table is what there is to test;
    - tables and views rebuilt in full (every row is new anyway) and sources;
    - a key's uniqueness across days: the incremental strategy deletes every row whose key the
      new rows carry before inserting them (get_incremental_replace_days_sql), so a new key cannot
      meet an old copy of itself;
    - a test that sets its own `where` keeps it (both apply).

  "Written since the build started": raw.dbt_invocations holds, per dbt invocation, a
  transaction id taken by the on-run-start hook before any model runs; a row whose xmin is that
  transaction or a later one was written by this build. age() compares transaction ids modulo
  2^32 as PostgreSQL does (a frozen row is infinitely old).
-#}

{% macro record_invocation_start() -%}
    create schema if not exists raw;
    create table if not exists raw.dbt_invocations (
        invocation_id text primary key,
        started_xid xid not null,
        started_at timestamptz not null default now(),
        command text
    );
    delete from raw.dbt_invocations where started_at < now() - interval '30 days';
    insert into raw.dbt_invocations (invocation_id, started_xid, command)
    values ('{{ invocation_id }}', ((txid_current() % 4294967296)::text)::xid, '{{ flags.WHICH }}')
    on conflict (invocation_id) do nothing
{%- endmacro %}

{#- True when this test's rows can be scoped to what this build wrote. -#}
{% macro _scoped_to_written_rows(relation) -%}
    {%- if not execute or flags.WHICH != 'build' or flags.FULL_REFRESH -%}
        {{- return(false) -}}
    {%- endif -%}
    {%- set attached = model.get('attached_node') if model is mapping else none -%}
    {%- set node = graph.nodes.get(attached) if attached else none -%}
    {%- if node is none or node.resource_type != 'model' or node.config.materialized != 'incremental'
          or attached not in selected_resources
          or (node.alias | lower) != (relation.identifier | lower) -%}
        {{- return(false) -}}
    {%- endif -%}
    {{- return(true) -}}
{%- endmacro %}

{#- The predicate "this row was written by the current invocation" (see above). -#}
{% macro written_by_this_invocation() -%}
    {#- no start recorded (cannot happen after the hook; if it did): every row rather than none -#}
    age(xmin) <= coalesce((select age(started_xid) from raw.dbt_invocations
                           where invocation_id = '{{ invocation_id }}'), 2147483647)
{%- endmacro %}

{#- dbt wraps the `model` argument of every generic test in this macro (the global default
    applies the test's `where` config; kept). -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where', '') -%}
    {%- set scoped = _scoped_to_written_rows(relation) -%}
    {%- if where or scoped -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {% if where %}({{ where }}){% endif %}
             {%- if where and scoped %} and {% endif %}{% if scoped %}{{ written_by_this_invocation() }}{% endif %}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
