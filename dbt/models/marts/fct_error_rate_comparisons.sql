-- One row per comparison of two groups of sessions (a month against the month before, the latest
-- month against the first, an ASR model version against the first version) and error type:
-- the difference of the error rates with its 95% interval and tests, crude and standardised to
-- a common user mix (region x disability x first-time digital user x language), and each
-- difference's verdict (Holm over every tested row of the table); rounded for reading at the end.
{%- set types = [('error', 'error_turn_count'), ('misunderstanding', 'misunderstanding_turn_count'),
                 ('silence', 'silence_turn_count'), ('noise', 'noise_turn_count')] %}

with sessions as (
    select session_date, session_month, asr_model_version, turn_count,
           error_turn_count, misunderstanding_turn_count, silence_turn_count, noise_turn_count,
           -- a value the source did not record is a stratum value of its own (concat_ws would skip it)
           concat_ws('|', coalesce(region, '?'), coalesce(has_disability::text, '?'),
                     coalesce(is_first_time_digital_user::text, '?'), coalesce(language, '?')) as stratum
    from {{ ref('fact_voice_ai_sessions') }}
),

groups as (
    -- the groups and their suppression, exactly as published in fct_error_rates
    select breakdown, group_label, period_start, suppressed
    from {{ ref('fct_error_rates') }}
    where breakdown in ('month', 'asr_model_version')
),

in_groups as (
    select s.*, g.breakdown, g.group_label
    from sessions s
    cross join lateral (values
        ('month', s.session_month::text),
        ('asr_model_version', coalesce(s.asr_model_version, 'unrecorded'))
    ) as g (breakdown, group_label)
),

-- additive sums (the ratio estimator of any union of strata) per group and stratum, every error
-- type in the same pass, then one row per error type, instead of hashing one row per session and
-- error type (docs/PERFORMANCE.md). The sums are of whole numbers, exact in float8 whatever their order
-- (far below 2^53).
strata_by_group as (
    select
        i.breakdown, i.group_label, i.stratum,
        count(*) as n, sum(i.turn_count)::float8 as sx, sum(i.turn_count::float8 * i.turn_count) as sxx
        {%- for name, col in types %},
        sum(i.{{ col }})::float8 as sy_{{ name }},
        sum(i.turn_count::float8 * i.{{ col }}) as sxy_{{ name }},
        sum(i.{{ col }}::float8 * i.{{ col }}) as syy_{{ name }}
        {%- endfor %}
    from in_groups i
    join groups g using (breakdown, group_label)
    group by i.breakdown, i.group_label, i.stratum
),

strata as (
    select s.breakdown, s.group_label, s.stratum, e.error_type, s.n, s.sx, e.sy, s.sxx, e.sxy, e.syy
    from strata_by_group s
    cross join lateral (values
        {%- for name, col in types %}
        ('{{ name }}', s.sy_{{ name }}, s.sxy_{{ name }}, s.syy_{{ name }}){% if not loop.last %},{% endif %}
        {%- endfor %}
    ) as e (error_type, sy, sxy, syy)
),

totals as (
    select breakdown, group_label, error_type,
           sum(n) as n, sum(sx) as sx, sum(sy) as sy, sum(sxx) as sxx, sum(sxy) as sxy, sum(syy) as syy
    from strata
    group by breakdown, group_label, error_type
),

months as (
    select group_label, row_number() over (order by group_label) as i, count(*) over () as m
    from groups where breakdown = 'month'
),

versions as (
    -- the baseline version is the one that served the earliest session
    select asr_model_version as group_label, row_number() over (order by min(session_date), asr_model_version) as i
    from sessions where asr_model_version is not null
    group by asr_model_version
),

pairs as (
    select 'month_over_month'::text as comparison_type, 'month'::text as breakdown,
           a.group_label as baseline_group, b.group_label as compared_group
    from months a join months b on b.i = a.i + 1
    union all
    -- the whole span, when it is more than one step
    select 'latest_month_vs_first', 'month', a.group_label, b.group_label
    from months a join months b on a.i = 1 and b.i = b.m and b.m >= 3
    union all
    select 'asr_model_version', 'asr_model_version', a.group_label, b.group_label
    from versions a join versions b on a.i = 1 and b.i > 1
),

crude as (
    select
        p.*, a.error_type,
        p.comparison_type || '|' || p.baseline_group || '|' || p.compared_group as comparison_key,
        (ga.suppressed or gb.suppressed) as suppressed,
        a.n as a_n, a.sx as a_turns, a.sy as a_errors, a.sy / nullif(a.sx, 0) as a_rate,
        {{ ratio_se('a.n', 'a.sx', 'a.sy', 'a.sxx', 'a.sxy', 'a.syy') }} as a_se,
        {{ ratio_ci_low('a.n', 'a.sx', 'a.sy', 'a.sxx', 'a.sxy', 'a.syy') }} as a_ci_low,
        {{ ratio_ci_high('a.n', 'a.sx', 'a.sy', 'a.sxx', 'a.sxy', 'a.syy') }} as a_ci_high,
        b.n as b_n, b.sx as b_turns, b.sy as b_errors, b.sy / nullif(b.sx, 0) as b_rate,
        {{ ratio_se('b.n', 'b.sx', 'b.sy', 'b.sxx', 'b.sxy', 'b.syy') }} as b_se,
        {{ ratio_ci_low('b.n', 'b.sx', 'b.sy', 'b.sxx', 'b.sxy', 'b.syy') }} as b_ci_low,
        {{ ratio_ci_high('b.n', 'b.sx', 'b.sy', 'b.sxx', 'b.sxy', 'b.syy') }} as b_ci_high,
        {{ two_proportion_z('b.sy', 'b.sx', 'a.sy', 'a.sx') }} as z_turns_independent
    from pairs p
    join groups ga on ga.breakdown = p.breakdown and ga.group_label = p.baseline_group
    join groups gb on gb.breakdown = p.breakdown and gb.group_label = p.compared_group
    join totals a on a.breakdown = p.breakdown and a.group_label = p.baseline_group
    join totals b on b.breakdown = p.breakdown and b.group_label = p.compared_group and b.error_type = a.error_type
),

-- direct standardisation: both groups' stratum rates weighted by the pooled turns of the
-- strata present in both with at least 2 sessions each (a stratum variance needs 2 sessions)
common_strata as (
    select
        p.comparison_type, p.baseline_group, p.compared_group, a.error_type,
        a.sy / a.sx as a_rate, b.sy / b.sx as b_rate,
        power({{ ratio_se('a.n', 'a.sx', 'a.sy', 'a.sxx', 'a.sxy', 'a.syy') }}, 2) as a_var,
        power({{ ratio_se('b.n', 'b.sx', 'b.sy', 'b.sxx', 'b.sxy', 'b.syy') }}, 2) as b_var,
        (a.sx + b.sx) / sum(a.sx + b.sx) over (partition by p.comparison_type, p.baseline_group, p.compared_group, a.error_type)
            as w,
        a.sx + b.sx as turns
    from pairs p
    join strata a on a.breakdown = p.breakdown and a.group_label = p.baseline_group
    join strata b on b.breakdown = p.breakdown and b.group_label = p.compared_group
                 and b.stratum = a.stratum and b.error_type = a.error_type
    where a.n >= 2 and b.n >= 2 and a.sx > 0 and b.sx > 0
),

standardised as (
    select
        comparison_type, baseline_group, compared_group, error_type,
        count(*) as n_strata,
        sum(turns) as turns,
        {{ exact_sum('w * a_rate') }} as a_rate,
        {{ exact_sum('w * b_rate') }} as b_rate,
        {{ exact_sum('w * (b_rate - a_rate)') }} as difference,
        sqrt({{ exact_sum('w ^ 2 * (a_var + b_var)') }}) as se
    from common_strata
    group by comparison_type, baseline_group, compared_group, error_type
),

joined as (
    select
        c.*,
        c.b_rate - c.a_rate as difference,
        sqrt(c.a_se ^ 2 + c.b_se ^ 2) as difference_se,
        sqrt(c.a_rate * (1 - c.a_rate) / c.a_turns + c.b_rate * (1 - c.b_rate) / c.b_turns) as naive_se,
        s.n_strata, s.turns / (c.a_turns + c.b_turns) as coverage,
        s.a_rate as std_a_rate, s.b_rate as std_b_rate, s.difference as std_difference, s.se as std_se
    from crude c
    left join standardised s using (comparison_type, baseline_group, compared_group, error_type)
),

results as (
    select
        j.*,
        difference / nullif(difference_se, 0) as z,
        std_difference / nullif(std_se, 0) as std_z
    from joined j
),

-- every figure at full precision; the tests' family, verdicts and rounding follow
published as (
select
    comparison_key::text as comparison_key,
    error_type::text as error_type,
    comparison_type::text as comparison_type,
    breakdown::text as breakdown,
    baseline_group::text as baseline_group,
    compared_group::text as compared_group,
    suppressed as suppressed,
    case when not suppressed then a_n end::bigint as baseline_n_sessions,
    case when not suppressed then a_turns end::bigint as baseline_n_turns,
    case when not suppressed then a_errors end::bigint as baseline_error_turns,
    case when not suppressed then a_rate end::float8 as baseline_rate,
    case when not suppressed then a_ci_low end::float8 as baseline_rate_ci_low,
    case when not suppressed then a_ci_high end::float8 as baseline_rate_ci_high,
    case when not suppressed then b_n end::bigint as compared_n_sessions,
    case when not suppressed then b_turns end::bigint as compared_n_turns,
    case when not suppressed then b_errors end::bigint as compared_error_turns,
    case when not suppressed then b_rate end::float8 as compared_rate,
    case when not suppressed then b_ci_low end::float8 as compared_rate_ci_low,
    case when not suppressed then b_ci_high end::float8 as compared_rate_ci_high,
    case when not suppressed then difference end::float8 as difference,
    case when not suppressed then difference - {{ z95() }} * difference_se end::float8 as difference_ci_low,
    case when not suppressed then difference + {{ z95() }} * difference_se end::float8 as difference_ci_high,
    case when not suppressed then z end::float8 as z_statistic,
    case when not suppressed then {{ normal_two_sided_p('z') }} end::float8 as p_value,
    case when not suppressed then {{ normal_two_sided_p('z_turns_independent') }} end::float8 as p_value_turns_independent,
    case when not suppressed then (difference_se / nullif(naive_se, 0)) ^ 2 end::float8 as design_effect,
    case when not suppressed then std_a_rate end::float8 as standardised_baseline_rate,
    case when not suppressed then std_b_rate end::float8 as standardised_compared_rate,
    case when not suppressed then std_difference end::float8 as standardised_difference,
    case when not suppressed then std_difference - {{ z95() }} * std_se end::float8 as standardised_difference_ci_low,
    case when not suppressed then std_difference + {{ z95() }} * std_se end::float8 as standardised_difference_ci_high,
    case when not suppressed then {{ normal_two_sided_p('std_z') }} end::float8 as standardised_p_value,
    case when not suppressed then n_strata end::integer as standardisation_strata,
    case when not suppressed then coverage end::float8 as standardisation_turn_coverage,
    case when not suppressed then difference_se end::float8 as difference_se
from results
),

-- One family: every tested row of this table (each month against the one before, the latest
-- against the first, each model version against the first, for every error type), so that a
-- "significant" change holds for the whole table at 5%, as in fct_segment_outcome_tests.
family as (
    select comparison_key, error_type, p_value,
           count(*) over () as family_size,
           row_number() over (order by p_value, comparison_key, error_type) as holm_rank
    from published
    where p_value is not null
),

adjusted as (
    select comparison_key, error_type, family_size,
           {{ holm_adjusted('p_value', 'holm_rank', 'family_size') }} as p_value_holm
    from family
),

judged as (
    select
        p.*, a.family_size, a.p_value_holm,
        -- at Holm's first threshold, alpha / m: what a single true difference has to pass
        {{ minimum_detectable_difference('p.difference_se', '0.05 / a.family_size') }} as mdd
    from published p
    left join adjusted a using (comparison_key, error_type)
)

select
    comparison_key,
    error_type,
    comparison_type,
    breakdown,
    baseline_group,
    compared_group,
    suppressed,
    baseline_n_sessions,
    baseline_n_turns,
    baseline_error_turns,
    {{ rounded('baseline_rate') }} as baseline_rate,
    {{ rounded_down('baseline_rate_ci_low') }} as baseline_rate_ci_low,
    {{ rounded_up('baseline_rate_ci_high') }} as baseline_rate_ci_high,
    compared_n_sessions,
    compared_n_turns,
    compared_error_turns,
    {{ rounded('compared_rate') }} as compared_rate,
    {{ rounded_down('compared_rate_ci_low') }} as compared_rate_ci_low,
    {{ rounded_up('compared_rate_ci_high') }} as compared_rate_ci_high,
    {{ rounded('difference') }} as difference,
    {{ rounded_down('difference_ci_low') }} as difference_ci_low,
    {{ rounded_up('difference_ci_high') }} as difference_ci_high,
    {{ rounded('z_statistic', 2) }} as z_statistic,
    {{ rounded_sig('p_value') }} as p_value,
    family_size::integer as family_size,
    {{ rounded_sig('p_value_holm') }} as p_value_holm,
    {{ rounded_up('mdd') }} as minimum_detectable_difference,
    {{ verdict('p_value_holm', 'difference_ci_low', 'difference_ci_high') }}::text as verdict,
    ({{ verdict_text('p_value', 'p_value_holm', 'family_size', 'difference', 'difference_ci_low', 'difference_ci_high',
                     rounded_up('mdd'), "case when suppressed then 'not tested: a group is suppressed (small cell)'
                                                else 'not tested: no variation between sessions' end") }}
     || case when p_value_holm < 0.05 then
            case when standardised_difference_ci_low > 0 or standardised_difference_ci_high < 0
                 then '; the standardised difference (same caller mix) excludes 0 too'
                 else '; the standardised difference (same caller mix) does not exclude 0: a change of callers may explain it' end
        else '' end)::text as verdict_text,
    {{ var('equivalence_margin') }}::float8 as equivalence_margin,
    {{ rounded_sig('p_value_turns_independent') }} as p_value_turns_independent,
    {{ rounded('design_effect', 2) }} as design_effect,
    {{ rounded('standardised_baseline_rate') }} as standardised_baseline_rate,
    {{ rounded('standardised_compared_rate') }} as standardised_compared_rate,
    {{ rounded('standardised_difference') }} as standardised_difference,
    {{ rounded_down('standardised_difference_ci_low') }} as standardised_difference_ci_low,
    {{ rounded_up('standardised_difference_ci_high') }} as standardised_difference_ci_high,
    {{ rounded_sig('standardised_p_value') }} as standardised_p_value,
    standardisation_strata,
    {{ rounded('standardisation_turn_coverage') }} as standardisation_turn_coverage
from judged
