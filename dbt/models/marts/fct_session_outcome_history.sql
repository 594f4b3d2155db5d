-- One row per version of a session's outcome (snapshots/session_outcome_snapshot.sql): what the
-- certified fact said about the session from valid_from until valid_to (NULL: still current).
-- A session has several rows when a later delivery changed its outcome or its turns.
-- Incremental: a build rewrites the versions of the sessions whose snapshot rows changed since the
-- history was last built (a version opened or closed at a later time than any the history holds;
-- the snapshot stamps both with its own run's time), with dbt's delete+insert on session_id.
{{ config(materialized='incremental', incremental_strategy='delete+insert', unique_key='session_id',
          on_schema_change='fail') }}

with snapshot as (
    select * from {{ ref('session_outcome_snapshot') }}
    {%- if is_incremental() %}
    where session_id in (
        select session_id from {{ ref('session_outcome_snapshot') }}
        where greatest(dbt_valid_from, dbt_valid_to)::timestamptz
              > (select coalesce(max(greatest(valid_from, valid_to)), '-infinity') from {{ this }})
    )
    {%- endif %}
)

select
    session_id::text as session_id,
    session_date::date as session_date,
    final_outcome::text as final_outcome,
    is_completed,
    is_abandoned,
    is_transferred,
    transfer_reason::text as transfer_reason,
    turn_count::integer as turn_count,
    error_turn_count::integer as error_turn_count,
    avg_asr_confidence::float8 as avg_asr_confidence,
    avg_intent_confidence::float8 as avg_intent_confidence,
    turn_duration_sec_total::float8 as turn_duration_sec_total,
    last_source_batch_id::bigint as last_source_batch_id,
    dbt_valid_from::timestamptz as valid_from,
    dbt_valid_to::timestamptz as valid_to,
    (dbt_valid_to is null) as is_current,
    (row_number() over (partition by session_id order by dbt_valid_from))::integer as version
from snapshot
