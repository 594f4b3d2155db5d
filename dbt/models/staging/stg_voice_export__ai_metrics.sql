-- One row per session: the platform's own per-session AI metrics, latest delivered version.
with latest as (
    {{ latest_version(source('voice_export', 'voice_ai_metrics'), 'session_id') }}
)

select
    session_id,
    avg_asr_confidence as reported_avg_asr_confidence,
    avg_intent_confidence as reported_avg_intent_confidence,
    misunderstanding_rate as reported_misunderstanding_rate,
    silence_rate as reported_silence_rate,
    recovery_success,
    escalation_flag,
    _batch_id as source_batch_id
from latest
