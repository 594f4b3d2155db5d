-- One row per period (the whole span, every month, every ISO week) and KPI: the voice industry's
-- standard KPIs beside the platform's own, each with its numerator, denominator, n and 95% interval,
-- rounded for reading (doc block rounding).
{%- set threshold = var('asr_low_confidence_threshold') %}
{%- set session_kpis = [
    ('containment_rate', 'industry', 'contained', 'Containment rate: sessions handled without transfer to a human agent / sessions.'),
    ('abandonment_rate', 'industry', 'abandoned', 'Abandonment rate: sessions the caller left before completion / sessions.'),
    ('transfer_rate', 'industry', 'transferred', 'Transfer (escalation) rate: sessions transferred to a human agent / sessions (1 - containment).'),
    ('completion_rate', 'platform', 'completed', 'Task completion rate: sessions that ended completed / sessions.'),
] %}
{%- set reasons = kpi_transfer_reasons() %}
{#- the day cells' count of the sessions that have a denominator, by denominator -#}
{%- set sessions_with = {'turn_count': 'sessions_with_turns', 'asr_confidence_turn_count': 'sessions_with_asr_confidence'} %}
{#- turn KPIs: (kpi, group, numerator, denominator, definition). The low-confidence share's
    denominator is the turns that have an ASR confidence (every turn of a CSV export; a platform
    records it for spoken caller turns only): NULL, not 0, where no turn has one. -#}
{%- set turn_kpis = [
    ('no_match_rate', 'industry', 'misunderstanding_turn_count', 'turn_count', 'No-match rate: turns the assistant did not understand (error_type misunderstanding) / turns.'),
    ('no_input_rate', 'industry', 'silence_turn_count', 'turn_count', 'No-input rate: turns without caller input (error_type silence) / turns.'),
    ('low_asr_confidence_turn_share', 'industry', 'low_asr_confidence_turn_count', 'asr_confidence_turn_count',
        'Share of turns whose ASR confidence is below ' ~ threshold ~ ' (var asr_low_confidence_threshold, VOICE_ANALYTICS_ASR_LOW_CONFIDENCE) / turns with an ASR confidence.'),
    ('intent_detection_rate', 'industry', 'detected_intent_turn_count', 'turn_count', 'Intent detection rate: turns with a detected intent (not unknown) / turns.'),
    ('error_turn_rate', 'platform', 'error_turn_count', 'turn_count', 'Error-turn rate: turns with any error (misunderstanding, silence, noise) / turns.'),
    ('noise_rate', 'platform', 'noise_turn_count', 'turn_count', 'Noise rate: turns with recognition noise / turns.'),
] %}

-- Every period from the day cells (int_session_day_cells): the sums are of whole numbers, so a
-- period's are its days' added up, the figures of aggregating its sessions directly.
with days as (
    select * from {{ ref('int_session_day_cells') }}
),

bounds as (
    select min(session_date) as first_day, max(session_date) as last_day from days
),

in_periods as (
    select d.*, p.period_grain, p.period_start, p.period_end
    from days d
    cross join bounds b
    cross join lateral (values
        ('overall', b.first_day, b.last_day),
        ('month', d.session_month, (d.session_month + interval '1 month' - interval '1 day')::date),
        ('week', d.session_week, d.session_week + 6)
    ) as p (period_grain, period_start, period_end)
),

periods as (
    select
        period_grain, period_start, period_end,
        sum(n_sessions)::bigint as n_sessions,
        {%- for kpi, group, flag, definition in session_kpis %}
        sum({{ flag }})::bigint as {{ flag }},
        {%- endfor %}
        {%- for r in reasons %}
        sum(reason_{{ r }})::bigint as reason_{{ r }},
        {%- endfor %}
        {%- for kpi, group, col, denominator, definition in turn_kpis %}
        sum({{ sessions_with[denominator] }})::bigint as {{ kpi }}_n,
        sum(sum_{{ denominator }})::float8 as {{ kpi }}_x,
        sum(sq_{{ denominator }}) as {{ kpi }}_sxx,
        sum(sum_{{ col }})::float8 as {{ kpi }}_y,
        sum(cp_{{ denominator }}__{{ col }}) as {{ kpi }}_sxy,
        sum(sq_{{ col }}) as {{ kpi }}_syy{% if not loop.last %},{% endif %}
        {%- endfor %}
    from in_periods
    group by period_grain, period_start, period_end
),

kpis as (
    select p.period_grain, p.period_start, p.period_end, k.*
    from periods p
    cross join lateral (values
        {%- for kpi, group, flag, definition in session_kpis %}
        ('{{ kpi }}', '{{ group }}', 'sessions', '{{ definition | replace("'", "''") }}',
         p.{{ flag }}::float8, p.n_sessions::float8, p.n_sessions, null::float8, null::float8, null::float8),
        {%- endfor %}
        {%- for r in reasons %}
        ('transfer_reason_share:{{ r }}', 'industry', 'transferred sessions',
         'Share of transferred sessions whose transfer_reason is {{ r }}{{ " (none recorded)" if r == "unspecified" }}: those sessions / transferred sessions.',
         p.reason_{{ r }}::float8, p.transferred::float8, p.transferred, null::float8, null::float8, null::float8),
        {%- endfor %}
        {%- for kpi, group, col, denominator, definition in turn_kpis %}
        ('{{ kpi }}', '{{ group }}', 'turns', '{{ definition | replace("'", "''") }}',
         p.{{ kpi }}_y, p.{{ kpi }}_x, p.{{ kpi }}_n, p.{{ kpi }}_sxx, p.{{ kpi }}_sxy, p.{{ kpi }}_syy)
        {%- if not loop.last %},{% endif %}
        {%- endfor %}
    ) as k (kpi, kpi_group, unit, definition, numerator, denominator, base_sessions, sxx, sxy, syy)
),

cells as (
    select
        *,
        period_grain || ':' || period_start::text || ':' || kpi as cell_key,
        -- the months (and the weeks) of a KPI partition its overall row
        case when period_grain <> 'overall' then kpi || '|' || period_grain end as across_periods
    from kpis
),

kpi_suppression as (
    -- a turn KPI no turn of the cell records (no ASR confidence: typed text, or a platform that
    -- does not record it) discloses nothing: not available (NULL, n 0), not withheld
    {{ small_cell_suppression('cells', 'cell_key', 'base_sessions', ['across_periods'],
                              unrecorded="unit = 'turns' and denominator = 0") }}
),

period_suppression as (
    select period_grain, period_start, suppressed
    from {{ ref('fct_adoption_by_period') }}
    where period_grain in ('week', 'month')
),

published as (
    select
        c.*,
        (s.suppressed or coalesce(p.suppressed, false)) as is_suppressed,
        case when s.suppressed then s.suppression
             when p.suppressed then 'complementary' end as suppression_reason
    from cells c
    join kpi_suppression s on s.cell_key = c.cell_key
    left join period_suppression p using (period_grain, period_start)
)

select
    period_grain::text as period_grain,
    period_start::date as period_start,
    period_end::date as period_end,
    kpi::text as kpi,
    kpi_group::text as kpi_group,
    unit::text as unit,
    definition::text as definition,
    is_suppressed as suppressed,
    suppression_reason::text as suppression,
    case when not is_suppressed then base_sessions end::bigint as n_sessions,
    case when not is_suppressed then numerator end::bigint as numerator,
    case when not is_suppressed then denominator end::bigint as denominator,
    case when not is_suppressed then {{ rounded(ratio('numerator', 'denominator')) }} end as value,
    case when not is_suppressed then
        {{ rounded_down("case when unit = 'turns' then " ~ ratio_ci_low('base_sessions', 'denominator', 'numerator', 'sxx', 'sxy', 'syy')
                        ~ " else " ~ wilson_low('numerator', 'denominator') ~ " end") }}
    end as ci_low,
    case when not is_suppressed then
        {{ rounded_up("case when unit = 'turns' then " ~ ratio_ci_high('base_sessions', 'denominator', 'numerator', 'sxx', 'sxy', 'syy')
                      ~ " else " ~ wilson_high('numerator', 'denominator') ~ " end") }}
    end as ci_high,
    case when unit = 'turns' then 'ratio estimator, sessions as the unit (linearised variance, t)'
         else 'Wilson score' end::text as ci_method,
    {{ var('min_cell_size') }}::integer as min_cell_size
from published
