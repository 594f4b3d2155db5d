{#-
  Float aggregates whose result does not depend on the order rows arrive in.

  A float8 sum, average or standard deviation depends on the order of its inputs in the last
  bits. An incremental build deletes and re-inserts the affected days, so the fact's rows sit in
  another physical order than after a full build, and the same data published figures that
  differed in the 16th digit (tests/e2e/test_faults.py: A, then B, then A again gave another
  fct_error_rate_comparisons than A alone). Accumulating in numeric is exact, so the figures are
  reproducible; the result is cast back to float8, the type the contracts declare.
  Its cost is a few seconds of a run at 1,000,000 sessions (docs/PERFORMANCE.md).
  Integer-valued float8 sums (counts, squares of counts) are exact below 2^53 and need none of this.

  Where every group must be sorted anyway, ``ordered_avg``/``ordered_sum`` are the cheaper way to
  the same reproducibility: float8 accumulation in a fixed order (a unique key within the group)
  gives the same bits whatever the physical order. PostgreSQL sorts the input once by the group
  keys followed by that order (presorted aggregate input), so it costs nothing when the query
  sorts by the group keys already (about half the time of numeric accumulation on the staged
  turns: docs/PERFORMANCE.md).
-#}

{% macro _exact(fn, expr, filter) -%}
    ({{ fn }}(({{ expr }})::numeric){% if filter %} filter (where {{ filter }}){% endif %})::float8
{%- endmacro %}

{% macro exact_avg(expr, filter=none) -%}{{ _exact('avg', expr, filter) }}{%- endmacro %}

{% macro exact_sum(expr, filter=none) -%}{{ _exact('sum', expr, filter) }}{%- endmacro %}

{% macro exact_stddev(expr, filter=none) -%}{{ _exact('stddev_samp', expr, filter) }}{%- endmacro %}

{% macro _ordered(fn, expr, order_by) -%}
    {{ fn }}(({{ expr }})::float8 order by {{ order_by }})
{%- endmacro %}

{% macro ordered_avg(expr, order_by) -%}{{ _ordered('avg', expr, order_by) }}{%- endmacro %}

{% macro ordered_sum(expr, order_by) -%}{{ _ordered('sum', expr, order_by) }}{%- endmacro %}

{#- The mean and the sample standard deviation from exact numeric sums (n, sum of x, sum of x^2),
    for a rollup of exact partial sums: the formulas of PostgreSQL's avg(numeric) and
    stddev_samp(numeric) (numeric.c: numeric_avg, numeric_stddev_internal: N*sumX2 - sumX^2 over
    N*(N-1), 0 when not positive, NULL below two values); cast to float8 like the rest. -#}
{% macro mean_from_sums(n, sum_x) -%}
    (case when {{ n }} > 0 then {{ sum_x }} / {{ n }} end)::float8
{%- endmacro %}

{% macro stddev_from_sums(n, sum_x, sum_x2) -%}
    (case when {{ n }} > 1 then
        sqrt(greatest(({{ n }} * {{ sum_x2 }} - {{ sum_x }} * {{ sum_x }}) / ({{ n }} * ({{ n }} - 1)), 0))
    end)::float8
{%- endmacro %}
