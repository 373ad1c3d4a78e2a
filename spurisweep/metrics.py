"""Pure metrics and the one statistics module: pass@k (one k, or the curve k = 1..n), G-Pass@k, the
Bayesian posterior of a cell's accuracy, the pass@k crossover of two curves, per-evaluation summaries,
code reasoning, and the seed statistics every report uses (mean, std, standard error, percentile bootstrap
intervals, bootstrap P(<0) / P(>0) of a difference).

The posterior's interval is the normal approximation the "Don't Pass@k" paper uses, from the standard
library's NormalDist: scipy is not a dependency, and the report computes the same interval in SQL.

A leaf: it imports nothing from spurisweep, so the job side (evaluate) and the CLI side (analysis) share
it without importing each other. numpy is imported inside the bootstrap functions only, so importing this
module stays cheap for evaluation jobs.

The bootstrap is a few lines of numpy rather than scipy.stats.bootstrap: the diagnostics need the draws
themselves (a difference of two independently resampled groups, its sign probabilities), and seeded
draws keep every published report number reproducible bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

#: bootstrap resamples for report intervals (diagnostics asks for more)
BOOTSTRAP = 2000


# ---------------------------------------------------------------------------------------------- pass@k
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def pass_at_k_curve(n: int, c: int) -> list[float]:
    """Unbiased pass@k of one problem for every k = 1..n, in O(n): C(n-c, k) / C(n, k) follows from its value
    at k - 1 by one factor, so the curve of 256 samples costs no big binomials."""
    if not 0 <= c <= n or n < 1:
        raise ValueError(f"pass@k needs 0 <= c <= n and n >= 1 (n={n}, c={c})")
    out, miss = [], 1.0  # miss = C(n-c, k) / C(n, k): the chance that k draws are all wrong
    for k in range(1, n + 1):
        miss = 0.0 if k > n - c else miss * (n - c - k + 1) / (n - k + 1)
        out.append(1.0 - miss)
    return out


def pass_at_k_curves(counts: list[tuple[int, int]]) -> list[float]:
    """Mean unbiased pass@k over problems for k = 1..n, from per-problem (samples, correct) counts; n is the
    fewest samples any problem has (a problem with more still contributes all of its samples)."""
    if not counts:
        return []
    n = min(s for s, _ in counts)
    curves = [
        pass_at_k_curve(s, c)[:n] if s == n else [pass_at_k(s, c, k) for k in range(1, n + 1)]
        for s, c in counts
    ]
    return [sum(col) / len(col) for col in zip(*curves, strict=True)]


def g_pass_at_k(n: int, c: int, k: int, tau: float) -> float:
    """G-Pass@k_tau (Liu et al. 2024, arXiv 2412.13147): the chance that k of the n samples, drawn without
    replacement, hold at least ceil(tau * k) correct ones (a hypergeometric tail). tau -> 0 recovers pass@k
    (at least one: tau in (0, 1/k]), tau = 1 asks every one of the k draws to be right."""
    if not 0 <= c <= n or not 1 <= k <= n or not 0.0 < tau <= 1.0:
        raise ValueError(
            f"G-Pass@k needs 0 <= c <= n, 1 <= k <= n, 0 < tau <= 1 (n={n}, c={c}, k={k}, tau={tau})"
        )
    need = max(1, math.ceil(tau * k - 1e-12))  # 0.5 * 4 is 2, not 2.0000000001 rounded up
    total = math.comb(n, k)
    return sum(math.comb(c, j) * math.comb(n - c, k - j) for j in range(need, min(c, k) + 1)) / total


def mg_pass_at_k(n: int, c: int, k: int) -> float:
    """mG-Pass@k (the same paper): 2 x the area under G-Pass@k_tau for tau in [0.5, 1], as its k-point sum
    (2 / k) * sum of G-Pass@k_(i/k) for i = ceil(k/2) + 1 .. k."""
    lo = math.ceil(k / 2) + 1
    return 2.0 / k * sum(g_pass_at_k(n, c, k, i / k) for i in range(lo, k + 1))


@dataclass(frozen=True)
class Posterior:
    """The Bayesian estimate of a cell's accuracy (Hariri et al., "Don't Pass@k", arXiv 2510.04265), with a
    Beta(1, 1) prior on each problem's success rate: the posterior mean of the mean rate, its standard
    deviation, and the credible interval mean +- z * sd cut to [0, 1] (the paper's normal approximation;
    the report's bayes_lo / bayes_hi compute the same in SQL)."""

    mean: float
    sd: float
    lo: float
    hi: float
    problems: int


def posterior(
    counts: list[tuple[int, int]], level: float = 0.95, prior: tuple[float, float] = (1.0, 1.0)
) -> Posterior:
    """Per problem Beta(a + c, b + n - c); the mean over P problems has mean avg(mu_i) and variance
    sum(var_i) / P^2 (problems independent). Unlike avg@n its interval says how sure n samples make us."""
    if not counts:
        raise ValueError("the posterior needs at least one problem")
    a0, b0 = prior
    mus, variances = [], []
    for n, c in counts:
        a, b = a0 + c, b0 + n - c
        mus.append(a / (a + b))
        variances.append(a * b / ((a + b) ** 2 * (a + b + 1)))
    mean = sum(mus) / len(mus)
    sd = math.sqrt(sum(variances)) / len(mus)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    return Posterior(mean, sd, max(0.0, mean - z * sd), min(1.0, mean + z * sd), len(mus))


# ---------------------------------------------------------------------------------------------- crossover
#: pass@k differences this small are rounding, not a crossing
CROSS_TOL = 1e-9


def crossover(base: list[float], trained: list[float]) -> int | None:
    """The smallest k (1-based) at which the base curve is above the trained one, when the trained one starts
    above (the pass@k boundary of Yue et al. 2025, arXiv 2504.13837: RL sharpens pass@1 while the base model
    overtakes it at large k); None when it starts at or below the base, or is never overtaken (two curves
    both at 100% are tied, not crossed). Differences within CROSS_TOL count as ties."""
    if not base or len(base) != len(trained) or trained[0] - base[0] <= CROSS_TOL:
        return None
    return next(
        (i + 1 for i, (b, t) in enumerate(zip(base, trained, strict=True)) if b - t > CROSS_TOL), None
    )


def crossover_interval(
    base: list[list[float]],
    trained: list[list[float]],
    n: int = BOOTSTRAP,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[int | None, tuple[float, float] | None, float]:
    """The crossover of the mean curves of paired per-problem pass@k curves (base[i] and trained[i] are
    problem i's, each k = 1..K), a percentile interval of it over `n` bootstrap resamples of the problems,
    and the share of resamples with a crossover (the interval comes from those; None below 2 of them)."""
    import numpy as np

    b, t = np.asarray(base, dtype=float), np.asarray(trained, dtype=float)
    point = crossover(list(b.mean(axis=0)), list(t.mean(axis=0)))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(b), size=(n, len(b)))
    diff = t[idx].mean(axis=1) - b[idx].mean(axis=1)  # (n, K): trained - base per resample
    below = diff < -CROSS_TOL
    has = (diff[:, 0] > CROSS_TOL) & below.any(axis=1)
    ks = below.argmax(axis=1)[has] + 1
    if ks.size < 2:
        return point, None, float(has.mean())
    lo, hi = np.quantile(ks, [(1 - level) / 2, 1 - (1 - level) / 2])
    return point, (float(lo), float(hi)), float(has.mean())


def _sample_var(xs: list[float], m: float) -> float:
    """Sample variance around the mean m (n - 1 in the denominator; needs at least 2 values)."""
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def mean_se(xs: list[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(count); 0 for a single value)."""
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, 0.0
    return m, math.sqrt(_sample_var(xs, m) / len(xs))


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


# ---------------------------------------------------------------------------------------------- summaries
def code_reasoning(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """The paper's code-reasoning table from sample rows: how often responses mention "python", and the
    accuracy of those that do and those that do not (None where a group is empty)."""
    with_code = [r for r in rows if r.get("has_python")]
    without = [r for r in rows if not r.get("has_python")]
    return {
        "code_frequency": ratio(len(with_code), len(rows)),
        "acc_with_code": ratio(sum(bool(r.get("correct")) for r in with_code), len(with_code)),
        "acc_without_code": ratio(sum(bool(r.get("correct")) for r in without), len(without)),
        "code_block_frequency": ratio(sum(bool(r.get("has_code_block")) for r in rows), len(rows)),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """avg@n (= pass@1), pass@k for every k up to n, their standard errors over problems, and the sample
    statistics (ungradable, truncated, mean length, code reasoning).

    An ungradable sample (correct None) counts as not correct, as in the report's SQL. n is the smallest
    number of samples any problem has; a problem with more contributes all of its samples (unbiased).
    """
    by_problem: dict[str, list[bool]] = {}
    for r in rows:
        by_problem.setdefault(str(r["problem_id"]), []).append(bool(r.get("correct")))
    if not by_problem:
        return {"problems": 0, "samples": 0}
    n = min(len(v) for v in by_problem.values())
    out: dict[str, Any] = {"problems": len(by_problem), "samples": n}
    mean, se = mean_se([sum(v) / len(v) for v in by_problem.values()])
    out["avg@n"] = mean
    out[f"avg@{n}"] = mean
    out["stderr"] = se
    for k in range(1, n + 1):
        m, s = mean_se([pass_at_k(len(v), sum(v), k) for v in by_problem.values()])
        out[f"pass@{k}"] = m
        out[f"stderr_pass@{k}"] = s
    out["ungradable"] = ratio(sum(r.get("correct") is None for r in rows), len(rows))
    out["truncated"] = ratio(sum(bool(r.get("truncated")) for r in rows), len(rows))
    out["mean_length"] = ratio(sum(int(r.get("n_tokens") or 0) for r in rows), len(rows))
    out.update(code_reasoning(rows))
    return out


# ---------------------------------------------------------------------------------------------- seed statistics
def clean(xs: list[float | None]) -> list[float]:
    """The values as floats, without None and NaN."""
    return [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]


def mean_std(xs: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None with fewer than 2 values)."""
    xs = clean(xs)
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(_sample_var(xs, m))


def bootstrap_means(xs: list[float | None], n: int = BOOTSTRAP, seed: int = 0) -> Any:
    """`n` bootstrap means of xs (resampling runs with replacement), as a numpy array; None if empty."""
    import numpy as np

    arr = np.asarray(clean(xs), dtype=float)
    if arr.size == 0:
        return None
    rng = np.random.default_rng(seed)
    return arr[rng.integers(0, arr.size, size=(n, arr.size))].mean(axis=1)


def bootstrap_ci(
    xs: list[float | None], n: int = BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean over runs; None with fewer than 2 values."""
    import numpy as np

    if len(clean(xs)) < 2:
        return None
    means = bootstrap_means(xs, n, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def bootstrap_difference(
    a: list[float | None], b: list[float | None], n: int = BOOTSTRAP, seed: int = 0
) -> tuple[float | None, Any]:
    """mean(a) - mean(b) and its bootstrap draws, each group resampled independently (seeds `seed` and
    `seed + 1`). The mean is None when a group is empty; the draws are None with fewer than 2 values in a
    group."""
    a, b = clean(a), clean(b)
    if not a or not b:
        return None, None
    mean = sum(a) / len(a) - sum(b) / len(b)
    if len(a) < 2 or len(b) < 2:
        return mean, None
    return mean, bootstrap_means(a, n, seed) - bootstrap_means(b, n, seed + 1)


def interval_and_signs(boot: Any) -> tuple[float, float, float, float]:
    """Bootstrap draws of an effect -> its percentile 95% interval, P(effect < 0) and P(effect > 0)."""
    import numpy as np

    lo, hi = np.quantile(boot, [0.025, 0.975])
    # a tolerance, so that identical groups (every draw exactly 0 up to rounding) count as neither sign
    tol = 1e-9 * max(1.0, float(np.abs(boot).max()))
    return float(lo), float(hi), float((boot < -tol).mean()), float((boot > tol).mean())


def summarize_runs(rows: list[dict[str, Any]], scale: float = 1.0, spread: str = "std") -> dict[str, Any]:
    """Pool value rows (report tidy rows: cell_id, value, base, _seed) into one pivot cell: one value per
    run (its rows averaged), then the mean over runs, its spread (std, or the bootstrap interval for
    spread="ci"), the number of runs and seeds, the baseline and the change against it."""
    per_run: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        per_run.setdefault(r["cell_id"], []).append(r)
    vals, bases, deltas, seeds = [], [], [], set()
    for rs in per_run.values():
        v, _ = mean_std([r["value"] for r in rs])
        b, _ = mean_std([r.get("base") for r in rs])
        if v is None:
            continue
        vals.append(v * scale)
        seeds.add(rs[0].get("_seed"))
        if b is not None:
            bases.append(b * scale)
            deltas.append((v - b) * scale)
    m, sd = mean_std(vals)
    b, _ = mean_std(bases)
    d, _ = mean_std(deltas)
    cell = {"mean": m, "std": sd, "n": len(vals), "seeds": len(seeds), "base": b, "delta": d, "values": vals}
    if spread == "ci":
        cell["ci"] = bootstrap_ci(vals)
    return cell
