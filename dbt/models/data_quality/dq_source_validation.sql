-- One row per measurement of agreement between the source tables, recomputed on every build.
-- Measurements with a gate decide whether the fact joins that source (see fact_voice_ai_sessions).
{%- set join_threshold = var('validation_join_threshold') %}
{%- set tol = var('metrics_tolerance') %}

-- Three passes, not one join per measurement: every session-level measurement is a filtered
-- count over one row per session (sessions left-joined once to users, turn aggregates and AI
-- metrics), applications are read once, and the turns once (their session's day is on the
-- staged turn), instead of a join per measurement that re-joined the turns to the sessions
-- (docs/PERFORMANCE.md).
with per_session as (
    select
        count(*) as n_sessions,
        count(u.user_key) as n_user_exists,
        count(t.session_id) as n_with_turns,
        count(*) filter (where s.reported_turn_count = t.turn_count) as n_turn_count_agrees,
        count(*) filter (where abs(s.reported_duration_sec - t.turn_duration_sec_total) <= 1) as n_duration_agrees,
        count(*) filter (where t.duplicate_turn_number_count = 0) as n_turn_numbers_unique,
        count(m.session_id) as n_with_metrics,
        -- metrics against turns: sessions with both (every turn aggregate has its session)
        count(*) filter (where m.session_id is not null and t.session_id is not null) as n_metrics_and_turns,
        -- a mean the turns cannot give (none has the value: a platform that does not record it)
        -- agrees with a metric that is NULL too
        count(*) filter (where abs(m.reported_avg_asr_confidence - t.avg_asr_confidence) <= {{ tol }}
                            or (m.reported_avg_asr_confidence is null and t.avg_asr_confidence is null
                                and m.session_id is not null and t.session_id is not null)) as n_asr_agrees,
        count(*) filter (where abs(m.reported_avg_intent_confidence - t.avg_intent_confidence) <= {{ tol }}
                            or (m.reported_avg_intent_confidence is null and t.avg_intent_confidence is null
                                and m.session_id is not null and t.session_id is not null)) as n_intent_agrees,
        count(*) filter (where abs(m.reported_misunderstanding_rate
                                   - t.misunderstanding_turn_count::float8 / t.turn_count) <= {{ tol }})
            as n_misunderstanding_agrees,
        count(*) filter (where abs(m.reported_silence_rate - t.silence_turn_count::float8 / t.turn_count) <= {{ tol }})
            as n_silence_agrees,
        count(*) filter (where (s.transfer_reason is not null) = (s.final_outcome = 'transferred')) as n_transfer_reason_agrees,
        count(*) filter (where m.escalation_flag = (s.final_outcome = 'transferred')) as n_escalation_agrees
    from {{ ref('stg_voice_export__sessions') }} s
    left join {{ ref('stg_voice_export__users') }} u using (user_key)
    left join {{ ref('int_turns_aggregated_to_sessions') }} t using (session_id)
    left join {{ ref('stg_voice_export__ai_metrics') }} m using (session_id)
),

per_application as (
    select
        count(*) as n_applications,
        count(s.session_id) as n_session_exists,
        count(*) filter (where a.user_key = s.user_key) as n_user_agrees
    from {{ ref('stg_voice_export__applications') }} a
    left join {{ ref('stg_voice_export__sessions') }} s using (session_id)
),

per_turn as (
    -- a turn whose session was delivered has its session's day (NULL for an orphan)
    select count(*) as n_turns, count(*) filter (where turn_date = session_date) as n_date_agrees
    from {{ ref('stg_voice_export__turns') }}
    where session_date is not null
),

measurements as (
    select 'session_user_exists' as measurement,
           'Each session''s user exists in users.' as description,
           'voice_sessions.user_id -> users.user_id' as subject,
           cast(null as text) as gate, 1.0::float8 as threshold,
           n_sessions as n_checked, n_user_exists as n_agree
    from per_session

    union all
    select 'application_session_exists',
           'Each application''s session exists in voice_sessions.',
           'applications.session_id -> voice_sessions.session_id',
           'applications', {{ join_threshold }},
           n_applications, n_session_exists
    from per_application

    union all
    select 'application_user_matches_session_user',
           'An application''s user is the user of the session it names.',
           'applications.user_id = voice_sessions.user_id (via session_id)',
           'applications', {{ join_threshold }},
           n_session_exists, n_user_agrees
    from per_application

    union all
    select 'session_has_turns',
           'A session has at least one turn (sessions without turns are excluded from the fact).',
           'voice_sessions.session_id -> voice_turns.session_id',
           null, 1.0,
           n_sessions, n_with_turns
    from per_session

    union all
    select 'session_total_turns_matches_turns',
           'A session''s reported total_turns equals its counted turns.',
           'voice_sessions.total_turns = count(voice_turns)',
           null, 1.0,
           n_with_turns, n_turn_count_agrees
    from per_session

    union all
    select 'session_duration_matches_turns',
           'A session''s reported total_duration_sec equals the sum of its turns'' durations (within 1 s).',
           'voice_sessions.total_duration_sec = sum(voice_turns.turn_duration_sec)',
           null, 1.0,
           n_with_turns, n_duration_agrees
    from per_session

    union all
    select 'turn_numbers_unique_within_session',
           'No two turns of a session share a turn number.',
           'voice_turns (session_id, turn_number)',
           null, 1.0,
           n_with_turns, n_turn_numbers_unique
    from per_session

    union all
    select 'turn_date_matches_session_date',
           'A turn is logged on its session''s day.',
           'voice_turns.created_at = voice_sessions.created_at',
           null, 1.0,
           n_turns, n_date_agrees
    from per_turn

    union all
    select 'session_has_ai_metrics',
           'A session has a row in voice_ai_metrics.',
           'voice_sessions.session_id -> voice_ai_metrics.session_id',
           null, 1.0,
           n_sessions, n_with_metrics
    from per_session

    union all
    select 'metrics_avg_asr_confidence_matches_turns',
           'Reported avg_asr_confidence equals the mean of the turns'' ASR confidence (within {{ tol }}).',
           'voice_ai_metrics.avg_asr_confidence = avg(voice_turns.asr_confidence)',
           'ai_metrics', {{ join_threshold }},
           n_metrics_and_turns, n_asr_agrees
    from per_session

    union all
    select 'metrics_avg_intent_confidence_matches_turns',
           'Reported avg_intent_confidence equals the mean of the turns'' intent confidence (within {{ tol }}).',
           'voice_ai_metrics.avg_intent_confidence = avg(voice_turns.intent_confidence)',
           'ai_metrics', {{ join_threshold }},
           n_metrics_and_turns, n_intent_agrees
    from per_session

    union all
    select 'metrics_misunderstanding_rate_matches_turns',
           'Reported misunderstanding_rate equals the share of misunderstanding turns (within {{ tol }}).',
           'voice_ai_metrics.misunderstanding_rate = share(voice_turns.error_type = misunderstanding)',
           'ai_metrics', {{ join_threshold }},
           n_metrics_and_turns, n_misunderstanding_agrees
    from per_session

    union all
    select 'metrics_silence_rate_matches_turns',
           'Reported silence_rate equals the share of silence turns (within {{ tol }}).',
           'voice_ai_metrics.silence_rate = share(voice_turns.error_type = silence)',
           'ai_metrics', {{ join_threshold }},
           n_metrics_and_turns, n_silence_agrees
    from per_session

    union all
    select 'transfer_reason_only_when_transferred',
           'transfer_reason is filled exactly when the outcome is transferred.',
           'voice_sessions.transfer_reason vs final_outcome',
           null, 1.0,
           n_sessions, n_transfer_reason_agrees
    from per_session

    union all
    select 'escalation_flag_matches_transfer',
           'escalation_flag is yes exactly when the outcome is transferred.',
           'voice_ai_metrics.escalation_flag vs voice_sessions.final_outcome',
           null, 1.0,
           n_with_metrics, n_escalation_agrees
    from per_session
)

select
    measurement,
    description,
    subject,
    gate,
    n_checked,
    n_agree,
    n_checked - n_agree as n_disagree,
    {{ rounded(ratio('n_agree', 'n_checked')) }} as agreement_rate,
    {{ rounded_down(wilson_low('n_agree', 'n_checked')) }} as agreement_ci_low,
    {{ rounded_up(wilson_high('n_agree', 'n_checked')) }} as agreement_ci_high,
    -- the gate decides on the full-precision rate (rounding 0.99995 up must not open a gate at 1)
    threshold,
    coalesce({{ ratio('n_agree', 'n_checked') }} >= threshold, false) as passed,
    case
        when gate is null then 'information only'
        when coalesce({{ ratio('n_agree', 'n_checked') }} >= threshold, false) then 'supports joining ' || gate
        else 'blocks joining ' || gate
    end as decision
from measurements
