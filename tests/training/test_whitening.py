"""The paper-faithful objective switches: train.is_correction reaches TRL's GRPOConfig, and
train.token_whitening whitens the advantages over every response token of the rollout, as the official
code does (checked against a hand computation, across two gloo processes, and in a real TRL run of the
tiny model). Nothing is mocked."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from spurisweep.plan import grid, grpo, spec
from spurisweep.training.whitening import token_whiten
from tests.helpers_train import make_cell, metrics, run_cell

NO_EVAL = {"benchmarks": ["arith"], "baseline": False, "checkpoints": False, "limit": 2}


def mask(lengths: list[int], width: int = 5) -> torch.Tensor:
    """A completion mask: each row's first `length` tokens count, the rest are padding."""
    return torch.tensor([[1] * n + [0] * (width - n) for n in lengths])


# two groups of two responses: the first scored 1 and 0 (group-normalised to +1 and -1), the second
# scored the same twice (advantage 0 under the group normalisation alone); 2, 1, 3 and 4 tokens long
ADVANTAGES = [1.0, -1.0, 0.0, 0.0]
LENGTHS = [2, 1, 3, 4]


def hand_whitened() -> list[float]:
    """The same rollout whitened by hand: 10 tokens; token mean (2*1 - 1*1 + 0 + 0)/10 = 0.1; token
    variance (2*0.9^2 + 1*1.1^2 + 3*0.1^2 + 4*0.1^2)/10 = (1.62 + 1.21 + 0.03 + 0.04)/10 = 0.29."""
    std = math.sqrt(0.29)
    return [0.9 / std, -1.1 / std, -0.1 / std, -0.1 / std]


def test_token_whitening_matches_a_hand_computation():
    out = token_whiten(torch.tensor(ADVANTAGES), mask(LENGTHS))
    assert out.tolist() == pytest.approx(hand_whitened(), rel=1e-6)
    assert out[2] < 0 and out[3] < 0  # the group that all scored the same now has a (negative) advantage
    assert out.dtype == torch.float32


def test_whitened_advantages_have_token_mean_zero_and_token_std_one():
    torch.manual_seed(0)
    a = torch.randn(16)
    lengths = torch.randint(1, 9, (16,)).tolist()
    out = token_whiten(a, mask(lengths, width=8)).double()
    n = torch.tensor(lengths, dtype=torch.float64)
    mean = (out * n).sum() / n.sum()
    var = ((out - mean) ** 2 * n).sum() / n.sum()
    assert float(mean) == pytest.approx(0.0, abs=1e-6) and float(var) == pytest.approx(1.0, rel=1e-6)
    # a per-response (unweighted) whitening would not do: the weights are the token counts
    assert float(out.mean()) != pytest.approx(0.0, abs=1e-3)


def test_a_rollout_that_all_scored_the_same_is_floored_not_divided_by_zero():
    out = token_whiten(torch.zeros(4), mask(LENGTHS))
    assert out.tolist() == [0.0, 0.0, 0.0, 0.0]
    assert token_whiten(torch.tensor([1.0, 2.0]), torch.zeros(2, 3)).tolist() == [1.0, 2.0]  # no tokens


def _rank(rank: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    try:
        share = slice(0, 2) if rank == 0 else slice(2, 4)
        whitened = token_whiten(torch.tensor(ADVANTAGES[share]), mask(LENGTHS[share]))
        torch.save(whitened, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_whiten_with_the_global_token_mean_and_std(tmp_path: Path):
    """Each rank holds one group; the result must equal the one-process whitening of the whole rollout
    (a per-rank whitening would give each rank mean 0 and differ)."""
    out = str(tmp_path / "w")
    mp.spawn(_rank, args=(f"file://{tmp_path / 'rendezvous'}", out), nprocs=2, join=True)
    both = torch.cat([torch.load(f"{out}.0"), torch.load(f"{out}.1")])
    assert both.tolist() == pytest.approx(hand_whitened(), rel=1e-6)


# ------------------------------------------------------------------------------------------------ GRPOConfig
def resolved(tmp_path: Path, text: str) -> spec.CellConfig:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    (cell,) = grid.expand(spec.load_sweep(path))
    return cell.config


def test_is_correction_reaches_grpo_config_only_when_set(tmp_path: Path):
    from trl import GRPOConfig

    paper = resolved(tmp_path, "name: p\npreset: paper\ngrid: {model: [qwen2.5-math-7b]}\n")
    assert paper.train.is_correction is False and paper.train.token_whitening is True
    kw = grpo.grpo_kwargs(paper, str(tmp_path / "o"), cpu=True)
    assert kw["vllm_importance_sampling_correction"] is False
    assert GRPOConfig(**kw).vllm_importance_sampling_correction is False
    on = paper.model_copy(update={"train": paper.train.model_copy(update={"is_correction": True})})
    assert grpo.grpo_kwargs(on, str(tmp_path / "o"), cpu=True)["vllm_importance_sampling_correction"]
    default = resolved(tmp_path, "name: d\npreset: smoke\ngrid: {model: [tiny]}\n")
    assert default.train.is_correction is None
    assert "vllm_importance_sampling_correction" not in grpo.grpo_kwargs(default, "o", cpu=True)


# ------------------------------------------------------------------------------------------- a real TRL run
@pytest.mark.slow
def test_a_tiny_grpo_run_whitens_every_rollout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Two rollout steps of the tiny model with token_whitening on: the trainer whitens each rollout once,
    with all 16 responses and their completion masks, and trains on the whitened advantages."""
    import spurisweep.training.trainer as trainer_module

    calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def recording(advantages: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        out = token_whiten(advantages, completion_mask)
        calls.append((advantages.clone(), completion_mask.clone(), out.clone()))
        return out

    monkeypatch.setattr(trainer_module, "token_whiten", recording)
    results = tmp_path / "r"
    d = make_cell(results, {"train": {"steps": 2, "save_every": 2, "token_whitening": True}, "eval": NO_EVAL})
    done = run_cell(d, results)
    assert done["updates"] == len(metrics(d)) > 0
    assert len(calls) == 2  # once per rollout step, not per micro-batch
    for before, m, after in calls:
        assert before.shape == after.shape == (16,) and m.shape[0] == 16
        n = m.double().sum(dim=1)
        mean = (after.double() * n).sum() / n.sum()
        assert float(mean) == pytest.approx(0.0, abs=1e-6)
        if before.abs().sum() > 0:  # the random reward gave some group a spread
            var = ((after.double() - mean) ** 2 * n).sum() / n.sum()
            assert float(var) == pytest.approx(1.0, rel=1e-5)
