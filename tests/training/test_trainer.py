"""spurisweep/training/trainer.py: micro-batches trimmed to their own longest completion, with the loss
TRL computes on them unchanged, and the per-token statistics the intrinsic rewards read; real short GRPO
runs under the entropy and online_majority rewards (real GRPOTrainer on the tiny model, on the CPU)."""

from __future__ import annotations

import math

import pytest
import torch

from spurisweep.training.trainer import trim_completion_padding


def _batch(lengths: list[int], width: int, prompt: int = 5, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    b = len(lengths)
    mask = torch.zeros(b, width, dtype=torch.long)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    ids = torch.randint(3, 200, (b, width), generator=g) * mask  # padding id 0
    return {
        "prompt_ids": torch.randint(3, 200, (b, prompt), generator=g),
        "prompt_mask": torch.ones(b, prompt, dtype=torch.long),
        "completion_ids": ids,
        "completion_mask": mask,
        "advantages": torch.randn(b, generator=g),
        "num_items_in_batch": mask.sum().float(),
        "old_per_token_logps": torch.randn(b, width, generator=g) * mask - 3.0,
    }


def test_trim_cuts_every_per_token_tensor_to_the_longest_completion_and_keeps_the_rest():
    batch = _batch([3, 7, 2], width=16)
    out = trim_completion_padding(batch)
    assert out["completion_ids"].shape == (3, 7)
    assert out["completion_mask"].shape == (3, 7)
    assert out["old_per_token_logps"].shape == (3, 7)
    assert out["prompt_ids"] is batch["prompt_ids"] and out["advantages"] is batch["advantages"]
    assert torch.equal(out["completion_mask"].sum(1), torch.tensor([3, 7, 2]))  # no token lost
    assert batch["completion_ids"].shape == (3, 16)  # the rollout's buffer is not modified
    assert trim_completion_padding(batch, multiple=4)["completion_ids"].shape == (3, 8)
    assert trim_completion_padding(_batch([16, 1], width=16)) is not None
    assert trim_completion_padding(_batch([16, 1], width=16))["completion_ids"].shape == (2, 16)
    assert trim_completion_padding(_batch([0, 0], width=6))["completion_ids"].shape == (2, 1)


@pytest.fixture(scope="module")
def tiny_trainer(tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from spurisweep.models import families
    from spurisweep.training.trainer import SpuriTrainer

    src = families.model_source("tiny")
    tok = AutoTokenizer.from_pretrained(src)
    args = GRPOConfig(
        output_dir=str(tmp_path_factory.mktemp("trl")),
        use_cpu=True,
        bf16=False,
        per_device_train_batch_size=4,
        num_generations=4,
        max_completion_length=32,
        report_to=[],
        save_strategy="no",
        num_iterations=2,  # old log-probs are used: the clipped ratio is part of the loss
    )
    trainer = SpuriTrainer(
        model=src,
        reward_funcs=[lambda completions, **_: [0.0] * len(completions)],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": ["a"] * 4}),
        processing_class=tok,
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train() for each update
    return trainer


@pytest.mark.parametrize("loss_type", ["bnpo", "grpo", "dr_grpo", "dapo"])
def test_the_loss_of_a_trimmed_micro_batch_equals_the_padded_one(tiny_trainer, loss_type):
    """The loss (and its gradient) TRL computes on a micro-batch padded far past its longest completion
    equals the loss on the same micro-batch trimmed, for every loss aggregation."""
    trainer = tiny_trainer
    trainer.loss_type = loss_type
    batch = _batch([5, 11, 3, 8], width=32)
    batch["old_per_token_logps"] = batch["old_per_token_logps"] * 0.01 - 5.0

    def loss_and_grad(inputs):
        trainer.model.zero_grad()
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
        return loss.detach(), grad

    padded, g_padded = loss_and_grad(batch)
    trimmed_batch = trim_completion_padding(batch)
    assert trimmed_batch["completion_ids"].size(1) == 11
    trimmed, g_trimmed = loss_and_grad(trimmed_batch)
    assert torch.allclose(padded, trimmed, atol=1e-6, rtol=1e-5), (padded, trimmed)
    assert torch.allclose(g_padded, g_trimmed, atol=1e-6, rtol=1e-4)
    # the comparison can fail: cutting one real token changes the loss
    cut = {
        k: (v[:, :10] if k in ("completion_ids", "completion_mask", "old_per_token_logps") else v)
        for k, v in batch.items()
    }
    assert not torch.allclose(loss_and_grad(cut)[0], padded, atol=1e-7, rtol=0)


def test_evaluation_copies_the_live_model_into_the_baselines_dtype_and_frees_it():
    """CellRun.eval_copy: a live fp32 model (training's master weights) is evaluated as a copy in the
    baseline's dtype (bf16 here, as on a GPU); a model already in that dtype is evaluated as it is."""
    from transformers import AutoModelForCausalLM

    from spurisweep.models import families
    from spurisweep.training.cell import CellRun

    live = AutoModelForCausalLM.from_pretrained(families.model_source("tiny"), dtype=torch.float32)
    run = CellRun.__new__(CellRun)  # only the two fields eval_copy reads
    run.cpu, run.dtype = True, "bf16"
    with run.eval_copy(live) as model:
        assert model is not live and next(model.parameters()).dtype == torch.bfloat16
        assert torch.equal(model.lm_head.weight, live.lm_head.weight.to(torch.bfloat16))
    assert next(live.parameters()).dtype == torch.float32
    run.dtype = None  # the device's default: fp32 on a CPU
    with run.eval_copy(live) as model:
        assert model is live


# ------------------------------------------------------------------------ per-token statistics of the policy
def test_the_fused_head_statistics_equal_the_full_logits_ones(tiny_trainer):
    """Both sources of the intrinsic rewards' statistics on one rollout: TRL's fused LM head (log p(y) and
    entropy, no logits materialised) and the materialised logits (token_statistics); the kwargs the reward gets are each completion's own tokens."""
    from spurisweep.rewards import intrinsic

    trainer = tiny_trainer  # temperature 1.0: TRL fixes the fused head's when it builds the trainer
    trainer._rollout_ids = ([[5, 6, 7], [8, 9]], [[10, 11, 12, 13], [14]])
    trainer.model.eval()
    try:
        fused = trainer._stats_forward(full_vocabulary=False)
        full = trainer._stats_forward(full_vocabulary=True)
        assert fused[intrinsic.LOGP].shape == full[intrinsic.LOGP].shape == (2, 4)
        mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
        for s in (intrinsic.LOGP, intrinsic.ENTROPY):
            assert torch.allclose(fused[s][mask], full[s][mask], atol=1e-4), s
        assert bool((full[intrinsic.ENTROPY][mask] > 0).all())
        assert bool((full[intrinsic.SELF_CERTAINTY][mask] >= 0).all())  # a KL divergence
        trainer.token_stats = (intrinsic.SELF_CERTAINTY, intrinsic.ENTROPY)
        kw = trainer._token_stats([[10, 11, 12, 13], [14]])
        assert sorted(kw) == [intrinsic.ENTROPY, intrinsic.SELF_CERTAINTY]
        assert [len(r) for r in kw[intrinsic.ENTROPY]] == [4, 1]
        assert kw[intrinsic.SELF_CERTAINTY][1] == pytest.approx(
            full[intrinsic.SELF_CERTAINTY][1, :1].tolist()
        )
        # a colder policy is more certain: the statistics follow the sampling temperature
        trainer.temperature = 0.3
        colder = trainer._stats_forward(full_vocabulary=True)
        assert float(colder[intrinsic.ENTROPY][mask].mean()) < float(full[intrinsic.ENTROPY][mask].mean())
    finally:
        trainer.temperature, trainer.token_stats = 1.0, ()
        trainer.model.train()


def test_a_rollout_reads_the_entropy_off_trls_own_forward(tiny_trainer, monkeypatch):
    """With several updates per rollout TRL runs its own no-grad forward for the old log-probabilities; the
    entropy reward's statistics are read off that pass (no second forward), one value per token of each
    completion, equal to the materialised logits' entropies."""
    from spurisweep.rewards import intrinsic
    from spurisweep.training.trainer import SpuriTrainer

    trainer = tiny_trainer
    got: dict = {}

    def reward(completions, **kw):
        got.update(kw)
        return [0.0] * len(completions)

    def no_second_forward(**_):
        raise AssertionError("a second forward over the rollout")

    monkeypatch.setattr(trainer, "reward_funcs", [reward])
    monkeypatch.setattr(trainer, "token_stats", (intrinsic.ENTROPY,))
    monkeypatch.setattr(trainer, "_stats_forward", no_second_forward)
    assert trainer._old_logps_forward() and not trainer.mask_truncated_completions
    out = trainer._generate_and_score_completions([{"prompt": "a"}] * 4)
    lengths = [len(c) for c in trainer._rollout_ids[1]]
    assert [len(r) for r in got[intrinsic.ENTROPY]] == lengths and intrinsic.SELF_CERTAINTY not in got
    assert out["completion_mask"].sum(1).tolist() == lengths
    full = SpuriTrainer._stats_forward(trainer, full_vocabulary=True)[intrinsic.ENTROPY]
    for i, n in enumerate(lengths):
        assert got[intrinsic.ENTROPY][i] == pytest.approx(full[i, :n].tolist(), abs=1e-4)


# ------------------------------------------------------------------------------- real TRL runs, new rewards
#: two rollout steps, no evaluation
SHORT = {
    "train": {"steps": 2, "save_every": 2},
    "eval": {"baseline": False, "checkpoints": False, "benchmarks": []},
}
NO_EVAL = SHORT["eval"]


def _reward_means(cell_dir, key: str) -> list[float]:
    from tests.helpers_train import metrics

    return [m[key] for m in metrics(cell_dir) if key in m]


@pytest.mark.slow
def test_a_tiny_grpo_run_trains_on_the_entropy_reward(tmp_path, monkeypatch):
    """Two rollout steps under `entropy`: the trainer computes the statistics before the rewards, TRL
    logs finite (negative) rewards, and the reward saw one entropy per completion token."""
    import spurisweep.training.trainer as trainer_module
    from tests.helpers_train import make_cell, run_cell

    seen: list[tuple[int, int]] = []
    original = trainer_module.SpuriTrainer._calculate_rewards

    def recording(self, inputs, prompts, completions, completion_ids_list):
        seen.append((len(completion_ids_list), sum(len(c) for c in completion_ids_list)))
        return original(self, inputs, prompts, completions, completion_ids_list)

    monkeypatch.setattr(trainer_module.SpuriTrainer, "_calculate_rewards", recording)
    results = tmp_path / "r"
    d = make_cell(results, SHORT, reward="entropy")
    done = run_cell(d, results)
    assert len(seen) == 2 and done["updates"] >= 2  # two rollouts scored, each trained on
    means = _reward_means(d, "rewards/entropy/mean")
    assert means and all(math.isfinite(v) and v < 0 for v in means)


@pytest.mark.slow
def test_a_tiny_grpo_run_trains_on_the_online_majority_reward(tmp_path):
    """Two rollout steps under `online_majority` (ties to the first class, groups without a label scoring
    0): TRL logs finite rewards in [0, 1] and the reward's own label statistics."""
    from tests.helpers_train import make_cell, run_cell

    results = tmp_path / "r"
    settings = {
        "train": {"steps": 2, "save_every": 2},
        "eval": NO_EVAL,
        "reward_params": {"online_majority": {"tie": "first", "no_label": "zero"}},
    }
    d = make_cell(results, settings, reward="online_majority")
    done = run_cell(d, results)
    assert done["updates"] >= 2
    means = _reward_means(d, "rewards/online_majority/mean")
    assert means and all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in means)
    labelled = _reward_means(d, "online_majority/labelled")
    assert labelled and all(0.0 <= v <= 1.0 for v in labelled)
