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
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint, proportions_ztest

from voice_analytics_dagster.defs.model.privacy import suppress_small_cells

pytestmark = [pytest.mark.integration]

MACROS = Path(__file__).resolve().parents[2] / "dbt" / "macros"


def render(template: str, **variables) -> str:
    """A macro call rendered as dbt would (the project's macro files, var() from ``variables``)."""
    env = jinja2.Environment(extensions=["jinja2.ext.do"])
    source = "".join((MACROS / f).read_text() for f in ("wilson.sql", "stats.sql", "suppression.sql"))
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
