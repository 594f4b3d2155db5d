-- One row per turn: the latest delivered version, typed (SQL in macros/staged_rows.sql).
{{ staged_turns(source('voice_export', 'voice_turns')) }}
