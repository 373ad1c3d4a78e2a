"""Data-parallel vLLM generation for labels: one engine per GPU of the job, each in a process of its own.

labels.make_labels samples every training prompt N times (40k prompts x 64 on the paper's scale); one
engine uses one GPU of a label job that holds several. Here the prompts are dealt round-robin (prompt i to
engine i % n), each engine's process generates its share with every prompt keyed by its index in the whole
set (its requests seeded by generate.request_seed(seed, index)), so a prompt's samples do not depend on
the split: they are those one engine draws for it. The worker then applies a per-prompt reduction where
the samples are (labels' vote, so the grading runs in n processes and only the votes travel back) and
returns its results with the indices it made; the parent merges them in prompt order (`merge`), checking
that every prompt came back once. The parent holds no engine; each worker releases its own before it
returns, and its process ends with the pool.

Each engine is a `concurrent.futures.ProcessPoolExecutor` of one spawned process (spawn: nothing of the
parent's CUDA or threads is inherited; scripts that reach here need an `if __name__ == "__main__":` guard).
On CUDA its initializer pins one of the parent's visible GPUs (CUDA_VISIBLE_DEVICES, in the parent's order)
before anything in that process starts CUDA. One worker failing stops the others (a label job must fail
now, not when the slowest engine ends).

How many engines (`engine_count`): the caller's count, else SPURISWEEP_LABEL_ENGINES, else every visible
GPU on CUDA and 1 on vLLM's CPU build (whose engines bind threads in their own processes; tests run 2).
Inside a data-parallel training rank (WORLD_SIZE > 1), always 1: the other GPUs are the other ranks'.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from ..distributed import gpu_names as visible_gpus  # the GPUs children may be given
from ..errors import ConfigError

log = logging.getLogger(__name__)

ENGINES_ENV = "SPURISWEEP_LABEL_ENGINES"

T = TypeVar("T")
#: reduces one prompt's generations to what travels back: (the prompt's extra, its list[Generation])
Reduce = Callable[[Any, list[Any]], Any]


@dataclass(frozen=True)
class ShareJob:
    """What one engine's process is sent: its prompts, their indices in the whole set (their sampling
    keys), one extra per prompt for `reduce` (a labels row's problem), and where to run."""

    engine: int
    device: str | None  # the CUDA_VISIBLE_DEVICES its process gets; None on vLLM's CPU build
    source: str
    indices: list[int]
    prompts: list[str]
    extras: list[Any]
    sampling: Any  # generate.Sampling
    reduce: Reduce


@dataclass(frozen=True)
class Share:
    """What one engine's process sends back: its prompts' indices and their reduced results, in order."""

    engine: int
    device: str | None
    indices: list[int]
    results: list[Any]
    seconds: float


# ---------------------------------------------------------------------------------------------- the split
def deal(n: int, engines: int) -> list[list[int]]:
    """The prompt indices each engine generates: prompt i to engine i % engines; never an empty share (fewer
    prompts than engines: fewer engines)."""
    if engines < 1:
        raise ValueError(f"engines must be at least 1, not {engines}")
    return [list(range(e, n, engines)) for e in range(min(engines, n))]


def merge(n: int, shares: Sequence[tuple[Sequence[int], Sequence[T]]]) -> list[T]:
    """The shares' results in prompt order; every index in range(n) exactly once, or ValueError."""
    missing = object()
    out: list[Any] = [missing] * n
    for indices, results in shares:
        if len(indices) != len(results):
            raise ValueError(f"a share has {len(indices)} indices but {len(results)} results")
        for i, r in zip(indices, results, strict=True):
            if not 0 <= i < n:
                raise ValueError(f"prompt index {i} is outside 0..{n - 1}")
            if out[i] is not missing:
                raise ValueError(f"prompt {i} came back from two shares")
            out[i] = r
    lost = [i for i, r in enumerate(out) if r is missing]
    if lost:
        raise ValueError(f"{len(lost)} prompts came back from no share (first: {lost[:5]})")
    return out


def digest(texts: Sequence[str]) -> str:
    """A fingerprint of one prompt's samples (two runs drew the same samples iff their digests agree)."""
    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8", "surrogatepass")
        h.update(len(b).to_bytes(8, "little") + b)
    return h.hexdigest()


# ---------------------------------------------------------------------------------------------- engines
def engine_count(requested: int | None = None, *, env: bool = True) -> int:
    """Engines to start: `requested`, else SPURISWEEP_LABEL_ENGINES (`env`), else every visible GPU on CUDA
    and 1 on vLLM's CPU build; 1 inside a data-parallel training rank. More than the visible GPUs is a
    ConfigError."""
    from .. import distributed
    from . import generate

    n = requested if requested is not None else (_env_engines() if env else None)
    if n is not None and n < 1:
        raise ConfigError(f"vLLM engines must be at least 1, not {n}", field="engines")
    if distributed.world_size() > 1:
        return 1
    if generate.vllm_platform() == "cpu":
        return n or 1
    gpus = len(visible_gpus())
    if n is not None and n > max(gpus, 1):
        raise ConfigError(f"{n} vLLM engines but this process sees {gpus} GPUs (one engine per GPU)")
    return n or max(gpus, 1)


def _env_engines() -> int | None:
    raw = os.environ.get(ENGINES_ENV, "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{ENGINES_ENV}={raw!r} is not a whole number", field=ENGINES_ENV) from None


def engine_devices(engines: int) -> list[str | None]:
    from . import generate

    if generate.vllm_platform() == "cpu":
        return [None] * engines
    return list(visible_gpus()[:engines])  # engine_count: never more engines than GPUs


def pin(device: str | None) -> None:
    """A worker's initializer: its one GPU, before torch or vLLM start CUDA in this process."""
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device


def run_share(job: ShareJob) -> Share:
    """One engine's share, in its own process: generate (keys = the prompts' global indices), release the
    engine, reduce each prompt's generations."""
    from transformers import AutoTokenizer

    from . import generate

    t0 = time.time()
    tok = AutoTokenizer.from_pretrained(job.source)
    try:
        gens = generate.generate_vllm(job.source, job.prompts, job.sampling, tokenizer=tok, keys=job.indices)
    finally:
        generate.release_vllm()
    results = [job.reduce(x, g) for x, g in zip(job.extras, gens, strict=True)]
    return Share(job.engine, job.device, job.indices, results, round(time.time() - t0, 1))


# ---------------------------------------------------------------------------------------------- the parent
def generate_shares(
    source: str,
    prompts: list[str],
    sampling: Any,
    *,
    engines: int,
    reduce: Reduce,
    extras: Sequence[Any],
    progress: Callable[[int], None] | None = None,
    devices: Sequence[str | None] | None = None,
    worker: Callable[[ShareJob], Share] = run_share,
) -> list[Share]:
    """Every prompt's reduced generations, from `engines` engines in processes of their own (the Shares,
    one per engine, in engine order; `merge` puts their results in prompt order). `reduce`, `extras` and
    `worker` must pickle (module-level functions, or functools.partial of one). `devices`: each engine
    process's CUDA_VISIBLE_DEVICES (default: the visible GPUs in order; None each on vLLM's CPU build)."""
    import multiprocessing

    shares = deal(len(prompts), engines)
    devs = list(devices) if devices is not None else engine_devices(len(shares))
    if len(devs) < len(shares):
        raise ConfigError(f"{len(shares)} label engines but {len(devs)} devices for them")
    jobs = [
        ShareJob(
            engine=e,
            device=devs[e],
            source=source,
            indices=idx,
            prompts=[prompts[i] for i in idx],
            extras=[extras[i] for i in idx],
            sampling=sampling,
            reduce=reduce,
        )
        for e, idx in enumerate(shares)
    ]
    ctx = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        pools = [ProcessPoolExecutor(1, mp_context=ctx, initializer=pin, initargs=(j.device,)) for j in jobs]
        for pool in pools:
            stack.callback(pool.shutdown)
        futures = [pool.submit(worker, job) for pool, job in zip(pools, jobs, strict=True)]
        try:
            _wait_all(futures, progress)
        except BaseException:
            stop(pools)
            raise
        return [f.result() for f in futures]


def _wait_all(futures: list[Future], progress: Callable[[int], None] | None) -> None:
    """Until every share is back (progress gets each one's prompt count); the first failure raises."""
    todo = set(futures)
    while todo:
        done, todo = wait(todo, return_when=FIRST_COMPLETED)
        for f in done:
            share = f.result()  # a worker's exception (BrokenProcessPool if its process died) raises here
            log.info(
                "labels: engine %d made %d prompts in %.0f s", share.engine, len(share.indices), share.seconds
            )
            if progress is not None:
                progress(len(share.indices))


def stop(pools: list[ProcessPoolExecutor]) -> None:
    """Ends every worker now (SIGTERM, SIGKILL after 30 s): a failed share fails the whole run, without
    waiting hours for the others. (ProcessPoolExecutor.terminate_workers does this from Python 3.14.)"""
    procs = [p for pool in pools for p in (getattr(pool, "_processes", None) or {}).values()]
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=30)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=30)
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)
