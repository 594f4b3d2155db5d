-- One row per session: the platform's own per-session AI metrics, latest delivered version
-- (SQL in macros/staged_rows.sql), with the session's day (NULL for an orphan).
-- A table, incremental by session day, for the reasons given in stg_voice_export__turns; like it,
-- it reads the staged sessions for their days (an exception to the staging rules,
-- docs/DBT_CONVENTIONS.md).
{{ config(materialized='incremental', incremental_strategy='replace_days', tags=['session_day'], unique_key='session_id',
          on_schema_change='fail') }}

with sessions as (
    select session_id, session_date from {{ ref('stg_voice_export__sessions') }}
),
{%- if is_incremental() %}
{%- set unbuilt = unbuilt_batch_ids(source('voice_export', 'voice_ai_metrics')) %}
-- the affected days' sessions, and the orphan metrics' (as in stg_voice_export__turns: among the
-- rows the last build placed on those days or left without a session and the rows delivered
-- since; or, with no build to compare with, by an anti-join over every raw row)
wanted as (
    select session_id from sessions where {{ session_days_predicate('session_date') }}
    union
{%- if unbuilt is not none %}
    {{ keys_to_reread('session_id', source('voice_export', 'voice_ai_metrics'), unbuilt) }}
{%- else %}
    select distinct v.session_id
    from {{ source('voice_export', 'voice_ai_metrics') }} v
    left join sessions s using (session_id)
    where s.session_id is null
{%- endif %}
),
{%- endif %}
metrics as (
    {{ staged_ai_metrics(source('voice_export', 'voice_ai_metrics'), where=(
        "r.session_id in (select session_id from wanted)") if is_incremental() else none) }}
)

select m.*, s.session_date
from metrics m
left join sessions s using (session_id)
{%- if is_incremental() %}
where {{ replaced_rows('s.session_date') }}
{%- endif %}
