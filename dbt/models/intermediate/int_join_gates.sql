-- One row per source the fact may join (ai_metrics, applications): open when every measurement
-- of that gate in this build's dq_source_validation passed; a gate without any measurement stays
-- closed. fact_voice_ai_sessions reads its join decisions here (macros/incremental.sql,
-- fact_join_gates).
{{ config(materialized='view') }}

select
    g.gate,
    coalesce(bool_and(v.passed), false) as is_open
from (values ('ai_metrics'), ('applications')) as g (gate)
left join {{ ref('dq_source_validation') }} v using (gate)
group by g.gate
