-- One row per period (every month and the whole span) and application channel (voice, web,
-- ussd, and all channels): the channel mix and the completion of applications by channel, from
-- the applications alone (their links to sessions and users are not trustworthy: see docs);
-- rounded for reading (doc block rounding).
with applications as (
    select channel, status, submitted_date, date_trunc('month', submitted_date)::date as submitted_month
    from {{ ref('stg_voice_export__applications') }}
),

bounds as (
    select min(submitted_date) as first_day, max(submitted_date) as last_day from applications
),

in_cells as (
    select a.status, p.period_grain, p.period_start, p.period_end, c.channel
    from applications a
    cross join bounds b
    cross join lateral (values
        ('overall', b.first_day, b.last_day),
        ('month', a.submitted_month, (a.submitted_month + interval '1 month' - interval '1 day')::date)
    ) as p (period_grain, period_start, period_end)
    cross join lateral (values (a.channel), ('all')) as c (channel)
),

cells as (
    select
        period_grain, period_start, period_end, channel,
        period_grain || ':' || period_start::text || ':' || channel as cell_key,
        count(*) as n_applications,
        count(*) filter (where status = 'completed') as completed_applications,
        count(*) filter (where status = 'abandoned') as abandoned_applications,
        count(*) filter (where status = 'failed') as failed_applications,
        -- the channels of a period partition its 'all' row; the months of a channel partition
        -- its overall row
        case when channel <> 'all' then period_grain || ':' || period_start::text end as within_period,
        case when period_grain = 'month' then channel end as across_months
    from in_cells
    group by period_grain, period_start, period_end, channel
),

suppression as (
    {{ small_cell_suppression('cells', 'cell_key', 'n_applications', ['within_period', 'across_months']) }}
),

published as (
    select
        c.*, s.suppressed, s.suppression,
        t.n_applications as period_applications, ts.suppressed as period_suppressed
    from cells c
    join suppression s on s.cell_key = c.cell_key
    join cells t on t.period_grain = c.period_grain and t.period_start = c.period_start and t.channel = 'all'
    join suppression ts on ts.cell_key = t.cell_key
)

select
    period_grain::text as period_grain,
    period_start::date as period_start,
    period_end::date as period_end,
    channel::text as channel,
    suppressed,
    suppression::text as suppression,
    case when not suppressed then n_applications end::bigint as n_applications,
    case when not suppressed and not period_suppressed then period_applications end::bigint as period_applications,
    case when not suppressed and not period_suppressed then {{ rounded(ratio('n_applications', 'period_applications')) }} end
        as channel_share,
    case when not suppressed and not period_suppressed then {{ rounded_down(wilson_low('n_applications', 'period_applications')) }} end
        as channel_share_ci_low,
    case when not suppressed and not period_suppressed then {{ rounded_up(wilson_high('n_applications', 'period_applications')) }} end
        as channel_share_ci_high,
    case when not suppressed then completed_applications end::bigint as completed_applications,
    case when not suppressed then abandoned_applications end::bigint as abandoned_applications,
    case when not suppressed then failed_applications end::bigint as failed_applications,
    case when not suppressed then {{ rounded(ratio('completed_applications', 'n_applications')) }} end as completion_rate,
    case when not suppressed then {{ rounded_down(wilson_low('completed_applications', 'n_applications')) }} end as completion_rate_ci_low,
    case when not suppressed then {{ rounded_up(wilson_high('completed_applications', 'n_applications')) }} end as completion_rate_ci_high,
    {{ var('min_cell_size') }}::integer as min_cell_size
from published
