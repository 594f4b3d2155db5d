{#- The user and session attributes whose values and combinations are the segments of
    fct_accessibility_by_segment, and the outcomes it reports a rate of; also the dimensions of its
    day cells (int_accessibility_day_cells). -#}
{% macro accessibility_attributes() -%}
    {{- return(['region', 'has_disability', 'is_first_time_digital_user', 'language']) -}}
{%- endmacro %}

{% macro accessibility_outcomes() -%}
    {{- return([('completion', 'is_completed'), ('abandonment', 'is_abandoned'), ('transfer', 'is_transferred')]) -}}
{%- endmacro %}
