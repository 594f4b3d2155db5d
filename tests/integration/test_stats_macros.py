"""The dbt statistics and suppression macros, rendered from dbt/macros with Jinja and evaluated by
the real PostgreSQL server, against independent implementations (scipy, statsmodels, numpy and
the Python suppression rule)."""

from __future__ import annotations

import math
from pathlib import Path

import jinja2
import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

from voice_analytics_dagster.defs.model.privacy import suppress_small_cells

pytestmark = [pytest.mark.integration]

MACROS = Path(__file__).resolve().parents[2] / "dbt" / "macros"


def render(template: str, **variables) -> str:
    """A macro call rendered as dbt would (the project's macro files, var() from ``variables``)."""
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    source = "".join((MACROS / f).read_text()
                     for f in ("wilson.sql", "stats.sql", "suppression.sql", "verdicts.sql", "rounding.sql"))
    return env.from_string(source + template).render(var=lambda name: variables[name]).strip()


@pytest.fixture
def sql(fresh_db):
    with fresh_db.connect(autocommit=True) as conn:
        def run(query, params=None):
            return conn.execute(query, params).fetchall()
        yield run


def test_normal_cdf_and_two_sided_p_match_scipy(sql):
    xs = [-9.0, -5.0, -1.959963984540054, -0.3, 0.0, 0.7, 2.5, 6.0]
    expr = render("{{ normal_cdf('x') }}, {{ normal_two_sided_p('x') }}")
    rows = sql(f"select x, {expr} from unnest(%s::float8[]) as x", (xs,))
    for x, cdf, p in rows:
        assert math.isclose(cdf, stats.norm.cdf(x), rel_tol=1e-12, abs_tol=1e-300), x
        assert math.isclose(p, 2 * stats.norm.sf(abs(x)), rel_tol=1e-12), x  # tails keep their precision


def test_t_quantile_matches_scipy(sql):
    expr = render("{{ t_quantile_975('df') }}")
    rows = sql(f"select df, {expr} from generate_series(1, 300) as df")
    for df, t in rows:
        exact = stats.t.ppf(0.975, df)
        assert abs(t / exact - 1) < (1e-12 if df <= 4 else 1.1e-4 if df < 13 else 1e-6), df
    assert sql("select " + render("{{ t_quantile_975(0) }}"))[0][0] is None


@pytest.mark.parametrize("k,n", [(0, 10), (0, 228), (0, 45), (3, 10), (10, 10), (57, 1196), (1, 2), (500, 1000)])
def test_wilson_matches_statsmodels(sql, k, n):
    expr = render("{{ wilson_low('k', 'n') }}, {{ wilson_high('k', 'n') }}")
    low, high = sql(f"select {expr} from (select %s::int k, %s::int n) t", (k, n))[0]
    expected = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert low == pytest.approx(expected[0], abs=1e-12) and high == pytest.approx(expected[1], abs=1e-12)
    assert low <= k / n <= high  # exactly, also at 0 and n (rounding once put 0 outside)
    if k == 0:
        assert low == 0.0


@pytest.mark.parametrize("k1,n1,k2,n2", [(25, 95, 300, 1101), (5, 15, 60, 259), (0, 20, 3, 40), (40, 50, 10, 50)])
def test_newcombe_matches_statsmodels_and_z_test_matches_proportions_ztest(sql, k1, n1, k2, n2):
    expr = render("{{ newcombe_low('k1', 'n1', 'k2', 'n2') }}, {{ newcombe_high('k1', 'n1', 'k2', 'n2') }}, "
                  "{{ two_proportion_z('k1', 'n1', 'k2', 'n2') }}, {{ normal_two_sided_p(two_proportion_z('k1', 'n1', 'k2', 'n2')) }}")
    low, high, z, p = sql(f"select {expr} from (select %s::int k1, %s::int n1, %s::int k2, %s::int n2) t",
                          (k1, n1, k2, n2))[0]
    expected = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
    assert low == pytest.approx(expected[0], abs=1e-10) and high == pytest.approx(expected[1], abs=1e-10)
    z_ref, p_ref = proportions_ztest([k1, k2], [n1, n2])
    assert z == pytest.approx(z_ref, rel=1e-10) and p == pytest.approx(p_ref, rel=1e-9)


def test_ratio_estimator_interval_takes_the_session_as_unit(sql):
    rng = np.random.default_rng(3)
    x = rng.integers(1, 14, 300)  # turns per session
    y = rng.binomial(x, rng.beta(2, 3, 300))  # error turns, clustered by session
    expr = render("{{ ratio_se('n', 'sx', 'sy', 'sxx', 'sxy', 'syy') }}, "
                  "{{ ratio_ci_low('n', 'sx', 'sy', 'sxx', 'sxy', 'syy') }}, {{ ratio_ci_high('n', 'sx', 'sy', 'sxx', 'sxy', 'syy') }}")
    se, low, high = sql(
        f"""select {expr} from (select count(*) n, sum(x)::float8 sx, sum(y)::float8 sy, sum(x::float8 ^ 2) sxx,
                                       sum(x::float8 * y) sxy, sum(y::float8 ^ 2) syy
                                from unnest(%s::int[], %s::int[]) as t (x, y)) s""",
        (x.tolist(), y.tolist()))[0]
    r = y.sum() / x.sum()
    n = len(x)
    expected_se = math.sqrt(n / (n - 1) * np.sum((y - r * x) ** 2)) / x.sum()
    assert se == pytest.approx(expected_se, rel=1e-9)
    t = stats.t.ppf(0.975, n - 1)
    assert low == pytest.approx(r - t * expected_se, rel=1e-6) and high == pytest.approx(r + t * expected_se, rel=1e-6)
    binomial_se = math.sqrt(r * (1 - r) / x.sum())
    assert se > 1.5 * binomial_se  # the clustered interval is wider, as it must be here


def test_holm_window_matches_statsmodels(sql):
    p = [0.001, 0.04, 0.03, 0.2, 0.012, 0.5, 0.049]
    expr = render("{{ holm_adjusted('p', 'r', 'm') }}")
    rows = sql(f"""with f as (select i, p, row_number() over (order by p, i) r, count(*) over () m
                              from unnest(%s::float8[]) with ordinality as t (p, i))
                   select i, {expr} from f order by i""", (p,))
    np.testing.assert_allclose([r[1] for r in rows], multipletests(p, method="holm")[1], rtol=1e-12)


def test_normal_quantile_matches_scipy(sql):
    ps = [1e-300, 1e-20, 1e-6, 0.0004386, 0.01, 0.025, 0.2, 0.5, 0.6, 0.8, 0.975, 0.999, 1 - 1e-10]
    expr = render("{{ normal_quantile('p') }}")
    for p, z in sql(f"select p, {expr} from unnest(%s::float8[]) as p", (ps,)):
        assert math.isclose(z, stats.norm.ppf(p), rel_tol=1e-14, abs_tol=1e-15), p
    assert sql(f"select {expr} from unnest(array[0, 1, null]::float8[]) as p") == [(None,)] * 3


@pytest.mark.parametrize("k1,n1,k2,n2,m", [(37, 53, 353, 637, 57), (200, 718, 135, 478, 57), (5, 15, 60, 259, 1),
                                           (300, 1101, 25, 95, 16), (0, 20, 3, 40, 3)])
def test_minimum_detectable_difference_matches_statsmodels_power(sql, k1, n1, k2, n2, m):
    """The MDD of two proportions at alpha / m and 80% power is statsmodels' NormalIndPower effect
    size (in SDs of the pooled rate) for these n, times that SD."""
    se = render("{{ two_proportion_null_se('k1', 'n1', 'k2', 'n2') }}")
    mdd = render("{{ minimum_detectable_difference(two_proportion_null_se('k1', 'n1', 'k2', 'n2'), '0.05 / m') }}")
    got_se, got = sql(f"select {se}, {mdd} from (select %s::int k1, %s::int n1, %s::int k2, %s::int n2, %s::int m) t",
                      (k1, n1, k2, n2, m))[0]
    p = (k1 + k2) / (n1 + n2)
    assert got_se == pytest.approx(math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2)), rel=1e-12)
    effect = NormalIndPower().solve_power(effect_size=None, nobs1=n1, alpha=0.05 / m, power=0.8, ratio=n2 / n1)
    # statsmodels also counts the opposite tail's power (below 1e-5 here): the same within 1e-5
    assert got == pytest.approx(effect * math.sqrt(p * (1 - p)), rel=1e-5)
    # ... and from any standard error: NormalIndPower with nobs1 = 2, ratio 1 is the effect per SE
    generic = sql("select " + render("{{ minimum_detectable_difference('0.0123', '0.05') }}"))[0][0]
    assert generic == pytest.approx(0.0123 * NormalIndPower().solve_power(nobs1=2, ratio=1, alpha=0.05, power=0.8), rel=1e-5)


def _verdict_by_hand(p_holm, low, high, margin):
    if p_holm is not None and p_holm < 0.05:
        return "significant"
    if low is not None and -margin <= low and high <= margin:
        return "no meaningful difference"
    return "not tested" if p_holm is None else "not significant, inconclusive"


def test_verdicts_follow_holm_and_the_equivalence_margin(sql):
    """The issue's case first: with disability, experienced digital user, completion 37/53 against
    353/637: gap +14.4 points, 95% CI 0.5 to 25.7, p = 0.042, the smallest p of a family of 57,
    Holm-adjusted 1.0: not significant (the interval that excludes 0 is not a finding),
    inconclusive with its minimum detectable difference stated."""
    k1, n1, k2, n2 = 37, 53, 353, 637
    low, high = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
    _, p = proportions_ztest([k1, k2], [n1, n2])
    family = np.concatenate([[p], np.linspace(0.05, 0.99, 56)])
    p_holm = multipletests(family, method="holm")[1][0]
    assert round(100 * (k1 / n1 - k2 / n2), 1) == 14.4 and round(100 * low, 1) == 0.5 and round(100 * high, 1) == 25.7
    assert round(p, 3) == 0.042 and p_holm == 1.0
    cases = [(p, p_holm, k1 / n1 - k2 / n2, low, high),
             (0.0004, 0.011, 0.08, 0.03, 0.13),            # significant after the correction
             (0.0004, 0.049999, 0.01, 0.004, 0.016),       # significant, and also within the margin
             (0.6, 1.0, 0.007, -0.026, 0.041),             # no meaningful difference
             (0.6, 1.0, 0.007, -0.05, 0.05),               # the margin's bounds are inside
             (0.3, 0.9, 0.02, -0.0500001, 0.04),           # just outside: inconclusive
             (None, None, 0.0, -0.02, 0.02),               # no variation, but a narrow interval
             (None, None, 0.0, -0.2, 0.17),                # no variation, a wide interval
             (None, None, None, None, None)]               # suppressed
    verdict = render("{{ verdict('p_holm', 'low', 'high') }}", equivalence_margin=0.05)
    text = render("{{ verdict_text('p', 'p_holm', 57, 'd', 'low', 'high', 0.2541, \"'not tested: why'\") }}",
                  equivalence_margin=0.05).replace("%", "%%")  # '95% CI', beside query parameters
    rows = sql(f"select {verdict}, {text} from unnest(%s::float8[], %s::float8[], %s::float8[], %s::float8[], %s::float8[])"
               " as t (p, p_holm, d, low, high)", [list(c) for c in zip(*cases, strict=True)])
    assert [v for v, _ in rows] == [_verdict_by_hand(c[1], c[3], c[4], 0.05) for c in cases]
    assert rows[0] == ("not significant, inconclusive",
                       "not significant after Holm's correction over 57 comparisons (p = 0.0422, adjusted = 1.0000); "
                       "inconclusive: differences under 25.5 points cannot be detected with these n")
    assert rows[1][1] == ("significant: +8.0 points (95% CI +3.0 to +13.0; p = 0.0004, Holm-adjusted = 0.0110 "
                          "over 57 comparisons)")
    assert rows[3][1] == ("no meaningful difference: +0.7 points, and its 95% CI (-2.6 to +4.1) lies within the "
                          "equivalence margin of ±5 points (p = 0.6000, Holm-adjusted = 1.0000)")
    assert rows[6][1].startswith("no meaningful difference") and rows[6][1].endswith("±5 points")
    assert rows[7] == rows[8] == ("not tested", "not tested: why")


def test_rounding_macros_match_decimal_rounding(sql):
    """Halves away from zero at 15 significant digits (PostgreSQL's float8 -> numeric), bounds
    outward, p-values to significant digits; the issue's 81.80000000000001 prints as 81.8."""
    from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal

    xs = [81.80000000000001, 0.28448275862068967, -0.07036, 0.00005, -0.00005, 1.0, 0.0, 0.123449999, 0.99995]
    expr = render("{{ rounded('x') }}, {{ rounded_down('x') }}, {{ rounded_up('x') }}, {{ rounded('x', 1) }}, "
                  "{{ rounded_sig('x') }}")
    for x, r4, down, up, r1, sig in sql(f"select x, {expr} from unnest(%s::float8[]) as x", (xs,)):
        d = Decimal(f"{x:.15g}")
        assert r4 == float(d.quantize(Decimal("1e-4"), ROUND_HALF_UP)), x
        assert down == float(d.quantize(Decimal("1e-4"), ROUND_FLOOR)) and up == float(d.quantize(Decimal("1e-4"), ROUND_CEILING)), x
        # outward at the 15 digits PostgreSQL keeps (81.80000000000001 is 81.8000000000000 there)
        assert Decimal(repr(down)) <= d <= Decimal(repr(up)) and down <= r4 <= up
        assert r1 == float(d.quantize(Decimal("1e-1"), ROUND_HALF_UP)), x
        if x:
            assert sig == float(d.quantize(Decimal(1).scaleb(d.adjusted() - 3), ROUND_HALF_UP)), x
    assert sql("select " + render("{{ rounded('81.80000000000001::float8', 1) }}"))[0][0] == 81.8
    sig = render("{{ rounded_sig('p') }}")
    ps = sql(f"select {sig} from unnest(%s::float8[]) as p", ([0.04223113230932282, 3.21234e-11, 1.0, 0.0, None],))
    assert [p for (p,) in ps] == [0.04223, 3.212e-11, 1.0, 0.0, None]


def test_suppression_macro_matches_the_python_rule(sql):
    rng = np.random.default_rng(7)
    keys = [f"c{i:02d}" for i in range(40)]
    sizes = dict(zip(keys, rng.integers(1, 80, 40).tolist(), strict=True))
    fam_a = {k: f"a{i // 4}" for i, k in enumerate(keys)}  # sets of 4
    fam_b = {k: (f"b{i % 5}" if i < 30 else None) for i, k in enumerate(keys)}  # sets of 6, some cells in none
    query = render(
        "with cells as (select * from unnest(%(k)s::text[], %(n)s::int[], %(a)s::text[], %(b)s::text[]) as t (key, n, fa, fb)),"
        " s as ({{ small_cell_suppression('cells', 'key', 'n', ['fa', 'fb'], passes=6) }}) select cell_key, suppression from s",
        min_cell_size=25)
    rows = dict(sql(query, {"k": keys, "n": [sizes[k] for k in keys], "a": [fam_a[k] for k in keys],
                            "b": [fam_b[k] for k in keys]}))
    expected = suppress_small_cells(sizes, [fam_a, fam_b], k=25)
    assert rows == expected
    assert "complementary" in rows.values() and "primary" in rows.values()


def test_column_rules_reports_each_broken_rule_of_each_row(sql):
    """tests/generic/column_rules.sql: one scan, one failing row per (row, broken rule)."""
    source = (MACROS.parent / "tests" / "generic" / "column_rules.sql").read_text()
    source = source.replace("{% test column_rules(", "{% macro column_rules(").replace("{% endtest %}", "{% endmacro %}")

    class Adapter:
        @staticmethod
        def quote(name):
            return f'"{name}"'

    env = jinja2.Environment()
    query = env.from_string(source + "{{ column_rules(model, rules) }}").render(
        adapter=Adapter, model="t",
        rules={"n": "n is not null and n >= 1", "kind": "kind in ('a', 'b')", "x": "x is null or x between 0 and 1"})
    rows = "values (1, 1, 'a', 0.5), (2, 0, 'b', null), (3, null, null, 2), (4, 5, 'it''s', 1)"
    query = query.replace("from t\n", f"from ({rows}) as t (id, n, kind, x)\n")
    got = sorted(sql(f"select column_name, failing_value, rule from ({query}) f"), key=str)
    assert got == sorted([
        ("n", "0", "n is not null and n >= 1"),
        ("n", None, "n is not null and n >= 1"),
        ("kind", None, "kind in ('a', 'b')"),
        ("x", "2", "x is null or x between 0 and 1"),
        ("kind", "it's", "kind in ('a', 'b')"),
    ], key=str)


def test_mean_and_stddev_from_rolled_up_exact_sums_equal_the_direct_aggregates(sql):
    """fct_accessibility_by_segment adds up the exact numeric sums of its finest cells for every
    grouping set: the published mean and standard deviation must be those of avg(numeric) and
    stddev_samp(numeric) over the cell's sessions, to the bit, including a cell of one value
    (no deviation) and a cell of equal values (deviation 0)."""
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    macros = (MACROS / "exact_aggregates.sql").read_text()
    mean = env.from_string(macros + "{{ mean_from_sums('sum(n)', 'sum(sx)') }}").render().strip()
    sd = env.from_string(macros + "{{ stddev_from_sums('sum(n)', 'sum(sx)', 'sum(sx2)') }}").render().strip()
    rng = np.random.default_rng(11)
    a = rng.integers(0, 5, 20_000)
    b = rng.integers(0, 3, 20_000)
    x = rng.random(20_000)
    a, b, x = np.append(a, [9, 8, 8]), np.append(b, [0, 0, 0]), np.append(x, [0.3, 0.7, 0.7])
    data = "select * from unnest(%s::int[], %s::int[], %s::float8[]) as t(a, b, x)"
    sets = "grouping sets ((), (a), (b), (a, b))"
    direct = sql(f"select grouping(a, b), a, b, (avg(x::numeric))::float8, (stddev_samp(x::numeric))::float8 "
                 f"from ({data}) t group by {sets} order by 1, 2, 3", (a.tolist(), b.tolist(), x.tolist()))
    rolled = sql(f"select grouping(a, b), a, b, {mean}, {sd} from ("
                 f"  select a, b, count(x) n, sum(x::numeric) sx, sum(x::numeric * x::numeric) sx2"
                 f"  from ({data}) t group by a, b) c group by {sets} order by 1, 2, 3",
                 (a.tolist(), b.tolist(), x.tolist()))
    assert len(direct) == 5 * 3 + 2 + 5 + 2 + 3 + 1 == len(rolled)
    assert rolled == direct
    assert (9, 0, 0.3, None) in [r[1:] for r in rolled] and (8, 0, 0.7, 0.0) in [r[1:] for r in rolled]
