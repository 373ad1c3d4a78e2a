"""Evaluation throughput: a naive one-prompt-at-a-time loop against spurisweep's batched path, and what
grading adds to the wall time of an evaluation.

Prints, for each model: problems per second and generated tokens per second of
  naive    one generate() call per problem (its n samples together), as a simple eval script would;
  batched  generate.generate_transformers: problems grouped by token length, left-padded batches sized to
           memory (the path evaluate.run uses);
for a greedy protocol (MATH-500's: 1 sample) and a sampled one (AIME/AMC's: 8 samples at temperature 0.6),
with fewer new tokens than the paper's 3072 so it runs in minutes. Greedy outputs of both paths must be
identical (checked). Then one full evaluate.run (generation + grading overlapped in the background)
against generation alone: grading's share of the wall time (target: adds < 10%), plus the grading cost
per response for realistic answers (math-verify on \\boxed{} LaTeX answers), with a warm worker pool.

  CPU  the built-in 2-layer `tiny` model, always.
  GPU  only when CUDA is present: a Qwen2-0.5B-shaped model (24 layers, hidden 896, 14 / 2 KV heads, vocab
       151,936; `--gpu-shape 1.5b` for Qwen2-1.5B's) from its config with random weights in bf16, no
       download; the tiny tokenizer encodes the prompts (throughput depends on shapes, not on words).
       Expectation: batched >= 5x the naive loop.

Problems are MATH-500's from $SPURISWEEP_DATA_DIR or ../shared/data (else the built-in arithmetic set).
Usage: .venv/bin/python bench/eval.py [--problems 12] [--max-new-tokens 64] [--gpu-shape 0.5b|1.5b]
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from qwen2_shapes import QWEN2_VOCAB, SHAPES  # noqa: E402  (bench/ is on sys.path)

from spurisweep.data import sets as data  # noqa: E402
from spurisweep.evaluation import generate  # noqa: E402
from spurisweep.evaluation import run as evaluate  # noqa: E402
from spurisweep.evaluation.generate import Sampling  # noqa: E402
from spurisweep.models import families  # noqa: E402
from spurisweep.plan.spec import EvalSettings, ProtocolOverride  # noqa: E402


def problems_dir() -> Path | None:
    for cand in (os.environ.get("SPURISWEEP_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "math500.json").exists():
            return Path(cand)
    return None


def load_prompts(tok: Any, n: int) -> tuple[list[data.Problem], list[str]]:
    d = problems_dir()
    probs = (
        data.load_problems(str(d / "math500.json"), limit=n) if d else data.load_benchmark("arith", limit=n)
    )
    return probs, [families.render_prompt(tok, "chat", p.problem) for p in probs]


def timed(fn: Any) -> tuple[Any, float]:
    sync()
    t = time.perf_counter()
    out = fn()
    sync()
    return out, time.perf_counter() - t


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def compare(
    model: Any, tok: Any, prompts: list[str], sampling: Sampling, label: str, reps: int = 2
) -> dict[str, float]:
    """naive vs batched for one protocol (best of `reps` runs each); returns the figures."""
    generate.generate_transformers(model, tok, prompts[:2], sampling)  # warm-up (kernels, allocator)
    t_naive = t_batched = float("inf")
    for _ in range(reps):  # alternated, best of `reps`: the least disturbed by other load on the machine
        naive, t = timed(
            lambda: [
                generate.generate_transformers(model, tok, [p], sampling, batch_size=sampling.n)[0]
                for p in prompts
            ]
        )
        t_naive = min(t_naive, t)
        batched, t = timed(lambda: generate.generate_transformers(model, tok, prompts, sampling))
        t_batched = min(t_batched, t)
    tok_naive = sum(g.n_tokens for gs in naive for g in gs)
    tok_batched = sum(g.n_tokens for gs in batched for g in gs)
    same = "yes" if naive == batched else "NO"
    print(
        f"  {label}: {len(prompts)} problems x {sampling.n} samples, <= {sampling.max_new_tokens} new tokens, "
        f"best of {reps}"
    )
    print(
        f"    naive    {len(prompts) / t_naive:8.2f} problems/s  {tok_naive / t_naive:9.1f} tokens/s  "
        f"({t_naive:.1f} s)"
    )
    print(
        f"    batched  {len(prompts) / t_batched:8.2f} problems/s  {tok_batched / t_batched:9.1f} tokens/s  "
        f"({t_batched:.1f} s)  speed-up {t_naive / t_batched:.1f}x"
        + (f"  identical greedy outputs: {same}" if sampling.greedy else "")
    )
    return {"naive_s": t_naive, "batched_s": t_batched, "speedup": t_naive / t_batched}


def grading_overhead(model: Any, tok: Any, n_problems: int, max_new_tokens: int) -> None:
    """A full run_eval (grading overlapped) against generation alone on the same problems and settings."""
    from spurisweep.grading import grade_batch

    d = problems_dir()
    bench = "amc"
    if d is None:
        print("  grading overhead: skipped (needs ../shared/data or SPURISWEEP_DATA_DIR for real answers)")
        return
    os.environ["SPURISWEEP_DATA_DIR"] = str(d)
    grade_batch([("\\boxed{1}", "1")])  # start the shared grading pool (a one-off ~1-2 s per process)
    settings = EvalSettings(
        protocols={bench: ProtocolOverride(limit=n_problems, max_new_tokens=max_new_tokens)}
    )
    proto = evaluate.protocol_for(settings, bench)
    probs = data.load_benchmark(bench, limit=n_problems)
    prompts = [families.render_prompt(tok, "chat", p.problem) for p in probs]
    gen_times, eval_times, metas = [], [], []
    weights = evaluate.Weights("bench", model=model, tokenizer=tok)
    for rep in range(2):  # alternated and repeated: the minimum is the least disturbed by other load
        _, t = timed(lambda: generate.generate_transformers(model, tok, prompts, proto.sampling(0)))
        gen_times.append(t)
        with tempfile.TemporaryDirectory() as tmp:
            meta, t = timed(
                lambda rep=rep, tmp=tmp: evaluate.run(
                    evaluate.EvalJob(f"bench{rep}", Path(tmp), proto, "chat", 0, weights)
                )
            )
        eval_times.append(t)
        metas.append(meta)
    t_gen, t_eval = min(gen_times), min(eval_times)
    meta = min(metas, key=lambda m: m["generate_s"])
    rows = meta["n_samples"]
    print(
        f"  grading overhead ({bench}, {n_problems} problems x {proto.samples} samples = {rows} responses, "
        f"<= {proto.max_new_tokens} new tokens; best of 2):"
    )
    print(
        f"    generation alone {t_gen:.2f} s; run_eval {t_eval:.2f} s (generate {meta['generate_s']:.2f} s, "
        f"grading busy {meta['grade_s']:.2f} s in the background, left after generation "
        f"{meta['grade_wait_s']:.3f} s)"
    )
    print(
        f"    grading adds {100 * meta['grade_wait_s'] / meta['generate_s']:.1f}% to generation wall time "
        f"(grading work = {100 * meta['grade_s'] / meta['generate_s']:.1f}% of it, overlapped); "
        f"whole run_eval vs generation alone: {100 * (t_eval - t_gen) / t_gen:+.1f}% (also loading data, "
        "rendering prompts, writing files)"
    )
    # a realistic load: answers math-verify must parse and compare (the random model's text rarely has one);
    # each response boxes another problem's gold answer, so no string shortcut decides it
    answers = [p.answer for p in data.load_benchmark("math500", limit=200)]
    pairs = [
        (
            f"Let us compute. The result simplifies, so the answer is \\boxed{{{answers[(i + 1) % len(answers)]}}}.",
            a,
        )
        for i, a in enumerate(answers)
    ]
    verdicts, t_real = timed(lambda: grade_batch(pairs))
    wrong = sum(v.correct is False for v in verdicts)
    print(
        f"    realistic answers (200 MATH-500 LaTeX answers, math-verify parse + compare, {wrong} judged wrong): "
        f"{len(pairs) / t_real:.0f} responses/s ({1000 * t_real / len(pairs):.1f} ms each) with "
        f"{os.cpu_count()} worker process(es)"
    )


def cpu_section(args: argparse.Namespace) -> None:
    import torch

    print(
        f"== CPU: tiny model (2 layers, hidden 64), {torch.get_num_threads()} torch threads, "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    )
    model, tok = families.load_model_and_tokenizer(families.model_source("tiny"), device="cpu")
    _, prompts = load_prompts(tok, args.problems)
    compare(model, tok, prompts, Sampling(1, 0.0, 1.0, args.max_new_tokens), "greedy (MATH-500 protocol)")
    compare(
        model,
        tok,
        prompts[: max(2, args.problems // 4)],
        Sampling(8, 0.6, 1.0, args.max_new_tokens),
        "sampled (AIME/AMC protocol)",
    )
    grading_overhead(model, tok, args.grading_problems, args.max_new_tokens)


def gpu_section(args: argparse.Namespace) -> None:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tiny_model, tok = families.load_model_and_tokenizer(families.model_source("tiny"), device="cpu")
    del tiny_model
    cfg = Qwen2Config(
        vocab_size=QWEN2_VOCAB,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        **SHAPES[args.gpu_shape],
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(cfg).to(device="cuda", dtype=torch.bfloat16).eval()
    params = sum(p.numel() for p in model.parameters()) / 1e9
    print(
        f"== GPU: {torch.cuda.get_device_name()}, random-weight Qwen2 ({args.gpu_shape} shape, {params:.2f} B "
        "parameters, bf16), transformers generate"
    )
    _, prompts = load_prompts(tok, args.gpu_problems)
    greedy = compare(
        model, tok, prompts, Sampling(1, 0.0, 1.0, args.gpu_max_new_tokens), "greedy (MATH-500 protocol)"
    )
    sampled = compare(
        model,
        tok,
        prompts[: max(2, args.gpu_problems // 4)],
        Sampling(8, 0.6, 1.0, args.gpu_max_new_tokens),
        "sampled (AIME/AMC protocol)",
    )
    for name, r in (("greedy", greedy), ("sampled", sampled)):
        verdict = "met" if r["speedup"] >= 5 else "NOT met"
        print(f"  {name}: batched/naive = {r['speedup']:.1f}x (target >= 5x: {verdict})")
    grading_overhead(model, tok, args.grading_problems, args.gpu_max_new_tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=12, help="CPU: problems for the greedy comparison")
    ap.add_argument("--max-new-tokens", type=int, default=64, help="CPU: new tokens per response")
    ap.add_argument("--grading-problems", type=int, default=8, help="AMC problems (x 8 samples) for grading")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    ap.add_argument("--gpu-shape", choices=sorted(SHAPES), default="0.5b")
    ap.add_argument("--gpu-problems", type=int, default=64)
    ap.add_argument("--gpu-max-new-tokens", type=int, default=256)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if "SPURISWEEP_CACHE" not in os.environ:  # the tiny model is built once, into a scratch cache
        os.environ["SPURISWEEP_CACHE"] = str(Path(tempfile.gettempdir()) / "spurisweep-bench-cache")
    import torch
    from transformers.utils import logging as hf_logging

    if args.threads:
        torch.set_num_threads(args.threads)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    cpu_section(args)
    if torch.cuda.is_available():
        gpu_section(args)
    else:
        print(
            "== GPU: skipped (no CUDA device on this machine); the batched path's >= 5x target on a "
            "0.5B-1.5B Qwen2 shape is untested here"
        )


if __name__ == "__main__":
    main()
