-- One row per decile of out-of-fold abandonment risk: the Python model's table, the one way dbt reads it.
select
    model_version,
    bin,
    suppressed,
    suppression,
    n_sessions,
    events,
    mean_predicted,
    observed_rate,
    observed_ci_low,
    observed_ci_high,
    min_predicted,
    max_predicted
from {{ source('analysis', 'abandonment_calibration') }}
