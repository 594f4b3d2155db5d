{#-
  History of every session's outcome: a new version whenever a later delivery changes what the
  fact says about the session (a late turn, a corrected outcome). Check strategy on the columns
  that such a delivery can change; the load-batch lineage is left out on purpose, so that the
  same content delivered again adds no version.

  On an incremental run only the affected days' sessions are compared (the other days' rows
  did not change). A session the certified fact no longer holds (an export folder that replaced
  the data without it) has its current version closed by the post-hook: dbt's own
  hard_deletes='invalidate' would also close every session of the days this build did not
  compare, because the snapshot's query selects the rebuilt days only.
  A full refresh does not touch a snapshot: the history survives it.
-#}
{% snapshot session_outcome_snapshot %}
{{ config(
    target_schema='snapshots',
    unique_key='session_id',
    strategy='check',
    tags=['session_day'],
    check_cols=['final_outcome', 'transfer_reason', 'turn_count', 'error_turn_count',
                'avg_asr_confidence', 'avg_intent_confidence', 'turn_duration_sec_total'],
    post_hook="update {{ this }} s set dbt_valid_to = now()::timestamp where s.dbt_valid_to is null
               and not exists (select 1 from {{ ref('fact_voice_ai_sessions') }} f where f.session_id = s.session_id)",
) }}
select
    session_id,
    session_date,
    final_outcome,
    is_completed,
    is_abandoned,
    is_transferred,
    transfer_reason,
    turn_count,
    error_turn_count,
    avg_asr_confidence,
    avg_intent_confidence,
    turn_duration_sec_total,
    last_source_batch_id
from {{ ref('fact_voice_ai_sessions') }}
{%- if execute and not flags.FULL_REFRESH and rebuild_days_known() %}
where {{ session_days_predicate('session_date') }}
{%- endif %}
{% endsnapshot %}
