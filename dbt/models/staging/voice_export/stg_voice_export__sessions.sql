-- One row per voice session: the latest delivered version, typed and renamed, user anonymised.
-- Incremental by session day (macros/incremental.sql): an incremental run reads only the raw
-- versions of sessions that have a version on an affected day.
{{ config(materialized='incremental', incremental_strategy='replace_days', tags=['session_day'], unique_key='session_id',
          on_schema_change='fail') }}

with latest as (
    {{ latest_version(source('voice_export', 'voice_sessions'), 'session_id',
                      where=("r.session_id in (" ~ affected_session_ids() ~ ")") if is_incremental() else none) }}
)

select
    session_id,
    {{ anonymise('user_id') }} as user_key,
    channel,
    language,
    asr_model_version,
    final_outcome,
    transfer_reason,
    total_turns as reported_turn_count,
    total_duration_sec as reported_duration_sec,
    created_at as session_date,
    _batch_id as source_batch_id
from latest
where {{ session_days_filter('created_at') }}
