"""Statistical analysis that SQL cannot do well: the abandonment model (features.py, abandonment.py),
small-cell suppression of its aggregated outputs (privacy.py), reading and writing the warehouse
(store.py) and the HTML report (report.py). Pure functions wherever possible; the Dagster assets
in ``voice_analytics_dagster/assets/`` only wire them to the warehouse."""
