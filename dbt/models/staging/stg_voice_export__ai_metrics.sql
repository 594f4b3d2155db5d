-- One row per session: the platform's own per-session AI metrics, latest delivered version
-- (SQL in macros/staged_rows.sql).
{{ staged_ai_metrics(source('voice_export', 'voice_ai_metrics')) }}
