"""train.algorithm: each estimator reaches TRL as GRPOConfig arguments (built for real by grpo.validate), a
setting or `trl:` override that contradicts it is a plan-time error naming file and field, and rloo's
advantages are the leave-one-out ones in a real training run of the tiny model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from spurisweep.errors import ConfigError
from spurisweep.plan import algorithms, grid, grpo, spec
from tests.helpers_train import make_cell, metrics, run_cell

SWEEP: dict[str, Any] = {
    "name": "alg",
    "preset": "smoke",
    "grid": {"model": ["tiny"], "train.algorithm": ["grpo"], "clip": ["standard"]},
}


def cells(tmp_path: Path, doc: dict[str, Any]) -> tuple[str, list[grid.Cell]]:
    path = tmp_path / "alg.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path), grid.expand(spec.load_sweep(path))


def sweep(algorithm: str, clip: str = "standard", **settings: Any) -> dict[str, Any]:
    doc = copy.deepcopy(SWEEP)
    doc["grid"].update({"train.algorithm": [algorithm], "clip": [clip]})
    doc["settings"] = settings
    return doc


@pytest.mark.parametrize(
    ("algorithm", "clip", "loss_type", "scale_rewards", "iterations_updates"),
    [
        ("grpo", "standard", "grpo", "group", (1, 4)),
        ("dr_grpo", "standard", "dr_grpo", "none", (1, 4)),
        ("rloo", "clip_higher", "dr_grpo", "none", (1, 4)),
        ("reinforce", "on_policy", "dr_grpo", "none", (1, 1)),
    ],
)
def test_each_algorithm_reaches_the_grpo_config(
    tmp_path, algorithm, clip, loss_type, scale_rewards, iterations_updates
):
    file, (cell,) = cells(tmp_path, sweep(algorithm, clip))
    grpo.validate(cell.config, file)  # TRL builds the GRPOConfig the cell trains with
    kw = grpo.grpo_kwargs(cell.config, str(tmp_path / "out"), cpu=True)
    from trl import GRPOConfig

    args = GRPOConfig(**kw)
    assert (args.loss_type, args.scale_rewards) == (loss_type, scale_rewards)
    assert (args.num_iterations, grpo.updates_per_rollout(kw)) == iterations_updates
    assert cell.config.train.token_whitening is False
    g = cell.config.train.samples_per_prompt
    assert algorithms.advantage_scale(cell.config) == (g / (g - 1) if algorithm == "rloo" else 1.0)


@pytest.mark.parametrize(
    ("trl", "field"),
    [
        ({"loss_type": "bnpo"}, "trl.loss_type"),
        ({"scale_rewards": True}, "trl.scale_rewards"),
        ({"multi_objective_aggregation": "normalize_then_sum"}, "trl.multi_objective_aggregation"),
    ],
)
def test_a_trl_override_that_contradicts_the_algorithm_is_refused_at_plan_time(tmp_path, trl, field):
    with pytest.raises(ConfigError, match="contradicts train.algorithm rloo") as exc:
        cells(tmp_path, sweep("rloo", trl=trl))
    assert exc.value.field == field and exc.value.file.endswith("alg.yaml")
    # under grpo the same override is the user's call
    file, (cell,) = cells(tmp_path, sweep("grpo", trl=trl))
    grpo.validate(cell.config, file)


def test_reinforce_refuses_a_trl_override_that_reuses_the_rollout(tmp_path):
    file, (cell,) = cells(tmp_path, sweep("reinforce", "on_policy", trl={"num_iterations": 2}))
    with pytest.raises(ConfigError, match="one update per rollout") as exc:
        grpo.validate(cell.config, file)
    assert exc.value.field == "trl.num_iterations" and exc.value.file == file


def test_the_leave_one_out_scale_turns_the_group_mean_baseline_into_rloos():
    """TRL's scale_rewards "none" advantage is r - mean(group); times advantage_scale it must equal the
    leave-one-out advantage r_i - mean_{j != i} r_j, computed here directly."""
    cfg = spec.CellConfig(model="tiny", train=spec.TrainSettings(algorithm="rloo", samples_per_prompt=5))
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0, 1.0], [0.3, 0.9, 0.1, 0.2, 0.5]])
    trl_advantage = r - r.mean(dim=1, keepdim=True)
    loo = r - (r.sum(dim=1, keepdim=True) - r) / (r.size(1) - 1)
    assert torch.allclose(trl_advantage * algorithms.advantage_scale(cfg), loo)
    assert not torch.allclose(trl_advantage, loo)  # the scale is needed


#: 4 prompts x 4 samples, 0/1 random rewards; one rollout step
SETTINGS = {
    "train": {
        "steps": 1,
        "prompts_per_step": 4,
        "samples_per_prompt": 4,
        "mini_batch": 8,
        "max_completion_length": 8,
    },
    "eval": {"baseline": False, "checkpoints": False, "benchmarks": []},
}


def test_rloo_trains_on_leave_one_out_advantages(tmp_path, monkeypatch):
    """A spy on TRL's GRPOTrainer._generate_and_score_completions records its advantages (r - group mean,
    scale_rewards none) and the SpuriTrainer's (what the loss reads). The rewards are 0/1, so each group's
    rewards are recovered from TRL's advantages (r = A - min A) and the leave-one-out advantages computed
    from them directly."""
    from trl import GRPOTrainer

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    parent = GRPOTrainer._generate_and_score_completions

    def spy(self, inputs):
        out = parent(self, inputs)
        seen.append((out["advantages"].clone(), out))
        return out

    monkeypatch.setattr(GRPOTrainer, "_generate_and_score_completions", spy)
    results = tmp_path / "results"
    d = make_cell(results, SETTINGS, **{"train.algorithm": "rloo"})
    run_cell(d, results)
    assert seen
    for trl_adv, out in seen:
        groups = trl_adv.view(-1, 4)
        assert torch.allclose(groups.sum(dim=1), torch.zeros(groups.size(0)), atol=1e-6)  # r - mean, no std
        r = groups - groups.min(dim=1, keepdim=True).values
        assert set(r.flatten().tolist()) <= {0.0, 1.0}
        loo = r - (r.sum(dim=1, keepdim=True) - r) / 3
        assert torch.allclose(out["advantages"].view(-1, 4), loo, atol=1e-6)
    assert any(g.abs().sum() > 0 for g, _ in seen)  # some group had mixed rewards
    assert all(isinstance(row["entropy"], float) for row in metrics(d))
