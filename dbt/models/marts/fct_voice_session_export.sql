-- One row per valid session: the certified fact, plus the abandonment model's out-of-fold risk
-- score, for BI tools (Metabase) that want one wide table to filter and chart.
with scores as (
    select session_id, abandonment_risk, model_version
    from {{ source('analysis', 'abandonment_session_scores') }}
)

select
    f.*,
    s.abandonment_risk::float8 as abandonment_risk,
    (case when s.abandonment_risk is not null then
        ntile(10) over (partition by s.abandonment_risk is not null order by s.abandonment_risk, f.session_id)
    end)::integer as abandonment_risk_decile,
    s.model_version::text as abandonment_risk_model_version
from {{ ref('fact_voice_ai_sessions') }} f
left join scores s using (session_id)
