-- One row per scored session: the Python model's table, the one way dbt reads it.
select
    session_id,
    abandonment_risk,
    cv_fold,
    model_version,
    features_hash
from {{ source('analysis', 'abandonment_session_scores') }}
