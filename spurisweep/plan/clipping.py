"""Clip modes -> TRL GRPOConfig arguments (RESEARCH.md, "Clip modes").

    standard     symmetric PPO ratio clip, eps = 0.2                 epsilon=0.2
    clip_higher  DAPO Clip-Higher, eps_low 0.2, eps_high 0.28        epsilon=0.2, epsilon_high=0.28
    no_clip      the ratio is never clipped                          epsilon=epsilon_high=1e9 (TRL has no flag)
    on_policy    one gradient update per rollout: the ratio is 1     mini-batch = rollout, num_iterations=1

Clipping only acts when a rollout batch is reused for several gradient updates (TRL: steps_per_generation
larger than gradient_accumulation_steps, or num_iterations > 1); with one update per rollout TRL does not
even compute the old log-probabilities, so the ratio is exactly 1. `on_policy` is therefore a batch shape,
not an epsilon, and training.batch_shape reads it from here.

A mode carries its behaviour (`clipped`, `on_policy`); the planner, the batch layout and the loss-type check
read those, never a mode's name, so a new mode is one `ClipMode` entry in CLIP_MODES.

A clip axis value may also be a mapping, `{eps_low: 0.1, eps_high: 0.28}` (optionally with a `name`):
normalise() turns it into a mode and its epsilons, the same cell as `clip: <mode>` with those clip_params.

The modes describe TRL's PPO-style clipped losses (loss_type grpo, bnpo, dr_grpo, dapo, luspo). `cispo`
reads epsilon_high as a cap on the importance weight and `sapo`/`vespo` replace the hard clip altogether,
so a mode whose clip can act (`ratio_clip`) has no defined meaning with them (check_loss_type).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError, suggest
from .spec import ClipParams, first_error

NO_CLIP_EPS = 1e9
#: TRL 1.16 loss types whose loss is min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)
PPO_CLIP_LOSSES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
#: the keys a clip axis value given as a mapping may have
MAPPING_KEYS = ("name", "eps_low", "eps_high")


@dataclass(frozen=True)
class ClipMode:
    """A clip mode and its behaviour. `clipped`: the ratio is clipped to [1 - eps_low, 1 + eps_high] and the
    epsilons can be set (False: never clipped, no epsilon to set); `on_policy`: one gradient update per
    rollout, so the ratio stays 1 and no clip acts (the batch layout follows it)."""

    name: str
    eps_low: float
    eps_high: float
    on_policy: bool = False
    description: str = ""
    clipped: bool = True

    @property
    def ratio_clip(self) -> bool:
        """Whether the PPO ratio clip can act at all: a clipped mode whose ratio can leave 1."""
        return self.clipped and not self.on_policy


CLIP_MODES: dict[str, ClipMode] = {
    "standard": ClipMode("standard", 0.2, 0.2, description="symmetric ratio clip, eps=0.2"),
    "clip_higher": ClipMode(
        "clip_higher", 0.2, 0.28, description="DAPO Clip-Higher: eps_low 0.2, eps_high 0.28"
    ),
    "no_clip": ClipMode(
        "no_clip", NO_CLIP_EPS, NO_CLIP_EPS, description="the ratio is never clipped", clipped=False
    ),
    "on_policy": ClipMode(
        "on_policy", 0.2, 0.2, on_policy=True, description="one update per rollout: the ratio stays 1"
    ),
}


def resolve_params(mode: str, params: ClipParams) -> ClipParams:
    """Fill the mode's default epsilons; explicit values win.

    A mode that never clips has no epsilon to set: its params are returned as given, so that an explicit
    value survives into the resolved config and check_params can reject it at plan time (rather than drop
    it silently).
    """
    m = CLIP_MODES[mode]
    if not m.clipped:
        return params
    low = m.eps_low if params.eps_low is None else params.eps_low
    high = m.eps_high if params.eps_high is None else params.eps_high
    return ClipParams(eps_low=low, eps_high=high)


def check_params(mode: str, params: ClipParams, *, file: str | None = None) -> None:
    if not CLIP_MODES[mode].clipped and (params.eps_low is not None or params.eps_high is not None):
        settable = ", ".join(n for n, m in CLIP_MODES.items() if m.clipped)
        raise ConfigError(
            f"clip mode {mode} never clips the ratio, so it takes no eps_low/eps_high; "
            f"use clip: one of {settable} to set epsilons",
            file=file,
            field="clip_params",
        )


def check_loss_type(mode: str, loss_type: str, trl: dict[str, Any], *, file: str | None = None) -> None:
    """Refuse a clip mode that would silently mean something else under a non-PPO loss type."""
    if loss_type in PPO_CLIP_LOSSES or not CLIP_MODES[mode].ratio_clip:
        return
    if "epsilon" in trl or "epsilon_high" in trl:
        return  # the user set TRL's epsilons for this loss type explicitly
    inert = " or ".join(n for n, m in CLIP_MODES.items() if not m.ratio_clip)
    raise ConfigError(
        f"loss_type {loss_type!r} does not use the PPO ratio clip that clip mode {mode!r} sets "
        f"({'epsilon_high caps the importance weight' if loss_type == 'cispo' else 'it has no hard clip'}); "
        f"use clip {inert}, set trl.epsilon/trl.epsilon_high explicitly, or a loss type among "
        f"{', '.join(PPO_CLIP_LOSSES)}",
        file=file,
        field="clip",
    )


def grpo_args(mode: str, params: ClipParams) -> dict[str, float]:
    """epsilon (lower side) and epsilon_high (upper side) for GRPOConfig."""
    if not CLIP_MODES[mode].clipped:
        return {"epsilon": NO_CLIP_EPS, "epsilon_high": NO_CLIP_EPS}
    p = resolve_params(mode, params)
    if p.eps_low is None or p.eps_high is None:  # resolve_params fills both for every clipped mode
        raise ValueError(f"clip mode {mode!r} resolved without epsilons: {p}")
    return {"epsilon": p.eps_low, "epsilon_high": p.eps_high}


# ---------------------------------------------------------------------------------------------- the mapping form
def normalise(
    value: dict[str, Any], *, file: str | None = None, field: str = "grid.clip"
) -> tuple[str, ClipParams]:
    """(mode, explicit epsilons) of a clip axis value given as a mapping.

    With a `name`, that mode and the epsilons given. Without one, the clipped mode whose default epsilons
    are the ones given (`{eps_high: 0.28}` is clip_higher), else the first clipped mode with its epsilons
    replaced (`{eps_low: 0.1, eps_high: 0.28}` is standard(eps_low=0.1,eps_high=0.28)). Epsilons equal to
    the mode's defaults are dropped, so the mapping and the plain name are the same cell (one id)."""
    extra = sorted(set(value) - set(MAPPING_KEYS))
    if extra:
        raise ConfigError(
            f"unknown key {extra[0]!r} in a clip given as a mapping (keys: {', '.join(MAPPING_KEYS)})",
            file=file,
            field=field,
        )
    try:
        params = ClipParams.model_validate({k: v for k, v in value.items() if k != "name"})
    except ValidationError as exc:
        sub, msg = first_error(exc)
        raise ConfigError(msg, file=file, field=f"{field}.{sub}") from None
    name = value.get("name")
    if name is None:
        name = _mode_for(params)
    elif name not in CLIP_MODES:
        raise ConfigError(suggest(str(name), list(CLIP_MODES)), file=file, field=f"{field}.name")
    m, full = CLIP_MODES[name], resolve_params(name, params)
    if m.clipped and (full.eps_low, full.eps_high) == (m.eps_low, m.eps_high):
        params = ClipParams()
    return name, params


def _mode_for(params: ClipParams) -> str:
    clipped = [m for m in CLIP_MODES.values() if m.ratio_clip]
    if not clipped:
        raise ValueError("no clip mode clips the ratio")
    base = clipped[0]
    low = base.eps_low if params.eps_low is None else params.eps_low
    high = base.eps_high if params.eps_high is None else params.eps_high
    return next((m.name for m in clipped if (m.eps_low, m.eps_high) == (low, high)), base.name)


def label(mode: str, params: ClipParams) -> str:
    """How a cell's clip reads in tables: the mode's name, with its epsilons when they are not the mode's
    defaults (`standard(eps_low=0.1,eps_high=0.28)`)."""
    m = CLIP_MODES.get(mode)
    if m is None or not m.clipped:
        return mode
    p = resolve_params(mode, params)
    if (p.eps_low, p.eps_high) == (m.eps_low, m.eps_high):
        return mode
    return f"{mode}(eps_low={p.eps_low:g},eps_high={p.eps_high:g})"
