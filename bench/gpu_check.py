"""A five-minute check on one GPU: the memory planner against CUDA's peak, a bf16 GRPO step, generation speed.

Needs torch, transformers and TRL only (a borrowed GPU machine may have neither vLLM nor network): the model
is Qwen2-0.5B-shaped (bench/qwen2_shapes.py) with random weights, built from its config with a word-level
tokenizer covering its vocabulary (bench/train_step.build_large), so nothing is downloaded.

  1. planner   one training step (bf16 autocast over fp32 master weights, TRL's fused LM head, AdamW) at a
               few micro-batch / length / checkpointing settings: spurisweep.plan.memory's estimate against
               torch.cuda.max_memory_allocated (which leaves out the CUDA context, so overhead_gb=0).
  2. GRPO      TRL's GRPOTrainer on this GPU, bf16, transformers generation, a random reward over a tiny
               random data set: seconds per step and its memory peak next to the planner's rollout and
               update estimates.
  3. fsdp      a 1-rank FSDP2 GRPO step with spurisweep's sharded arguments and bf16 / fp32-reduce policy,
               a sharded checkpoint, and the HF export loaded back.
  4. generate  batched transformers generate: new tokens per second; decode ms per step at a 7B shape
               (bf16 and fp32).

Runs on a bare, offline GPU machine: `make gpu-check` calls it with the system Python and the repository
on PYTHONPATH (no `make install`); it needs torch, transformers, accelerate, TRL and datasets (pure-Python
wheels for the last two can be carried; see ../shared/device/README.md).

On a machine without CUDA it prints "no CUDA device: nothing measured" and exits 0.
Usage: python bench/gpu_check.py [--shape 0.5b|1.5b] [--grpo-steps 2] [--cpu-smoke]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ siblings, also when imported

DEVICE = "cuda"  # --cpu-smoke runs the same code on the CPU (2 layers, small sizes) to check it runs


def reset_peak() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.reset_peak_memory_stats()


def peak_bytes() -> int:
    """CUDA's peak allocation since reset_peak (0 in a CPU smoke run: nothing is measured there)."""
    import torch

    return torch.cuda.max_memory_allocated() if DEVICE == "cuda" else 0


STEP_CONFIGS = [  # (micro-batch, prompt, completion, checkpointing)
    (4, 256, 768, False),
    (8, 256, 768, True),
    (16, 512, 1536, True),
]


def planner_check(folder: Path) -> None:
    """Estimate vs measured peak of one forward + backward + AdamW step, per configuration."""
    import torch
    from transformers import AutoModelForCausalLM
    from trl.trainer.utils import add_fused_lm_head

    from spurisweep.plan import memory

    shape = memory.model_shape(memory.load_config(folder), "qwen2-shaped")
    print(f"\n[planner] {shape.params / 1e6:.0f}M parameters; GB = 1e9 bytes")
    print(f"  {'micro x prompt+completion':<28}{'ckpt':>6}{'measured':>10}{'estimate':>10}{'est/meas':>10}")
    configs = STEP_CONFIGS if DEVICE == "cuda" else [(2, 16, 16, True)]
    for micro, prompt, completion, ckpt in configs:
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(DEVICE)
        model.config.use_cache = False
        add_fused_lm_head(model, outputs=("log_probs", "entropy"))
        if ckpt:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-6)
        ids = torch.randint(4, shape.vocab_size, (micro, prompt + completion), device=DEVICE)
        labels = ids.clone()
        labels[:, :prompt] = -100
        reset_peak()
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
        (-out.log_probs.sum() / micro).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        measured = max(peak_bytes(), 1)
        est = memory.estimate(
            shape,
            micro_batch=micro,
            prompt_len=prompt,
            completion_len=completion,
            grad_checkpointing=ckpt,
            overhead_gb=0.0,
        )
        label = f"{micro} x {prompt}+{completion}"
        ratio = est.training_peak / measured
        print(
            f"  {label:<28}{ckpt!s:>6}{measured / 1e9:>10.2f}{est.training_peak / 1e9:>10.2f}{ratio:>10.2f}"
        )
        del model, opt, out, ids, labels
        if DEVICE == "cuda":
            torch.cuda.empty_cache()


def random_task(tok, n: int):
    """`n` prompts of 48 random words of the tokenizer's vocabulary, and a reward of 1 with probability 1/2
    (seeded): a GRPO step's inputs that need no data set."""
    rng = random.Random(0)
    words = [w for w in tok.get_vocab() if not w.startswith("<")]
    prompts = [" ".join(rng.choices(words, k=48)) for _ in range(n)]

    def random_reward(completions, **kwargs) -> list[float]:
        return [float(rng.random() < 0.5) for _ in completions]

    return prompts, random_reward


def grpo_check(folder: Path, steps: int) -> None:
    """A few bf16 GRPO steps through TRL on this GPU; time per step and peak memory."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from spurisweep.plan import memory

    tok = AutoTokenizer.from_pretrained(folder)
    prompts, random_reward = random_task(tok, 32)
    micro, gens, completion = (8, 8, 256) if DEVICE == "cuda" else (2, 2, 8)

    with tempfile.TemporaryDirectory() as out:
        args = GRPOConfig(
            output_dir=out,
            per_device_train_batch_size=micro,
            num_generations=gens,
            max_completion_length=completion,
            max_steps=steps,
            learning_rate=5e-7,
            bf16=DEVICE == "cuda",
            use_cpu=DEVICE == "cpu",
            gradient_checkpointing=True,
            logging_steps=1,
            report_to=[],
            save_strategy="no",
            use_vllm=False,
        )
        trainer = GRPOTrainer(
            model=str(folder),
            reward_funcs=[random_reward],
            args=args,
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=tok,
        )
        reset_peak()
        start = time.perf_counter()
        trainer.train()
        seconds = (time.perf_counter() - start) / steps
    measured = peak_bytes()
    shape = memory.model_shape(memory.load_config(folder), "qwen2-shaped")
    prompt_len = max(len(tok(p).input_ids) for p in prompts)
    est = memory.estimate(
        shape,
        micro_batch=micro,
        prompt_len=prompt_len,
        completion_len=completion,
        grad_checkpointing=True,
        generate_batch=micro,
        overhead_gb=0.0,
    )
    print(f"\n[grpo] {steps} steps, micro-batch {micro}, {gens} generations, {completion} new tokens")
    print(f"  {seconds:.1f} s per step; peak {measured / 1e9:.2f} GB measured")
    print(f"  planner: update {est.training_peak / 1e9:.2f} GB, rollout {est.rollout_peak / 1e9:.2f} GB")
    del trainer


def fsdp_check(folder: Path) -> None:
    """One FSDP2 GRPO step on one rank with spurisweep's sharded arguments (sharding.fsdp_training_args:
    FSDP's activation checkpointing, SHARDED_STATE_DICT) and its mixed-precision policy (bf16 compute, fp32
    gradient reduce: trainer.grpo_config(sharded=True)), a sharded checkpoint, and the HF export of the
    sharded weights (sharding.export_hf) loaded back. On the CPU (smoke) it runs over gloo with
    accelerate's CPU gate lifted, as the CPU rehearsal does."""
    import os

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from spurisweep.training import sharding
    from spurisweep.training.trainer import SpuriTrainer, grpo_config

    for key, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_ADDR", "127.0.0.1")):
        os.environ.setdefault(key, value)
    os.environ.setdefault("MASTER_PORT", "29731")
    if DEVICE == "cpu":
        sharding.enable_cpu_fsdp()
    tok = AutoTokenizer.from_pretrained(folder)
    prompts, random_reward = random_task(tok, 16)
    micro, completion = (8, 256) if DEVICE == "cuda" else (2, 8)

    with tempfile.TemporaryDirectory() as out:
        kw = dict(
            output_dir=out,
            per_device_train_batch_size=micro,
            num_generations=micro,
            max_completion_length=completion,
            max_steps=1,
            learning_rate=5e-7,
            bf16=DEVICE == "cuda",
            use_cpu=DEVICE == "cpu",
            logging_steps=1,
            report_to=[],
            save_strategy="steps",
            save_steps=1,
            use_vllm=False,
        )
        kw.update(
            sharding.fsdp_training_args(str(folder), activation_checkpointing=True, bf16=DEVICE == "cuda")
        )
        args = grpo_config(kw, cpu=DEVICE == "cpu", world=1, sharded=True)
        trainer = SpuriTrainer(
            model=str(folder),
            reward_funcs=[random_reward],
            args=args,
            train_dataset=Dataset.from_dict({"prompt": prompts}),
            processing_class=tok,
        )
        backend = sharding._backend(trainer)  # FSDP on one rank: wrapped, nothing to split across ranks
        reset_peak()
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        policy = getattr(trainer.accelerator.state.fsdp_plugin, "mixed_precision_policy", None)
        ckpt = sorted(Path(out).glob("checkpoint-*"))
        shards = sorted(p.name for p in ckpt[-1].iterdir()) if ckpt else []
        export = Path(out) / "hf"
        sharding.export_hf(trainer, tok, export)
        back = AutoModelForCausalLM.from_pretrained(export)
        print(
            f"\n[fsdp] 1 rank, 1 step, micro-batch {micro}: {seconds:.1f} s; peak {peak_bytes() / 1e9:.2f} GB"
        )
        print(f"  backend: {backend}; mixed precision: {policy}")
        print(f"  checkpoint: {ckpt[-1].name if ckpt else 'none'} ({', '.join(shards[:6])})")
        print(f"  HF export: {sum(p.numel() for p in back.parameters()):,} parameters loaded back")
        del trainer, back
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def decode_7b_check(batch: int = 64, new_tokens: int = 128) -> None:
    """transformers decode speed at Qwen2.5-7B's shape (random weights), bf16 then fp32: what an evaluation
    without vLLM costs per step, and what loading it in the wrong dtype would cost."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    cfg = Qwen2Config(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
    )
    for dtype, b in ((torch.bfloat16, batch), (torch.float32, batch // 2)):
        torch.set_default_dtype(dtype)
        with torch.device(DEVICE):
            model = Qwen2ForCausalLM(cfg).eval()
        torch.set_default_dtype(torch.float32)
        ids = torch.randint(9, 50000, (b, 300), device=DEVICE)

        def gen(n, model=model, ids=ids):
            return model.generate(ids, max_new_tokens=n, min_new_tokens=n, pad_token_id=0, do_sample=False)

        with torch.no_grad():
            gen(4)
            sync()
            start = time.perf_counter()
            gen(new_tokens)
            sync()
        ms = (time.perf_counter() - start) / new_tokens * 1000
        print(f"[decode 7B] {str(dtype).split('.')[-1]}, batch {b}: {ms:.1f} ms per step")
        del model
        torch.cuda.empty_cache()


def sync() -> None:
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


def generate_check(folder: Path, batch: int = 32, new_tokens: int = 256) -> None:
    """Batched transformers generate in bf16: new tokens per second."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).to(DEVICE).eval()
    ids = torch.randint(4, model.config.vocab_size, (batch, 64), device=DEVICE)
    kw = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=True, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids[:2], **dict(kw, max_new_tokens=8, min_new_tokens=8))  # warm-up
        sync()
        start = time.perf_counter()
        model.generate(ids, attention_mask=torch.ones_like(ids), **kw)
        sync()
    seconds = time.perf_counter() - start
    print(
        f"\n[generate] batch {batch} x {new_tokens} new tokens: {batch * new_tokens / seconds:,.0f} tokens/s"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="0.5b", choices=["0.5b", "1.5b"])
    ap.add_argument("--grpo-steps", type=int, default=2)
    ap.add_argument(
        "--cpu-smoke", action="store_true", help="run every step on the CPU, 2 layers, no figures"
    )
    args = ap.parse_args()
    import torch

    global DEVICE
    if args.cpu_smoke:
        DEVICE = "cpu"
    elif not torch.cuda.is_available():
        print("no CUDA device: nothing measured")
        return 0
    from train_step import build_large

    name = (
        torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu (smoke run: figures are not measurements)"
    )
    print(f"device: {name}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_large(Path(tmp) / "model", args.shape, layers=None if DEVICE == "cuda" else 2)
        planner_check(folder)
        grpo_check(folder, args.grpo_steps if DEVICE == "cuda" else 1)
        fsdp_check(folder)
        if DEVICE == "cuda":
            generate_check(folder)
            decode_7b_check()
        else:
            generate_check(folder, batch=2, new_tokens=4)
    return 0


if __name__ == "__main__":
    sys.exit(main())
