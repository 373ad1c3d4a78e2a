"""Clip modes -> TRL GRPOConfig arguments (RESEARCH.md, "Clip modes").

    standard     symmetric PPO ratio clip, eps = 0.2                 epsilon=0.2
    clip_higher  DAPO Clip-Higher, eps_low 0.2, eps_high 0.28        epsilon=0.2, epsilon_high=0.28
    no_clip      the ratio is never clipped                          epsilon=epsilon_high=1e9 (TRL has no flag)
    on_policy    one gradient update per rollout: the ratio is 1     mini-batch = rollout, num_iterations=1

Clipping only acts when a rollout batch is reused for several gradient updates (TRL: steps_per_generation
larger than gradient_accumulation_steps, or num_iterations > 1); with one update per rollout TRL does not
even compute the old log-probabilities, so the ratio is exactly 1. `on_policy` is therefore a batch shape,
not an epsilon, and training.batch_shape reads it from here.

The modes describe TRL's PPO-style clipped losses (loss_type grpo, bnpo, dr_grpo, dapo, luspo). `cispo`
reads epsilon_high as a cap on the importance weight and `sapo`/`vespo` replace the hard clip altogether,
so a clip mode other than no_clip/on_policy has no defined meaning with them (check_loss_type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .spec import ClipParams

NO_CLIP_EPS = 1e9
#: TRL 1.16 loss types whose loss is min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
PPO_CLIP_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")


@dataclass(frozen=True)
class ClipMode:
    name: str
    eps_low: float
    eps_high: float
    on_policy: bool = False
    description: str = ""


CLIP_MODES: dict[str, ClipMode] = {
    "standard": ClipMode("standard", 0.2, 0.2, description="symmetric ratio clip, eps=0.2"),
    "clip_higher": ClipMode(
        "clip_higher", 0.2, 0.28, description="DAPO Clip-Higher: eps_low 0.2, eps_high 0.28"
    ),
    "no_clip": ClipMode("no_clip", NO_CLIP_EPS, NO_CLIP_EPS, description="the ratio is never clipped"),
    "on_policy": ClipMode(
        "on_policy", 0.2, 0.2, on_policy=True, description="one update per rollout: the ratio stays 1"
    ),
}


def resolve_params(mode: str, params: ClipParams) -> ClipParams:
    """Fill the mode's default epsilons; explicit values win.

    `no_clip` has no epsilon to set: its params are returned as given, so that an explicit value survives
    into the resolved config and check_params can reject it at plan time (rather than drop it silently).
    """
    m = CLIP_MODES[mode]
    if mode == "no_clip":
        return params
    low = m.eps_low if params.eps_low is None else params.eps_low
    high = m.eps_high if params.eps_high is None else params.eps_high
    return ClipParams(eps_low=low, eps_high=high)


def check_params(mode: str, params: ClipParams, *, file: str | None = None) -> None:
    if mode == "no_clip" and (params.eps_low is not None or params.eps_high is not None):
        raise ConfigError(
            "clip mode no_clip never clips the ratio, so it takes no eps_low/eps_high; "
            "use clip: standard or clip_higher to set epsilons",
            file=file,
            field="clip_params",
        )


def check_loss_type(mode: str, loss_type: str, trl: dict[str, Any], *, file: str | None = None) -> None:
    """Refuse a clip mode that would silently mean something else under a non-PPO loss type."""
    if loss_type in PPO_CLIP_LOSSES or mode in ("no_clip", "on_policy"):
        return
    if "epsilon" in trl or "epsilon_high" in trl:
        return  # the user set TRL's epsilons for this loss type explicitly
    raise ConfigError(
        f"loss_type {loss_type!r} does not use the PPO ratio clip that clip mode {mode!r} sets "
        f"({'epsilon_high caps the importance weight' if loss_type == 'cispo' else 'it has no hard clip'}); "
        f"use clip no_clip or on_policy, set trl.epsilon/trl.epsilon_high explicitly, or a loss type among "
        f"{', '.join(PPO_CLIP_LOSSES)}",
        file=file,
        field="clip",
    )


def grpo_args(mode: str, params: ClipParams) -> dict[str, float]:
    """epsilon (lower side) and epsilon_high (upper side) for GRPOConfig."""
    if mode == "no_clip":
        return {"epsilon": NO_CLIP_EPS, "epsilon_high": NO_CLIP_EPS}
    p = resolve_params(mode, params)
    if p.eps_low is None or p.eps_high is None:  # resolve_params fills both for every other mode
        raise ValueError(f"clip mode {mode!r} resolved without epsilons: {p}")
    return {"epsilon": p.eps_low, "epsilon_high": p.eps_high}
