-- One row per day and ISO week with sessions: turns per session, session duration, error-turn
-- rate and time to completion, as means with intervals and as medians and 90th percentiles,
-- rounded for reading in the last select (doc block rounding). A duration the source does not
-- record (no conversational platform logs turn durations) stays NULL: its means and percentiles
-- are over the sessions that have one, NULL when none has, never 0.
-- Each period's figures from int_efficiency_period_cells (computed there only for the periods
-- whose sessions changed); suppression and rounding here, on every build.
with cells as (
    select
        c.*,
        -- time to completion is its own cell (n = completed sessions); days partition their week
        case when c.period_grain = 'day' then 'week:' || date_trunc('week', c.period_start)::date::text end as in_week
    from {{ ref('int_efficiency_period_cells') }} c
),

completion_suppression as (
    {{ small_cell_suppression('cells', 'cell_key', 'n_completed', ['in_week']) }}
),

periods as (
    select period_grain, period_start, period_end, is_partial_period, suppressed, suppression
    from {{ ref('fct_adoption_by_period') }}
    where period_grain in ('day', 'week')
),

published as (
    select
        p.period_end, p.is_partial_period, p.suppressed, p.suppression,
        (p.suppressed or t.suppressed) as ttc_suppressed,
        c.*
    from cells c
    join periods p using (period_grain, period_start)
    join completion_suppression t on t.cell_key = c.cell_key
)

select
    period_grain::text as period_grain,
    period_start::date as period_start,
    period_end::date as period_end,
    is_partial_period,
    suppressed,
    suppression::text as suppression,
    case when not suppressed then n_sessions end::bigint as n_sessions,
    case when not suppressed then n_turns end::bigint as n_turns,
    case when not suppressed then {{ rounded('turns_mean', 2) }} end as turns_per_session_mean,
    case when not suppressed then {{ rounded_down(mean_ci_low('turns_mean', 'turns_sd', 'n_sessions'), 2) }} end as turns_per_session_ci_low,
    case when not suppressed then {{ rounded_up(mean_ci_high('turns_mean', 'turns_sd', 'n_sessions'), 2) }} end as turns_per_session_ci_high,
    case when not suppressed then {{ rounded('turns_median', 2) }} end as turns_per_session_median,
    case when not suppressed then {{ rounded('turns_p90', 2) }} end as turns_per_session_p90,
    case when not suppressed then {{ rounded('duration_mean', 1) }} end as duration_sec_mean,
    case when not suppressed then {{ rounded_down(mean_ci_low('duration_mean', 'duration_sd', 'n_durations'), 1) }} end as duration_sec_ci_low,
    case when not suppressed then {{ rounded_up(mean_ci_high('duration_mean', 'duration_sd', 'n_durations'), 1) }} end as duration_sec_ci_high,
    case when not suppressed then {{ rounded('duration_median', 1) }} end as duration_sec_median,
    case when not suppressed then {{ rounded('duration_p90', 1) }} end as duration_sec_p90,
    case when not suppressed then {{ rounded('reported_duration_median', 1) }} end as reported_duration_sec_median,
    case when not suppressed then {{ rounded('reported_duration_p90', 1) }} end as reported_duration_sec_p90,
    case when not suppressed then error_turns end::bigint as error_turns,
    case when not suppressed then {{ rounded(ratio('error_turns', 'n_turns')) }} end as error_turn_rate,
    case when not suppressed then
        {{ rounded_down(ratio_ci_low('n_sessions', 'n_turns', 'error_turns', 'sxx', 'sxy', 'syy')) }} end as error_turn_rate_ci_low,
    case when not suppressed then
        {{ rounded_up(ratio_ci_high('n_sessions', 'n_turns', 'error_turns', 'sxx', 'sxy', 'syy')) }} end as error_turn_rate_ci_high,
    ttc_suppressed as time_to_completion_suppressed,
    case when not ttc_suppressed then n_completed end::bigint as n_completed_sessions,
    case when not ttc_suppressed then {{ rounded('ttc_mean', 1) }} end as time_to_completion_sec_mean,
    case when not ttc_suppressed then {{ rounded_down(mean_ci_low('ttc_mean', 'ttc_sd', 'n_completed_durations'), 1) }} end as time_to_completion_sec_ci_low,
    case when not ttc_suppressed then {{ rounded_up(mean_ci_high('ttc_mean', 'ttc_sd', 'n_completed_durations'), 1) }} end as time_to_completion_sec_ci_high,
    case when not ttc_suppressed then {{ rounded('ttc_median', 1) }} end as time_to_completion_sec_median,
    case when not ttc_suppressed then {{ rounded('ttc_p90', 1) }} end as time_to_completion_sec_p90,
    {{ var('min_cell_size') }}::integer as min_cell_size
from published
