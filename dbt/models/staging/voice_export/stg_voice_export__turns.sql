-- One row per turn: the latest delivered version, typed (SQL in macros/staged_rows.sql), with
-- its session's day (NULL for a turn whose session was never delivered: an orphan, blocked by
-- the relationships test).
-- A table, incremental by session day (macros/incremental.sql): as a view, each of its dozen
-- tests re-ran the latest-version choice over every turn ever delivered (measured at 200,000
-- sessions / 1.1 M turns: 10-17 s per test, most of a daily build). An incremental run reads the
-- raw versions of the affected days' turns, of the turns delivered since the last build, and of
-- the orphans (never many: they block publication).
-- It reads the staged sessions for their days: a deliberate exception to dbt Labs' staging rules
-- (docs/DBT_CONVENTIONS.md).
{{ config(materialized='incremental', incremental_strategy='replace_days', tags=['session_day'], unique_key='turn_id',
          on_schema_change='fail') }}

with sessions as (
    select session_id, session_date from {{ ref('stg_voice_export__sessions') }}
),
{%- if is_incremental() %}
{%- set unbuilt = unbuilt_batch_ids(source('voice_export', 'voice_turns')) %}
{%- set among = candidate_batch_ids(source('voice_export', 'voice_turns'), replaced_rows('session_date'),
                                   'source_batch_id', unbuilt) %}
-- The turns to re-read, by turn id (so that every version of such a turn is read, whichever
-- session it names):
wanted_turns as (
{%- if unbuilt is not none %}
    -- those the last build placed on an affected day or left without a session (an orphan), and
    -- every turn delivered since (macros/incremental.sql, keys_to_reread)
    {{ keys_to_reread('turn_id', source('voice_export', 'voice_turns'), unbuilt) }}
{%- else %}
    -- no build to compare with: every turn with a version in an affected day's session or in a
    -- session never delivered, by one scan of the raw turns with a hash join (an anti-join for the
    -- orphans: NOT IN over a subquery larger than work_mem is evaluated row by row, measured at
    -- minutes on 1.1 M turns).
    select v.turn_id
    from {{ source('voice_export', 'voice_turns') }} v
    left join sessions s using (session_id)
    where s.session_id is null or {{ session_days_predicate('s.session_date') }}
{%- endif %}
),
{%- endif %}
turns as (
    {{ staged_turns(source('voice_export', 'voice_turns'), where=(
        "r.turn_id in (select turn_id from wanted_turns)") if is_incremental() else none,
        among=among if is_incremental() else none) }}
)

select t.*, s.session_date
from turns t
left join sessions s using (session_id)
{%- if is_incremental() %}
where {{ replaced_rows('s.session_date') }}
{%- endif %}
