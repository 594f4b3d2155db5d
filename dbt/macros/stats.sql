{#-
  Statistics as SQL expressions, so that every interval and p-value a dashboard shows is
  computed where the data is (set-based, no Python round trip). Each macro returns an
  expression; NULL whenever the statistic is undefined (empty groups, zero variance).
  tests/integration/test_stats_macros.py renders these macros and checks them against scipy
  and statsmodels on the real PostgreSQL server.
-#}

{#- 97.5% quantile of the standard normal: the z of every 95% interval here. -#}
{% macro z95() -%}1.959963984540054{%- endmacro %}


{#- Standard normal CDF. erfc() is in PostgreSQL since version 16 (the embedded server is 18);
    erfc rather than 1 - erf keeps full relative precision in the tails (tiny p-values). -#}
{% macro normal_cdf(x) -%}
    (0.5 * erfc(-({{ x }})::float8 / sqrt(2.0::float8)))
{%- endmacro %}


{#- Two-sided p-value of a z statistic: 2 (1 - Phi(|z|)) = erfc(|z| / sqrt 2). -#}
{% macro normal_two_sided_p(z) -%}
    erfc(abs(({{ z }})::float8) / sqrt(2.0::float8))
{%- endmacro %}


{#- 97.5% quantile of Student's t with df degrees of freedom (the multiplier of a 95% interval
    of a mean). Exact values for df 1-4; from df 5 the Cornish-Fisher expansion in 1/df to the
    fourth order (Abramowitz & Stegun 26.7.5) with constants for z = 1.95996, whose relative
    error against scipy.stats.t.ppf is below 1.1e-4 at df 5, 6e-6 at df 9 and 1e-6 from df 13. -#}
{% macro t_quantile_975(df) -%}
    case
        when ({{ df }}) is null or ({{ df }}) < 1 then null
        when ({{ df }}) = 1 then 12.706204736174694
        when ({{ df }}) = 2 then 4.302652729749462
        when ({{ df }}) = 3 then 3.1824463052837078
        when ({{ df }}) = 4 then 2.7764451051977934
        else {{ z95() }}
            + 2.372271230298562 / ({{ df }})::float8
            + 2.8224986157396112 / (({{ df }})::float8 ^ 2)
            + 2.555849679507722 / (({{ df }})::float8 ^ 3)
            + 1.5895340533938225 / (({{ df }})::float8 ^ 4)
    end
{%- endmacro %}


{#- 95% t interval of a mean from its n, mean and sample standard deviation (NULL when n < 2). -#}
{% macro mean_ci_low(mean, sd, n) -%}
    case when ({{ n }}) >= 2 then ({{ mean }}) - {{ t_quantile_975('(' ~ n ~ ') - 1') }} * ({{ sd }}) / sqrt(({{ n }})::float8) end
{%- endmacro %}

{% macro mean_ci_high(mean, sd, n) -%}
    case when ({{ n }}) >= 2 then ({{ mean }}) + {{ t_quantile_975('(' ~ n ~ ') - 1') }} * ({{ sd }}) / sqrt(({{ n }})::float8) end
{%- endmacro %}


{#-
  Ratio estimator R = sum(y) / sum(x) over n clusters (here: y error turns and x turns of each
  session), and its linearised (Taylor) standard error with the cluster as the unit:
      SE(R) = sqrt( n / (n - 1) * sum_i (y_i - R x_i)^2 ) / sum(x),
  with sum_i (y_i - R x_i)^2 = syy - 2 R sxy + R^2 sxx, so that it needs only additive sums
  (n, sum x, sum y, sum x^2, sum xy, sum y^2), which groups and strata can add up.
  Turns of one session are not independent (a session with a bad line has many error turns):
  an interval that counts turns as independent trials is too narrow.
-#}
{% macro ratio_se(n, sx, sy, sxx, sxy, syy) -%}
    case when ({{ n }}) >= 2 and ({{ sx }}) > 0 then
        sqrt(greatest(0.0::float8,
            ({{ n }})::float8 / (({{ n }}) - 1)
            * (({{ syy }})::float8
               - 2 * (({{ sy }})::float8 / ({{ sx }})) * ({{ sxy }})
               + (({{ sy }})::float8 / ({{ sx }})) ^ 2 * ({{ sxx }}))
        )) / ({{ sx }})::float8
    end
{%- endmacro %}

{#- 95% interval of a ratio estimator (t with n - 1 degrees of freedom), clipped to [0, 1] for proportions;
    NULL without a denominator (greatest/least skip a NULL: the clip alone would read as 0 and 1). -#}
{% macro ratio_ci_low(n, sx, sy, sxx, sxy, syy) -%}
    case when ({{ sx }}) > 0 then greatest(0.0::float8, ({{ sy }})::float8 / nullif(({{ sx }}), 0)
        - {{ t_quantile_975('(' ~ n ~ ') - 1') }} * {{ ratio_se(n, sx, sy, sxx, sxy, syy) }}) end
{%- endmacro %}

{% macro ratio_ci_high(n, sx, sy, sxx, sxy, syy) -%}
    case when ({{ sx }}) > 0 then least(1.0::float8, ({{ sy }})::float8 / nullif(({{ sx }}), 0)
        + {{ t_quantile_975('(' ~ n ~ ') - 1') }} * {{ ratio_se(n, sx, sy, sxx, sxy, syy) }}) end
{%- endmacro %}


{#-
  Newcombe's hybrid score interval (Newcombe 1998, method 10) for a difference of two
  independent proportions p1 - p2 = k1/n1 - k2/n2, from the Wilson limits (l, u) of each:
      low  = (p1 - p2) - sqrt((p1 - l1)^2 + (u2 - p2)^2)
      high = (p1 - p2) + sqrt((u1 - p1)^2 + (p2 - l2)^2)
  Good coverage also near 0 and 1 and for small n, where the Wald interval fails.
-#}
{% macro newcombe_low(k1, n1, k2, n2) -%}
    case when ({{ n1 }}) > 0 and ({{ n2 }}) > 0 then
        (({{ k1 }})::float8 / ({{ n1 }}) - ({{ k2 }})::float8 / ({{ n2 }}))
        - sqrt(
            (({{ k1 }})::float8 / ({{ n1 }}) - {{ wilson_low(k1, n1) }}) ^ 2
            + ({{ wilson_high(k2, n2) }} - ({{ k2 }})::float8 / ({{ n2 }})) ^ 2
        )
    end
{%- endmacro %}

{% macro newcombe_high(k1, n1, k2, n2) -%}
    case when ({{ n1 }}) > 0 and ({{ n2 }}) > 0 then
        (({{ k1 }})::float8 / ({{ n1 }}) - ({{ k2 }})::float8 / ({{ n2 }}))
        + sqrt(
            ({{ wilson_high(k1, n1) }} - ({{ k1 }})::float8 / ({{ n1 }})) ^ 2
            + (({{ k2 }})::float8 / ({{ n2 }}) - {{ wilson_low(k2, n2) }}) ^ 2
        )
    end
{%- endmacro %}


{#- z statistic of the pooled two-proportion test of k1/n1 against k2/n2 (NULL when the pooled
    proportion is 0 or 1: no variance, nothing to test). -#}
{% macro two_proportion_z(k1, n1, k2, n2) -%}
    case when ({{ n1 }}) > 0 and ({{ n2 }}) > 0
              and ({{ k1 }}) + ({{ k2 }}) > 0 and ({{ k1 }}) + ({{ k2 }}) < ({{ n1 }}) + ({{ n2 }}) then
        (({{ k1 }})::float8 / ({{ n1 }}) - ({{ k2 }})::float8 / ({{ n2 }}))
        / sqrt(
            (({{ k1 }}) + ({{ k2 }}))::float8 / (({{ n1 }}) + ({{ n2 }}))
            * (1 - (({{ k1 }}) + ({{ k2 }}))::float8 / (({{ n1 }}) + ({{ n2 }})))
            * (1.0 / ({{ n1 }}) + 1.0 / ({{ n2 }}))
        )
    end
{%- endmacro %}


{#- Holm's step-down adjustment of the p-values of one family (Holm 1979): with the family's m
    p-values sorted ascending, p_(i) adjusted = min(1, max over j <= i of (m - j + 1) p_(j)).
    A window expression over rows that already carry their rank in the family (1 = smallest p,
    ties broken by a key) and the family size m (window functions cannot be nested). Rows with a
    NULL p-value are not part of the family: filter them out before ranking. -#}
{% macro holm_adjusted(p, rank, m, partition_by=none) -%}
    least(1.0::float8, max((({{ m }}) - ({{ rank }}) + 1) * ({{ p }})::float8) over (
        {%- if partition_by %}partition by {{ partition_by }} {% endif -%}
        order by {{ rank }} rows between unbounded preceding and current row))
{%- endmacro %}
