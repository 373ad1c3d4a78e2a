"""One process of a 2-process gloo GRPO run of the tiny model, for tests/training/test_sharding.py.

Started once per rank with torch.distributed's env:// variables (as launch.distributed_setup exports
them). Modes: `fsdp` (sharded, CPU gate lifted), `ddp` (the unsharded reference), `nogate` (configured
sharded without lifting accelerate's CPU gate: must fail with ShardingError), `resume` (sharded, resumed
from a checkpoint of an `fsdp` run). Writes into OUT: rank<r>.json (what the process saw), and from rank
0 final.pt (the gathered fp32 weights), and hf-<update>/ exports written at every save.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from datasets import Dataset
from transformers import AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

from spurisweep.distributed import shut_down
from spurisweep.errors import ShardingError
from spurisweep.models import families
from spurisweep.training import sharding

PROMPTS = ["1+1=", "2+3=", "4+4=", "5+2="]


def reward(completions: list[str], **_: object) -> list[float]:
    """Deterministic in the completion text, so equal completions give equal rewards in every run."""
    return [float(len(c) % 3) for c in completions]


def config(out: Path, mode: str, source: str) -> GRPOConfig:
    kw: dict = dict(
        output_dir=str(out / "ckpt"),
        seed=0,
        data_seed=0,
        learning_rate=1e-2,
        lr_scheduler_type="constant",
        per_device_train_batch_size=1,
        gradient_accumulation_steps=2,
        generation_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        beta=0.0,
        max_steps=2,
        logging_steps=1,
        save_strategy="steps",
        save_steps=1,
        report_to="none",
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        ddp_find_unused_parameters=False,
    )
    if mode != "ddp":
        kw.update(sharding.fsdp_training_args(source, activation_checkpointing=True, bf16=False))
    return GRPOConfig(**kw)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["fsdp", "ddp", "nogate", "resume"])
    ap.add_argument("out", type=Path)
    ap.add_argument("--resume-from", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    rank = int(__import__("os").environ["RANK"])
    source = str(families.ensure_built(families.get("tiny")))
    tok = AutoTokenizer.from_pretrained(source)
    ds = Dataset.from_list([{"prompt": p} for p in PROMPTS])
    if a.mode in ("fsdp", "resume"):
        sharding.enable_cpu_fsdp()
    seen: dict = {"rank": rank}

    class Export(TrainerCallback):
        def on_save(self, args, state, control, model=None, **kw):
            sharding.export_hf(model, tok, a.out / f"hf-{state.global_step}")

    class Record(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            seen["report"] = sharding.sharding_report(model)

    trainer = GRPOTrainer(
        model=source,
        reward_funcs=[reward],
        args=config(a.out, a.mode, source),
        train_dataset=ds,
        processing_class=tok,
        callbacks=[Record(), Export()] + ([] if a.mode == "ddp" else [sharding.sharding_check_callback()]),
    )
    try:
        if a.mode != "ddp":
            sharding.assert_sharded(trainer)
        trainer.train(resume_from_checkpoint=a.resume_from)
    except ShardingError as exc:
        seen["error"] = str(exc)
        (a.out / f"rank{rank}.json").write_text(json.dumps(seen))
        shut_down()
        sys.exit(3)
    seen["backend"] = sharding._backend(trainer)
    state = sharding.gather_full_state_dict(trainer)
    if rank == 0:
        torch.save({k: v.clone() for k, v in state.items()}, a.out / "final.pt")
    (a.out / f"rank{rank}.json").write_text(json.dumps(seen))
    shut_down()  # as a cell job ends (launch/job.py): gloo may abort a rank that leaves it to the exit


if __name__ == "__main__":
    main()
