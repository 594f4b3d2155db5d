-- One row per session that breaks a business rule and is left out of the fact, with why.
-- Rules: a session must have at least one turn; its reported error proportions
-- (misunderstanding + silence) cannot exceed 100%.
-- Incremental by session day (macros/incremental.sql), like the fact it complements.
{{ config(materialized='incremental', incremental_strategy='replace_days', tags=['session_day'], unique_key='session_id',
          on_schema_change='fail') }}
with day_sessions as (
    select session_id, session_date
    from {{ ref('stg_voice_export__sessions') }}
    where {{ session_days_filter('session_date') }}
),
metrics as (
    select * from {{ ref('stg_voice_export__ai_metrics') }}
    where {{ session_days_filter('session_date') }}
),
turns as (
    select session_id from {{ ref('int_turns_aggregated_to_sessions') }}
    where {{ session_days_filter('session_date') }}
),
sessions as (
    select s.session_id, s.session_date, t.session_id is not null as has_turns,
           m.reported_misunderstanding_rate, m.reported_silence_rate
    from day_sessions s
    left join turns t using (session_id)
    left join metrics m using (session_id)
),

reasons as (
    select
        session_id,
        session_date,
        array_remove(array[
            case when not has_turns then 'no_turns' end,
            case when coalesce(reported_misunderstanding_rate, 0) + coalesce(reported_silence_rate, 0) > 1 + 1e-9
                 then 'error_proportions_exceed_100_percent' end
        ], null) as reasons
    from sessions
)

select
    session_id,
    session_date,
    array_to_string(reasons, ';') as exclusion_reason,
    cardinality(reasons) as reason_count
from reasons
where cardinality(reasons) > 0
