{#- The staging SELECTs of turns and AI metrics, shared by their (full) staging views and by the
    incremental models that read only the affected sessions' rows: a filter on a view's outer
    query cannot reach below its DISTINCT ON (PostgreSQL does not push a condition holding a
    subquery into it), so those models apply ``where`` to the raw rows themselves.
    ``relation``: the raw source table. -#}
{% macro staged_turns(relation, where=none, among=none) -%}
with latest as (
    {{ latest_version(relation, 'turn_id', where=where, among=among) }}
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
{%- endmacro %}

{% macro staged_ai_metrics(relation, where=none) -%}
with latest as (
    {{ latest_version(relation, 'session_id', where=where) }}
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
{%- endmacro %}
