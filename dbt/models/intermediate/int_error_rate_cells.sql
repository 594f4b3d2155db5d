-- One row per group of sessions (an ISO week, a month, an ASR model version): the sessions, the
-- turns and the error turns by type, with the squares and cross products that give the
-- session-level variance of each ratio, before small-cell suppression. fct_error_rates turns
-- them into the published rates. The sums are of whole numbers, exact in float8 whatever the
-- order of the rows.
{%- set types = [('error', 'error_turn_count'), ('misunderstanding', 'misunderstanding_turn_count'),
                 ('silence', 'silence_turn_count'), ('noise', 'noise_turn_count')] %}

with sessions as (
    select session_week, session_month, asr_model_version, turn_count,
           error_turn_count, misunderstanding_turn_count, silence_turn_count, noise_turn_count
    from {{ ref('fact_voice_ai_sessions') }}
),

versions_recorded as (
    select count(asr_model_version) > 0 as present from sessions
),

in_groups as (
    select s.*, g.breakdown, g.group_label, g.period_start
    from sessions s
    cross join versions_recorded v
    cross join lateral (values
        ('week', s.session_week::text, s.session_week),
        ('month', s.session_month::text, s.session_month),
        -- versions only when the export carries them; sessions without one are their own group
        ('asr_model_version', case when v.present then coalesce(s.asr_model_version, 'unrecorded') end, null::date)
    ) as g (breakdown, group_label, period_start)
    where g.group_label is not null
),

cells as (
    select
        breakdown, group_label,
        breakdown || ':' || group_label as cell_key,
        min(period_start) as period_start,
        count(*) as n_sessions,
        sum(turn_count) as n_turns,
        sum(turn_count::float8 ^ 2) as sxx,
        {%- for name, col in types %}
        sum({{ col }}) as {{ name }}_turns,
        sum(turn_count::float8 * {{ col }}) as {{ name }}_sxy,
        sum({{ col }}::float8 ^ 2) as {{ name }}_syy,
        {%- endfor %}
        -- the versions partition all sessions (published as a whole in fct_voice_kpis)
        'versions'::text as in_whole
    from in_groups
    group by breakdown, group_label
)

select * from cells
