"""Memorisation-probe throughput against evaluation throughput on the same model and problems.

The probe (spurisweep.evaluation.probe_run) should cost about what an evaluation of the same prompts costs: it uses
the same batched generation (generate.generate_transformers here; vLLM on a GPU) and overlaps grading the
same way. This prints, for the built-in `tiny` model on the CPU:

  eval   evaluate.run: N problems, greedy, one sample each (MATH-500's protocol);
  probe  probe_run.run_probes: the same N problems cut at 40/60/80% (3N prompts, one batched call),
         greedy, scored (exact match, ROUGE-L) and graded;

with the same max_new_tokens, as prompts per second and generated tokens per second (wall time, from the
call to its files written; the weights are loaded once beforehand), best of `--reps` runs each,
alternated. Target: the probe's tokens/s within 1.5x of the evaluation's (ratio = eval / probe <= 1.5).

Problems are MATH-500's from $SPURISWEEP_DATA_DIR or ../shared/data, else the built-in arithmetic set.
Usage: .venv/bin/python bench/probe.py [--problems 16] [--max-new-tokens 48] [--reps 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from spurisweep.evaluation import probe_run  # noqa: E402
from spurisweep.evaluation import run as evaluate  # noqa: E402
from spurisweep.models import families  # noqa: E402
from spurisweep.plan.spec import EvalSettings, ProtocolOverride  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    for cand in (os.environ.get("SPURISWEEP_DATA_DIR"), ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "math500.json").exists():
            os.environ["SPURISWEEP_DATA_DIR"] = str(cand)
            break
    bench = "math500" if os.environ.get("SPURISWEEP_DATA_DIR") else "arith"
    from spurisweep.grading import grade_batch

    grade_batch([("\\boxed{1}", "1")])  # start the shared grading pool once, outside the timings
    source = families.model_source("tiny")
    model, tok = families.load_model_and_tokenizer(source, device="cpu")
    settings = EvalSettings(
        protocols={bench: ProtocolOverride(limit=args.problems, max_new_tokens=args.max_new_tokens)}
    )
    proto = evaluate.protocol_for(settings, bench)
    fractions = (0.4, 0.6, 0.8)
    ev_best = pr_best = None
    for rep in range(args.reps):  # alternated, best of reps: the least disturbed by other load
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            weights = evaluate.Weights(source, model=model, tokenizer=tok)
            meta = evaluate.run(evaluate.EvalJob(f"bench{rep}", Path(tmp), proto, "chat", 0, weights))
            wall = time.perf_counter() - t
            if ev_best is None or wall < ev_best[0]:
                ev_best = (wall, meta["n_samples"], meta["generated_tokens"])
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            metas = probe_run.run_probes(
                model="tiny",
                benchmarks=[bench],
                fractions=fractions,
                results=Path(tmp),
                settings=settings,
                loaded=(model, tok),
                backend="transformers",
            )
            wall = time.perf_counter() - t
            prompts = sum(m["summary"]["n"] for m in metas)
            if pr_best is None or wall < pr_best[0]:
                pr_best = (wall, prompts, metas[0]["generated_tokens"])
    assert ev_best is not None and pr_best is not None
    print(
        f"== tiny model on the CPU, {bench}: {args.problems} problems, greedy, <= {args.max_new_tokens} new "
        f"tokens, best of {args.reps}"
    )
    rates = {}
    for name, (wall, prompts, tokens) in (("eval", ev_best), ("probe", pr_best)):
        rates[name] = tokens / wall
        what = "prompts" if name == "eval" else f"cut prompts ({', '.join(map(str, fractions))})"
        print(
            f"  {name:5s} {prompts:4d} {what}: {wall:6.2f} s  {prompts / wall:7.2f} prompts/s  "
            f"{tokens / wall:8.1f} tokens/s"
        )
    ratio = rates["eval"] / rates["probe"]
    verdict = "within" if ratio <= 1.5 else "NOT within"
    print(f"  eval / probe tokens/s = {ratio:.2f} ({verdict} the 1.5x target)")


if __name__ == "__main__":
    main()
