"""pass@k boundaries (Yue et al. 2025, "Does RL Really Incentivize...", arXiv 2504.13837; MATH-Beyond,
arXiv 2510.11653): the unbiased pass@k curve for k = 1..n of each trained group (model x reward, its runs
averaged) against its untrained model's, on the same problems; where the base curve overtakes the
trained one (the crossover k) and a percentile interval of it over bootstrap resamples of the problems.

A crossover means training sharpened what the base model could already sample (better at small k, the
base catches up at large k); no crossover up to n means the trained model stays ahead at every budget
evaluated. The curves are read from the stored samples (per-problem counts, the chosen grader's verdicts):
the final evaluation of each run and its baseline, on the benchmark with the most samples per problem (or
the one asked for). `report --plot passk` draws the same curves (`curves`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ...metrics import BOOTSTRAP, crossover_interval, pass_at_k_curve
from .. import query as q
from .base import Analysis, Context, Diagnosis, Rows, pct, table

#: samples per problem below which a pass@k curve says nothing a pass@1 does not
MIN_SAMPLES = 2


@dataclass
class Curves:
    """One group's mean pass@k curves (fractions, k = 1..n) on the problems both evaluations share."""

    model: str
    reward: str
    benchmark: str
    n: int
    problems: int
    runs: int
    base: list[float]
    trained: list[float]
    per_problem_base: list[list[float]] = field(repr=False, default_factory=list)
    per_problem_trained: list[list[float]] = field(repr=False, default_factory=list)


@dataclass
class Crossover:
    model: str
    reward: str
    benchmark: str
    n: int
    problems: int
    runs: int
    pass1_base: float
    pass1_trained: float
    passn_base: float
    passn_trained: float
    k: int | None
    interval: tuple[float, float] | None
    share: float  # share of bootstrap resamples with a crossover
    reading: str


def pick_benchmark(con: Any, sweep: str | None, benchmark: str | None) -> str | None:
    """The benchmark asked for, else the sweep's trained evaluations' benchmark with the most samples per
    problem (at least MIN_SAMPLES); None when there is none."""
    if benchmark is not None:
        return benchmark
    where = "AND cell_id IN (SELECT cell_id FROM sweep_cells WHERE sweep = $s)" if sweep else ""
    rows = con.execute(
        f"SELECT benchmark, min(samples) FROM evals WHERE NOT is_baseline {where} GROUP BY benchmark",
        {"s": sweep} if sweep else {},
    ).fetchall()
    usable = {b: n for b, n in rows if n is not None and n >= MIN_SAMPLES}
    return max(sorted(usable), key=lambda b: usable[b]) if usable else None


def curves(
    con: Any, sweep: str | None, benchmark: str, where: list[tuple[str, str]] | tuple[()] = ()
) -> list[Curves]:
    """Per (model, reward): the runs' final evaluations on `benchmark` and their baseline, as per-problem
    counts, turned into mean pass@k curves up to the fewest samples any problem has in either."""
    rows = q.tidy(con, sweep=sweep, dims=["model", "reward"], benchmark=benchmark, step="final", where=where)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("baseline_eval_id"):
            groups.setdefault((str(r["d0"]), str(r["d1"])), []).append(r)
    ids = sorted(
        {r["eval_id"] for rs in groups.values() for r in rs}
        | {r["baseline_eval_id"] for rs in groups.values() for r in rs}
    )
    counts = _counts(con, ids)
    out = []
    for (model, reward), rs in sorted(groups.items()):
        c = _group(model, reward, benchmark, rs, counts)
        if c is not None:
            out.append(c)
    return out


def _counts(con: Any, ids: list[str]) -> dict[str, dict[str, tuple[int, int]]]:
    """eval id -> problem id -> (samples, correct), ungradable counted as not correct (as pass@k's SQL)."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for eid, pid, n, c in con.execute(
        "SELECT eval_id, problem_id, count(*), count_if(coalesce(correct, false)) FROM samples "
        "WHERE list_contains($ids, eval_id) GROUP BY eval_id, problem_id",
        {"ids": ids},
    ).fetchall():
        out.setdefault(eid, {})[str(pid)] = (int(n), int(c))
    return out


def _group(
    model: str,
    reward: str,
    bench: str,
    rs: list[dict[str, Any]],
    counts: dict[str, dict[str, tuple[int, int]]],
) -> Curves | None:
    """One group's curves: the runs share a baseline per model (the first run's is used when several)."""
    base = counts.get(rs[0]["baseline_eval_id"], {})
    runs = [counts[r["eval_id"]] for r in rs if r["eval_id"] in counts]
    problems = sorted(set(base).intersection(*runs)) if runs else []
    if not problems:
        return None
    n = min(min(base[p][0] for p in problems), *(min(run[p][0] for p in problems) for run in runs))
    if n < MIN_SAMPLES:
        return None
    pb = [pass_at_k_curve(*base[p])[:n] for p in problems]
    pt = []
    for p in problems:
        per_run = [pass_at_k_curve(*run[p])[:n] for run in runs]
        pt.append([sum(col) / len(col) for col in zip(*per_run, strict=True)])
    mean = lambda m: [sum(col) / len(col) for col in zip(*m, strict=True)]  # noqa: E731
    return Curves(model, reward, bench, n, len(problems), len(runs), mean(pb), mean(pt), pb, pt)


def analyse(c: Curves, boot: int = BOOTSTRAP, seed: int = 0) -> Crossover:
    k, interval, share = crossover_interval(c.per_problem_base, c.per_problem_trained, n=boot, seed=seed)
    if c.trained[0] <= c.base[0]:
        reading = "no sharpening: the trained model is not ahead at pass@1"
    elif k is None:
        reading = f"trained ahead at every k up to {c.n}"
    else:
        reading = f"trained ahead up to k={k - 1}; the base model catches up from k={k}"
    return Crossover(
        c.model,
        c.reward,
        c.benchmark,
        c.n,
        c.problems,
        c.runs,
        100 * c.base[0],
        100 * c.trained[0],
        100 * c.base[-1],
        100 * c.trained[-1],
        k,
        interval,
        share,
        reading,
    )


class PasskAnalysis(Analysis):
    name = "passk"

    def compute(self, ctx: Context) -> Rows:
        bench = pick_benchmark(ctx.con, ctx.sweep, ctx.asked_benchmark)
        if bench is None:
            return Rows(
                notes=[
                    "pass@k boundaries need n >= 2 samples per problem: evaluate with e.g. "
                    "eval.protocols.<bench>: {samples: 256, limit: 100} (sweeps/studies/passk_boundary.yaml)"
                ]
            )
        return Rows([analyse(c) for c in curves(ctx.con, ctx.sweep, bench)])

    def tables(self, result: Rows, d: Diagnosis) -> list[Any]:
        if not result:
            return []
        rows = [
            [
                x.model,
                x.reward,
                f"{x.n} x {x.problems}",
                str(x.runs),
                f"{pct(x.pass1_base)} -> {pct(x.pass1_trained)}",
                f"{pct(x.passn_base)} -> {pct(x.passn_trained)}",
                "-" if x.k is None else str(x.k),
                "-" if x.interval is None else f"[{x.interval[0]:g}, {x.interval[1]:g}]",
                f"{100 * x.share:.0f}%",
                x.reading,
            ]
            for x in result
        ]
        header = ["model", "reward", "samples x problems", "runs", "pass@1 base -> trained"]
        header += ["pass@n base -> trained", "crossover k", "95% interval", "resamples crossing", "reading"]
        notes = [
            "crossover k: the smallest k at which the base model's mean pass@k curve is above the trained "
            "one's (unbiased pass@k on the problems both share); interval: percentile bootstrap over problems"
        ]
        return [table(f"pass@k boundary on {result[0].benchmark} (%, base -> trained)", header, rows, notes)]
