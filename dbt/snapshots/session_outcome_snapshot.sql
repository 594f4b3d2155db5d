{#-
  History of every session's outcome: a new version whenever a later delivery changes what the
  fact says about the session (a late turn, a corrected outcome). Check strategy on the columns
  that such a delivery can change; the load-batch lineage is left out on purpose, so that the
  same content delivered again adds no version.

  On an incremental run only the affected days' sessions are compared (the other days' rows
  did not change); sessions that disappear are left as they are (hard deletes are ignored).
  A full refresh does not touch a snapshot: the history survives it.
-#}
{% snapshot session_outcome_snapshot %}
{{ config(
    target_schema='snapshots',
    unique_key='session_id',
    strategy='check',
    check_cols=['final_outcome', 'transfer_reason', 'turn_count', 'error_turn_count',
                'avg_asr_confidence', 'avg_intent_confidence', 'turn_duration_sec_total'],
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
