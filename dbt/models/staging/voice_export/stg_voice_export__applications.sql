-- One row per service application: latest delivered version, user anonymised.
{{ config(materialized='table') }}

with latest as (
    {{ latest_version(source('voice_export', 'applications'), 'application_id') }}
)

select
    application_id,
    session_id,
    {{ anonymise('user_id') }} as user_key,
    service_code,
    channel,
    status,
    time_to_submit_sec,
    submitted_at as submitted_date,
    _batch_id as source_batch_id
from latest
