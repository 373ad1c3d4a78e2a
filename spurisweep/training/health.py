"""Training-health flags from a cell's logged metrics (RESEARCH.md, "Diagnostics worth computing").

The input is the cell's metrics.jsonl rows (TRL's logged keys plus `update` and `step`). TRL logs the
reward statistics once per rollout (on the update that generated it) and the loss-side statistics
(entropy, KL, clip ratios) on every update, so each metric is first averaged per rollout step. Each flag
names the rollout step where it first held and a detail a person can read:

  reward_std_collapse   reward std < 0.1 for `window` consecutive rollout steps (nothing left to learn from)
  entropy_collapse      entropy below 10% of its first value for `window` consecutive steps
  kl_explosion          KL to the reference above 1.0 on some step (only when KL is computed, beta > 0)
  zero_advantage        a rollout where every group had identical rewards, so every advantage was 0
  mostly_truncated      over half the completions hit the length limit, averaged over the last `window` steps

Runs shorter than `window` steps use their own length as the window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

WINDOW = 3
REWARD_STD_FLOOR = 0.1
ENTROPY_FRACTION = 0.1
KL_CEILING = 1.0
TRUNCATED_FRACTION = 0.5

FLAGS = ("reward_std_collapse", "entropy_collapse", "kl_explosion", "zero_advantage", "mostly_truncated")


@dataclass(frozen=True)
class Thresholds:
    window: int = WINDOW
    reward_std_floor: float = REWARD_STD_FLOOR
    entropy_fraction: float = ENTROPY_FRACTION
    kl_ceiling: float = KL_CEILING
    truncated_fraction: float = TRUNCATED_FRACTION


def per_step(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(rollout step, mean value) for a metric, in step order; rows without it (or NaN/None) are skipped."""
    acc: dict[int, list[float]] = {}
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)) and not math.isnan(float(v)):
            acc.setdefault(int(r.get("step", 0)), []).append(float(v))
    return [(s, sum(v) / len(v)) for s, v in sorted(acc.items())]


def first_run(series: list[tuple[int, float]], pred: Callable[[float], bool], window: int) -> int | None:
    """The step at which `pred` has held for `window` consecutive steps, or None."""
    streak = 0
    for step, v in series:
        streak = streak + 1 if pred(v) else 0
        if streak >= window:
            return step
    return None


def flags(
    rows: list[dict[str, Any]], window: int = WINDOW, t: Thresholds | None = None
) -> list[dict[str, Any]]:
    """The health flags that hold for these metric rows (an empty list for a healthy run)."""
    t = t or Thresholds(window=window)
    out: list[dict[str, Any]] = []

    def win(series: list[tuple[int, float]]) -> int:
        return max(1, min(t.window, len(series)))

    std = per_step(rows, "reward_std")
    if std and (s := first_run(std, lambda v: v < t.reward_std_floor, win(std))) is not None:
        out.append(
            {
                "flag": "reward_std_collapse",
                "step": s,
                "detail": f"reward std < {t.reward_std_floor:g} for {win(std)} consecutive steps",
            }
        )
    ent = per_step(rows, "entropy")
    if ent and ent[0][1] > 0:
        floor = t.entropy_fraction * ent[0][1]
        if (s := first_run(ent, lambda v: v < floor, win(ent))) is not None:
            out.append(
                {
                    "flag": "entropy_collapse",
                    "step": s,
                    "detail": f"entropy < {floor:.3g} ({t.entropy_fraction:.0%} of its first value "
                    f"{ent[0][1]:.3g}) for {win(ent)} consecutive steps",
                }
            )
    kl = per_step(rows, "kl")
    if (s := first_run(kl, lambda v: v > t.kl_ceiling, 1)) is not None:
        peak = max(v for _, v in kl)
        out.append({"flag": "kl_explosion", "step": s, "detail": f"KL > {t.kl_ceiling:g} (peak {peak:.3g})"})
    zero = per_step(rows, "frac_reward_zero_std")
    if (s := first_run(zero, lambda v: v >= 1.0, 1)) is not None:
        n = sum(1 for _, v in zero if v >= 1.0)
        out.append(
            {
                "flag": "zero_advantage",
                "step": s,
                "detail": f"{n} of {len(zero)} rollout(s) where every group's rewards were equal "
                "(all advantages 0)",
            }
        )
    trunc = per_step(rows, "completions/clipped_ratio")
    if trunc:
        tail = trunc[-win(trunc) :]
        mean = sum(v for _, v in tail) / len(tail)
        if mean > t.truncated_fraction:
            out.append(
                {
                    "flag": "mostly_truncated",
                    "step": tail[0][0],
                    "detail": f"{mean:.0%} of completions hit the length limit over the last {len(tail)} steps",
                }
            )
    return out


def names(found: list[dict[str, Any]]) -> list[str]:
    return [f["flag"] for f in found]
