-- One row per voice session: the latest delivered version, typed and renamed, user anonymised.
{{ config(materialized='table') }}

with latest as (
    {{ latest_version(source('voice_export', 'voice_sessions'), 'session_id') }}
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
