-- One row per valid session: the certified fact, plus the abandonment model's out-of-fold risk
-- score, for BI tools (Metabase) that want one wide table to filter and chart.
-- The deciles are ranked on the narrow scored rows, then joined to the wide fact: ranking the
-- joined rows sorted every column of the fact.
with scores as (
    select
        s.session_id,
        s.abandonment_risk,
        s.model_version,
        case when s.abandonment_risk is not null then
            ntile(10) over (partition by s.abandonment_risk is not null order by s.abandonment_risk, s.session_id)
        end as abandonment_risk_decile
    from {{ ref('stg_analysis__abandonment_session_scores') }} s
    -- ranked among the sessions of the fact only, as the export's rows are
    where s.session_id in (select session_id from {{ ref('fact_voice_ai_sessions') }})
)

select
    f.*,
    s.abandonment_risk::float8 as abandonment_risk,
    s.abandonment_risk_decile::integer as abandonment_risk_decile,
    s.model_version::text as abandonment_risk_model_version
from {{ ref('fact_voice_ai_sessions') }} f
left join scores s using (session_id)
