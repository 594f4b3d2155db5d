{#-
  Rounding of the values a person reads in the certified marts (the rule is stated once, in
  models/marts/_verdicts.md, doc block "rounding"). Everything is computed in float8 at full
  precision and rounded once, in the last select of a mart, so no figure is computed from a
  rounded one. Each macro returns a float8 expression, NULL for NULL. float8 -> numeric keeps 15
  significant digits (PostgreSQL's conversion), far beyond the digits kept here.
  tests/integration/test_stats_macros.py checks them against Python's decimal module.
-#}

{#- To `digits` decimals, halves away from zero (PostgreSQL's numeric round). -#}
{% macro rounded(x, digits=4) -%}
    round(({{ x }})::float8::numeric, {{ digits }})::float8
{%- endmacro %}

{#- Interval bounds are rounded outward (the lower one down, the upper one up): with the estimate
    rounded to the same digits, low <= estimate <= high still holds after rounding, and a rounded
    interval never claims more precision than the computed one. -#}
{% macro rounded_down(x, digits=4) -%}
    (floor(({{ x }})::float8::numeric * 1e{{ digits }}) / 1e{{ digits }})::float8
{%- endmacro %}

{% macro rounded_up(x, digits=4) -%}
    (ceil(({{ x }})::float8::numeric * 1e{{ digits }}) / 1e{{ digits }})::float8
{%- endmacro %}

{#- To `digits` significant digits (p-values: 0.04223113 -> 0.04223, 3.2e-11 stays readable). -#}
{% macro rounded_sig(x, digits=4) -%}
    case when ({{ x }}) = 0 then 0::float8 else
        round(({{ x }})::float8::numeric,
              ({{ digits }} - 1 - floor(log(abs(({{ x }})::float8::numeric))))::integer)::float8
    end
{%- endmacro %}
