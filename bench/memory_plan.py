"""The memory planner's estimate against a measured CPU peak, for the built-in `tiny` model.

Each configuration runs in a fresh Python process (peak RSS is a per-process high-water mark): the `tiny`
model in fp32 with TRL's fused LM head (as GRPOTrainer patches it), one warm-up forward+backward at a
few tokens (loads kernels and thread pools), then the measured step: forward + backward + AdamW at the
given micro-batch and lengths. Measured two ways: torch's CPU allocator peak during the step (the
"Total Allocated" the profiler records with profile_memory, which counts from zero at the step's start)
and the growth of peak RSS (which adds allocator fragmentation and library scratch). The matching
estimate is what the step adds to weights already in memory (compute copy, gradients, AdamW states,
activations, LM head), from spurisweep.plan.memory with compute_dtype fp32 and no runtime overhead.
Inputs are unpadded (attention mask all ones), prompt positions masked out of the labels as TRL does.

Usage: python bench/memory_plan.py [--configs 8x256+768,8x256+768+ckpt,...]
Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile

DEFAULT = "8x256+768,8x256+768+ckpt,16x256+768+ckpt,4x128+384"


def parse(spec: str) -> dict:
    """'16x256+768+ckpt' -> micro-batch 16, prompt 256, completion 768, checkpointing on."""
    micro, rest = spec.split("x")
    parts = rest.split("+")
    return {
        "micro_batch": int(micro),
        "prompt_len": int(parts[0]),
        "completion_len": int(parts[1]),
        "grad_checkpointing": "ckpt" in parts[2:],
    }


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def allocator_peak(prof) -> int:
    """The highest CPU-allocator total inside the profiled window (its chrome trace's memory events)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events if e.get("name") == "[memory]"]
    return max(totals, default=0)


def measure(cfg: dict) -> dict:
    """Run in a child process: one measured training step; returns measured and estimated bytes."""
    import torch
    from torch.profiler import ProfilerActivity, profile
    from trl.trainer.utils import add_fused_lm_head

    from spurisweep.models import families
    from spurisweep.plan import memory

    torch.manual_seed(0)
    torch.set_num_threads(
        1
    )  # the machine is shared; one thread also keeps per-thread scratch out of the figure
    folder = families.ensure_built(families.get("tiny"))
    model, _ = families.load_model_and_tokenizer(str(folder), dtype="fp32", device="cpu")
    model.config.use_cache = False
    add_fused_lm_head(model, outputs=("log_probs", "entropy"))
    if cfg["grad_checkpointing"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step(micro: int, prompt: int, completion: int, update: bool) -> None:
        ids = torch.randint(4, model.config.vocab_size, (micro, prompt + completion))
        labels = ids.clone()
        labels[:, :prompt] = -100
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), labels=labels, fused_lm_head=True)
        (-out.log_probs.sum() / micro).backward()
        if update:
            opt.step()
        opt.zero_grad(set_to_none=True)

    step(2, 4, 4, update=False)
    before = rss_bytes()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step(cfg["micro_batch"], cfg["prompt_len"], cfg["completion_len"], update=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    shape = memory.model_shape(memory.load_config(folder), "tiny")
    est = memory.estimate(shape, compute_dtype="fp32", overhead_gb=0.0, triton=False, **cfg)
    added = est.training_peak - est.weights  # the weights were in memory before the step
    return {
        "allocator": allocator_peak(prof),
        "rss": peak - before,
        "estimated": added,
        "terms": {
            k: est.breakdown()[k] for k in ("activations", "backward", "lm_head", "gradients", "optimizer")
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", default=DEFAULT, help="micro x prompt + completion [+ckpt], comma separated")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(parse(args.child))))
        return
    print(
        f"{'config':<22}{'allocator MB':>13}{'RSS MB':>9}{'estimate MB':>13}{'est/alloc':>11}   estimate terms (MB)"
    )
    for spec in args.configs.split(","):
        proc = subprocess.run(
            [sys.executable, __file__, "--child", spec], capture_output=True, text=True, check=False
        )
        if proc.returncode:
            print(f"{spec:<22}failed:\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        terms = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in r["terms"].items())
        ratio = r["estimated"] / max(r["allocator"], 1)
        meas = f"{r['allocator'] / 1e6:>13.1f}{r['rss'] / 1e6:>9.1f}"
        print(f"{spec:<22}{meas}{r['estimated'] / 1e6:>13.1f}{ratio:>11.2f}   {terms}")


if __name__ == "__main__":
    main()
