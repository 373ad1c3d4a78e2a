"""Seconds per GRPO rollout step and generated tokens per second, through spurisweep's own training path.

Each measurement trains one cell with training.cell.run_cell (TRL's GRPOTrainer, transformers generation, the
random reward, no evaluation) and reads the cell's metrics.jsonl: a rollout step's wall time is the time
between the last logged updates of consecutive rollouts (the first rollout is warm-up and not counted), and
generation throughput is the completion tokens over the time spent in TRL's generate call (both logged by
training.trainer.SpuriTrainer).

  CPU  the built-in 2-layer `tiny` model, always.
  GPU  only when CUDA is present: a Qwen2-0.5B-shaped model (24 layers, hidden 896, 14 heads / 2 KV heads,
       vocab 151,936; `--large-shape 1.5b` for Qwen2-1.5B's shape) built from its config with random
       weights, no download. `--large-on-cpu` runs the same code path on CPU with 2 layers, to check it.

Usage: .venv/bin/python bench/train_step.py [--steps 4] [--large-shape 0.5b|1.5b] [--large-on-cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml
from qwen2_shapes import QWEN2_VOCAB, SHAPES  # bench/ is on sys.path when run as a script


def build_large(out: Path, shape: str, layers: int | None = None) -> Path:
    """A randomly initialised Qwen2 of the given shape, plus a word-level tokenizer covering its vocabulary
    (the real Qwen tokenizer would need a download; the figures depend on shapes, not on the words)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from spurisweep.models import families

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    words = sorted({w for line in families.tokenizer_corpus() for w in line.split()})
    vocab = {t: i for i, t in enumerate(specials + words)}
    vocab.update({f"<t{i}>": i for i in range(len(vocab), QWEN2_VOCAB)})
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    )
    hf.chat_template = families.TINY_CHAT_TEMPLATE
    hf.padding_side = "left"
    kw = dict(SHAPES[shape])
    if layers is not None:
        kw["num_hidden_layers"] = layers
    cfg = Qwen2Config(
        vocab_size=QWEN2_VOCAB,
        max_position_embeddings=4096,
        tie_word_embeddings=shape == "0.5b",
        bos_token_id=hf.bos_token_id,
        eos_token_id=hf.eos_token_id,
        pad_token_id=hf.pad_token_id,
        **kw,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg)
    model.save_pretrained(out)
    hf.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    print(
        f"  built a random Qwen2 ({shape} shape, {kw['num_hidden_layers']} layers): {n / 1e6:.0f}M parameters"
    )
    return out


def run(results: Path, name: str, settings: dict, model_path: str | None = None) -> dict:
    from spurisweep import launch
    from spurisweep.plan import grid, grpo, spec
    from spurisweep.training.cell import run_cell

    sweep = {
        "name": name,
        "preset": "smoke",
        "grid": {"model": ["tiny"], "reward": ["random"], "seed": [0]},
        "settings": settings,
    }
    if model_path:
        sweep["settings"] = {**settings, "model_path": model_path}
    path = results / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    (cell,) = grid.expand(spec.load_sweep(path))
    grpo.validate(cell.config, str(path))
    d = launch.write_cell_config(cell, results)
    t0 = time.time()
    done = run_cell(d, results)
    wall = time.time() - t0
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = {}
    for r in rows:
        last[r["step"]] = r["time"]
    steps = sorted(last)
    per_step = [last[b] - last[a] for a, b in zip(steps, steps[1:], strict=False)]
    gen = [r for r in rows if "timing/generate_s" in r and r["step"] > steps[0]]
    gen_s = sum(r["timing/generate_s"] for r in gen)
    tokens = sum(r["timing/generated_tokens"] for r in gen)
    return {
        "sec_per_step": statistics.median(per_step),
        "sec_range": (min(per_step), max(per_step)),
        "tokens_per_s": tokens / gen_s if gen_s else float("nan"),
        "gen_fraction": gen_s / sum(per_step),
        "updates_per_rollout": done["updates_per_rollout"],
        "steps_measured": len(per_step),
        "wall_s": wall,
        "device": done["device"],
    }


def report(title: str, shape: str, r: dict) -> None:
    print(f"{title}: {shape}")
    lo, hi = r["sec_range"]
    print(
        f"  seconds per GRPO step      {r['sec_per_step']:.3f}  (median of {r['steps_measured']} steps, range "
        f"{lo:.3f}-{hi:.3f}; {r['updates_per_rollout']} updates each; device {r['device']})"
    )
    print(f"  generated tokens / second  {r['tokens_per_s']:.0f}")
    print(f"  share of a step generating {r['gen_fraction']:.0%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--steps", type=int, default=5, help="rollout steps per measurement (the first is warm-up)"
    )
    ap.add_argument("--large-shape", choices=sorted(SHAPES), default="0.5b")
    ap.add_argument(
        "--large-on-cpu", action="store_true", help="run the large-model path on CPU with 2 layers"
    )
    args = ap.parse_args()
    if args.steps < 2:
        ap.error(
            "--steps must be at least 2: the first step is warm-up (a step is timed from the end of the one before)"
        )

    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    cpu_threads = torch.get_num_threads()
    no_eval = {"baseline": False, "checkpoints": False, "benchmarks": []}
    with tempfile.TemporaryDirectory(prefix="spurisweep-bench-") as tmp:
        results = Path(tmp)
        os.environ.setdefault("SPURISWEEP_CACHE", str(results / "cache"))
        shape = "8 prompts x 8 samples, mini-batch 16, 64 new tokens"
        r = run(
            results,
            "bench_tiny",
            {
                "train": {
                    "steps": args.steps,
                    "prompts_per_step": 8,
                    "samples_per_prompt": 8,
                    "mini_batch": 16,
                    "max_completion_length": 64,
                    "save_every": 1000,
                },
                "eval": no_eval,
            },
        )
        report(f"tiny model (2-layer Llama, 64 wide), {cpu_threads} CPU threads", shape, r)

        if not torch.cuda.is_available() and not args.large_on_cpu:
            print(
                f"GPU part skipped: no CUDA GPU on this machine (Qwen2-{args.large_shape}-shaped model, "
                "transformers generation). Run on a GPU machine, or --large-on-cpu to check the code path."
            )
            return
        on_cpu = not torch.cuda.is_available()
        folder = build_large(results / "large", args.large_shape, layers=2 if on_cpu else None)
        # on CPU only a code-path check: a quarter of the rollout, short completions, 1 measured step
        prompts, samples, mini, tokens = (2, 4, 4, 16) if on_cpu else (8, 8, 16, 512)
        shape = f"{prompts} prompts x {samples} samples, mini-batch {mini}, {tokens} new tokens"
        r = run(
            results,
            "bench_large",
            {
                "train": {
                    "steps": 2 if on_cpu else args.steps,
                    "prompts_per_step": prompts,
                    "samples_per_prompt": samples,
                    "mini_batch": mini,
                    "max_completion_length": tokens,
                    "save_every": 1000,
                    "learning_rate": 1e-6,
                    "generation_backend": "transformers",
                    "gradient_checkpointing": not on_cpu,
                },
                "eval": no_eval,
            },
            model_path=str(folder),
        )
        name = torch.cuda.get_device_name(0) if not on_cpu else "CPU, 2 layers only (code-path check)"
        report(f"random Qwen2 {args.large_shape} shape, transformers generation, {name}", shape, r)


if __name__ == "__main__":
    sys.exit(main())
