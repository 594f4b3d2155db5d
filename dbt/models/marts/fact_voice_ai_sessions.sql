-- One row per valid voice session: outcome flags, turn aggregates, the AI metrics and the
-- user's attributes (int_sessions_joined_to_users). Sessions breaking a business rule are in
-- dq_session_exclusions instead. The name is fixed by the design (not fct_), and the KPI marts
-- all read it: two deliberate exceptions to dbt Labs' rules (docs/DBT_CONVENTIONS.md).
--
-- Incremental by session day (macros/incremental.sql): an incremental run rebuilds the affected
-- days' sessions only. The join gates below are decided on all the data at every build; the
-- decision the rows were built with is kept in marts.fact_voice_ai_sessions__join_gates, and
-- when it changes every session is rebuilt (its metrics and application columns depend on it).
{{ config(
    materialized='incremental', incremental_strategy='replace_days', tags=['session_day'], unique_key='session_id',
    on_schema_change='fail',
    pre_hook="create table if not exists {{ this.schema }}.fact_voice_ai_sessions__join_gates
              (join_ai_metrics boolean not null, join_applications boolean not null)",
    post_hook=["delete from {{ this.schema }}.fact_voice_ai_sessions__join_gates",
               "insert into {{ this.schema }}.fact_voice_ai_sessions__join_gates {{ fact_join_gates() }}"]
) }}

with gates as (
    {{ fact_join_gates() }}
),
{%- if is_incremental() %}
-- true when the rows were built with other join decisions than this build's
gates_changed as (
    select not exists (
        select from {{ this.schema }}.fact_voice_ai_sessions__join_gates a, gates g
        where a.join_ai_metrics = g.join_ai_metrics and a.join_applications = g.join_applications
    ) as changed
),
{%- endif %}
sessions as (
    select * from {{ ref('int_sessions_joined_to_users') }}
    {%- if is_incremental() %}
    where {{ session_days_predicate('session_date') }} or (select changed from gates_changed)
    {%- endif %}
),
exclusions as (
    select session_id from {{ ref('int_session_exclusions') }}
    {%- if is_incremental() %}
    where session_id in (select session_id from sessions)
    {%- endif %}
),
turns as (
    select * from {{ ref('int_turns_aggregated_to_sessions') }}
    {%- if is_incremental() %}
    where session_id in (select session_id from sessions)
    {%- endif %}
),
metrics as (
    select * from {{ ref('stg_voice_export__ai_metrics') }}
    {%- if is_incremental() %}
    where session_id in (select session_id from sessions)
    {%- endif %}
),
applications as (
    select
        session_id,
        count(*) as application_count,
        count(*) filter (where status = 'completed') as completed_application_count
    from {{ ref('stg_voice_export__applications') }}
    {%- if is_incremental() %}
    where session_id in (select session_id from sessions)
    {%- endif %}
    group by session_id
)

select
    s.session_id::text as session_id,
    s.user_key::text as user_key,
    s.session_date::date as session_date,
    date_trunc('week', s.session_date)::date as session_week,
    date_trunc('month', s.session_date)::date as session_month,
    s.channel::text as channel,
    s.language::text as language,
    s.asr_model_version::text as asr_model_version,
    s.final_outcome::text as final_outcome,
    (s.final_outcome = 'completed') as is_completed,
    (s.final_outcome = 'abandoned') as is_abandoned,
    (s.final_outcome = 'transferred') as is_transferred,
    (s.final_outcome <> 'transferred') as is_contained,
    s.transfer_reason::text as transfer_reason,

    s.region::text as region,
    s.has_disability as has_disability,
    s.is_first_time_digital_user as is_first_time_digital_user,

    t.turn_count::integer as turn_count,
    t.user_turn_count::integer as user_turn_count,
    t.system_turn_count::integer as system_turn_count,
    t.error_turn_count::integer as error_turn_count,
    t.misunderstanding_turn_count::integer as misunderstanding_turn_count,
    t.silence_turn_count::integer as silence_turn_count,
    t.noise_turn_count::integer as noise_turn_count,
    t.low_asr_confidence_turn_count::integer as low_asr_confidence_turn_count,
    t.asr_confidence_turn_count::integer as asr_confidence_turn_count,
    t.unknown_intent_turn_count::integer as unknown_intent_turn_count,
    (t.error_turn_count::float8 / t.turn_count) as error_turn_rate,
    (t.misunderstanding_turn_count::float8 / t.turn_count) as misunderstanding_rate,
    (t.silence_turn_count::float8 / t.turn_count) as silence_rate,
    (t.noise_turn_count::float8 / t.turn_count) as noise_rate,
    (1 - t.unknown_intent_turn_count::float8 / t.turn_count) as intent_detection_rate,
    t.avg_asr_confidence::float8 as avg_asr_confidence,
    t.min_asr_confidence::float8 as min_asr_confidence,
    t.avg_intent_confidence::float8 as avg_intent_confidence,
    t.turn_duration_sec_total::float8 as turn_duration_sec_total,
    t.duplicate_turn_number_count::integer as duplicate_turn_number_count,

    s.reported_turn_count::integer as reported_turn_count,
    s.reported_duration_sec::integer as reported_duration_sec,

    (m.session_id is not null) as has_ai_metrics,
    case when g.join_ai_metrics then m.recovery_success end as recovery_success,
    case when g.join_ai_metrics then m.escalation_flag end as escalation_flag,

    case when g.join_applications then coalesce(a.application_count, 0)::integer end as application_count,
    case when g.join_applications then coalesce(a.completed_application_count, 0)::integer end
        as completed_application_count,

    greatest(s.source_batch_id, t.last_turn_batch_id)::bigint as last_source_batch_id
from sessions s
join turns t using (session_id)
left join metrics m using (session_id)
left join applications a using (session_id)
cross join gates g
where s.session_id not in (select session_id from exclusions)
