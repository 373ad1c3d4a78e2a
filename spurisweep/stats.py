"""Paired deltas against a baseline, with intervals that know about problems and seeds, and the noise floor.

Every number here is in accuracy points (fractions of the per-sample scores times 100).

The data: a model's untrained baseline and each trained run (one seed) are maps problem_id -> the
per-sample scores of that problem (1.0 / 0.0; 8 for an avg@8 benchmark, 1 for greedy).
`scores_by_problem` builds one from evaluation sample rows.

`paired_delta`: the change of a cell against its baseline, on the problems both were evaluated on, with
a percentile interval from a hierarchical bootstrap. The levels and why:

* problems, resampled with replacement, the same resample for the baseline and the runs (paired: a
  problem's difficulty cancels in its difference, which is what makes the interval narrow), as the
  per-item bootstrap of lm-evaluation-harness / lighteval does for one model;
* samples within a problem are NOT resampled: a problem's mean score already carries its sampling
  noise, and resampling the top level of a nested design captures the variance of every level below;
  resampling both counts the within-problem variance twice (Davison & Hinkley 1997, section 3.8);
* seeds: a trained cell's seeds are a sample too (Hochlehnert et al., "A Sober Look at Progress in LM
  Reasoning", arXiv 2504.07086: seed-to-seed spread moves small benchmarks by points). Resampling the
  seeds with replacement, then the problems, under-covers with few seeds (the resampled seed mean has
  (S-1)/S of the right variance and, for 3 seeds, 10 distinct values) and over-covers without seed
  noise (it counts the seed-by-problem noise twice). So the seed level is drawn parametrically: the
  variance of the per-seed deltas, less the part the problem level already carries (two-way ANOVA:
  Var(seed mean) = seed variance + seed-by-problem variance / P; `seed_variance`), times a Student t
  with S-1 degrees of freedom, added to each problem draw. One run: problems only.

Coverage of the true delta by the 95% interval in 1,000 simulated studies (tests/test_stats.py's
simulation: 200 problems, 500 draws), this module vs resampling seeds then problems:
3 seeds with seed noise 94% vs 91%; 5 seeds 95% vs 94%; 2 seeds 92% vs 88%; 3 seeds without seed
noise, greedy 97% vs 98%; 1 seed 95%. The t level assumes roughly normal seed effects (a t interval on
3 draws of a uniform covers about 92% by itself). 2 seeds stay a little short: the seed variance then
rests on one degree of freedom.

`noise_floor`: the same checkpoint evaluated twice (greedy at two batch sizes): how far apart the two
accuracies are, the scale below which a greedy delta means nothing.

`format_delta` / `delta_legend`: a delta as "+12.4 [+8.1, +16.9]" for an 80-column table.

`estimate` / `difference` / `direction`: the statistics of few runs that `diagnose` reads (one value per
run, e.g. a run's gain): a mean with its percentile bootstrap interval over runs, a difference of two
group means with each group resampled independently and the bootstrap probability of each sign, and
whether an effect points the expected way (supported / suggested / not supported / contradicted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from spurisweep.metrics import (
    BOOTSTRAP,
    bootstrap_ci,
    bootstrap_difference,
    bootstrap_means,
    clean,
    interval_and_signs,
    mean_std,
)

#: per-sample scores (fractions) -> accuracy points
POINTS = 100.0
#: the prefix of a delta whose interval contains 0
NOT_DISTINGUISHABLE = "≈"

Scores = Mapping[Any, Sequence[float]]


@dataclass(frozen=True)
class Delta:
    """A paired change against the baseline, in accuracy points, with its bootstrap interval."""

    estimate: float  # mean over runs of the run's accuracy, minus the baseline's, on the shared problems
    low: float
    high: float
    n_problems: int  # problems in both the baseline and every run
    n_runs: int
    level: float
    method: str  # how the interval was made, one short line to print under a table

    @property
    def distinguishable(self) -> bool:
        """The interval excludes 0 (by more than rounding): the cell changed."""
        tol = 1e-9 * max(1.0, abs(self.low), abs(self.high))
        return self.low > tol or self.high < -tol


@dataclass(frozen=True)
class NoiseFloor:
    """Two evaluations of one checkpoint: |accuracy difference| in points, problems whose score changed."""

    points: float
    flipped: int  # problems whose score differs (greedy: whose verdict flipped); flips can cancel
    n_problems: int


# ---------------------------------------------------------------------------------------------- inputs
def scores_by_problem(rows: Iterable[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Evaluation sample rows (problem_id, sample_idx, correct) -> problem_id -> per-sample scores in
    sample order. An ungradable sample (correct None) scores 0, as in metrics.summarize."""
    by_problem: dict[str, list[tuple[int, float]]] = {}
    for r in rows:
        by_problem.setdefault(str(r["problem_id"]), []).append(
            (int(r.get("sample_idx") or 0), float(bool(r.get("correct"))))
        )
    return {p: [s for _, s in sorted(v)] for p, v in by_problem.items()}


def aligned(baseline: Scores, runs: Sequence[Scores]) -> tuple[np.ndarray, np.ndarray, list[Any]]:
    """The per-problem mean scores on the problems the baseline and every run share (a problem needs at
    least one sample everywhere): baseline (P,), runs (S, P), and the problem ids in that order."""
    if not runs:
        raise ValueError("a paired delta needs at least one run")
    shared = {p for p, v in baseline.items() if len(v)}
    for run in runs:
        shared &= {p for p, v in run.items() if len(v)}
    if not shared:
        raise ValueError("the baseline and the runs share no problem")
    ids = sorted(shared, key=str)
    base = np.array([_mean(baseline[p]) for p in ids])
    return base, np.array([[_mean(run[p]) for p in ids] for run in runs]), ids


def _mean(xs: Sequence[float]) -> float:
    return float(sum(xs)) / len(xs)


# ---------------------------------------------------------------------------------------------- the bootstrap
def seed_variance(diffs: np.ndarray) -> float:
    """The variance that the seeds add to the mean of per-seed deltas, beyond what resampling problems
    already carries: (Var over seeds of the seed means - MS_residual / P) / S, clipped at 0, from the
    (S, P) matrix of run-minus-baseline differences (two-way ANOVA without replication). 0 for one seed."""
    s, p = diffs.shape
    if s < 2:
        return 0.0
    seed_means, problem_means = diffs.mean(axis=1), diffs.mean(axis=0)
    resid = diffs - seed_means[:, None] - problem_means[None, :] + diffs.mean()
    ms_resid = float((resid**2).sum()) / ((s - 1) * (p - 1)) if p > 1 else 0.0
    return max(0.0, float(seed_means.var(ddof=1)) - ms_resid / p) / s


def paired_draws(base: np.ndarray, runs: np.ndarray, n_boot: int = BOOTSTRAP, seed: int = 0) -> np.ndarray:
    """`n_boot` bootstrap draws of the paired delta (fractions) from aligned arrays (see `aligned`):
    the problems resampled with replacement, paired (the seed-averaged difference per problem), plus,
    with several runs, a seed-level term sqrt(seed_variance) * Student t(S - 1) (module docstring).
    Generators seeded `seed` (problems) and `seed + 1` (the seed term)."""
    diffs = runs - base[None, :]
    draws = bootstrap_means(list(diffs.mean(axis=0)), n_boot, seed)
    var = seed_variance(diffs)
    if var > 0:
        draws = draws + math.sqrt(var) * np.random.default_rng(seed + 1).standard_t(len(runs) - 1, n_boot)
    return draws


def describe(n_problems: int, n_runs: int, n_boot: int, level: float) -> str:
    """The method of an interval in one line under 80 columns, e.g. "paired bootstrap: 500 problems,
    3 seeds (t-scaled), 2000 draws, 95% percentile"."""
    seeds = f"{n_runs} seeds (t-scaled)" if n_runs > 1 else "1 seed"
    return f"paired bootstrap: {n_problems} problems, {seeds}, {n_boot} draws, {level:.0%} percentile"


def paired_delta(
    baseline: Scores,
    runs: Sequence[Scores],
    *,
    n_boot: int = BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
) -> Delta:
    """The change of a cell (one score map per seed in `runs`) against its baseline, in points.

    The estimate: the mean over runs of each run's mean score over the shared problems, minus the
    baseline's mean over the same problems (paired: only problems present in the baseline and every
    run). The interval: the `level` percentile interval of `paired_draws` (problems resampled, paired;
    seeds through a t-scaled seed variance; samples within a problem not resampled; the module docstring
    says why). Seeded draws: the same inputs give the same interval bit for bit."""
    base, run_scores, ids = aligned(baseline, runs)
    draws = paired_draws(base, run_scores, n_boot, seed)
    low, high = np.quantile(draws, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Delta(
        estimate=float(run_scores.mean() - base.mean()) * POINTS,
        low=float(low) * POINTS,
        high=float(high) * POINTS,
        n_problems=len(ids),
        n_runs=len(runs),
        level=level,
        method=describe(len(ids), len(runs), n_boot, level),
    )


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class Estimate:
    """A mean over runs with its bootstrap 95% interval (None with fewer than 2 runs)."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    n: int = 0
    std: float | None = None

    def text(self, signed: bool = True) -> str:
        """ "+12.0 [+10.0, +14.0] (n=3)"; "-" without runs."""
        if self.mean is None:
            return "-"
        s = number(self.mean, signed=signed)
        if self.low is not None and self.high is not None:
            s += f" [{number(self.low, signed=signed)}, {number(self.high, signed=signed)}]"
        return s + f" (n={self.n})"


@dataclass
class Effect:
    """A difference of group means with its bootstrap interval, P(effect < 0) and P(effect > 0)."""

    mean: float | None
    low: float | None = None
    high: float | None = None
    p_negative: float | None = None
    p_positive: float | None = None

    def text(self) -> str:
        """ "-10.0 [-12.7, -7.3]"; "-" when a group was empty."""
        if self.mean is None:
            return "-"
        s = number(self.mean)
        if self.low is not None and self.high is not None:
            s += f" [{number(self.low)}, {number(self.high)}]"
        return s


def estimate(values: Sequence[float | None], *, n_boot: int = BOOTSTRAP, seed: int = 0) -> Estimate:
    """The mean of the values (None and NaN left out), their std, and the percentile bootstrap 95%
    interval of the mean over runs (metrics.bootstrap_ci; none with fewer than 2 values)."""
    xs = clean(list(values))
    m, sd = mean_std(xs)
    ci = bootstrap_ci(xs, n=n_boot, seed=seed)
    return Estimate(m, ci[0] if ci else None, ci[1] if ci else None, len(xs), sd)


def difference(
    a: Sequence[float], b: Sequence[float], *, n_boot: int = BOOTSTRAP, seed: int = 0
) -> tuple[Effect, Any]:
    """mean(a) - mean(b) as an Effect, and its bootstrap draws (each group resampled independently;
    None with fewer than 2 values in a group), so that differences of effects can be bootstrapped too."""
    mean, draws = bootstrap_difference(list(a), list(b), n_boot, seed)
    return effect(draws, mean), draws


def effect(draws: Any, mean: float | None) -> Effect:
    """An Effect from its point estimate and bootstrap draws (no interval without draws)."""
    if draws is None or mean is None:
        return Effect(mean)
    return Effect(mean, *interval_and_signs(draws))


def direction(e: Effect, *, want_negative: bool, lean: float = 0.8) -> str:
    """Whether an effect points the expected way: supported (the 95% interval excludes 0 the expected
    way), contradicted (it excludes 0 the other way), suggested (the expected sign has bootstrap
    probability >= `lean`, or with no interval the point estimate has it), not supported, or untestable
    (no estimate)."""
    if e.mean is None:
        return "untestable"
    sign = -1 if want_negative else 1
    if e.low is None or e.high is None or e.p_negative is None or e.p_positive is None:
        return "suggested" if sign * e.mean > 0 else "not supported"
    lo, hi = sorted((sign * e.low, sign * e.high))
    if lo > 0:
        return "supported"
    if hi < 0:
        return "contradicted"
    p_expected = e.p_negative if want_negative else e.p_positive
    return "suggested" if p_expected >= lean else "not supported"


# ---------------------------------------------------------------------------------------------- noise floor
def noise_floor(a: Scores, b: Scores) -> NoiseFloor:
    """Two evaluations of the same checkpoint (e.g. greedy at two batch sizes) on the problems both hold:
    |accuracy(a) - accuracy(b)| in points, and how many problems' scores differ."""
    base, other, ids = aligned(a, [b])
    return NoiseFloor(
        points=abs(float(other.mean() - base.mean())) * POINTS,
        flipped=int(np.count_nonzero(~np.isclose(other[0], base))),
        n_problems=len(ids),
    )


# ---------------------------------------------------------------------------------------------- formatting
def signed(x: float, digits: int = 1) -> str:
    """x with its sign, "+0.0" for anything that rounds to zero."""
    return number(x, digits)


def number(x: float, digits: int = 1, *, signed: bool = True) -> str:
    """x to `digits` decimals, with its sign when `signed`; never "-0.0" (anything that rounds to zero
    is "+0.0", or "0.0" unsigned)."""
    text = f"{x:{'+' if signed else ''}.{digits}f}"
    if float(text) == 0:
        text = ("+" if signed else "") + text.lstrip("+-")
    return text


def format_delta(d: Delta, digits: int = 1) -> str:
    """ "+12.4 [+8.1, +16.9]"; prefixed with "≈" when the interval contains 0 (not distinguishable from
    no change): "≈+1.2 [-0.8, +3.1]". At most 21 characters for deltas under 100 points."""
    text = f"{signed(d.estimate, digits)} [{signed(d.low, digits)}, {signed(d.high, digits)}]"
    return text if d.distinguishable else NOT_DISTINGUISHABLE + text


def format_floor(f: NoiseFloor, digits: int = 1) -> str:
    """A noise floor to print next to greedy deltas: "floor 0.4 (3/500 flipped)"."""
    return f"floor {f.points:.{digits}f} ({f.flipped}/{f.n_problems} flipped)"


def delta_legend(d: Delta) -> str:
    """The two lines under a table of deltas: the method, and what the marker means."""
    return f"{d.method}\n{NOT_DISTINGUISHABLE}: the interval contains 0 (not distinguishable from no change)"
