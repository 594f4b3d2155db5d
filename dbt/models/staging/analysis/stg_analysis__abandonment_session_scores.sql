-- One row per scored session: the Python model's table, the one way dbt reads it.
-- A table, not a view: the model step drops and recreates its tables on every run, which a view
-- on them would forbid.
select
    session_id,
    abandonment_risk,
    cv_fold,
    model_version
from {{ source('analysis', 'abandonment_session_scores') }}
