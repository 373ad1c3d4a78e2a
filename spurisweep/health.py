"""Training-health flags from a cell's logged metrics (RESEARCH.md, "Diagnostics worth computing").

Each flag names the rollout step where it first held and a detail a person can read:
  reward_std_collapse   reward std < 0.1 for `window` consecutive rollout steps
  entropy_collapse      entropy below 10% of its first value (or < 0.02) for `window` steps
  kl_explosion          KL above 1.0 (only when KL is computed, beta > 0)
  zero_advantage        a rollout where every group had identical rewards (all advantages 0)
  mostly_truncated      over half the completions hit the length limit, averaged over the last window
"""

from __future__ import annotations

from typing import Any

WINDOW = 3


def per_step(rows: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    """(rollout step, mean value) for a metric, in step order."""
    acc: dict[int, list[float]] = {}
    for r in rows:
        if key in r and r[key] == r[key]:  # skip NaN
            acc.setdefault(int(r.get("step", 0)), []).append(float(r[key]))
    return [(s, sum(v) / len(v)) for s, v in sorted(acc.items())]


def _run(series: list[tuple[int, float]], pred, window: int) -> int | None:
    streak = 0
    for step, v in series:
        streak = streak + 1 if pred(v) else 0
        if streak >= window:
            return step
    return None


def flags(rows: list[dict[str, Any]], window: int = WINDOW) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    w = max(1, min(window, len(per_step(rows, "reward_std")) or 1))
    std = per_step(rows, "reward_std")
    if (s := _run(std, lambda v: v < 0.1, w)) is not None:
        out.append({"flag": "reward_std_collapse", "step": s, "detail": f"reward std < 0.1 for {w} steps"})
    ent = per_step(rows, "entropy")
    if ent:
        floor = max(0.1 * ent[0][1], 0.02)
        if (s := _run(ent, lambda v: v < floor, w)) is not None:
            out.append({"flag": "entropy_collapse", "step": s,
                        "detail": f"entropy < {floor:.3g} (10% of {ent[0][1]:.3g}) for {w} steps"})
    kl = per_step(rows, "kl")
    if (s := _run(kl, lambda v: v > 1.0, 1)) is not None:
        out.append({"flag": "kl_explosion", "step": s, "detail": "KL > 1.0"})
    zero = per_step(rows, "frac_reward_zero_std")
    if (s := _run(zero, lambda v: v >= 1.0, 1)) is not None:
        n = sum(1 for _, v in zero if v >= 1.0)
        out.append({"flag": "zero_advantage", "step": s, "detail": f"{n} rollout(s) with all advantages 0"})
    trunc = per_step(rows, "completions/clipped_ratio")
    if trunc:
        tail = trunc[-w:]
        mean = sum(v for _, v in tail) / len(tail)
        if mean > 0.5:
            out.append({"flag": "mostly_truncated", "step": tail[0][0],
                        "detail": f"{mean:.0%} of completions truncated over the last {len(tail)} steps"})
    return out
