"""Intrinsic rewards: scores of the policy's own next-token distributions over the response; no answer read.

* `entropy` (RENT, arXiv 2505.22660; EM-RL, arXiv 2505.15134): the negative entropy of the response.
* `self_certainty` (Intuitor / RLIF, arXiv 2505.19590): the mean over the response of KL(U || p_t).

Both need per-token statistics of the policy that sampled the rollout. The trainer computes them where the
logits are (training.trainer.SpuriTrainer) and passes them to the reward as keyword arguments, one list of
floats per completion with one value per response token; a reward says which ones it reads in its
`token_stats` attribute (compositions read the union of their parts'):

* `token_logp`: log p_t(y_t), the sampled token's log-probability;
* `token_entropy`: H(p_t) = -sum_v p_t(v) log p_t(v), over the full vocabulary;
* `token_self_certainty`: KL(U || p_t) = -log V - (1/V) sum_v log p_t(v), V the logits' width.

p_t is the temperature-scaled distribution the rollout was sampled from (TRL's `temperature`, as TRL's own
log-probabilities). The generation engine's log-probabilities are not used: vLLM returns the top-k only (an
entropy over the vocabulary needs every logit) and computes the sampled token's with other kernels than
the trainer's. Cost (SpuriTrainer._token_stats): `token_logp` and `token_entropy` come from TRL's fused LM
head (no logits materialised), read off the old-log-probability forward TRL already runs (vLLM with
importance-sampling correction, or several updates per rollout) at no extra cost; else from one no-grad
forward over the rollout, the one spurisweep runs anyway for its token_prob/mean metric (no extra cost
either). `token_self_certainty` needs the mean log-probability over the vocabulary, which the fused head
does not give: one no-grad forward over the rollout with the completion logits materialised, one
micro-batch (per_device_train_batch_size rows x response length x vocabulary) at a time, about a third
of a training step's compute.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .registry import SUITE, RewardContext, register

LOGP = "token_logp"
ENTROPY = "token_entropy"
SELF_CERTAINTY = "token_self_certainty"
#: every per-token statistic the trainer can pass, in the order it computes them
TOKEN_STATS = (LOGP, ENTROPY, SELF_CERTAINTY)
LEVELS = ("token", "sequence")
AGGREGATES = ("mean", "sum")


def needs(fn: Any, *stats: str) -> Any:
    """Mark reward `fn` as reading these per-token statistics (the trainer computes only what is asked)."""
    fn.token_stats = tuple(s for s in TOKEN_STATS if s in stats)
    return fn


def token_stats(fn: Any) -> tuple[str, ...]:
    """The per-token statistics reward `fn` reads (none for a reward of the text alone)."""
    return tuple(getattr(fn, "token_stats", ()))


def _stat(kwargs: dict[str, Any], name: str, reward: str, n: int) -> list[Sequence[float]]:
    values = kwargs.get(name)
    if values is None:
        raise ValueError(
            f"the {reward} reward needs the policy's per-token statistics ({name}): it is computed by "
            "spurisweep's trainer (training.trainer.SpuriTrainer), which passes them to the reward"
        )
    if len(values) != n:
        raise ValueError(f"the {reward} reward got {len(values)} rows of {name} for {n} completions")
    return values


def aggregate(values: Sequence[float], how: str) -> float | None:
    """The mean (None for an empty response: no token to score) or the sum (0.0 for an empty one)."""
    if how == "sum":
        return math.fsum(values)
    return math.fsum(values) / len(values) if len(values) else None


def check_entropy(params: dict[str, Any]) -> None:
    if params.get("level") not in LEVELS:
        raise ValueError(
            f"entropy reward: level must be one of {', '.join(LEVELS)}, got {params.get('level')!r}"
        )
    if params.get("aggregate") not in AGGREGATES:
        raise ValueError(
            f"entropy reward: aggregate must be one of {', '.join(AGGREGATES)}, got {params.get('aggregate')!r}"
        )


@register(
    "entropy",
    spurious=True,
    expected=SUITE,
    params={"level": "token", "aggregate": "mean"},
    check=check_entropy,
    description="minus the response's entropy under the policy (RENT; level token: -agg H(p_t), "
    "sequence: agg log p(y_t)); aggregate mean or sum",
)
def entropy_reward(params: dict[str, Any], ctx: RewardContext):
    """level "token" (RENT's reward): -agg_t H(p_t), the entropies of the next-token distributions along the
    response. level "sequence" (EM-RL's trajectory reward): agg_t log p_t(y_t), the sampled tokens'
    log-probabilities, i.e. minus a one-sample estimate of the sequence's entropy. aggregate "mean" (RENT)
    or "sum" (EM-RL: favours short responses). Spurious in the paper's sense: it reads no answer.

    Statistics: token_entropy (level token) or token_logp (level sequence), both from TRL's fused LM head:
    free where TRL computes old log-probabilities, else the no-grad forward spurisweep's token_prob/mean
    metric runs anyway (module docstring)."""
    check_entropy(params)
    level, how = params["level"], params["aggregate"]
    stat = ENTROPY if level == "token" else LOGP
    sign = -1.0 if level == "token" else 1.0

    def entropy(completions, **kwargs) -> list[float | None]:
        rows = _stat(kwargs, stat, "entropy", len(completions))
        out: list[float | None] = []
        for row in rows:
            value = aggregate(row, how)
            out.append(None if value is None else sign * value)
        return out

    return needs(entropy, stat)


@register(
    "self_certainty",
    spurious=True,
    expected=SUITE,
    description="the mean over the response of KL(uniform || p_t) (Intuitor / RLIF)",
)
def self_certainty_reward(params: dict[str, Any], ctx: RewardContext):
    """Intuitor's reward: (1/T) sum_t KL(U || p_t) = (1/T) sum_t (-log V - (1/V) sum_v log p_t(v)), T the
    response's tokens, V the vocabulary (the logits' width); None for an empty response. Intuitor's code
    drops the constant -log V, which no group-normalised advantage sees. Spurious in the paper's sense: it
    reads no answer.

    Statistics: token_self_certainty, which needs the full vocabulary's log-probabilities: one extra no-grad
    forward over the rollout with materialised completion logits (module docstring)."""

    def self_certainty(completions, **kwargs) -> list[float | None]:
        rows = _stat(kwargs, SELF_CERTAINTY, "self_certainty", len(completions))
        return [aggregate(row, "mean") for row in rows]

    return needs(self_certainty, SELF_CERTAINTY)
