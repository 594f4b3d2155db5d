-- One row per session day of the certified fact: its sessions and a fingerprint of their rows.
-- The fingerprint is the XOR of every row's 64-bit hash (hash_record_extended over the whole
-- row), so it changes when a session of the day is added, removed or changed in any column, and a
-- period's fingerprint is the XOR of its days'. The cell models (int_session_day_cells,
-- int_efficiency_period_cells) recompute only the days and periods whose fingerprint differs
-- from the one they were built from: work proportional to what changed, whoever changed the fact
-- and however many runs ago (docs/INCREMENTAL.md, "Marts"). A table, rebuilt whole: one scan of
-- the fact's rows, with no sort.
select
    f.session_date::date as session_date,
    count(*)::bigint as n_sessions,
    bit_xor(hash_record_extended(f, 0))::bigint as fingerprint
from {{ ref('fact_voice_ai_sessions') }} f
group by f.session_date
