{#- Wilson score 95% interval for a proportion k/n (NULL when n = 0). z = 1.959963984540054. -#}
{#- The bounds are clamped to the estimate (the lower bound never exceeds k/n, the upper never
    falls below it): mathematically a no-op, but at k = 0 the formula's rounding gave 1.7e-18 > 0. -#}
{% macro wilson_low(k, n, z=1.959963984540054) -%}
    case when ({{ n }}) > 0 then least(({{ k }})::float8 / ({{ n }}),
        ((({{ k }})::float8 / ({{ n }})) + {{ z }}^2 / (2 * ({{ n }}))
          - {{ z }} * sqrt((({{ k }})::float8 / ({{ n }})) * (1 - ({{ k }})::float8 / ({{ n }})) / ({{ n }}) + {{ z }}^2 / (4 * ({{ n }})^2)))
        / (1 + {{ z }}^2 / ({{ n }})))
    end
{%- endmacro %}

{% macro wilson_high(k, n, z=1.959963984540054) -%}
    case when ({{ n }}) > 0 then greatest(({{ k }})::float8 / ({{ n }}),
        ((({{ k }})::float8 / ({{ n }})) + {{ z }}^2 / (2 * ({{ n }}))
          + {{ z }} * sqrt((({{ k }})::float8 / ({{ n }})) * (1 - ({{ k }})::float8 / ({{ n }})) / ({{ n }}) + {{ z }}^2 / (4 * ({{ n }})^2)))
        / (1 + {{ z }}^2 / ({{ n }})))
    end
{%- endmacro %}

{#- A safe proportion: NULL when the denominator is 0. -#}
{% macro ratio(k, n) -%}
    (({{ k }})::float8 / nullif(({{ n }}), 0))
{%- endmacro %}
