{#- Wilson score 95% interval for a proportion k/n (NULL when n = 0). z = 1.959963984540054. -#}
{% macro wilson_low(k, n, z=1.959963984540054) -%}
    case when ({{ n }}) > 0 then
        ((({{ k }})::float8 / ({{ n }})) + {{ z }}^2 / (2 * ({{ n }}))
          - {{ z }} * sqrt((({{ k }})::float8 / ({{ n }})) * (1 - ({{ k }})::float8 / ({{ n }})) / ({{ n }}) + {{ z }}^2 / (4 * ({{ n }})^2)))
        / (1 + {{ z }}^2 / ({{ n }}))
    end
{%- endmacro %}

{% macro wilson_high(k, n, z=1.959963984540054) -%}
    case when ({{ n }}) > 0 then
        ((({{ k }})::float8 / ({{ n }})) + {{ z }}^2 / (2 * ({{ n }}))
          + {{ z }} * sqrt((({{ k }})::float8 / ({{ n }})) * (1 - ({{ k }})::float8 / ({{ n }})) / ({{ n }}) + {{ z }}^2 / (4 * ({{ n }})^2)))
        / (1 + {{ z }}^2 / ({{ n }}))
    end
{%- endmacro %}

{#- A safe proportion: NULL when the denominator is 0. -#}
{% macro ratio(k, n) -%}
    (({{ k }})::float8 / nullif(({{ n }}), 0))
{%- endmacro %}
