"""Clip modes -> TRL GRPOConfig arguments (RESEARCH.md, "Clip modes").

Clipping only acts when a rollout batch is reused for several gradient updates (TRL:
steps_per_generation > 1 or num_iterations > 1). `on_policy` removes that reuse: one update per rollout,
so the ratio is exactly 1. `no_clip` keeps the reuse but makes the clip range so wide it never binds
(TRL has no flag to switch clipping off).
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import ClipParams

NO_CLIP_EPS = 1e9


@dataclass(frozen=True)
class ClipMode:
    name: str
    eps_low: float
    eps_high: float
    on_policy: bool = False
    description: str = ""


CLIP_MODES: dict[str, ClipMode] = {
    "standard": ClipMode("standard", 0.2, 0.2, description="symmetric ratio clip, eps=0.2"),
    "clip_higher": ClipMode("clip_higher", 0.2, 0.28, description="DAPO Clip-Higher: eps_low 0.2, eps_high 0.28"),
    "no_clip": ClipMode("no_clip", NO_CLIP_EPS, NO_CLIP_EPS, description="the ratio is never clipped"),
    "on_policy": ClipMode(
        "on_policy", 0.2, 0.2, on_policy=True, description="one update per rollout: the ratio stays 1"
    ),
}


def resolve_params(mode: str, params: ClipParams) -> ClipParams:
    """Fill the mode's default epsilons; explicit values win (except no_clip, which has none to set)."""
    m = CLIP_MODES[mode]
    if mode == "no_clip":
        return ClipParams(eps_low=None, eps_high=None)
    return ClipParams(eps_low=params.eps_low or m.eps_low, eps_high=params.eps_high or m.eps_high)


def grpo_args(mode: str, params: ClipParams) -> dict[str, float]:
    if mode == "no_clip":
        return {"epsilon": NO_CLIP_EPS, "epsilon_high": NO_CLIP_EPS}
    p = resolve_params(mode, params)
    assert p.eps_low is not None and p.eps_high is not None
    return {"epsilon": p.eps_low, "epsilon_high": p.eps_high}
