-- One row per segment and outcome: does the segment's rate differ from its reference segment's?
-- A two-proportion z-test per comparison, with Holm's correction over every comparison of the
-- build (the family), so that "significant" holds for the whole table at 5%. The tests and
-- verdicts are computed in fct_accessibility_by_segment (each gap carries its own) and listed
-- here one per row, so the two tables cannot disagree.
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
            as z_statistic,
        s.{{ outcome }}_gap_p_value as p_value,
        s.{{ outcome }}_gap_p_value_holm as p_value_holm,
        s.holm_family_size as family_size,
        s.{{ outcome }}_gap_mdd as minimum_detectable_difference,
        s.{{ outcome }}_gap_verdict as verdict,
        s.{{ outcome }}_gap_verdict_text as verdict_text,
        s.equivalence_margin
    from segments s
    join segments r on r.segment_key = s.reference_segment_key
    where not s.is_reference
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
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
    {{ rounded('t.z_statistic', 2) }} as z_statistic,
    t.p_value::float8 as p_value,
    case when t.p_value is not null then t.family_size end::integer as family_size,
    t.p_value_holm::float8 as p_value_holm,
    (t.verdict = 'significant') as is_significant,
    t.minimum_detectable_difference::float8 as minimum_detectable_difference,
    t.verdict::text as verdict,
    t.verdict_text::text as verdict_text,
    t.equivalence_margin::float8 as equivalence_margin
from comparisons t
