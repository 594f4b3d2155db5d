-- One row per user: the latest delivered version, with the user id replaced by a keyed hash.
{{ config(materialized='table') }}

with latest as (
    {{ latest_version(source('voice_export', 'users'), 'user_id') }}
)

select
    {{ anonymise('user_id') }} as user_key,
    region,
    disability_flag as has_disability,
    first_time_digital_user as is_first_time_digital_user,
    _batch_id as source_batch_id
from latest
