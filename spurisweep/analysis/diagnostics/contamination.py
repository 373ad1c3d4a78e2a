"""Contamination: per family and reward, the gain on the diagnosed benchmark (MATH-500 by default) next to
the gain on a fresh one (a benchmark generated afresh, data.Benchmark.fresh: randcalc, or toy-fresh in the
toy laboratory), and the family's memorisation probe on the diagnosed benchmark (exact-match completion
rate at the headline fraction 60%: spurisweep probe).

A family whose completion rate is at least COMPLETION_RATE (%) "can complete" the benchmark, i.e. has
seen it; a spurious reward (base.is_spurious: the reward registry's flag) that gains more than
MEMORY_GAIN_POINTS there (95% interval above 0 when there is one) but not on the fresh benchmark (mean at
most MEMORY_GAIN_POINTS, or an interval reaching 0) is flagged: the gain looks like memory surfacing, not
reasoning (RESEARCH.md, "Is the gain real?").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import stats
from ...data.sets import BENCHMARKS
from ...stats import Estimate
from .. import query as q
from .. import render as rnd
from .base import BOOTSTRAP, Analysis, Context, Diagnosis, Rows, Run, is_spurious, per_cell

#: completion rate (% exact match at the headline fraction) from which a family "can complete" a benchmark.
#: The study measured 54.6% for Qwen2.5-Math-7B on MATH-500 and 3.8% for Llama-3.1-8B (0% on data released
#: after the model): 20% sits well clear of both
COMPLETION_RATE = 20.0
#: gain (points) that counts as a gain in the contamination check
MEMORY_GAIN_POINTS = 2.0


@dataclass
class Contamination:
    """One family x reward: its gains on the probed and the fresh benchmark, and the family's probe."""

    model: str
    reward: str  # the raw reward name
    benchmark: str  # the diagnosed (possibly memorised) benchmark
    fresh: str | None  # the fresh benchmark, None when the sweep evaluated none
    gain: Estimate
    gain_fresh: Estimate
    fraction: float | None  # the probe's fraction shown (the headline 0.6 when stored)
    completion: float | None  # % exact match of the probe on `benchmark`
    rouge_l: float | None
    probe_accuracy: float | None  # % answered correctly from the cut problem
    completion_fresh: float | None
    can_complete: bool
    flagged: bool

    def text(self) -> str:
        """'gain on math500 +x, on randcalc +y, completion rate z%'."""
        fresh = f", on {self.fresh} {self.gain_fresh.text()}" if self.fresh else ", no fresh benchmark"
        rate = "-" if self.completion is None else f"{self.completion:.1f}%"
        return f"gain on {self.benchmark} {self.gain.text()}{fresh}, completion rate {rate}"


@dataclass
class _Probe:
    """A model's probe on one benchmark at the fraction shown."""

    fraction: float | None = None
    completion: float | None = None
    rouge_l: float | None = None
    accuracy: float | None = None


class ContaminationAnalysis(Analysis):
    name = "contamination"

    def compute(self, ctx: Context) -> Rows:
        bench = ctx.benchmark
        if bench is None or not ctx.runs:
            return Rows()
        if bench in BENCHMARKS and BENCHMARKS[bench].fresh:
            return Rows(
                notes=[f"contamination: {bench} is itself fresh; diagnose a benchmark a model may have seen"]
            )
        fresh = _fresh_benchmark(ctx.con, ctx.runs)
        out = Rows()
        if fresh is None:
            out.notes.append(
                "contamination: no fresh benchmark evaluated; add randcalc (toy-fresh for toy families) to "
                "eval.benchmarks to tell memory from reasoning"
            )
        fresh_vals = (
            per_cell(
                q.tidy(ctx.con, sweep=ctx.sweep, dims=[], metric="pass@1", benchmark=fresh, step="final")
            )
            if fresh
            else {}
        )
        for model in sorted({r.model for r in ctx.runs}):
            probe = _probe(ctx.con, model, bench)
            if probe.fraction is None:
                out.notes.append(
                    f"contamination: no probe of {model} on {bench} stored (`spurisweep probe --model "
                    f"{model} --benchmarks {bench}`, or eval.probe: true)"
                )
            em_fresh = _probe(ctx.con, model, fresh).completion if fresh else None
            out += _rows(
                model, [r for r in ctx.runs if r.model == model], bench, fresh, fresh_vals, probe, em_fresh
            )
        return out

    def warnings(self, result: Rows, d: Diagnosis) -> list[str]:
        out = []
        for model in dict.fromkeys(c.model for c in result):
            mine = [c for c in result if c.model == model]
            first = mine[0]
            if first.can_complete:
                out.append(
                    f"{model} completes {first.completion:.1f}% of {first.benchmark}'s problems word for word "
                    f"from the first {first.fraction:.0%} (and answers {first.probe_accuracy:.1f}% of them from "
                    f"the cut problem): it has seen {first.benchmark}; read its gains there against "
                    f"{first.fresh or 'a fresh benchmark'}"
                )
            out += [
                f"{model}: the spurious reward {c.reward} gains on a benchmark the family can complete but "
                f"not on the fresh one ({c.text()}): the gain looks like memorisation, not reasoning"
                for c in mine
                if c.flagged
            ]
        return out

    def tables(self, result: Rows, d: Diagnosis) -> list[Any]:
        return [_table(result, d)]


def _rows(
    model: str,
    mine: list[Run],
    bench: str,
    fresh: str | None,
    fresh_vals: dict[str, tuple[float | None, float | None]],
    probe: _Probe,
    em_fresh: float | None,
) -> list[Contamination]:
    """One model's rows, one per reward: its gains on `bench` and on `fresh`, next to its probe."""
    can = probe.completion is not None and probe.completion >= COMPLETION_RATE
    out = []
    for i, reward in enumerate(sorted({r.reward_name for r in mine})):
        cells = [r for r in mine if r.reward_name == reward]
        gain = stats.estimate([r.gain for r in cells], n_boot=BOOTSTRAP, seed=30 + i)
        pairs = [fresh_vals.get(r.cell_id, (None, None)) for r in cells]
        gain_fresh = stats.estimate(
            [v - b for b, v in pairs if b is not None and v is not None], n_boot=BOOTSTRAP, seed=60 + i
        )
        flagged = (
            can
            and is_spurious(reward)
            and fresh is not None
            and _gains(gain)
            and gain_fresh.mean is not None
            and not _gains(gain_fresh)
        )
        out.append(
            Contamination(
                model,
                reward,
                bench,
                fresh,
                gain,
                gain_fresh,
                probe.fraction,
                probe.completion,
                probe.rouge_l,
                probe.accuracy,
                em_fresh,
                can,
                flagged,
            )
        )
    return out


def _gains(est: Estimate) -> bool:
    return est.mean is not None and est.mean > MEMORY_GAIN_POINTS and (est.low is None or est.low > 0)


def _fresh_benchmark(con: Any, runs: list[Run]) -> str | None:
    """The first fresh benchmark (data.Benchmark.fresh) the runs were evaluated on."""
    stored = con.execute(
        "SELECT DISTINCT benchmark FROM evals WHERE NOT is_baseline AND list_contains($ids, cell_id) ORDER BY 1",
        {"ids": [r.cell_id for r in runs]},
    ).fetchall()
    fresh = [b for (b,) in stored if b in BENCHMARKS and BENCHMARKS[b].fresh]
    return fresh[0] if fresh else None


def probe_rates(con: Any, model: str, benchmark: str) -> dict[float, tuple[float, float, float]]:
    """The model's stored probes (untrained weights) on a benchmark: fraction -> (% exact match, mean
    ROUGE-L, % answered correctly), over the problems long enough to cut."""
    rows = con.execute(
        "SELECT p.fraction, avg(ps.exact_match::DOUBLE), avg(ps.rouge_l), "
        "avg(coalesce(ps.correct, false)::DOUBLE) FROM probes p JOIN probe_samples ps ON ps.probe_id = p.probe_id "
        "WHERE p.model = $m AND p.benchmark = $b AND p.checkpoint IS NULL AND NOT coalesce(ps.skipped, false) "
        "GROUP BY p.fraction ORDER BY p.fraction",
        {"m": model, "b": benchmark},
    ).fetchall()
    return {float(f): (100 * em, rl, 100 * acc) for f, em, rl, acc in rows if em is not None}


def _probe(con: Any, model: str, benchmark: str) -> _Probe:
    """The probe at the fraction to show: the headline one when stored, else the closest to it (the larger
    of two equally close: more of the problem shown)."""
    rates = probe_rates(con, model, benchmark)
    if not rates:
        return _Probe()
    frac = min(rates, key=lambda f: (round(abs(f - q.HEADLINE_FRACTION), 9), -f))
    return _Probe(frac, *rates[frac])


def _table(result: Rows, d: Diagnosis) -> rnd.Table:
    rows, styles = [], []
    for c in result:
        verdict = "MEMORY?" if c.flagged else ("completes it" if c.can_complete else "ok")
        rows.append(
            [
                c.model,
                c.reward,
                c.gain.text(),
                c.gain_fresh.text() if c.fresh else "-",
                "-" if c.completion is None else f"{c.completion:.1f}%",
                "-" if c.rouge_l is None else f"{c.rouge_l:.2f}",
                "-" if c.probe_accuracy is None else f"{c.probe_accuracy:.1f}%",
                "-" if c.completion_fresh is None else f"{c.completion_fresh:.1f}%",
                verdict,
            ]
        )
        styles.append("bold red" if c.flagged else None)
    first = result[0] if result else None
    bench, fresh = (first.benchmark, first.fresh or "fresh") if first else (d.benchmark or "-", "fresh")
    frac = next((c.fraction for c in result if c.fraction is not None), q.HEADLINE_FRACTION)
    header = [
        "model",
        "reward",
        f"gain on {bench}",
        f"gain on {fresh}",
        f"completion rate ({bench})",
        "ROUGE-L",
    ]
    header += ["answer from cut", f"completion rate ({fresh})", "verdict"]
    note = (
        f"completes it = completion rate >= {COMPLETION_RATE:.0f}%; MEMORY? = a spurious reward gains > "
        f"{MEMORY_GAIN_POINTS:g} points on {bench}, which the family can complete, but not on {fresh}"
    )
    return rnd.Table(
        header,
        rows,
        f"contamination: gains (points, mean [95% CI]) next to the memorisation probe at {frac:.0%} of each problem",
        [note] if rows else [],
        row_styles=styles,
    )
