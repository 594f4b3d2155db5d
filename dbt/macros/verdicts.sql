{#-
  Verdicts a manager cannot misread: every gap or difference BI shows carries, in the same row,
  its multiplicity-adjusted p-value and one of three verdicts in words (doc block "verdicts" in
  models/marts/_verdicts.md states the rule). The pieces are SQL expressions like stats.sql's,
  checked against scipy and statsmodels in tests/integration/test_stats_macros.py.
-#}

{#- A polynomial sum c_i x^i in Horner's form, ((c_n x + c_(n-1)) x + ...) x + c_0. -#}
{% macro _horner(coefficients, x) -%}
    {%- set ns = namespace(expr='%.20e' % coefficients[-1]) -%}
    {%- for c in coefficients[:-1] | reverse -%}
        {%- set ns.expr = '(' ~ ns.expr ~ ') * (' ~ x ~ ') + ' ~ ('%.20e' % c) -%}
    {%- endfor -%}
    {{ ns.expr }}
{%- endmacro %}


{#- Quantile of the standard normal (inverse CDF) for 0 < p < 1, NULL outside: Wichura's
    algorithm AS 241 (PPND16, Applied Statistics 37, 1988), relative error about 1e-16. PostgreSQL
    has no built-in; the multiplier of a test at level alpha / m (Holm's first threshold) needs it.
    A scalar subquery so that p is evaluated once. -#}
{% macro normal_quantile(p) -%}
    (select case
        when q.p is null or q.p <= 0 or q.p >= 1 then null
        when abs(q.q) <= 0.425 then
            q.q * ({{ _horner([3.3871328727963666080e0, 1.3314166789178437745e+2, 1.9715909503065514427e+3,
                               1.3731693765509461125e+4, 4.5921953931549871457e+4, 6.7265770927008700853e+4,
                               3.3430575583588128105e+4, 2.5090809287301226727e+3], 'q.r1') }})
                / ({{ _horner([1.0, 4.2313330701600911252e+1, 6.8718700749205790830e+2, 5.3941960214247511077e+3,
                               2.1213794301586595867e+4, 3.9307895800092710610e+4, 2.8729085735721942674e+4,
                               5.2264952788528545610e+3], 'q.r1') }})
        else sign(q.q) * case
            when q.r2 <= 5 then
                ({{ _horner([1.42343711074968357734e0, 4.63033784615654529590e0, 5.76949722146069140550e0,
                             3.64784832476320460504e0, 1.27045825245236838258e0, 2.41780725177450611770e-1,
                             2.27238449892691845833e-2, 7.74545014278341407640e-4], 'q.r2 - 1.6') }})
                / ({{ _horner([1.0, 2.05319162663775882187e0, 1.67638483018380384940e0, 6.89767334985100004550e-1,
                               1.48103976427480074590e-1, 1.51986665636164571966e-2, 5.47593808499534494600e-4,
                               1.05075007164441684324e-9], 'q.r2 - 1.6') }})
            else
                ({{ _horner([6.65790464350110377720e0, 5.46378491116411436990e0, 1.78482653991729133580e0,
                             2.96560571828504891230e-1, 2.65321895265761230930e-2, 1.24266094738807843860e-3,
                             2.71155556874348757815e-5, 2.01033439929228813265e-7], 'q.r2 - 5') }})
                / ({{ _horner([1.0, 5.99832206555887937690e-1, 1.36929880922735805310e-1, 1.48753612908506148525e-2,
                               7.86869131145613259100e-4, 1.84631831751005468180e-5, 1.42151175831644588870e-7,
                               2.04426310338993978564e-15], 'q.r2 - 5') }})
            end
    end
    from (select p, p - 0.5 as q, 0.180625 - (p - 0.5) ^ 2 as r1,
                 case when p > 0 and p < 1 and abs(p - 0.5) > 0.425 then sqrt(-ln(least(p, 1 - p))) end as r2
          from (select ({{ p }})::float8 as p) i) q)
{%- endmacro %}


{#- Minimum detectable difference: the smallest true difference that a two-sided z-test at level
    alpha finds with the given power, (z_(1 - alpha/2) + z_power) * se, where se is the standard
    error of the estimated difference (Cohen 1988; statsmodels' NormalIndPower solves the same
    equation, counting also the opposite tail, which adds under 1e-5 at 80% power). -#}
{% macro minimum_detectable_difference(se, alpha=0.05, power=0.8) -%}
    (({{ normal_quantile('1 - (' ~ alpha ~ ') / 2.0') }} + {{ normal_quantile(power) }}) * ({{ se }}))
{%- endmacro %}


{#- Standard error of k1/n1 - k2/n2 under "no difference": the pooled rate's binomial variance
    (the denominator of two_proportion_z; NULL when the pooled rate is 0 or 1). -#}
{% macro two_proportion_null_se(k1, n1, k2, n2) -%}
    case when ({{ n1 }}) > 0 and ({{ n2 }}) > 0
              and ({{ k1 }}) + ({{ k2 }}) > 0 and ({{ k1 }}) + ({{ k2 }}) < ({{ n1 }}) + ({{ n2 }}) then
        sqrt(
            (({{ k1 }}) + ({{ k2 }}))::float8 / (({{ n1 }}) + ({{ n2 }}))
            * (1 - (({{ k1 }}) + ({{ k2 }}))::float8 / (({{ n1 }}) + ({{ n2 }})))
            * (1.0 / ({{ n1 }}) + 1.0 / ({{ n2 }}))
        )
    end
{%- endmacro %}


{#- The verdict of a difference (on the proportion scale) in words, decided at full precision:
      significant                    Holm-adjusted p < alpha;
      no meaningful difference       otherwise, when the whole 95% interval lies within
                                     +-var('equivalence_margin') (two one-sided tests, TOST);
      not significant, inconclusive  otherwise, when it was tested;
      not tested                     no p-value (suppressed cell, no variation) and no equivalence. -#}
{% macro verdict(p_adjusted, ci_low, ci_high, alpha=0.05) -%}
    case
        when ({{ p_adjusted }}) < {{ alpha }} then 'significant'
        when ({{ ci_low }}) >= -{{ var('equivalence_margin') }} and ({{ ci_high }}) <= {{ var('equivalence_margin') }}
            then 'no meaningful difference'
        when ({{ p_adjusted }}) is not null then 'not significant, inconclusive'
        else 'not tested'
    end
{%- endmacro %}


{#- A proportion as signed percentage points with one decimal (0.144 -> '+14.4'). -#}
{% macro points_text(x) -%}
    to_char(100 * ({{ x }})::numeric, 'FMS990.0')
{%- endmacro %}

{#- A p-value for a sentence: four decimals, or '< 0.0001'. -#}
{% macro p_text(p) -%}
    case when ({{ p }}) < 0.0001 then '< 0.0001' else '= ' || to_char(({{ p }})::numeric, 'FM0.0000') end
{%- endmacro %}


{#- The verdict as one sentence that starts with the verdict's words and states its evidence:
    the difference and interval (significant, no meaningful difference), the adjusted p-value and
    the family, and for an inconclusive result the minimum detectable difference (rounded up, as
    published). ``not_tested`` is the sentence of a row without a test (the caller knows why). -#}
{% macro verdict_text(p, p_adjusted, family_size, estimate, ci_low, ci_high, mdd, not_tested, alpha=0.05) -%}
    case {{ verdict(p_adjusted, ci_low, ci_high, alpha) }}
        when 'significant' then
            'significant: ' || {{ points_text(estimate) }} || ' points (95% CI ' || {{ points_text(ci_low) }}
            || ' to ' || {{ points_text(ci_high) }} || '; p ' || {{ p_text(p) }} || ', Holm-adjusted '
            || {{ p_text(p_adjusted) }} || ' over ' || ({{ family_size }}) || ' comparisons)'
        when 'no meaningful difference' then
            'no meaningful difference: ' || {{ points_text(estimate) }} || ' points, and its 95% CI ('
            || {{ points_text(ci_low) }} || ' to ' || {{ points_text(ci_high) }} || ') lies within the equivalence margin of ±'
            || '{{ "%g" % (100 * var("equivalence_margin") | float) }} points'
            || coalesce(' (p ' || {{ p_text(p) }} || ', Holm-adjusted ' || {{ p_text(p_adjusted) }} || ')', '')
        when 'not significant, inconclusive' then
            'not significant after Holm''s correction over ' || ({{ family_size }}) || ' comparisons (p '
            || {{ p_text(p) }} || ', adjusted ' || {{ p_text(p_adjusted) }} || '); inconclusive: differences under '
            || to_char(ceil(1000 * ({{ mdd }})::numeric) / 10, 'FM990.0') || ' points cannot be detected with these n'
        else {{ not_tested }}
    end
{%- endmacro %}
