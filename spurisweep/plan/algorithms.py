"""The policy-gradient estimator of a cell (`train.algorithm`), mapped onto what TRL 1.16's GRPOTrainer does.

Every algorithm trains with TRL's GRPOTrainer (spurisweep's SpuriTrainer); an algorithm other than `grpo`
fixes the three settings that make up the estimator, `train.loss_type`, `train.scale_rewards` and
`train.token_whitening`, so that no preset or setting can turn it back into a heuristic silently (an
explicit contradicting value in the sweep, or under `trl:`, is a plan-time error):

    grpo       the settings as given (the paper preset: loss_type bnpo, rewards divided by the group std,
               token whitening). GRPO's heuristics: per-group std scaling and a length-normalised loss.
    dr_grpo    Dr. GRPO (Liu et al. 2025): loss_type dr_grpo (the token sum over a constant, no length
               normalisation), scale_rewards none (no std division), no whitening; the ratio clip follows
               the clip axis.
    rloo       RLOO (Ahmadian et al. 2024): the leave-one-out baseline, A_i = r_i - mean_{j != i} r_j. TRL's
               GRPOTrainer with scale_rewards none computes r_i - mean_j r_j, which is exactly (G-1)/G of it
               for a group of G; the trainer multiplies the advantages by G/(G-1) (SpuriTrainer.advantage_scale)
               so they are RLOO's. Loss: dr_grpo (the sequence's log-probability sum over a constant, RLOO's
               per-sequence objective). The ratio clip follows the clip axis.
    reinforce  REINFORCE with the group mean as baseline (r - mean, no std), loss dr_grpo, strictly on-policy:
               it needs an on-policy clip mode (one update per rollout, num_iterations 1), so the ratio is 1
               and no clip acts: the gradient is the plain policy gradient.

What is not TRL's RLOOTrainer, on purpose: that trainer is a separate class (not a GRPOTrainer), so the
SpuriTrainer's additions (rollout stops, trimmed micro-batches, the colocated evaluation engine, token_prob)
would not apply. The differences from it, for `rloo`: a reused rollout's ratio is clipped per token (TRL's
RLOOTrainer clips one ratio per sequence), and `train.beta`'s KL is a loss term as in GRPO (RLOOTrainer
subtracts it from the reward). A group with an unscorable response (a reward that returned None) has a
baseline over its scored responses but the G/(G-1) factor of a full group.

Heuristics Considered Harmful (Oertell et al.): under a random reward the expected policy gradient of rloo and
reinforce is zero, so their runs should stay flat where grpo (clipped, std-scaled) drifts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, suggest
from . import clipping
from .spec import CellConfig


@dataclass(frozen=True)
class Algorithm:
    """One estimator. `sets`: the train.* settings it fixes; `leave_one_out`: advantages times G/(G-1)
    (the trainer's advantage_scale); `on_policy`: needs a clip mode with one update per rollout."""

    name: str
    sets: tuple[tuple[str, Any], ...] = ()
    leave_one_out: bool = False
    on_policy: bool = False
    description: str = ""


#: the settings an unbiased estimator fixes: no std division, no length normalisation, no whitening
_PLAIN = (("loss_type", "dr_grpo"), ("scale_rewards", "none"), ("token_whitening", False))

ALGORITHMS: dict[str, Algorithm] = {
    "grpo": Algorithm("grpo", description="GRPO: loss_type, scale_rewards and token_whitening as set"),
    "dr_grpo": Algorithm("dr_grpo", _PLAIN, description="Dr. GRPO: no std scaling, no length normalisation"),
    "rloo": Algorithm("rloo", _PLAIN, leave_one_out=True, description="leave-one-out baseline (RLOO)"),
    "reinforce": Algorithm(
        "reinforce",
        _PLAIN,
        on_policy=True,
        description="REINFORCE, group-mean baseline, one update per rollout",
    ),
}
#: GRPOConfig fields that would change the estimator an algorithm fixes: (field, the value it may keep)
_TRL_ESTIMATOR = {
    "loss_type": None,
    "scale_rewards": None,
    "multi_objective_aggregation": "sum_then_normalize",
}


def get(name: str, *, file: str | None = None) -> Algorithm:
    if name not in ALGORITHMS:
        raise ConfigError(suggest(name, list(ALGORITHMS)), file=file, field="train.algorithm")
    return ALGORITHMS[name]


def apply(cfg: CellConfig, explicit: dict[str, str], *, file: str | None = None) -> None:
    """Set the train.* settings the cell's algorithm fixes, after checking that nothing the sweep states
    contradicts it. `explicit`: dotted setting -> where the sweep states it (`settings.train.loss_type`,
    `grid.train.loss_type`, `overrides[0].set.train.loss_type`); a preset's value is replaced silently."""
    alg = get(cfg.train.algorithm, file=file)
    for key, value in alg.sets:
        path = f"train.{key}"
        have = getattr(cfg.train, key)
        if path in explicit and have != value:
            raise ConfigError(
                f"contradicts train.algorithm {alg.name}, which sets {key} to {value!r} ({alg.description}); "
                f"drop it, or use train.algorithm: grpo",
                file=file,
                field=explicit[path],
            )
        setattr(cfg.train, key, value)
    check_trl(cfg, alg, file=file)
    mode = clipping.CLIP_MODES[cfg.clip]
    if alg.on_policy and not mode.on_policy:
        on = ", ".join(n for n, m in clipping.CLIP_MODES.items() if m.on_policy)
        raise ConfigError(
            f"train.algorithm {alg.name} updates once per rollout (no ratio, nothing to clip), but clip mode "
            f"{cfg.clip} reuses the rollout; use clip: {on} (or exclude this combination)",
            file=file,
            field="clip",
        )


def check_trl(cfg: CellConfig, alg: Algorithm, *, file: str | None = None) -> None:
    """A `trl:` override that would change the estimator the algorithm fixes."""
    if not alg.sets:
        return
    fixed = dict(alg.sets)
    for key, keep in _TRL_ESTIMATOR.items():
        if key not in cfg.trl:
            continue
        want, have = fixed.get(key, keep), cfg.trl[key]
        if key == "scale_rewards" and isinstance(have, bool):  # TRL reads True as "group", False as "none"
            have = "group" if have else "none"
        if have != want:
            raise ConfigError(
                f"contradicts train.algorithm {alg.name} ({alg.description}), which needs {key} {want!r}; drop "
                "the override, or use train.algorithm: grpo",
                file=file,
                field=f"trl.{key}",
            )


def advantage_scale(cfg: CellConfig) -> float:
    """What the trainer multiplies the advantages by: G/(G-1) for a leave-one-out baseline, else 1."""
    g = cfg.train.samples_per_prompt
    return g / (g - 1) if ALGORITHMS[cfg.train.algorithm].leave_one_out else 1.0
