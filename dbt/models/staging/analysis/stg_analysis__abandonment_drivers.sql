-- One row per feature of the current abandonment model: the Python model's table, the one way dbt reads it.
select
    model_version,
    trained_at,
    feature,
    feature_kind,
    reference_level,
    feature_mean,
    feature_sd,
    coefficient,
    std_error,
    ci_low,
    ci_high,
    odds_ratio,
    odds_ratio_ci_low,
    odds_ratio_ci_high,
    coefficient_per_unit,
    p_value,
    p_value_adjusted,
    is_significant,
    rank
from {{ source('analysis', 'abandonment_drivers') }}
