-- One row per session that has turns: the turns' facts aggregated to the session.
-- Every proportion here has the session's turn_count as its denominator; means of a value are
-- over the turns that have it (NULL when none has: a platform that does not record it), and
-- asr_confidence_turn_count counts those turns for the low-confidence share.
-- Incremental by session day (macros/incremental.sql): an incremental run aggregates only the
-- turns of the affected days' sessions (a late turn makes its session's day affected).
{{ config(materialized='incremental', incremental_strategy='replace_days', tags=['session_day'], unique_key='session_id',
          on_schema_change='fail') }}
{#- float sums in one fixed order per session (turn_id is unique): the same bits after an
    incremental and a full build (macros/exact_aggregates.sql); it also serves count(distinct
    turn_number), so the turns are sorted once -#}
{%- set turn_order = 'turn_number, turn_id' %}
with turns as (
    select * from {{ ref('stg_voice_export__turns') }}
    where session_date is not null and {{ session_days_filter('session_date') }}
)

select
    t.session_id,
    t.session_date,
    count(*) as turn_count,
    count(*) filter (where speaker = 'user') as user_turn_count,
    count(*) filter (where speaker = 'system') as system_turn_count,
    count(*) filter (where error_type is not null) as error_turn_count,
    count(*) filter (where error_type = 'misunderstanding') as misunderstanding_turn_count,
    count(*) filter (where error_type = 'silence') as silence_turn_count,
    count(*) filter (where error_type = 'noise') as noise_turn_count,
    count(*) filter (where asr_confidence < {{ var('asr_low_confidence_threshold') }}) as low_asr_confidence_turn_count,
    count(asr_confidence) as asr_confidence_turn_count,
    count(*) filter (where detected_intent = 'unknown') as unknown_intent_turn_count,
    {{ ordered_avg('asr_confidence', turn_order) }} as avg_asr_confidence,
    min(asr_confidence) as min_asr_confidence,
    {{ ordered_avg('intent_confidence', turn_order) }} as avg_intent_confidence,
    {{ ordered_sum('turn_duration_sec', turn_order) }} as turn_duration_sec_total,
    max(turn_number) as max_turn_number,
    count(*) - count(distinct turn_number) as duplicate_turn_number_count,
    min(turn_date) as first_turn_date,
    max(turn_date) as last_turn_date,
    max(t.source_batch_id) as last_turn_batch_id
-- the session's day places the row (turns of a session absent from voice_sessions are orphans,
-- blocked by the relationships test on stg_voice_export__turns)
from turns t
group by t.session_id, t.session_date
