-- One row per session left out of the fact, with the broken rules: the certified view of
-- int_session_exclusions (no personal data: session ids and days only).
select
    session_id::text as session_id,
    session_date::date as session_date,
    exclusion_reason::text as exclusion_reason,
    reason_count::integer as reason_count
from {{ ref('int_session_exclusions') }}
