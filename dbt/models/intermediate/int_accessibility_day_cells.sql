-- One row per session day and combination of the segment attributes (region, disability,
-- first-time digital user, language; NULL where not recorded): sessions, sessions by outcome, and
-- the exact sums (numeric) of the mean ASR and intent confidences and of their squares. The
-- finest cells of fct_accessibility_by_segment, per day: numeric sums add up exactly, so every
-- segment's figures over the whole span are its days' cells added up. Incremental by fingerprint
-- (macros/cells.sql): only the days whose fact rows changed are recomputed.
{{ config(
    materialized='incremental', incremental_strategy='delete+insert', unique_key='session_date',
    on_schema_change='sync_all_columns',
    post_hook="{{ drop_vanished_cells(day_column='session_date') }}"
) }}
{%- set attributes = accessibility_attributes() %}
{%- set f_attributes = [] %}
{%- for a in attributes %}{% do f_attributes.append('f.' ~ a) %}{% endfor %}

with days as (
    {{ changed_days() }}
)

select
    f.session_date::date as session_date,
    {%- for a in attributes %}
    f.{{ a }},
    {%- endfor %}
    row(f.session_date, {{ f_attributes | join(', ') }})::text as cell_key,
    count(*)::bigint as n_sessions,
    {%- for name, flag in accessibility_outcomes() %}
    count(*) filter (where f.{{ flag }})::bigint as {{ name }}_sessions,
    {%- endfor %}
    {%- for m in ['avg_asr_confidence', 'avg_intent_confidence'] %}
    count(f.{{ m }})::bigint as {{ m }}_n,
    sum(f.{{ m }}::numeric) as {{ m }}_sum,
    sum(f.{{ m }}::numeric * f.{{ m }}::numeric) as {{ m }}_sum2,
    {%- endfor %}
    max(d.fingerprint) as source_fingerprint,
    {{ definition_checksum() }} as definition_checksum
from {{ ref('fact_voice_ai_sessions') }} f
join days d using (session_date)
group by f.session_date, {{ f_attributes | join(', ') }}
