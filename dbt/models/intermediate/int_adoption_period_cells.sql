-- One row per day, ISO week and month with sessions: sessions, active, new, returning and repeat
-- users and sessions per user, before suppression and rounding (fct_adoption_by_period).
-- Incremental by fingerprint (macros/cells.sql), with one difference: whether a user is new in a
-- period depends on the days before it too (the user's first day), so a period's fingerprint
-- covers every day up to its end. A delivered last day recomputes its day, week and month; a
-- late session recomputes the periods from its day on. A changed period is computed from its own
-- sessions and its users' first days.
{%- set grains = ['day', 'week', 'month'] %}
{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key=['period_grain', 'period_start'],
    on_schema_change='sync_all_columns',
    post_hook="{{ drop_vanished_cells(grains=['day', 'week', 'month']) }}"
) }}

with periods as (
    {{ changed_periods(grains, through_end=true) }}
),

sessions as (
    select user_key, session_date, session_week, session_month
    from {{ ref('fact_voice_ai_sessions') }}
    where session_date in ({{ days_of_periods('select period_grain, period_start from periods') }})
),

-- the first day of each user of those sessions, over every session of the user
first_seen as (
    select user_key, min(session_date) as first_date
    from {{ ref('fact_voice_ai_sessions') }}
    where user_key in (select user_key from sessions)
    group by user_key
),

in_periods as (
    select s.user_key, f.first_date, x.period_grain, x.period_start, x.period_end, p.fingerprint
    from sessions s
    join first_seen f using (user_key)
    cross join lateral (values
        ('day', s.session_date, s.session_date),
        ('week', s.session_week, s.session_week + 6),
        ('month', s.session_month, (s.session_month + interval '1 month' - interval '1 day')::date)
    ) as x (period_grain, period_start, period_end)
    join periods p on p.period_grain = x.period_grain and p.period_start = x.period_start
),

per_user as (
    select period_grain, period_start, period_end, user_key,
           count(*) as sessions,
           min(first_date) >= period_start as is_new,
           max(fingerprint) as fingerprint
    from in_periods
    group by period_grain, period_start, period_end, user_key
)

select
    period_grain::text as period_grain,
    period_start::date as period_start,
    period_end::date as period_end,
    (period_grain || ':' || period_start::text)::text as cell_key,
    sum(sessions) as n_sessions,
    count(*) as active_users,
    count(*) filter (where is_new) as new_users,
    count(*) filter (where not is_new) as returning_users,
    count(*) filter (where not is_new or sessions >= 2) as repeat_users,
    avg(sessions) as sessions_per_user,
    stddev_samp(sessions) as sessions_per_user_sd,
    max(fingerprint) as source_fingerprint,
    {{ definition_checksum() }} as definition_checksum
from per_user
group by period_grain, period_start, period_end
