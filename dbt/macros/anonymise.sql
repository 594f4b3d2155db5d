{#-
  Keyed hash (HMAC-SHA256) of a personal identifier, truncated to 128 bits.

  The key never appears in SQL, manifests or logs: the pipeline derives HMAC's inner and outer
  padded keys from VOICE_ANALYTICS_HASH_KEY and hands them to this dbt process's connections
  as session settings (libpq PGOPTIONS; see voice_analytics_dagster/dbt_env.py). Without them
  current_setting() fails, so a model can never fall back to an unkeyed hash.
  HMAC(K, m) = H((K xor opad) || H((K xor ipad) || m)), built from PostgreSQL's sha256().
-#}
{% macro anonymise(column) -%}
    left(encode(sha256(
        decode(current_setting('voice_analytics.hmac_outer'), 'hex')
        || sha256(decode(current_setting('voice_analytics.hmac_inner'), 'hex') || convert_to({{ column }}, 'UTF8'))
    ), 'hex'), 32)
{%- endmacro %}
