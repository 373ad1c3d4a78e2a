"""Benchmark protocols, per-sample records, pass@1 / avg@n / pass@k.

Every generated sample is kept as a row (problem id, sample index, prompt, response, extracted answer,
correct or ungradable, length in tokens, truncated, code-reasoning flags); reports compute everything
from those rows. An evaluation is identified by an `eval_id`:
  - a baseline (untrained model): hash(model, model_path, prompt template, benchmark, protocol), so it is
    run once and shared by every cell and sweep that needs it;
  - a trained checkpoint: hash(cell id, step, benchmark, protocol).
An evaluation whose files already exist is never generated again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import artifacts, data, families
from .generate import Sampling, choose_backend, generate_transformers, generate_vllm
from .grid import canonical
from .spec import EvalSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedProtocol:
    benchmark: str
    samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    prompt: str | None  # None: the cell's / family's template
    path: str | None
    limit: int | None


def protocol_for(settings: EvalSettings, bench: str) -> ResolvedProtocol:
    base = data.BENCHMARKS[bench].protocol
    ov = settings.protocols.get(bench)

    def pick(name: str, default: Any) -> Any:
        v = getattr(ov, name) if ov is not None else None
        return default if v is None else v

    return ResolvedProtocol(
        benchmark=bench,
        samples=pick("samples", base.samples),
        temperature=pick("temperature", base.temperature),
        top_p=pick("top_p", base.top_p),
        max_new_tokens=pick("max_new_tokens", base.max_new_tokens),
        prompt=pick("prompt", None),
        path=pick("path", None),
        limit=pick("limit", settings.limit),
    )


def _hash(obj: Any) -> str:
    return hashlib.sha256(canonical(obj).encode()).hexdigest()[:16]


def baseline_eval_id(model: str, model_path: str | None, prompt: str, proto: ResolvedProtocol) -> str:
    return "base-" + _hash({"model": model, "model_path": model_path, "prompt": prompt, "protocol": asdict(proto)})


def checkpoint_eval_id(cell_id: str, step: int, prompt: str, proto: ResolvedProtocol) -> str:
    return f"{cell_id}-s{step}-" + _hash({"prompt": prompt, "protocol": asdict(proto)})[:8]


# ---------------------------------------------------------------------------------------------- metrics
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples with c correct: 1 - C(n-c, k) / C(n, k)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """avg@n (= pass@1), pass@k for every k up to n, and the standard error over problems."""
    by_problem: dict[str, list[bool]] = {}
    for r in rows:
        by_problem.setdefault(str(r["problem_id"]), []).append(bool(r.get("correct")))
    if not by_problem:
        return {"problems": 0}
    n = min(len(v) for v in by_problem.values())
    per_problem = [sum(v[:n]) / n for v in by_problem.values()]
    mean = sum(per_problem) / len(per_problem)
    var = sum((x - mean) ** 2 for x in per_problem) / max(len(per_problem) - 1, 1)
    out: dict[str, Any] = {
        "problems": len(by_problem),
        "samples": n,
        "avg@n": mean,
        "stderr": math.sqrt(var / len(per_problem)),
    }
    for k in range(1, n + 1):
        out[f"pass@{k}"] = sum(pass_at_k(n, sum(v[:n]), k) for v in by_problem.values()) / len(by_problem)
    return out


# ---------------------------------------------------------------------------------------------- running
def run_eval(
    *,
    model: Any,
    tokenizer: Any,
    model_source: str,
    prompt_template: str,
    proto: ResolvedProtocol,
    seed: int,
    folder: Path,
    eval_id: str,
    meta: dict[str, Any],
    backend: str = "transformers",
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Generate, grade and write one evaluation (unless it is already complete). Returns its metadata."""
    from .grading import grade_batch

    if artifacts.eval_complete(folder, eval_id):
        return artifacts.read_json(artifacts.eval_files(folder, eval_id)[1])
    problems = data.load_benchmark(proto.benchmark, path=proto.path, limit=proto.limit)
    template = proto.prompt or prompt_template
    prompts = [families.render_prompt(tokenizer, template, p.problem) for p in problems]
    sampling = Sampling(proto.samples, proto.temperature, proto.top_p, proto.max_new_tokens, seed)
    t0 = time.time()
    if backend == "vllm":
        gens = generate_vllm(model_source, prompts, sampling)
    else:
        gens = generate_transformers(model, tokenizer, prompts, sampling, batch_size=batch_size, progress=progress)
    t_gen = time.time() - t0
    flat = [(i, s, g) for i, gs in enumerate(gens) for s, g in enumerate(gs)]
    verdicts = grade_batch([(g.text, problems[i].answer) for i, _, g in flat])
    t_grade = time.time() - t0 - t_gen
    rows = []
    for (i, idx, g), v in zip(flat, verdicts, strict=True):
        p = problems[i]
        rows.append(
            {
                "eval_id": eval_id,
                "problem_id": p.id,
                "sample_idx": idx,
                "prompt": prompts[i],
                "answer": p.answer,
                "response": g.text,
                "extracted": v.extracted,
                "correct": v.correct,
                "reason": v.reason,
                "n_tokens": g.n_tokens,
                "truncated": g.truncated,
                "has_python": v.has_python,
                "has_code_block": v.has_code_block,
            }
        )
    summary = summarize(rows)
    full_meta = {
        **meta,
        "eval_id": eval_id,
        "benchmark": proto.benchmark,
        "prompt": template,
        "protocol": asdict(proto),
        "backend": backend,
        "seed": seed,
        "n_problems": len(problems),
        "generate_s": round(t_gen, 3),
        "grade_s": round(t_grade, 3),
        "generated_tokens": sum(g.n_tokens for _, _, g in flat),
        "created": time.time(),
        "summary": summary,
    }
    artifacts.write_eval(folder, eval_id, rows, full_meta)
    log.info("eval %s %s: pass@1 %.3f (%d problems)", eval_id, proto.benchmark, summary.get("pass@1", 0), len(problems))
    return full_meta


def evaluate_standalone(
    *,
    model: str,
    model_path: str | None,
    checkpoint: str | None,
    benchmarks: list[str],
    settings: EvalSettings,
    prompt: str | None,
    results: Path,
    seed: int = 0,
    backend: str = "auto",
) -> list[dict[str, Any]]:
    """`spurisweep eval`: a base model or any checkpoint, recorded in the same store as sweep cells."""
    fam = families.get(model)
    template = prompt or fam.prompt
    source = checkpoint or families.model_source(model, model_path)
    chosen = choose_backend(backend)
    if chosen == "vllm":  # vLLM loads its own weights; only the tokenizer is needed to render prompts
        from transformers import AutoTokenizer

        mdl, tok = None, AutoTokenizer.from_pretrained(source)
    else:
        mdl, tok = families.load_model_and_tokenizer(source)
    folder = results / artifacts.BASELINES
    metas = []
    for bench in benchmarks:
        proto = protocol_for(settings, bench)
        if checkpoint:
            eval_id = "ext-" + _hash({"checkpoint": str(Path(checkpoint).resolve()), "model": model, "prompt": template,
                                      "protocol": asdict(proto)})
        else:
            eval_id = baseline_eval_id(model, model_path, template, proto)
        meta = {"model": model, "model_path": model_path, "checkpoint": checkpoint, "cell_id": None, "step": 0,
                "is_baseline": checkpoint is None}
        metas.append(run_eval(model=mdl, tokenizer=tok, model_source=source, prompt_template=template, proto=proto,
                              seed=seed, folder=folder, eval_id=eval_id, meta=meta, backend=chosen,
                              batch_size=settings.batch_size))
    return metas
