-- One row per day and ISO week with sessions: the figures behind fct_efficiency_by_period before
-- suppression and rounding (means and standard deviations, medians and 90th percentiles, the
-- ratio estimator's sums). A median is not additive, so each period is computed from its own
-- sessions; incremental by fingerprint (macros/cells.sql), a build computes only the days and
-- weeks whose rows in the fact changed, reading the fact's rows of those periods only.
-- A duration the source does not record stays NULL: its means and percentiles are over the
-- sessions that have one, NULL when none has, never 0.
{%- set grains = ['day', 'week'] %}
{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key=['period_grain', 'period_start'],
    on_schema_change='sync_all_columns',
    post_hook="{{ drop_vanished_cells(grains=['day', 'week']) }}"
) }}

with periods as (
    {{ changed_periods(grains) }}
),

sessions as (
    select session_date, session_week, is_completed, turn_count, error_turn_count,
           turn_duration_sec_total, reported_duration_sec
    from {{ ref('fact_voice_ai_sessions') }}
    where session_date in ({{ days_of_periods('select period_grain, period_start from periods') }})
),

in_periods as (
    select s.*, p.period_grain, p.period_start, p.fingerprint
    from sessions s
    cross join lateral (values ('day', s.session_date), ('week', s.session_week)) as x (period_grain, period_start)
    join periods p using (period_grain, period_start)
)

select
    period_grain::text as period_grain,
    period_start::date as period_start,
    (period_grain || ':' || period_start::text)::text as cell_key,
    count(*)::bigint as n_sessions,
    sum(turn_count)::bigint as n_turns,
    avg(turn_count) as turns_mean,
    stddev_samp(turn_count) as turns_sd,
    percentile_cont(0.5) within group (order by turn_count) as turns_median,
    percentile_cont(0.9) within group (order by turn_count) as turns_p90,
    count(turn_duration_sec_total)::bigint as n_durations,
    {{ exact_avg('turn_duration_sec_total') }} as duration_mean,
    {{ exact_stddev('turn_duration_sec_total') }} as duration_sd,
    percentile_cont(0.5) within group (order by turn_duration_sec_total) as duration_median,
    percentile_cont(0.9) within group (order by turn_duration_sec_total) as duration_p90,
    percentile_cont(0.5) within group (order by reported_duration_sec) as reported_duration_median,
    percentile_cont(0.9) within group (order by reported_duration_sec) as reported_duration_p90,
    -- ratio estimator sums: y = error turns, x = turns of each session
    sum(error_turn_count)::bigint as error_turns,
    sum(turn_count::float8 ^ 2) as sxx,
    sum(turn_count::float8 * error_turn_count) as sxy,
    sum(error_turn_count::float8 ^ 2) as syy,
    count(*) filter (where is_completed)::bigint as n_completed,
    count(turn_duration_sec_total) filter (where is_completed)::bigint as n_completed_durations,
    {{ exact_avg('turn_duration_sec_total', 'is_completed') }} as ttc_mean,
    {{ exact_stddev('turn_duration_sec_total', 'is_completed') }} as ttc_sd,
    percentile_cont(0.5) within group (order by turn_duration_sec_total) filter (where is_completed) as ttc_median,
    percentile_cont(0.9) within group (order by turn_duration_sec_total) filter (where is_completed) as ttc_p90,
    max(fingerprint) as source_fingerprint,
    {{ definition_checksum() }} as definition_checksum
from in_periods
group by period_grain, period_start
