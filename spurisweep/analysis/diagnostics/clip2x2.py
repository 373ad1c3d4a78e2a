"""The clip 2x2: {standard, clip_higher} x {random, ground_truth}, per model and algorithm with all four
cells. The four cell means with bootstrap intervals over seeds, the two simple effects of Clip-Higher,
their interaction, and which reading the data supports: clipping bias (Clip-Higher hurts the random run)
or rare exploration (Clip-Higher helps the clean run). The random cells are those at the gamma closest
to the ground-truth runs' hit rate. Intervals are percentile bootstrap intervals over runs (seeds), each
group resampled independently (stats.estimate, stats.difference)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ... import stats
from ...metrics import mean_std
from ...stats import Effect, Estimate
from .base import BOOTSTRAP, Analysis, Context, Diagnosis, Rows, Run, closest_gamma, groups, table, who

CLIPS = ("standard", "clip_higher")
REWARDS = ("random", "ground_truth")
FEW_SEEDS = 5
LEAN = 0.8  # bootstrap probability of the expected sign for an effect to count as "suggested"


@dataclass
class ClipTwoByTwo:
    model: str
    benchmark: str
    gamma: float | None
    cells: dict[str, Estimate]  # "standard|random" -> gain estimate
    effect_random: Effect  # clip_higher - standard under random
    effect_ground_truth: Effect  # clip_higher - standard under ground_truth
    interaction: Effect  # effect_ground_truth - effect_random
    clipping_bias: str  # supported | suggested | not supported | contradicted
    rare_exploration: str
    reading: str  # clipping bias | rare exploration | both | neither
    confidence: str  # high | moderate | low | none
    statement: str
    notes: list[str] = field(default_factory=list)
    algorithm: str = "grpo"


class ClipTwoByTwoAnalysis(Analysis):
    name = "clip2x2"

    def compute(self, ctx: Context) -> Rows:
        out = Rows()
        for model, algorithm in groups(ctx.runs):
            mine = [
                r
                for r in ctx.runs
                if (r.model, r.algorithm) == (model, algorithm)
                and r.clip in CLIPS
                and r.reward_name in REWARDS
            ]
            if not mine:
                continue
            gamma, cells = _groups(mine)
            missing = [k.replace("|", " x ") for k, v in cells.items() if not v]
            if not missing:
                out.append(_analyse(model, algorithm, ctx.benchmark or "-", gamma, cells))
            elif len(missing) < len(cells):
                out.notes.append(
                    f"{who(model, algorithm)}: the clip 2x2 is incomplete "
                    f"(no finished run for {', '.join(missing)})"
                )
        return out

    def tables(self, result: Rows, d: Diagnosis) -> list[Any]:
        return [_table(x) for x in result]


def _groups(mine: list[Run]) -> tuple[float | None, dict[str, list[float]]]:
    """The random runs' matched gamma, and the gains of each of the four cells ("standard|random", ...)."""
    rates = [r.train_reward for r in mine if r.reward_name == "ground_truth" and r.train_reward is not None]
    gamma = closest_gamma([r for r in mine if r.reward_name == "random"], mean_std(rates)[0])
    cells = {
        f"{clip}|{reward}": [
            r.gain
            for r in mine
            if r.clip == clip
            and r.reward_name == reward
            and r.gain is not None
            and (reward != "random" or r.gamma == gamma)
        ]
        for clip in CLIPS
        for reward in REWARDS
    }
    return gamma, cells


def _analyse(
    model: str, algorithm: str, benchmark: str, gamma: float | None, groups: dict[str, list[float]]
) -> ClipTwoByTwo:
    cells = {k: stats.estimate(v, n_boot=BOOTSTRAP, seed=i) for i, (k, v) in enumerate(groups.items())}
    e_r, boot_r = stats.difference(
        groups["clip_higher|random"], groups["standard|random"], n_boot=BOOTSTRAP, seed=10
    )
    e_g, boot_g = stats.difference(
        groups["clip_higher|ground_truth"], groups["standard|ground_truth"], n_boot=BOOTSTRAP, seed=20
    )
    inter_mean = None if e_r.mean is None or e_g.mean is None else e_g.mean - e_r.mean
    inter = stats.effect(None if boot_r is None or boot_g is None else boot_g - boot_r, inter_mean)
    bias = stats.direction(e_r, want_negative=True, lean=LEAN)
    explore = stats.direction(e_g, want_negative=False, lean=LEAN)
    reading = _reading(bias, explore)
    n_min = min(len(v) for v in groups.values())
    lean = [name for name, d in (("clipping bias", bias), ("rare exploration", explore)) if d == "suggested"]
    if n_min < 2:
        confidence = "none"
    elif reading != "neither" or not lean:  # a supported reading, or a clean null result
        confidence = "high" if n_min >= FEW_SEEDS else "moderate"
    else:  # inconclusive: the estimates lean one way but the intervals include 0
        confidence = "low"
    statement = _statement(e_r, e_g, bias, explore, reading, confidence, lean, n_min)
    notes = []
    if 2 <= n_min < FEW_SEEDS:
        notes.append(
            f"only {n_min} seeds in the smallest cell: percentile bootstrap intervals are too narrow "
            "with few seeds; read the confidence as optimistic"
        )
    if inter.mean is not None:
        notes.append(f"interaction (effect under ground_truth - effect under random) {inter.text()}")
    return ClipTwoByTwo(
        model,
        benchmark,
        gamma,
        cells,
        e_r,
        e_g,
        inter,
        bias,
        explore,
        reading,
        confidence,
        statement,
        notes,
        algorithm,
    )


def _reading(bias: str, explore: str) -> str:
    if bias == "supported" and explore == "supported":
        return "both"
    if bias == "supported":
        return "clipping bias"
    if explore == "supported":
        return "rare exploration"
    return "neither"


def _statement(
    e_r: Effect,
    e_g: Effect,
    bias: str,
    explore: str,
    reading: str,
    confidence: str,
    lean: list[str],
    n_min: int,
) -> str:
    """The 2x2's reading in words: both simple effects, then what the data support."""
    parts = [
        f"Clip-Higher changed the random run by {e_r.text()} points"
        + (f" (bootstrap P(<0) = {e_r.p_negative:.2f})" if e_r.p_negative is not None else "")
        + f": clipping bias {bias}.",
        f"It changed the ground-truth run by {e_g.text()} points"
        + (f" (bootstrap P(>0) = {e_g.p_positive:.2f})" if e_g.p_positive is not None else "")
        + f": rare exploration {explore}.",
    ]
    if confidence == "none":
        parts.append(
            "With one run in some cell there is no interval: treat the reading as a guess and add seeds."
        )
    elif reading == "neither":
        parts.append(
            "Neither reading is supported at 95%"
            + (
                f"; the estimates lean towards {' and '.join(lean)} (bootstrap P >= {LEAN}): add seeds."
                if lean
                else "; Clip-Higher shows no effect the data can distinguish from 0."
            )
        )
    else:
        parts.append(
            f"The data support {reading} (95% bootstrap interval excludes 0, {n_min}+ seeds per cell)."
        )
    return " ".join(parts)


def _table(x: ClipTwoByTwo) -> Any:
    rows = [
        [
            reward,
            x.cells[f"standard|{reward}"].text(),
            x.cells[f"clip_higher|{reward}"].text(),
            (x.effect_random if reward == "random" else x.effect_ground_truth).text(),
        ]
        for reward in REWARDS
    ]
    rows.append(["interaction", "", "", x.interaction.text()])
    gamma = f", random gamma={x.gamma:g}" if x.gamma is not None else ""
    return table(
        f"clip 2x2 on {who(x.model, x.algorithm)} ({x.benchmark} gain, points, mean [95% CI]{gamma}): reading = "
        f"{x.reading}, confidence = {x.confidence}",
        ["reward", "standard", "clip_higher", "clip_higher - standard"],
        rows,
        [x.statement, *x.notes],
    )
