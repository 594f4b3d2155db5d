-- One row per day, ISO week and month with sessions: sessions, distinct anonymised users, new
-- and returning users, repeat usage and sessions per user. Also the one place where a period's
-- small-cell suppression is decided: the other period marts take `suppressed` from here, so
-- every certified table withholds the same periods. Periods whose user-history measures the data
-- horizon distorts are flagged (doc block adoption_horizon); rounded for reading at the end.
-- Each period's counts from int_adoption_period_cells (computed there only for the periods whose
-- sessions, or whose users' earlier days, changed); the horizon, suppression and rounding here.
with sessions as (
    select user_key, session_date
    from {{ ref('fact_voice_ai_sessions') }}
),

bounds as (
    select min(session_date) as first_day, max(session_date) as last_day
    from {{ ref('int_session_day_fingerprints') }}
),

-- how far back returns reach: the 90th percentile of the days between a user's consecutive days
-- of use (NULL when no user came back on another day)
horizon as (
    select ceil(percentile_cont(0.9) within group (order by gap_days))::integer as horizon_days
    from (
        select session_date - lag(session_date) over (partition by user_key order by session_date) as gap_days
        from (select distinct user_key, session_date from sessions) d
    ) g
    where gap_days is not null
),

cells as (
    select
        period_grain, period_start, period_end, cell_key,
        n_sessions, active_users, new_users, returning_users, repeat_users,
        sessions_per_user, sessions_per_user_sd,
        -- sibling sets: days partition their week and their month; the periods of a grain
        -- partition the whole (published in fct_voice_kpis and fct_accessibility_by_segment)
        case when period_grain = 'day' then 'week:' || date_trunc('week', period_start)::date::text end as in_week,
        case when period_grain = 'day' then 'month:' || date_trunc('month', period_start)::date::text end as in_month,
        period_grain as in_whole
    from {{ ref('int_adoption_period_cells') }}
),

suppression as (
    {{ small_cell_suppression('cells', 'cell_key', 'n_sessions', ['in_week', 'in_month', 'in_whole']) }}
),

-- every figure at full precision; the horizon flag and rounding follow
published as (
select
    c.period_grain::text as period_grain,
    c.period_start::date as period_start,
    c.period_end::date as period_end,
    (c.period_start < b.first_day or c.period_end > b.last_day) as is_partial_period,
    s.suppressed as suppressed,
    s.suppression::text as suppression,
    case when not s.suppressed then c.n_sessions end::bigint as n_sessions,
    case when not s.suppressed then c.active_users end::bigint as active_users,
    case when not s.suppressed then c.new_users end::bigint as new_users,
    case when not s.suppressed then c.returning_users end::bigint as returning_users,
    case when not s.suppressed then c.repeat_users end::bigint as repeat_users,
    case when not s.suppressed then {{ ratio('c.repeat_users', 'c.active_users') }} end as repeat_usage_rate,
    case when not s.suppressed then {{ wilson_low('c.repeat_users', 'c.active_users') }} end as repeat_usage_rate_ci_low,
    case when not s.suppressed then {{ wilson_high('c.repeat_users', 'c.active_users') }} end as repeat_usage_rate_ci_high,
    case when not s.suppressed then {{ ratio('c.returning_users', 'c.active_users') }} end as returning_user_share,
    case when not s.suppressed then {{ wilson_low('c.returning_users', 'c.active_users') }} end as returning_user_share_ci_low,
    case when not s.suppressed then {{ wilson_high('c.returning_users', 'c.active_users') }} end as returning_user_share_ci_high,
    case when not s.suppressed then c.sessions_per_user end::float8 as sessions_per_user,
    case when not s.suppressed then
        {{ mean_ci_low('c.sessions_per_user', 'c.sessions_per_user_sd', 'c.active_users') }} end as sessions_per_user_ci_low,
    case when not s.suppressed then
        {{ mean_ci_high('c.sessions_per_user', 'c.sessions_per_user_sd', 'c.active_users') }} end as sessions_per_user_ci_high,
    {{ var('min_cell_size') }}::integer as min_cell_size
from cells c
join suppression s on s.cell_key = c.cell_key
cross join bounds b
)

select
    p.period_grain,
    p.period_start,
    p.period_end,
    p.is_partial_period,
    -- users first seen in the period may have used the service before the data start
    (h.horizon_days is null or p.period_start < b.first_day + h.horizon_days) as horizon_affected,
    h.horizon_days,
    case when h.horizon_days is null then
        'No user used the service on two different days in the data, so how far back returns reach is unknown: '
        || 'new users may be overstated and returning users and repeat usage understated in every period.'
    when p.period_start < b.first_day + h.horizon_days then
        'Starts within ' || h.horizon_days || ' days of the data''s first day (' || b.first_day::text
        || '; 90% of returns come back within ' || h.horizon_days || ' days): some users counted as new had used the service '
        || 'before the data start, so new users are overstated and returning users and repeat usage understated.'
    end::text as horizon_note,
    p.suppressed,
    p.suppression,
    p.n_sessions,
    p.active_users,
    p.new_users,
    p.returning_users,
    p.repeat_users,
    {{ rounded('p.repeat_usage_rate') }} as repeat_usage_rate,
    {{ rounded_down('p.repeat_usage_rate_ci_low') }} as repeat_usage_rate_ci_low,
    {{ rounded_up('p.repeat_usage_rate_ci_high') }} as repeat_usage_rate_ci_high,
    {{ rounded('p.returning_user_share') }} as returning_user_share,
    {{ rounded_down('p.returning_user_share_ci_low') }} as returning_user_share_ci_low,
    {{ rounded_up('p.returning_user_share_ci_high') }} as returning_user_share_ci_high,
    {{ rounded('p.sessions_per_user', 2) }} as sessions_per_user,
    {{ rounded_down('p.sessions_per_user_ci_low', 2) }} as sessions_per_user_ci_low,
    {{ rounded_up('p.sessions_per_user_ci_high', 2) }} as sessions_per_user_ci_high,
    p.min_cell_size
from published p
cross join bounds b
cross join horizon h
