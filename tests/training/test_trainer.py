"""spurisweep/training/trainer.py: micro-batches trimmed to their own longest completion, with the loss
TRL computes on them unchanged (real GRPOTrainer on the tiny model, on the CPU)."""

from __future__ import annotations

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
