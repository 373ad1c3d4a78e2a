"""FSDP2 sharding (spurisweep.training.sharding): the GRPOConfig arguments, the sharded-or-fail check, the HF export,
and real 2-process gloo GRPO runs of the tiny model with TRL's GRPOTrainer (tests/sharding_worker.py).

The 2-process runs check that each process holds part of every parameter, that the sharded updates match
an unsharded (DDP) run of the same 2 processes, that the per-save HF export loads with from_pretrained
and equals the gathered weights, that resuming from a sharded checkpoint continues bit for bit, and that
a sharded configuration without the CPU gate lifted fails with ShardingError instead of training DDP.

Why the unsharded reference has 2 processes, not 1: GRPO samples its completions, and each process draws
them from its own random stream for its own prompts; a 1-process run samples all prompts in one call
from one stream, so its completions, and hence its updates, differ whatever the sharding. Two DDP
processes sample exactly what the two FSDP processes sample, so the comparison isolates the sharding.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep.errors import ShardingError, SpurisweepError
from spurisweep.models import families
from spurisweep.training import sharding
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "sharding_worker.py"


# ---------------------------------------------------------------------------------------------- in-process
@pytest.fixture(scope="module")
def tiny() -> str:
    return str(families.ensure_built(families.get("tiny")))


def test_decoder_layer_comes_from_the_model_family(tiny):
    from transformers import AutoModelForCausalLM, Qwen2Config

    assert sharding.decoder_layer_classes(tiny) == ["LlamaDecoderLayer"]
    assert sharding.decoder_layer_classes(AutoModelForCausalLM.from_pretrained(tiny)) == ["LlamaDecoderLayer"]
    assert sharding.decoder_layer_classes(Qwen2Config()) == ["Qwen2DecoderLayer"]


def test_training_args_reach_accelerates_fsdp2_plugin(tiny, tmp_path, monkeypatch):
    """GRPOConfig turns the kwargs into the plugin arguments transformers' Trainer hands to accelerate."""
    import torch
    from accelerate.utils import FullyShardedDataParallelPlugin
    from trl import GRPOConfig

    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")  # GRPOConfig sets it; restored after
    kw = sharding.fsdp_training_args(tiny, activation_checkpointing=True, bf16=True)
    # applied over the cell's own arguments, as the cell does: its gradient checkpointing is turned off
    args = GRPOConfig(**{"output_dir": str(tmp_path), "use_cpu": True, "gradient_checkpointing": True, **kw})
    # FSDP's own checkpointing replaces transformers', under whichever names this transformers has
    # (5.17: gradient_checkpointing; 5.25: activation_checkpointing, gradient_checkpointing its alias)
    fields = sharding.checkpointing_fields()
    assert "gradient_checkpointing" in fields or "activation_checkpointing" in fields
    for name in fields:
        assert getattr(args, name) is False, name
    assert args.model_init_kwargs == {"dtype": "float32"}  # fp32 master weights
    p = args.fsdp_plugin_args
    assert p["fsdp_version"] == 2 and p["reshard_after_forward"] is True
    assert p["transformer_cls_names_to_wrap"] == "LlamaDecoderLayer"
    assert p["activation_checkpointing"] is True and p["state_dict_type"] == "SHARDED_STATE_DICT"

    sharding.use_fp32_reduce(args)
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    plugin.set_mixed_precision("bf16")  # what AcceleratorState does with bf16=True: our policy must survive
    mp = plugin.mixed_precision_policy
    assert (mp.param_dtype, mp.reduce_dtype) == (torch.bfloat16, torch.float32)
    assert mp.output_dtype == torch.float32  # log-probs and entropies from fp32 logits


def test_the_mixed_precision_policy_gives_fp32_logits_from_bf16_compute(tiny, tmp_path):
    """FSDP2 with the policy use_fp32_reduce sets (one gloo process, CPU): the tiny model's parameters are
    cast to bf16 for compute and its logits come out fp32 (bf16 logits would round every log-prob)."""
    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from transformers import AutoModelForCausalLM

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        args = type("Args", (), {"bf16": True, "fsdp_plugin_args": {"fsdp_version": 2}})()
        sharding.use_fp32_reduce(args)
        policy = MixedPrecisionPolicy(**args.fsdp_plugin_args["mixed_precision_policy"])
        model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
        fully_shard(model, mp_policy=policy)
        seen = []
        model.lm_head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
        logits = model(torch.tensor([[1, 2, 3, 4]])).logits
        assert seen == [torch.bfloat16] and logits.dtype == torch.float32
    finally:
        dist.destroy_process_group()


def test_checkpointing_is_switched_off_under_the_names_this_transformers_has():
    """Only fields the installed TrainingArguments has (transformers 5.17 has no activation_checkpointing:
    passing it was a TypeError on every rank); FSDP's checkpointing setting lives in fsdp_config."""
    import dataclasses

    from transformers import TrainingArguments

    fields = {f.name for f in dataclasses.fields(TrainingArguments)}
    kw = sharding.fsdp_training_args(None, activation_checkpointing=True, layers=["LlamaDecoderLayer"])
    named = set(sharding.CHECKPOINTING_FIELDS) & set(kw)
    assert named and named <= fields and named == set(sharding.CHECKPOINTING_FIELDS) & fields
    assert all(kw[n] is False for n in named)
    assert kw["fsdp_config"]["activation_checkpointing"] is True
    assert set(kw) - {"fsdp", "fsdp_config", "bf16", "model_init_kwargs"} == named


def test_fp32_reduce_leaves_fp32_runs_alone(tiny, tmp_path, monkeypatch):
    from trl import GRPOConfig

    monkeypatch.setenv("FSDP_CPU_RAM_EFFICIENT_LOADING", "false")
    args = GRPOConfig(
        output_dir=str(tmp_path), **sharding.fsdp_training_args(tiny, activation_checkpointing=False)
    )
    sharding.use_fp32_reduce(args)
    assert "mixed_precision_policy" not in args.fsdp_plugin_args and args.bf16 is False


def test_an_unwrapped_model_is_not_sharded(tiny):
    from transformers import AutoModelForCausalLM

    with pytest.raises(ShardingError, match="train.sharding is fsdp but accelerate trained unsharded"):
        sharding.assert_sharded(AutoModelForCausalLM.from_pretrained(tiny))
    assert issubclass(ShardingError, SpurisweepError)


def test_export_of_an_unsharded_model_loads_and_replaces_an_old_export(tiny, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)
    out = tmp_path / "hf"
    out.mkdir()
    (out / "stale.txt").write_text("from an older export")
    assert sharding.export_hf(model, tok, out) == out
    assert not (out / "stale.txt").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
    loaded = AutoModelForCausalLM.from_pretrained(out)
    assert loaded.dtype == torch.bfloat16
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v.to(torch.bfloat16)), k
    assert AutoTokenizer.from_pretrained(out)("1+1=").input_ids == tok("1+1=").input_ids


# ---------------------------------------------------------------------------------------------- 2 processes
def run_pair(mode: str, out: Path, *extra: str) -> list[int]:
    """Start the worker as ranks 0 and 1 of one gloo group (env:// as launch.distributed_setup exports)."""
    out.mkdir(parents=True, exist_ok=True)
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = dict(
            os.environ,
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=port,
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            WORLD_SIZE="2",
            LOCAL_WORLD_SIZE="2",
            OMP_NUM_THREADS="1",
        )
        log = open(out / f"log{rank}.txt", "w")  # noqa: SIM115 (closed with the process below)
        cmd = [sys.executable, str(WORKER), mode, str(out), *extra]
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT), log))
    codes = []
    for p, log in procs:
        codes.append(p.wait(timeout=900))
        log.close()
    return codes


def seen(out: Path, rank: int) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


def _check(out: Path, codes: list[int], expect: int = 0) -> None:
    if codes != [expect, expect]:
        tail = (out / "log0.txt").read_text()[-3000:] + (out / "log1.txt").read_text()[-3000:]
        pytest.fail(f"worker exit codes {codes}, expected {expect}:\n{tail}")


@pytest.fixture(scope="module")
def sharded_run(tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsdp")
    _check(out, run_pair("fsdp", out))
    return out


@pytest.mark.slow
def test_each_process_holds_part_of_every_parameter(sharded_run):
    reports = [seen(sharded_run, r)["report"] for r in (0, 1)]
    assert reports[0] and reports[0].keys() == reports[1].keys()
    for name, (local0, full) in reports[0].items():
        local1, full1 = reports[1][name]
        assert full == full1 and local0 + local1 == full, name
        assert local0 < full and local1 < full, name
    assert seen(sharded_run, 0)["backend"] == "FSDP, 2 processes, FSDP v2"


@pytest.mark.slow
def test_sharded_updates_match_the_unsharded_run(sharded_run, tmp_path, tiny):
    import torch
    from transformers import AutoModelForCausalLM

    _check(tmp_path, run_pair("ddp", tmp_path))
    assert seen(tmp_path, 0)["report"] == {}  # the reference really is unsharded
    sharded, plain = torch.load(sharded_run / "final.pt"), torch.load(tmp_path / "final.pt")
    initial = AutoModelForCausalLM.from_pretrained(tiny).state_dict()
    assert sharded.keys() == plain.keys()
    for k in sharded:
        assert (sharded[k] - initial[k]).abs().max() > 1e-3, (
            f"{k} did not move: the comparison would be empty"
        )
        torch.testing.assert_close(sharded[k], plain[k], rtol=0, atol=1e-5, msg=k)


@pytest.mark.slow
def test_every_save_exports_an_hf_folder_equal_to_the_gathered_weights(sharded_run):
    import torch
    from transformers import AutoModelForCausalLM

    assert (sharded_run / "hf-1" / "config.json").exists()
    final = torch.load(sharded_run / "final.pt")
    model = AutoModelForCausalLM.from_pretrained(sharded_run / "hf-2")
    assert model.dtype == torch.bfloat16
    state = model.state_dict()
    assert state.keys() == final.keys()
    for k, v in final.items():
        assert torch.equal(state[k], v.to(torch.bfloat16)), k


@pytest.mark.slow
def test_resume_from_a_sharded_checkpoint_continues_bit_for_bit(sharded_run, tmp_path):
    import torch

    ckpt = sharded_run / "ckpt" / "checkpoint-1"
    assert (ckpt / "pytorch_model_fsdp_0").is_dir() and (ckpt / "optimizer_0").is_dir()
    _check(tmp_path, run_pair("resume", tmp_path, "--resume-from", str(ckpt)))
    resumed, straight = torch.load(tmp_path / "final.pt"), torch.load(sharded_run / "final.pt")
    for k in straight:  # the second update needs the restored Adam moments and RNG to land here
        assert torch.equal(resumed[k], straight[k]), k


@pytest.mark.slow
def test_sharded_config_without_the_cpu_gate_lifted_fails_instead_of_training_ddp(tmp_path, tiny):
    _check(tmp_path, run_pair("nogate", tmp_path), expect=3)
    for rank in (0, 1):
        msg = seen(tmp_path, rank)["error"]
        assert msg.startswith(
            "train.sharding is fsdp but accelerate trained unsharded (MULTI_CPU, 2 processes"
        )
    assert not list(tmp_path.glob("ckpt/checkpoint-*")) and not list(tmp_path.glob("hf-*"))  # nothing trained
