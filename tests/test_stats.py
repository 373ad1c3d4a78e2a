"""spurisweep.stats: the paired delta and its hierarchical bootstrap interval (a hand-computed case,
pairing, seeds, coverage on simulated studies), the noise floor, the formatting; the statistics of few runs
that diagnose reads (estimate, difference, direction)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from spurisweep import metrics, stats
from spurisweep.stats import Delta

# three problems whose paired differences are -1, 0 and +1 (the baseline has two samples a problem)
BASE3 = {"p1": [1.0, 1.0], "p2": [0.0, 1.0], "p3": [0.0, 0.0]}
RUN3 = {"p1": [0.0, 0.0], "p2": [1.0, 0.0], "p3": [1.0, 1.0]}


def as_scores(matrix: np.ndarray) -> dict[int, list[float]]:
    """(P, k) 0/1 samples -> problem -> scores."""
    return dict(enumerate(matrix.astype(float).tolist()))


def greedy(correct: list[int] | np.ndarray) -> dict[int, list[float]]:
    return {i: [float(c)] for i, c in enumerate(correct)}


def width(d: Delta) -> float:
    return d.high - d.low


# ---------------------------------------------------------------------------------------------- hand-computed
def test_equal_differences_give_a_zero_width_interval_at_that_value():
    # accuracies vary by problem, but every problem gains exactly 50 points: pairing leaves no spread
    base = {"a": [0.0, 0.0], "b": [0.0, 1.0], "c": [1.0, 0.0, 0.0, 0.0]}
    run = {"a": [0.0, 1.0], "b": [1.0, 1.0], "c": [1.0, 1.0, 0.0, 1.0]}
    d = stats.paired_delta(base, [run])
    assert d.estimate == pytest.approx(50.0)
    assert d.low == pytest.approx(50.0) and d.high == pytest.approx(50.0)
    assert (d.n_problems, d.n_runs) == (3, 1) and d.distinguishable


def test_no_change_everywhere_is_not_distinguishable():
    d = stats.paired_delta(BASE3, [BASE3])
    assert (d.estimate, d.low, d.high) == (0.0, 0.0, 0.0)
    assert not d.distinguishable


def test_interval_matches_the_enumerable_bootstrap_distribution():
    # the mean of 3 draws from {-1, 0, +1}: sums -3..3 with counts 1, 3, 6, 7, 6, 3, 1 of 27, so the CDF
    # is .037 .148 .370 .630 .852 .963 1: the 10% quantile is -2/3 and the 90% one +2/3, well inside steps
    d = stats.paired_delta(BASE3, [RUN3], n_boot=20000, level=0.8)
    assert d.estimate == 0.0
    assert d.low == pytest.approx(-200 / 3) and d.high == pytest.approx(200 / 3)
    base, runs, _ = stats.aligned(BASE3, [RUN3])
    draws = stats.paired_draws(base, runs, n_boot=20000)
    for total, count in zip(range(-3, 4), [1, 3, 6, 7, 6, 3, 1], strict=True):
        assert np.mean(np.isclose(draws, total / 3)) == pytest.approx(count / 27, abs=0.01)


def test_estimate_averages_runs_on_shared_problems_only():
    base = {"a": [1.0], "b": [0.0], "c": [0.0], "extra": [1.0]}
    runs = [{"a": [1.0], "b": [1.0], "c": [0.0]}, {"a": [1.0], "b": [1.0], "c": [1.0], "d": [0.0]}]
    d = stats.paired_delta(base, runs)
    # run accuracies 2/3 and 3/3 on a, b, c; the baseline 1/3 there
    assert d.estimate == pytest.approx(100 * (5 / 6 - 1 / 3))
    assert (d.n_problems, d.n_runs) == (3, 2)


def test_inputs_without_a_shared_problem_or_a_run_are_refused():
    with pytest.raises(ValueError, match="no problem"):
        stats.paired_delta({"a": [1.0]}, [{"b": [1.0]}])
    with pytest.raises(ValueError, match="at least one run"):
        stats.paired_delta({"a": [1.0]}, [])


def test_scores_by_problem_orders_samples_and_scores_ungradable_as_wrong():
    rows = [
        {"problem_id": 7, "sample_idx": 1, "correct": None},
        {"problem_id": 7, "sample_idx": 0, "correct": True},
        {"problem_id": "x", "sample_idx": 0, "correct": False},
    ]
    assert stats.scores_by_problem(rows) == {"7": [1.0, 0.0], "x": [0.0]}


# ---------------------------------------------------------------------------------------------- pairing
def test_pairing_narrows_the_interval_of_correlated_scores():
    rng = np.random.default_rng(3)
    base = (rng.random(300) < rng.uniform(0, 1, 300)).astype(int)  # heterogeneous difficulty
    run = base.copy()
    run[rng.choice(np.flatnonzero(base == 0), 20, replace=False)] = 1  # the run solves 20 more
    run[rng.choice(np.flatnonzero(base == 1), 6, replace=False)] = 0  # and loses 6
    paired = stats.paired_delta(greedy(base), [greedy(run)])
    mean, draws = metrics.bootstrap_difference(list(run), list(base))  # each side resampled on its own
    low, high = 100 * np.quantile(draws, [0.025, 0.975])
    assert paired.estimate == pytest.approx(100 * mean) == pytest.approx(100 * 14 / 300)
    assert width(paired) < 0.5 * (high - low)
    assert paired.distinguishable and low < 0  # the unpaired interval cannot tell the gain from zero


# ---------------------------------------------------------------------------------------------- seeds
def seeded_runs(gains: list[int], n: int = 300) -> tuple[dict, list[dict]]:
    """A greedy baseline solving the first half, and one run per gain: the baseline plus `gain` of the
    unsolved problems, a different subset for each run."""
    base = np.array([1] * (n // 2) + [0] * (n - n // 2))
    runs = []
    for i, gain in enumerate(gains):
        run = base.copy()
        run[np.random.default_rng(i).choice(np.arange(n // 2, n), gain, replace=False)] = 1
        runs.append(greedy(run))
    return greedy(base), runs


def test_one_seed_reflects_problem_resampling_only():
    base, runs = seeded_runs([30])
    d = stats.paired_delta(base, runs)
    # 30 of 300 paired differences are 1: a binomial proportion's 95% interval, about +-1.96 * 1.73
    assert d.estimate == pytest.approx(10.0)
    assert width(d) == pytest.approx(2 * 1.96 * 100 * (0.1 * 0.9 / 300) ** 0.5, rel=0.1)
    assert d.method == "paired bootstrap: 300 problems, 1 seed, 2000 draws, 95% percentile"


def test_identical_seeds_add_nothing_to_the_interval():
    base, runs = seeded_runs([30])
    one, three = stats.paired_delta(base, runs), stats.paired_delta(base, runs * 3)
    assert (three.estimate, three.low, three.high) == (one.estimate, one.low, one.high)
    assert three.n_runs == 3


def test_seed_noise_widens_and_more_seeds_narrow():
    base, one = seeded_runs([30])
    one_seed = stats.paired_delta(base, one)
    three_seeds = stats.paired_delta(base, seeded_runs([15, 30, 45])[1])  # deltas 5, 10, 15 points
    nine_seeds = stats.paired_delta(base, seeded_runs([15, 30, 45] * 3)[1])
    nine_quiet = stats.paired_delta(base, seeded_runs([30] * 9)[1])  # 10 points each, different problems
    assert three_seeds.estimate == nine_seeds.estimate == nine_quiet.estimate == pytest.approx(10.0)
    assert width(three_seeds) > 3 * width(one_seed)  # t with 2 degrees of freedom on a 5-point seed sd
    assert width(nine_seeds) < 0.5 * width(three_seeds)
    assert width(nine_seeds) > 1.5 * width(nine_quiet)
    # averaging seeds that gain on different problems leaves less per-problem spread than one seed
    assert width(nine_quiet) < width(one_seed)
    assert "3 seeds (t-scaled)" in three_seeds.method


def test_seed_variance_of_pure_seed_shifts_is_their_variance_over_the_seed_count():
    shifts = np.array([0.05, 0.10, 0.15])
    diffs = shifts[:, None] + np.linspace(-0.2, 0.2, 40)[None, :]  # seed + problem effects, no interaction
    assert stats.seed_variance(diffs) == pytest.approx(shifts.var(ddof=1) / 3)
    assert stats.seed_variance(diffs[:1]) == 0.0


# ---------------------------------------------------------------------------------------------- coverage
def simulated_study(rng: np.random.Generator, n_seeds: int, seed_sd: float, k: int, n: int = 200):
    """A baseline and `n_seeds` runs whose expected paired delta is exactly 10 points: per-problem
    solve rates uniform on [0.15, 0.65], a per-problem gain uniform on [0.05, 0.15], a seed effect
    N(0, seed_sd) (truncated symmetrically at +-0.15), a seed-by-problem effect uniform on +-0.05, and
    k Bernoulli samples per problem (all rates stay inside [0, 1], so nothing is clipped)."""
    rate = rng.uniform(0.15, 0.65, n)
    seed_effect = np.clip(rng.normal(0, seed_sd, n_seeds), -0.15, 0.15)[:, None]
    run_rate = rate + rng.uniform(0.05, 0.15, n) + seed_effect + rng.uniform(-0.05, 0.05, (n_seeds, n))
    base = as_scores(rng.random((n, k)) < rate[:, None])
    return base, [as_scores(rng.random((n, k)) < r[:, None]) for r in run_rate]


@pytest.mark.parametrize("n_seeds, seed_sd, k", [(3, 0.04, 4), (1, 0.0, 1)])
def test_95_percent_interval_covers_the_true_delta_in_95_percent_of_studies(n_seeds, seed_sd, k):
    rng = np.random.default_rng(2024)
    covered = 0
    for i in range(1000):
        d = stats.paired_delta(*simulated_study(rng, n_seeds, seed_sd, k), n_boot=500, seed=i)
        covered += d.low <= 10.0 <= d.high
    assert 0.92 <= covered / 1000 <= 0.98


def test_2000_resamples_of_500_problems_and_3_seeds_take_well_under_a_second():
    rng = np.random.default_rng(0)
    base, runs = simulated_study(rng, 3, 0.04, 1, n=500)
    stats.paired_delta(base, runs)  # warm numpy's generators
    start = time.perf_counter()
    stats.paired_delta(base, runs)
    assert time.perf_counter() - start < 1.0


# ---------------------------------------------------------------------------------------------- noise floor
def test_noise_floor_of_a_constructed_pair():
    a = greedy([1, 1, 1, 0, 0, 0, 1, 0, 1, 0])
    b = greedy([0, 1, 0, 1, 0, 0, 1, 0, 1, 0])  # two lost, one gained: net -1 of 10
    b["only_in_b"] = [1.0]
    floor = stats.noise_floor(a, b)
    assert floor == stats.NoiseFloor(points=pytest.approx(10.0), flipped=3, n_problems=10)
    assert stats.format_floor(floor) == "floor 10.0 (3/10 flipped)"
    # several samples: a problem flips when its score changes, not when its samples are reordered
    assert stats.noise_floor({"p": [1.0, 0.0]}, {"p": [0.0, 1.0]}).flipped == 0


# ---------------------------------------------------------------------------------------------- runs
def test_estimate_is_the_mean_with_a_bootstrap_interval_inside_the_range():
    e = stats.estimate([20.0, 22.0, 24.0, None], seed=3)
    assert (e.mean, e.n) == (22.0, 3) and e.std == pytest.approx(2.0)
    assert 20.0 <= e.low < 22.0 < e.high <= 24.0  # a resampled mean never leaves the values' range
    assert stats.estimate([20.0, 22.0, 24.0], seed=3) == stats.estimate([20.0, 22.0, 24.0], seed=3)  # seeded
    one = stats.estimate([5.0])
    assert (one.mean, one.low, one.high, one.n) == (5.0, None, None, 1) and one.text() == "+5.0 (n=1)"
    assert stats.estimate([]).text() == "-"


def test_difference_resamples_each_group_and_gives_the_sign_probabilities():
    e, draws = stats.difference([10.0, 12.0, 14.0], [20.0, 22.0, 24.0])
    assert e.mean == pytest.approx(-10.0) and len(draws) == metrics.BOOTSTRAP
    assert -14.0 <= e.low <= e.high <= -6.0  # every draw lies in [10 - 24, 14 - 20]
    assert (e.p_negative, e.p_positive) == (1.0, 0.0)
    same, _ = stats.difference([3.0, 3.0], [3.0, 3.0])
    assert (same.p_negative, same.p_positive) == (0.0, 0.0)  # identical groups: neither sign
    lone, none = stats.difference([1.0], [0.0, 2.0])
    assert lone.mean == pytest.approx(0.0) and lone.low is None and none is None
    assert stats.difference([], [1.0])[0].text() == "-"


@pytest.mark.parametrize(
    "effect, want_negative, expected",
    [
        (stats.Effect(-10.0, -14.0, -6.0, 1.0, 0.0), True, "supported"),
        (stats.Effect(-10.0, -14.0, -6.0, 1.0, 0.0), False, "contradicted"),
        (stats.Effect(1.0, -0.3, 2.3, 0.11, 0.89), False, "suggested"),  # P(>0) >= 0.8, interval reaches 0
        (stats.Effect(1.0, -1.0, 3.0, 0.3, 0.7), False, "not supported"),
        (stats.Effect(-2.0), True, "suggested"),  # no interval: the point estimate's sign
        (stats.Effect(2.0), True, "not supported"),
        (stats.Effect(None), True, "untestable"),
    ],
)
def test_direction_reads_an_effect_against_the_expected_sign(effect, want_negative, expected):
    assert stats.direction(effect, want_negative=want_negative) == expected


def test_number_never_prints_minus_zero():
    assert stats.number(-0.04) == "+0.0" and stats.number(-0.04, signed=False) == "0.0"
    assert stats.number(-0.06) == "-0.1" and stats.number(12.345, 2, signed=False) == "12.35"
    assert stats.Effect(-10.0, -12.74, -7.26).text() == "-10.0 [-12.7, -7.3]"


# ---------------------------------------------------------------------------------------------- formatting
def delta(estimate: float, low: float, high: float) -> Delta:
    return Delta(estimate, low, high, n_problems=500, n_runs=3, level=0.95, method="m")


def test_format_delta_marks_intervals_that_contain_zero():
    assert stats.format_delta(delta(12.44, 8.06, 16.94)) == "+12.4 [+8.1, +16.9]"
    assert stats.format_delta(delta(-3.0, -5.25, -0.5)) == "-3.0 [-5.2, -0.5]"
    assert stats.format_delta(delta(1.2, -0.8, 3.1)) == "≈+1.2 [-0.8, +3.1]"
    assert stats.format_delta(delta(2.0, 0.0, 4.0)).startswith("≈")  # an endpoint at 0 contains it
    assert stats.signed(-0.04) == "+0.0" and stats.signed(-0.06) == "-0.1"
    assert len(stats.format_delta(delta(-99.9, -99.9, 99.9))) <= 21


def test_legend_names_the_method_and_the_marker():
    d = stats.paired_delta(BASE3, [RUN3, BASE3])
    method, marker = stats.delta_legend(d).split("\n")
    assert method == "paired bootstrap: 3 problems, 2 seeds (t-scaled), 2000 draws, 95% percentile"
    assert marker.startswith("≈") and len(method) <= 80
