-- One row per ISO week, month and ASR model version: the error-turn rate and the rate of each
-- error type (no-match, no-input, noise), each with n and a 95% interval that takes the session
-- as the unit (turns of a session are not independent); rounded for reading (doc block rounding).
{%- set types = [('error', 'error_turn_count'), ('misunderstanding', 'misunderstanding_turn_count'),
                 ('silence', 'silence_turn_count'), ('noise', 'noise_turn_count')] %}

with cells as (
    select * from {{ ref('int_error_rate_cells') }}
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
