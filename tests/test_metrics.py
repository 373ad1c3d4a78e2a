"""The pass@k family of metrics against their closed forms and against brute-force enumeration of every
k-subset of a small set of samples, the Bayesian posterior against hand-computed Beta moments, and the
crossover of two constructed curves."""

from __future__ import annotations

import itertools
import math

import pytest

from spurisweep import metrics


def _subsets(n: int, c: int, k: int) -> list[int]:
    """Correct answers in every k-subset of n samples whose first c are correct."""
    return [sum(i < c for i in sub) for sub in itertools.combinations(range(n), k)]


@pytest.mark.parametrize("n", [1, 2, 5, 7])
def test_pass_at_k_curve_equals_brute_force_and_the_closed_form(n):
    for c in range(n + 1):
        curve = metrics.pass_at_k_curve(n, c)
        assert len(curve) == n
        for k in range(1, n + 1):
            hits = _subsets(n, c, k)
            brute = sum(h > 0 for h in hits) / len(hits)
            closed = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert curve[k - 1] == pytest.approx(brute, abs=1e-12)
            assert curve[k - 1] == pytest.approx(closed, abs=1e-12)
            assert curve[k - 1] == pytest.approx(metrics.pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_curve_stays_exact_at_256_samples():
    """The recurrence against exact rational arithmetic where the binomials are ~1e75."""
    curve = metrics.pass_at_k_curve(256, 3)
    for k in (1, 2, 17, 128, 253, 254):
        exact = 1 - math.comb(253, k) / math.comb(256, k)
        assert curve[k - 1] == pytest.approx(exact, rel=1e-12)
    assert curve[-1] == 1.0 and curve[0] == pytest.approx(3 / 256)


def test_pass_at_k_curves_average_problems_up_to_the_fewest_samples():
    counts = [(4, 1), (4, 4), (6, 0)]
    curves = metrics.pass_at_k_curves(counts)
    assert len(curves) == 4
    for k in range(1, 5):
        want = sum(metrics.pass_at_k(n, c, k) for n, c in counts) / 3
        assert curves[k - 1] == pytest.approx(want)
    assert metrics.pass_at_k_curves([]) == []


@pytest.mark.parametrize("n", [3, 6])
@pytest.mark.parametrize("tau", [0.25, 0.5, 0.75, 1.0])
def test_g_pass_at_k_equals_brute_force(n, tau):
    for c in range(n + 1):
        for k in range(1, n + 1):
            hits = _subsets(n, c, k)
            need = math.ceil(tau * k)
            brute = sum(h >= max(1, need) for h in hits) / len(hits)
            assert metrics.g_pass_at_k(n, c, k, tau) == pytest.approx(brute, abs=1e-12)


def test_g_pass_at_k_reduces_to_pass_at_k_and_to_all_correct():
    n, c = 8, 3
    for k in range(1, n + 1):
        assert metrics.g_pass_at_k(n, c, k, 1 / (2 * k)) == pytest.approx(metrics.pass_at_k(n, c, k))
    # tau = 1: all k draws correct, C(c, k) / C(n, k)
    assert metrics.g_pass_at_k(n, c, 2, 1.0) == pytest.approx(math.comb(3, 2) / math.comb(8, 2))
    with pytest.raises(ValueError):
        metrics.g_pass_at_k(4, 2, 2, 0.0)


def test_mg_pass_at_k_is_the_mean_of_the_upper_taus():
    n, c, k = 10, 6, 4
    want = 2 / 4 * (metrics.g_pass_at_k(n, c, k, 3 / 4) + metrics.g_pass_at_k(n, c, k, 1.0))
    assert metrics.mg_pass_at_k(n, c, k) == pytest.approx(want)
    assert metrics.mg_pass_at_k(n, n, k) == pytest.approx(1.0)  # always right: the whole area
    assert metrics.mg_pass_at_k(n, 0, k) == 0.0


def test_posterior_of_one_problem_is_the_beta_posterior():
    """Beta(1 + c, 1 + n - c): mean (c + 1) / (n + 2), variance ab / ((a + b)^2 (a + b + 1))."""
    post = metrics.posterior([(8, 6)])
    a, b = 7, 3
    assert post.mean == pytest.approx(a / (a + b))
    assert post.sd == pytest.approx(math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1))))
    assert post.lo == pytest.approx(post.mean - 1.959964 * post.sd, abs=1e-6)
    assert post.hi == pytest.approx(post.mean + 1.959964 * post.sd, abs=1e-6)


def test_posterior_narrows_with_problems_and_stays_inside_0_1():
    one = metrics.posterior([(4, 4)])
    many = metrics.posterior([(4, 4)] * 100)
    assert many.mean == pytest.approx(one.mean)
    assert many.sd == pytest.approx(one.sd / 10)
    assert one.hi == 1.0 and one.lo < one.mean
    with pytest.raises(ValueError):
        metrics.posterior([])


def test_crossover_on_a_constructed_pair_of_curves():
    """The trained curve starts above and the base one overtakes it at k = 4."""
    base = [0.2, 0.35, 0.5, 0.7, 0.9]
    trained = [0.4, 0.5, 0.55, 0.6, 0.62]
    assert metrics.crossover(base, trained) == 4
    assert metrics.crossover(trained, base) is None  # starts below: no boundary to find
    assert metrics.crossover(base, [x + 0.05 for x in base]) is None  # never meets


def test_crossover_interval_brackets_the_point_and_its_share():
    """Per-problem curves from counts: the trained model is sharper (right more often on the easy
    problems) and the base model solves the hard problems now and then; the mean curves cross."""
    n = 16
    base_counts = [(n, 6)] * 20 + [(n, 1)] * 20
    trained_counts = [(n, 14)] * 20 + [(n, 0)] * 20
    base = [metrics.pass_at_k_curve(*c) for c in base_counts]
    trained = [metrics.pass_at_k_curve(*c) for c in trained_counts]
    k, interval, share = metrics.crossover_interval(base, trained, n=400, seed=1)
    mean_b = metrics.pass_at_k_curves(base_counts)
    mean_t = metrics.pass_at_k_curves(trained_counts)
    assert k == metrics.crossover(mean_b, mean_t)
    assert k is not None and 1 < k <= n
    assert interval is not None and interval[0] <= k <= interval[1]
    assert share > 0.9
