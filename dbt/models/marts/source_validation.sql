-- One row per measurement of agreement between the source tables, recomputed on every build.
-- Measurements with a gate decide whether the fact joins that source (see fact_voice_ai_sessions).
{%- set join_threshold = var('validation_join_threshold') %}
{%- set tol = var('metrics_tolerance') %}

with sessions as (
    select * from {{ ref('stg_voice_export__sessions') }}
),
users as (
    select * from {{ ref('stg_voice_export__users') }}
),
turns as (
    select * from {{ ref('stg_voice_export__turns') }}
),
turn_agg as (
    select * from {{ ref('int_turns_aggregated_to_sessions') }}
),
metrics as (
    select * from {{ ref('stg_voice_export__ai_metrics') }}
),
applications as (
    select * from {{ ref('stg_voice_export__applications') }}
),

metrics_vs_turns as (
    select
        m.*,
        t.avg_asr_confidence, t.avg_intent_confidence,
        t.misunderstanding_turn_count::float8 / t.turn_count as misunderstanding_rate,
        t.silence_turn_count::float8 / t.turn_count as silence_rate
    from metrics m
    join turn_agg t using (session_id)
),

measurements as (
    select 'session_user_exists' as measurement,
           'Each session''s user exists in users.' as description,
           'voice_sessions.user_id -> users.user_id' as subject,
           cast(null as text) as gate, 1.0::float8 as threshold,
           count(*) as n_checked,
           count(*) filter (where u.user_key is not null) as n_agree
    from sessions s left join users u using (user_key)

    union all
    select 'application_session_exists',
           'Each application''s session exists in voice_sessions.',
           'applications.session_id -> voice_sessions.session_id',
           'applications', {{ join_threshold }},
           count(*), count(*) filter (where s.session_id is not null)
    from applications a left join sessions s using (session_id)

    union all
    select 'application_user_matches_session_user',
           'An application''s user is the user of the session it names.',
           'applications.user_id = voice_sessions.user_id (via session_id)',
           'applications', {{ join_threshold }},
           count(*), count(*) filter (where a.user_key = s.user_key)
    from applications a join sessions s using (session_id)

    union all
    select 'session_has_turns',
           'A session has at least one turn (sessions without turns are excluded from the fact).',
           'voice_sessions.session_id -> voice_turns.session_id',
           null, 1.0,
           count(*), count(*) filter (where t.session_id is not null)
    from sessions s left join turn_agg t using (session_id)

    union all
    select 'session_total_turns_matches_turns',
           'A session''s reported total_turns equals its counted turns.',
           'voice_sessions.total_turns = count(voice_turns)',
           null, 1.0,
           count(*), count(*) filter (where s.reported_turn_count = t.turn_count)
    from sessions s join turn_agg t using (session_id)

    union all
    select 'session_duration_matches_turns',
           'A session''s reported total_duration_sec equals the sum of its turns'' durations (within 1 s).',
           'voice_sessions.total_duration_sec = sum(voice_turns.turn_duration_sec)',
           null, 1.0,
           count(*), count(*) filter (where abs(s.reported_duration_sec - t.turn_duration_sec_total) <= 1)
    from sessions s join turn_agg t using (session_id)

    union all
    select 'turn_numbers_unique_within_session',
           'No two turns of a session share a turn number.',
           'voice_turns (session_id, turn_number)',
           null, 1.0,
           count(*), count(*) filter (where duplicate_turn_number_count = 0)
    from turn_agg

    union all
    select 'turn_date_matches_session_date',
           'A turn is logged on its session''s day.',
           'voice_turns.created_at = voice_sessions.created_at',
           null, 1.0,
           count(*), count(*) filter (where t.turn_date = s.session_date)
    from turns t join sessions s using (session_id)

    union all
    select 'session_has_ai_metrics',
           'A session has a row in voice_ai_metrics.',
           'voice_sessions.session_id -> voice_ai_metrics.session_id',
           null, 1.0,
           count(*), count(*) filter (where m.session_id is not null)
    from sessions s left join metrics m using (session_id)

    union all
    select 'metrics_avg_asr_confidence_matches_turns',
           'Reported avg_asr_confidence equals the mean of the turns'' ASR confidence (within {{ tol }}).',
           'voice_ai_metrics.avg_asr_confidence = avg(voice_turns.asr_confidence)',
           'ai_metrics', {{ join_threshold }},
           count(*), count(*) filter (where abs(reported_avg_asr_confidence - avg_asr_confidence) <= {{ tol }})
    from metrics_vs_turns

    union all
    select 'metrics_avg_intent_confidence_matches_turns',
           'Reported avg_intent_confidence equals the mean of the turns'' intent confidence (within {{ tol }}).',
           'voice_ai_metrics.avg_intent_confidence = avg(voice_turns.intent_confidence)',
           'ai_metrics', {{ join_threshold }},
           count(*), count(*) filter (where abs(reported_avg_intent_confidence - avg_intent_confidence) <= {{ tol }})
    from metrics_vs_turns

    union all
    select 'metrics_misunderstanding_rate_matches_turns',
           'Reported misunderstanding_rate equals the share of misunderstanding turns (within {{ tol }}).',
           'voice_ai_metrics.misunderstanding_rate = share(voice_turns.error_type = misunderstanding)',
           'ai_metrics', {{ join_threshold }},
           count(*), count(*) filter (where abs(reported_misunderstanding_rate - misunderstanding_rate) <= {{ tol }})
    from metrics_vs_turns

    union all
    select 'metrics_silence_rate_matches_turns',
           'Reported silence_rate equals the share of silence turns (within {{ tol }}).',
           'voice_ai_metrics.silence_rate = share(voice_turns.error_type = silence)',
           'ai_metrics', {{ join_threshold }},
           count(*), count(*) filter (where abs(reported_silence_rate - silence_rate) <= {{ tol }})
    from metrics_vs_turns

    union all
    select 'transfer_reason_only_when_transferred',
           'transfer_reason is filled exactly when the outcome is transferred.',
           'voice_sessions.transfer_reason vs final_outcome',
           null, 1.0,
           count(*), count(*) filter (where (transfer_reason is not null) = (final_outcome = 'transferred'))
    from sessions

    union all
    select 'escalation_flag_matches_transfer',
           'escalation_flag is yes exactly when the outcome is transferred.',
           'voice_ai_metrics.escalation_flag vs voice_sessions.final_outcome',
           null, 1.0,
           count(*), count(*) filter (where m.escalation_flag = (s.final_outcome = 'transferred'))
    from metrics m join sessions s using (session_id)
)

select
    measurement,
    description,
    subject,
    gate,
    n_checked,
    n_agree,
    n_checked - n_agree as n_disagree,
    {{ ratio('n_agree', 'n_checked') }} as agreement_rate,
    {{ wilson_low('n_agree', 'n_checked') }} as agreement_ci_low,
    {{ wilson_high('n_agree', 'n_checked') }} as agreement_ci_high,
    threshold,
    coalesce({{ ratio('n_agree', 'n_checked') }} >= threshold, false) as passed,
    case
        when gate is null then 'information only'
        when coalesce({{ ratio('n_agree', 'n_checked') }} >= threshold, false) then 'supports joining ' || gate
        else 'blocks joining ' || gate
    end as decision
from measurements
