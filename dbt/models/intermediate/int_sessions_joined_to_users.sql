-- One row per session whose user was delivered: the staged session with its caller's attributes
-- (region, disability, first-time digital user). A view: fact_voice_ai_sessions reads the
-- affected days' sessions through it, and PostgreSQL applies that filter to the staged sessions
-- before the join, as when the fact joined the two itself.
{{ config(materialized='view') }}

select
    s.*,
    u.region,
    u.has_disability,
    u.is_first_time_digital_user
from {{ ref('stg_voice_export__sessions') }} s
join {{ ref('stg_voice_export__users') }} u using (user_key)
