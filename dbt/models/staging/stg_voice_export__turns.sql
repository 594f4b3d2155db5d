-- One row per turn: the latest delivered version, typed.
with latest as (
    {{ latest_version(source('voice_export', 'voice_turns'), 'turn_id') }}
)

select
    turn_id,
    session_id,
    turn_number,
    speaker,
    detected_intent,
    intent_confidence,
    asr_confidence,
    error_type,
    turn_duration_sec,
    created_at as turn_date,
    _batch_id as source_batch_id
from latest
