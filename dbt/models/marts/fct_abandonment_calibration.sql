-- One row per decile of out-of-fold abandonment risk: the certified copy that BI reads.
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
from {{ ref('stg_analysis__abandonment_calibration') }}
