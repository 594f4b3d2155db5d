{#- Use the configured schema as-is (staging, intermediate, marts), not <target>_<custom>:
    each environment has its own database, so prefixes would only obscure the layout. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
