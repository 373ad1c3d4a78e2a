"""Spurious-reward sensitivity: per model (and algorithm), the gain of each spurious reward next to
ground truth's (RESEARCH.md, "Diagnostics worth computing").

The `random` reward is the matched comparison: its run is the one whose gamma is closest to the
ground-truth runs' mean training reward (their hit rate), so both see the same share of rewarded
completions. Every other spurious reward (rewards.REGISTRY[name].spurious; a composition when all its
parts are, base.is_spurious) gets its own row under the same rule. A family whose spurious gain exceeds
SENSITIVITY_POINTS with a 95% interval that excludes 0 is flagged: its gains need cross-family checks.
The interval is the paired one over problems and seeds (deltas.paired_gain) when the store has the
samples, else the bootstrap over runs (none with one run: not called).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ... import stats
from ...metrics import mean_std
from ...stats import Estimate
from ..deltas import paired_gain
from .base import (
    BOOTSTRAP,
    Analysis,
    Context,
    Diagnosis,
    Rows,
    Run,
    closest_gamma,
    groups,
    is_spurious,
    table,
    who,
)

SENSITIVITY_POINTS = 5.0


@dataclass
class Sensitivity:
    model: str
    clip: str
    ground_truth: Estimate
    random: Estimate  # the spurious reward's gain (on the `random` row, at the matched gamma)
    gamma: float | None
    hit_rate: float | None
    flagged: bool
    note: str = ""
    paired: Any = None  # deltas.Paired: the spurious runs against their baseline, paired over problems
    reward: str = "random"
    algorithm: str = "grpo"


class SensitivityAnalysis(Analysis):
    name = "sensitivity"

    def compute(self, ctx: Context) -> Rows:
        out = Rows()
        for model, algorithm in groups(ctx.runs):
            mine = [
                r for r in ctx.runs if (r.model, r.algorithm) == (model, algorithm) and r.gain is not None
            ]
            spurious = sorted({r.reward_name for r in mine if is_spurious(r.reward_name)}, key=_random_first)
            for reward in spurious:
                out.append(_row(ctx, mine, reward))
        return out

    def notes(self, result: Rows, d: Diagnosis) -> list[str]:
        if result:
            return []
        return ["spurious-reward sensitivity needs a `random` reward run (and ideally `ground_truth`)"]

    def warnings(self, result: Rows, d: Diagnosis) -> list[str]:
        return [
            f"{who(s.model, s.algorithm)}: the {s.reward} reward gains {s.random.mean:+.1f} points "
            f"(> {SENSITIVITY_POINTS:.0f}): this family is spurious-reward sensitive; "
            "its gains need cross-family checks"
            for s in result
            if s.flagged
        ]

    def tables(self, result: Rows, d: Diagnosis) -> list[Any]:
        by_algorithm = any(s.algorithm != "grpo" for s in result)
        by_reward = any(s.reward != "random" for s in result)
        gain = "spurious gain" if by_reward else "random gain"
        header = [
            "model",
            *(["algorithm"] if by_algorithm else []),
            *(["reward"] if by_reward else []),
            "clip",
            "gt hit rate",
            "random gamma",
            "ground_truth gain",
            gain,
            f"{'gain' if by_reward else 'random'} > {SENSITIVITY_POINTS:.0f}?",
        ]
        rows = [
            [
                s.model,
                *([s.algorithm] if by_algorithm else []),
                *([s.reward] if by_reward else []),
                s.clip,
                "-" if s.hit_rate is None else f"{s.hit_rate:.2f}",
                "-" if s.gamma is None else f"{s.gamma:g}",
                s.ground_truth.text(),
                _paired_text(s) or s.random.text(),
                "SENSITIVE" if s.flagged else "ok",
            ]
            for s in result
        ]
        methods = dict.fromkeys(f"{gain}: {s.paired.delta.method}" for s in result if s.paired)
        labels = [", ".join([who(s.model, s.algorithm), *([s.reward] if by_reward else [])]) for s in result]
        return [
            table(
                f"spurious-reward sensitivity: gain vs the untrained model on {d.benchmark} "
                "(points, mean [95% CI])",
                header,
                rows,
                [
                    *methods,
                    *(f"{label}: {s.note}" for label, s in zip(labels, result, strict=True) if s.note),
                ],
            )
        ]


def _random_first(reward: str) -> tuple[bool, str]:
    return reward != "random", reward


def _row(ctx: Context, mine: list[Run], reward: str) -> Sensitivity:
    """One model's (and algorithm's) spurious reward against ground truth under the same clip mode."""
    runs = [r for r in mine if r.reward_name == reward]
    clips = [r.clip for r in runs]
    clip = "standard" if "standard" in clips else max(set(clips), key=clips.count)
    gt = [r for r in mine if r.reward_name == "ground_truth" and r.clip == clip]
    hit = mean_std([r.train_reward for r in gt if r.train_reward is not None])[0]
    chosen = [r for r in runs if r.clip == clip]
    notes, gamma = [], None
    if reward == "random":
        gamma = closest_gamma(chosen, hit)
        chosen = [r for r in chosen if r.gamma == gamma]
        notes += _hit_rate_notes(hit, gamma, gt)
    est_r = stats.estimate([r.gain for r in chosen], n_boot=BOOTSTRAP, seed=1)
    est_g = stats.estimate([r.gain for r in gt], n_boot=BOOTSTRAP, seed=2)
    if clip != "standard":
        notes.append(f"compared under clip={clip}")
    paired = _paired(ctx, [r.cell_id for r in chosen])
    low = paired.delta.low if paired is not None else est_r.low
    over = est_r.mean is not None and est_r.mean > SENSITIVITY_POINTS
    flagged = over and low is not None and low > 0
    if over and not flagged:
        notes.append(f"the {reward} gain's 95% interval does not exclude 0: not called sensitive")
    model, algorithm = mine[0].model, mine[0].algorithm
    return Sensitivity(
        model, clip, est_g, est_r, gamma, hit, flagged, "; ".join(notes), paired, reward, algorithm
    )


def _hit_rate_notes(hit: float | None, gamma: float | None, gt: list[Run]) -> list[str]:
    """Why the random run is not matched to the ground-truth hit rate, when it is not."""
    if hit is None:
        why = "no ground_truth run" if not gt else "no training reward logged"
        return [f"no ground-truth hit rate: {why}; random at gamma={gamma}"]
    if gamma is not None and abs(gamma - hit) > 0.15:
        return [
            f"no random run near the hit rate {hit:.2f} (closest gamma {gamma}): sweep "
            f"reward_params.random.gamma: [{hit:.2f}] for a matched comparison"
        ]
    return []


def _paired(ctx: Context, cell_ids: list[str]) -> Any:
    if ctx.con is None or ctx.benchmark is None or not cell_ids:
        return None
    return paired_gain(ctx.con, cell_ids, ctx.benchmark)


def _paired_text(s: Sensitivity) -> str | None:
    """The gain with its paired interval (≈: the interval contains 0), when the store had the rows."""
    if s.paired is None:
        return None
    return f"{stats.format_delta(s.paired.delta)} (n={s.paired.delta.n_runs})"
