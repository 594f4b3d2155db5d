-- One row per group of sessions (an ISO week, a month, an ASR model version): the sessions, the
-- turns and the error turns by type, with the squares and cross products that give the
-- session-level variance of each ratio, before small-cell suppression. fct_error_rates turns
-- them into the published rates. The sums are of whole numbers, exact in float8 whatever the
-- order of the rows.
{%- set types = [('error', 'error_turn_count'), ('misunderstanding', 'misunderstanding_turn_count'),
                 ('silence', 'silence_turn_count'), ('noise', 'noise_turn_count')] %}

-- From the day cells (int_session_day_cells): whole-number sums, so a group's are its days' cells
-- added up.
with days as (
    select * from {{ ref('int_session_day_cells') }}
),

versions_recorded as (
    select count(asr_model_version) > 0 as present from days
),

in_groups as (
    select d.*, g.breakdown, g.group_label, g.period_start
    from days d
    cross join versions_recorded v
    cross join lateral (values
        ('week', d.session_week::text, d.session_week),
        ('month', d.session_month::text, d.session_month),
        -- versions only when the export carries them; sessions without one are their own group
        ('asr_model_version', case when v.present then coalesce(d.asr_model_version, 'unrecorded') end, null::date)
    ) as g (breakdown, group_label, period_start)
    where g.group_label is not null
),

cells as (
    select
        breakdown, group_label,
        breakdown || ':' || group_label as cell_key,
        min(period_start) as period_start,
        sum(n_sessions)::bigint as n_sessions,
        sum(sum_turn_count)::bigint as n_turns,
        sum(sq_turn_count) as sxx,
        {%- for name, col in types %}
        sum(sum_{{ col }})::bigint as {{ name }}_turns,
        sum(cp_turn_count__{{ col }}) as {{ name }}_sxy,
        sum(sq_{{ col }}) as {{ name }}_syy,
        {%- endfor %}
        -- the versions partition all sessions (published as a whole in fct_voice_kpis)
        'versions'::text as in_whole
    from in_groups
    group by breakdown, group_label
)

select * from cells
