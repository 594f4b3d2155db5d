-- One row per segment and outcome: does the segment's rate differ from its reference segment's?
-- A two-proportion z-test per comparison, with Holm's correction over every comparison of the
-- build (the family), so that "significant" holds for the whole table at 5%.
{%- set outcomes = ['completion', 'abandonment', 'transfer'] %}

with segments as (
    select * from {{ ref('fct_accessibility_by_segment') }}
),

comparisons as (
    {%- for outcome in outcomes %}
    select
        s.segment_key, '{{ outcome }}'::text as outcome,
        s.segment_dimension, s.segment_label, s.reference_segment_key,
        s.suppressed,
        s.n_sessions, s.{{ outcome }}_sessions as events, s.{{ outcome }}_rate as rate,
        r.n_sessions as reference_n_sessions, r.{{ outcome }}_sessions as reference_events,
        r.{{ outcome }}_rate as reference_rate,
        s.{{ outcome }}_gap as difference,
        s.{{ outcome }}_gap_ci_low as difference_ci_low,
        s.{{ outcome }}_gap_ci_high as difference_ci_high,
        {{ two_proportion_z('s.' ~ outcome ~ '_sessions', 's.n_sessions', 'r.' ~ outcome ~ '_sessions', 'r.n_sessions') }}
            as z_statistic
    from segments s
    join segments r on r.segment_key = s.reference_segment_key
    where not s.is_reference
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

tested as (
    select
        c.*,
        {{ normal_two_sided_p('z_statistic') }} as p_value
    from comparisons c
),

family as (
    select
        segment_key, outcome,
        count(*) over () as family_size,
        row_number() over (order by p_value, segment_key, outcome) as holm_rank,
        p_value
    from tested
    where p_value is not null
),

adjusted as (
    select segment_key, outcome, family_size,
           {{ holm_adjusted('p_value', 'holm_rank', 'family_size') }} as p_value_holm
    from family
)

select
    t.segment_key::text as segment_key,
    t.outcome::text as outcome,
    t.segment_dimension::text as segment_dimension,
    t.segment_label::text as segment_label,
    t.reference_segment_key::text as reference_segment_key,
    t.suppressed as suppressed,
    (t.p_value is not null) as tested,
    t.n_sessions::bigint as n_sessions,
    t.events::bigint as events,
    t.rate::float8 as rate,
    t.reference_n_sessions::bigint as reference_n_sessions,
    t.reference_events::bigint as reference_events,
    t.reference_rate::float8 as reference_rate,
    t.difference::float8 as difference,
    t.difference_ci_low::float8 as difference_ci_low,
    t.difference_ci_high::float8 as difference_ci_high,
    t.z_statistic::float8 as z_statistic,
    t.p_value::float8 as p_value,
    a.family_size::integer as family_size,
    a.p_value_holm::float8 as p_value_holm,
    coalesce(a.p_value_holm < 0.05, false) as is_significant,
    case
        when t.suppressed then 'not tested: segment suppressed (small cell)'
        when t.p_value is null then 'not tested: reference suppressed or no variation'
        when a.p_value_holm < 0.05 then
            t.segment_label || ': ' || t.outcome || ' rate differs from the reference by '
            || to_char(100 * t.difference, 'FM990.0') || ' points (95% CI '
            || to_char(100 * t.difference_ci_low, 'FM990.0') || ' to ' || to_char(100 * t.difference_ci_high, 'FM990.0')
            || '), significant after Holm correction over ' || a.family_size || ' comparisons'
        else 'no significant difference after Holm correction over ' || a.family_size || ' comparisons'
    end::text as conclusion
from tested t
left join adjusted a using (segment_key, outcome)
