-- One row per user segment (a value of region, disability, first-time digital user, language, or
-- a combination of them): outcome rates with Wilson 95% intervals, the gap against the
-- reference segment with Newcombe's 95% interval, its test and verdict (Holm over every
-- comparison of the table: the family fct_segment_outcome_tests shows, which reads them from
-- here), and the mean ASR and intent confidence; rounded for reading in the last select.
-- Segments built from fewer than var('min_cell_size') sessions are suppressed (with
-- complementary suppression within each set of sibling segments).
-- An attribute the source did not record for a user (a platform bot that does not set it) is a
-- segment of its own, "not recorded" (key region=not recorded, the attribute column NULL), never
-- folded into a value (a NULL disability is not "without disability"); such a segment has no
-- reference and is in no comparison. Mean confidences are over the sessions that have one.
{%- set attributes = accessibility_attributes() %}
{#- each attribute's name in segment_key (its sibling sets are read from the key) -#}
{%- set segment_key_parts = ['region', 'disability', 'first_time', 'language'] %}
{%- set outcomes = accessibility_outcomes() %}
{%- set sets_by_user = ['()', '(region)', '(has_disability)', '(is_first_time_digital_user)',
                        '(region, has_disability)', '(region, is_first_time_digital_user)',
                        '(has_disability, is_first_time_digital_user)',
                        '(region, has_disability, is_first_time_digital_user)'] %}
{%- set sets_with_language = ['(language)', '(region, language)', '(has_disability, language)',
                              '(is_first_time_digital_user, language)'] %}

-- The sessions' users, for the distinct users of each segment (not additive across days).
with sessions as (
    select user_key, region, has_disability, is_first_time_digital_user, language
    from {{ ref('fact_voice_ai_sessions') }}
),

-- The finest cells (every attribute) over the whole span: their days' cells added up
-- (int_accessibility_day_cells, recomputed only for the days whose sessions changed). The sums are
-- exact in numeric, so the grouping sets below give the figures of aggregating the sessions in
-- each set directly, the rows equal to the bit (docs/PERFORMANCE.md).
finest as (
    select
        {%- for a in attributes %}
        {{ a }},
        {%- endfor %}
        sum(n_sessions)::bigint as n_sessions,
        {%- for name, flag in outcomes %}
        sum({{ name }}_sessions)::bigint as {{ name }}_sessions,
        {%- endfor %}
        {%- for m in ['avg_asr_confidence', 'avg_intent_confidence'] %}
        sum({{ m }}_n)::bigint as {{ m }}_n,
        sum({{ m }}_sum) as {{ m }}_sum,
        sum({{ m }}_sum2) as {{ m }}_sum2{% if not loop.last %},{% endif %}
        {%- endfor %}
    from {{ ref('int_accessibility_day_cells') }}
    group by {{ attributes | join(', ') }}
),

-- The reference group of each attribute: the group the others are compared with (urban, no
-- disability, experienced digital user, and the most frequent language of this build).
reference as (
    select
        'urban'::text as region,
        false as has_disability,
        false as is_first_time_digital_user,
        (select language from finest where language is not null
         group by language order by sum(n_sessions) desc, language limit 1) as language
),

grouped as (
    select
        {%- for a in attributes %}
        grouping({{ a }}) = 0 as by_{{ a }},
        {%- endfor %}
        {%- for a in attributes %}
        {{ a }},
        {%- endfor %}
        sum(n_sessions)::bigint as n_sessions,
        {%- for name, flag in outcomes %}
        sum({{ name }}_sessions)::bigint as {{ name }}_sessions,
        {%- endfor %}
        {{ mean_from_sums('sum(avg_asr_confidence_n)', 'sum(avg_asr_confidence_sum)') }} as asr_mean,
        {{ stddev_from_sums('sum(avg_asr_confidence_n)', 'sum(avg_asr_confidence_sum)', 'sum(avg_asr_confidence_sum2)') }} as asr_sd,
        {{ mean_from_sums('sum(avg_intent_confidence_n)', 'sum(avg_intent_confidence_sum)') }} as intent_mean,
        {{ stddev_from_sums('sum(avg_intent_confidence_n)', 'sum(avg_intent_confidence_sum)', 'sum(avg_intent_confidence_sum2)') }} as intent_sd,
        sum(avg_asr_confidence_n)::bigint as asr_n,
        sum(avg_intent_confidence_n)::bigint as intent_n
    from finest
    group by grouping sets ({{ (sets_by_user + sets_with_language) | join(', ') }})
),

-- Distinct users per segment without count(distinct) (which sorts every grouping set: 17 s at
-- 1,000,000 sessions against 2 s without): region, disability and first-time are attributes of
-- the user, so one row per user (or per user and language) counts each user once.
users as (
    select
        {%- for a in attributes if a != 'language' %}
        grouping({{ a }}) = 0 as by_{{ a }},
        {%- endfor %}
        false as by_language,
        region, has_disability, is_first_time_digital_user, null::text as language,
        count(*) as n_users
    from (select distinct user_key, region, has_disability, is_first_time_digital_user from sessions) u
    group by grouping sets ({{ sets_by_user | join(', ') }})
    union all
    select
        {%- for a in attributes %}
        grouping({{ a }}) = 0,
        {%- endfor %}
        {%- for a in attributes %}
        {{ a }},
        {%- endfor %}
        count(*)
    from (select distinct user_key, region, has_disability, is_first_time_digital_user, language from sessions) ul
    group by grouping sets ({{ sets_with_language | join(', ') }})
),

labelled as (
    select
        g.*,
        n.n_users,
        coalesce(nullif(concat_ws(' x ',
            case when g.by_region then 'region' end,
            case when g.by_has_disability then 'disability' end,
            case when g.by_is_first_time_digital_user then 'first_time_digital_user' end,
            case when g.by_language then 'language' end), ''), 'all') as segment_dimension,
        coalesce(nullif(concat_ws(', ',
            case when g.by_region then coalesce(g.region, 'region not recorded') end,
            case when g.by_has_disability then case when g.has_disability then 'with disability'
                                                    when not g.has_disability then 'without disability'
                                                    else 'disability not recorded' end end,
            case when g.by_is_first_time_digital_user then
                case when g.is_first_time_digital_user then 'first-time digital user'
                     when not g.is_first_time_digital_user then 'experienced digital user'
                     else 'first-time digital use not recorded' end end,
            case when g.by_language then coalesce(g.language, 'language not recorded') end), ''), 'all sessions') as segment_label,
        coalesce(nullif(concat_ws('|',
            case when g.by_region then 'region=' || coalesce(g.region, 'not recorded') end,
            case when g.by_has_disability then 'disability=' || coalesce(g.has_disability::text, 'not recorded') end,
            case when g.by_is_first_time_digital_user then
                'first_time=' || coalesce(g.is_first_time_digital_user::text, 'not recorded') end,
            case when g.by_language then 'language=' || coalesce(g.language, 'not recorded') end), ''), 'all') as segment_key,
        -- the same dimension with every attribute at its reference value; none for a segment
        -- whose value of an attribute is not recorded (it is compared with nothing)
        case when (g.by_region or g.by_has_disability or g.by_is_first_time_digital_user or g.by_language)
              and not (g.by_region and g.region is null) and not (g.by_has_disability and g.has_disability is null)
              and not (g.by_is_first_time_digital_user and g.is_first_time_digital_user is null)
              and not (g.by_language and g.language is null) then
            concat_ws('|',
                case when g.by_region then 'region=' || r.region end,
                case when g.by_has_disability then 'disability=' || r.has_disability::text end,
                case when g.by_is_first_time_digital_user then 'first_time=' || r.is_first_time_digital_user::text end,
                case when g.by_language then 'language=' || r.language end)
        end as reference_segment_key
    from grouped g
    join users n on
        {%- for a in attributes %}
        n.by_{{ a }} = g.by_{{ a }} and n.{{ a }} is not distinct from g.{{ a }}{% if not loop.last %} and{% endif %}
        {%- endfor %}
    cross join reference r
    -- with a single language, a combination with language repeats the segment without it
    where not (g.by_language and (g.by_region or g.by_has_disability or g.by_is_first_time_digital_user)
               and (select count(*) from (select language from finest group by language) l) = 1)
),

cells as (
    select
        *,
        {%- for part in segment_key_parts %}
        {{ segment_key_sibling_set(part) }} as sibling_set_{{ loop.index }}{% if not loop.last %},{% endif %}
        {%- endfor %}
    from labelled
),

suppression as (
    {{ small_cell_suppression('cells', 'segment_key', 'n_sessions',
                              ['sibling_set_1', 'sibling_set_2', 'sibling_set_3', 'sibling_set_4']) }}
),

published as (
    -- a suppressed row keeps its identifiers and loses every measure
    select
        c.segment_key, c.segment_dimension, c.segment_label,
        c.region, c.has_disability, c.is_first_time_digital_user, c.language,
        c.reference_segment_key,
        s.suppressed, s.suppression,
        case when not s.suppressed then c.n_sessions end as n_sessions,
        case when not s.suppressed then c.n_users end as n_users,
        {%- for name, flag in outcomes %}
        case when not s.suppressed then c.{{ name }}_sessions end as {{ name }}_sessions,
        {%- endfor %}
        case when not s.suppressed then c.asr_mean end as asr_mean,
        case when not s.suppressed then c.asr_sd end as asr_sd,
        case when not s.suppressed then c.asr_n end as asr_n,
        case when not s.suppressed then c.intent_mean end as intent_mean,
        case when not s.suppressed then c.intent_sd end as intent_sd,
        case when not s.suppressed then c.intent_n end as intent_n
    from cells c
    join suppression s on s.cell_key = c.segment_key
),

-- every figure at full precision; the tests, verdicts and rounding follow
measured as (
select
    p.segment_key::text as segment_key,
    p.segment_dimension::text as segment_dimension,
    p.segment_label::text as segment_label,
    p.region::text as region,
    p.has_disability as has_disability,
    p.is_first_time_digital_user as is_first_time_digital_user,
    p.language::text as language,
    (p.segment_key = p.reference_segment_key) as is_reference,
    p.reference_segment_key::text as reference_segment_key,
    p.suppressed as suppressed,
    p.suppression::text as suppression,
    p.n_sessions::bigint as n_sessions,
    p.n_users::bigint as n_users,
    {%- for name, flag in outcomes %}
    p.{{ name }}_sessions::bigint as {{ name }}_sessions,
    {{ ratio('p.' ~ name ~ '_sessions', 'p.n_sessions') }} as {{ name }}_rate,
    {{ wilson_low('p.' ~ name ~ '_sessions', 'p.n_sessions') }} as {{ name }}_rate_ci_low,
    {{ wilson_high('p.' ~ name ~ '_sessions', 'p.n_sessions') }} as {{ name }}_rate_ci_high,
    case when p.segment_key <> p.reference_segment_key then
        {{ ratio('p.' ~ name ~ '_sessions', 'p.n_sessions') }} - {{ ratio('r.' ~ name ~ '_sessions', 'r.n_sessions') }}
    end as {{ name }}_gap,
    case when p.segment_key <> p.reference_segment_key then
        {{ newcombe_low('p.' ~ name ~ '_sessions', 'p.n_sessions', 'r.' ~ name ~ '_sessions', 'r.n_sessions') }}
    end as {{ name }}_gap_ci_low,
    case when p.segment_key <> p.reference_segment_key then
        {{ newcombe_high('p.' ~ name ~ '_sessions', 'p.n_sessions', 'r.' ~ name ~ '_sessions', 'r.n_sessions') }}
    end as {{ name }}_gap_ci_high,
    case when p.segment_key <> p.reference_segment_key then
        {{ two_proportion_z('p.' ~ name ~ '_sessions', 'p.n_sessions', 'r.' ~ name ~ '_sessions', 'r.n_sessions') }}
    end as {{ name }}_z,
    case when p.segment_key <> p.reference_segment_key then
        {{ two_proportion_null_se('p.' ~ name ~ '_sessions', 'p.n_sessions', 'r.' ~ name ~ '_sessions', 'r.n_sessions') }}
    end as {{ name }}_null_se,
    {%- endfor %}
    p.asr_n::bigint as asr_confidence_n_sessions,
    p.asr_mean::float8 as mean_asr_confidence,
    {{ mean_ci_low('p.asr_mean', 'p.asr_sd', 'p.asr_n') }} as mean_asr_confidence_ci_low,
    {{ mean_ci_high('p.asr_mean', 'p.asr_sd', 'p.asr_n') }} as mean_asr_confidence_ci_high,
    p.intent_n::bigint as intent_confidence_n_sessions,
    p.intent_mean::float8 as mean_intent_confidence,
    {{ mean_ci_low('p.intent_mean', 'p.intent_sd', 'p.intent_n') }} as mean_intent_confidence_ci_low,
    {{ mean_ci_high('p.intent_mean', 'p.intent_sd', 'p.intent_n') }} as mean_intent_confidence_ci_high,
    {{ var('min_cell_size') }}::integer as min_cell_size
from published p
left join published r on r.segment_key = p.reference_segment_key
),

-- One family: every tested (segment, outcome) comparison of the build, so that "significant"
-- holds for the whole table at 5% (Holm controls the family-wise error rate under any dependence;
-- the segments overlap: a person is in several of them).
tests as (
    {%- for name, flag in outcomes %}
    select segment_key, '{{ name }}'::text as outcome, {{ normal_two_sided_p(name ~ '_z') }} as p_value
    from measured
    where {{ name }}_z is not null
    {% if not loop.last %}union all{% endif %}
    {%- endfor %}
),

family as (
    select segment_key, outcome, p_value,
           count(*) over () as family_size,
           row_number() over (order by p_value, segment_key, outcome) as holm_rank
    from tests
),

adjusted as (
    select segment_key, outcome, p_value, family_size,
           {{ holm_adjusted('p_value', 'holm_rank', 'family_size') }} as p_value_holm
    from family
),

family_size as (
    select count(*)::integer as holm_family_size from tests
)

select
    m.segment_key,
    m.segment_dimension,
    m.segment_label,
    m.region,
    m.has_disability,
    m.is_first_time_digital_user,
    m.language,
    m.is_reference,
    m.reference_segment_key,
    m.suppressed,
    m.suppression,
    m.n_sessions,
    m.n_users,
    {%- for name, flag in outcomes %}
    {%- set t = 't_' ~ name %}
    m.{{ name }}_sessions,
    {{ rounded('m.' ~ name ~ '_rate') }} as {{ name }}_rate,
    {{ rounded_down('m.' ~ name ~ '_rate_ci_low') }} as {{ name }}_rate_ci_low,
    {{ rounded_up('m.' ~ name ~ '_rate_ci_high') }} as {{ name }}_rate_ci_high,
    {{ rounded('m.' ~ name ~ '_gap') }} as {{ name }}_gap,
    {{ rounded_down('m.' ~ name ~ '_gap_ci_low') }} as {{ name }}_gap_ci_low,
    {{ rounded_up('m.' ~ name ~ '_gap_ci_high') }} as {{ name }}_gap_ci_high,
    {{ rounded_sig(t ~ '.p_value') }} as {{ name }}_gap_p_value,
    {{ rounded_sig(t ~ '.p_value_holm') }} as {{ name }}_gap_p_value_holm,
    {{ rounded_up(t ~ '.mdd') }} as {{ name }}_gap_mdd,
    case when not m.is_reference and m.reference_segment_key is not null then
        {{ verdict(t ~ '.p_value_holm', 'm.' ~ name ~ '_gap_ci_low', 'm.' ~ name ~ '_gap_ci_high') }}
    end::text as {{ name }}_gap_verdict,
    case when not m.is_reference and m.reference_segment_key is not null then
        {{ verdict_text(t ~ '.p_value', t ~ '.p_value_holm', 'f.holm_family_size', 'm.' ~ name ~ '_gap',
                        'm.' ~ name ~ '_gap_ci_low', 'm.' ~ name ~ '_gap_ci_high', rounded_up(t ~ '.mdd'),
                        "case when m.suppressed then 'not tested: segment suppressed (small cell)'
                              when m." ~ name ~ "_gap is null then 'not tested: reference segment suppressed (small cell)'
                              else 'not tested: no variation (every session of both segments had the same outcome)' end") }}
    end::text as {{ name }}_gap_verdict_text,
    {%- endfor %}
    f.holm_family_size,
    {{ var('equivalence_margin') }}::float8 as equivalence_margin,
    m.asr_confidence_n_sessions,
    {{ rounded('m.mean_asr_confidence') }} as mean_asr_confidence,
    {{ rounded_down('m.mean_asr_confidence_ci_low') }} as mean_asr_confidence_ci_low,
    {{ rounded_up('m.mean_asr_confidence_ci_high') }} as mean_asr_confidence_ci_high,
    m.intent_confidence_n_sessions,
    {{ rounded('m.mean_intent_confidence') }} as mean_intent_confidence,
    {{ rounded_down('m.mean_intent_confidence_ci_low') }} as mean_intent_confidence_ci_low,
    {{ rounded_up('m.mean_intent_confidence_ci_high') }} as mean_intent_confidence_ci_high,
    m.min_cell_size
from measured m
cross join family_size f
{%- for name, flag in outcomes %}
left join lateral (
    select a.p_value, a.p_value_holm,
           -- at Holm's first threshold, alpha / m: what a single true difference has to pass
           {{ minimum_detectable_difference('m.' ~ name ~ '_null_se', '0.05 / a.family_size') }} as mdd
    from adjusted a
    where a.segment_key = m.segment_key and a.outcome = '{{ name }}'
) t_{{ name }} on true
{%- endfor %}
