-- One row per session day and ASR model version: the additive sums behind fct_voice_kpis and
-- int_error_rate_cells (sessions by outcome and transfer reason, turn counts, their squares and
-- the cross products of the ratio estimators' linearised variance). Every sum is of whole
-- numbers, exact in bigint or float8, so a week, a month or the whole span adds up its days' cells
-- to the figures of aggregating its sessions directly.
-- Incremental by fingerprint (macros/cells.sql): a build recomputes the days whose rows in the
-- fact changed, and keeps every other day's cells.
{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key='session_date',
    on_schema_change='sync_all_columns',
    post_hook="{{ drop_vanished_cells(day_column='session_date') }}"
) }}
{%- set counts = ['turn_count', 'error_turn_count', 'misunderstanding_turn_count', 'silence_turn_count',
                  'noise_turn_count', 'low_asr_confidence_turn_count', 'asr_confidence_turn_count',
                  'detected_intent_turn_count'] %}
{%- set reasons = kpi_transfer_reasons() %}

with days as (
    {{ changed_days() }}
),

sessions as (
    select
        f.session_date, f.session_week, f.session_month, f.asr_model_version, d.fingerprint,
        f.is_transferred, f.is_abandoned, f.is_completed,
        case when f.is_transferred then coalesce(f.transfer_reason, 'unspecified') end as reason,
        f.turn_count, f.error_turn_count, f.misunderstanding_turn_count, f.silence_turn_count,
        f.noise_turn_count, f.low_asr_confidence_turn_count, f.asr_confidence_turn_count,
        f.turn_count - f.unknown_intent_turn_count as detected_intent_turn_count
    from {{ ref('fact_voice_ai_sessions') }} f
    join days d using (session_date)
)

select
    session_date::date as session_date,
    session_week::date as session_week,
    session_month::date as session_month,
    asr_model_version::text as asr_model_version,
    (session_date::text || ':' || coalesce('version=' || asr_model_version, 'no version'))::text as cell_key,
    count(*)::bigint as n_sessions,
    count(*) filter (where not is_transferred)::bigint as contained,
    count(*) filter (where is_abandoned)::bigint as abandoned,
    count(*) filter (where is_transferred)::bigint as transferred,
    count(*) filter (where is_completed)::bigint as completed,
    {%- for r in reasons %}
    count(*) filter (where reason = '{{ r }}')::bigint as reason_{{ r }},
    {%- endfor %}
    count(*) filter (where turn_count > 0)::bigint as sessions_with_turns,
    count(*) filter (where asr_confidence_turn_count > 0)::bigint as sessions_with_asr_confidence,
    {%- for c in counts %}
    sum({{ c }})::bigint as sum_{{ c }},
    sum({{ c }}::float8 ^ 2) as sq_{{ c }},
    {%- endfor %}
    {%- for c in counts if c != 'turn_count' %}
    sum(turn_count::float8 * {{ c }}) as cp_turn_count__{{ c }},
    {%- endfor %}
    sum(asr_confidence_turn_count::float8 * low_asr_confidence_turn_count) as cp_asr_confidence_turn_count__low_asr_confidence_turn_count,
    max(fingerprint) as source_fingerprint,
    {{ definition_checksum() }} as definition_checksum
from sessions
group by session_date, session_week, session_month, asr_model_version
