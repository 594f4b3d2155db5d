-- One row per ISO week, month and ASR model version: the error-turn rate and the rate of each
-- error type (no-match, no-input, noise), each with n and a 95% interval that takes the session
-- as the unit (turns of a session are not independent); rounded for reading (doc block rounding).
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
),

version_cells as (
    select * from cells where breakdown = 'asr_model_version'
),

version_suppression as (
    {{ small_cell_suppression('version_cells', 'cell_key', 'n_sessions', ['in_whole']) }}
),

-- periods are suppressed exactly as in fct_adoption_by_period
suppression as (
    select 'week:' || period_start::text as cell_key, suppressed, suppression
    from {{ ref('fct_adoption_by_period') }} where period_grain = 'week'
    union all
    select 'month:' || period_start::text, suppressed, suppression
    from {{ ref('fct_adoption_by_period') }} where period_grain = 'month'
    union all
    select cell_key, suppressed, suppression from version_suppression
)

select
    c.breakdown::text as breakdown,
    c.group_label::text as group_label,
    c.period_start::date as period_start,
    s.suppressed as suppressed,
    s.suppression::text as suppression,
    case when not s.suppressed then c.n_sessions end::bigint as n_sessions,
    case when not s.suppressed then c.n_turns end::bigint as n_turns,
    {%- for name, col in types %}
    {%- set rate = 'error_turn_rate' if name == 'error' else name ~ '_rate' %}
    case when not s.suppressed then c.{{ name }}_turns end::bigint as {{ name }}_turns,
    case when not s.suppressed then {{ rounded(ratio('c.' ~ name ~ '_turns', 'c.n_turns')) }} end as {{ rate }},
    case when not s.suppressed then
        {{ rounded_down(ratio_ci_low('c.n_sessions', 'c.n_turns', 'c.' ~ name ~ '_turns', 'c.sxx', 'c.' ~ name ~ '_sxy', 'c.' ~ name ~ '_syy')) }}
    end as {{ rate }}_ci_low,
    case when not s.suppressed then
        {{ rounded_up(ratio_ci_high('c.n_sessions', 'c.n_turns', 'c.' ~ name ~ '_turns', 'c.sxx', 'c.' ~ name ~ '_sxy', 'c.' ~ name ~ '_syy')) }}
    end as {{ rate }}_ci_high,
    {%- endfor %}
    {{ var('min_cell_size') }}::integer as min_cell_size
from cells c
join suppression s on s.cell_key = c.cell_key
