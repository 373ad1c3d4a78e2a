"""The official code's second advantage whitening (train.token_whitening), as a pure function on tensors.

The paper's code (an OpenRLHF fork) normalises rewards within each group, then whitens the advantages a
second time over every response token of the whole rollout, across all data-parallel ranks: each
response's advantage counts once per token it has, the token mean is subtracted and the result divided by
the token standard deviation (the population one, floored at 1e-8 in variance). A group whose responses
all scored the same then no longer has advantage 0: it gets minus the token mean, a push against
whatever the rest of the rollout pushed.

Written here rather than borrowed because TRL has no such step; SpuriTrainer (trainer.py) applies it to
each rollout. Imports only torch, so the gloo test's worker processes start fast.
"""

from __future__ import annotations

import torch

#: the floor on the token variance before its inverse square root (as in the official code)
VAR_FLOOR = 1e-8


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over the ranks when torch.distributed runs (a no-op in one process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def token_whiten(advantages: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """Whiten per-response advantages over every response token of the rollout, on every rank.

    ``advantages``: one per response of this rank's share of the rollout, shape (B,);
    ``completion_mask``: which of each response's tokens count, shape (B, T). Every rank must call this
    with its share of the same rollout (it all-reduces when torch.distributed is initialised).
    Returns (a - m) / sqrt(max(v, 1e-8)) with m and v the mean and population variance of the advantages
    weighted by token count over all ranks.
    """
    a = advantages.detach().to(torch.float64)
    n = completion_mask.detach().to(torch.float64).sum(dim=1)
    sums = _all_reduce_sum(torch.stack([(a * n).sum(), n.sum()]))
    if float(sums[1]) == 0.0:  # no response token anywhere (the same on every rank): nothing to weigh
        return advantages
    count = sums[1]
    mean = sums[0] / count
    var = _all_reduce_sum(((a - mean).pow(2) * n).sum().reshape(1))[0] / count
    out = (a - mean) * var.clamp(min=VAR_FLOOR).rsqrt()
    return out.to(advantages.dtype)
