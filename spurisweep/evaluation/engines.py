"""Data-parallel vLLM generation: one engine per GPU, each in a process of its own (evaluation.run's `Engines`).

A job that `run` places on `Engines(n)` (an evaluation, majority-vote labels, a probe: run.Job) is sent to n
processes; process r runs the job's share r of n (`share_of`: items r, r + n, ...; each item's samples
keyed by its index in the whole job, so they do not depend on the split: they are those one engine draws),
with whatever reduction the job makes where the samples are (labels vote there, so the grading runs in n
processes and only the votes travel back). The parent merges the shares in item order (`merge`, checking
that every item came back once). The parent holds no engine; each worker releases its own before it
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
from typing import Any, TypeVar

from ..distributed import gpu_names as visible_gpus  # the GPUs children may be given
from ..errors import ConfigError

log = logging.getLogger(__name__)

ENGINES_ENV = "SPURISWEEP_LABEL_ENGINES"

T = TypeVar("T")
J = TypeVar("J")


# ---------------------------------------------------------------------------------------------- the split
def share_of(n: int, rank: int, world: int) -> list[int]:
    """The items of n that process `rank` of `world` makes: rank, rank + world, ... (round-robin, so every
    share holds items from the whole range, easy and hard alike)."""
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} is outside 0..{world - 1}")
    return list(range(rank, n, world))


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


# ---------------------------------------------------------------------------------------------- the parent
def in_processes(
    work: Callable[[J, int, int], T],
    job: J,
    count: int,
    *,
    devices: Sequence[str | None] | None = None,
    progress: Callable[[T], None] | None = None,
) -> list[T]:
    """`work(job, rank, count)` for every rank, each in a spawned process of its own pinned to its device
    (default: the visible GPUs in order; None each on vLLM's CPU build), before anything there starts CUDA.
    Returns the results in rank order; `progress` gets each one as it comes back. The first failure stops
    the others and raises. `work` and `job` must pickle (a module-level function; a dataclass)."""
    import multiprocessing

    devs = list(devices) if devices is not None else engine_devices(count)
    if len(devs) < count:
        raise ConfigError(f"{count} vLLM engines but {len(devs)} devices for them")
    ctx = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        pools = [
            ProcessPoolExecutor(1, mp_context=ctx, initializer=pin, initargs=(devs[r],)) for r in range(count)
        ]
        for pool in pools:
            stack.callback(pool.shutdown)
        t0 = time.time()
        futures = [pool.submit(work, job, r, count) for r, pool in enumerate(pools)]
        try:
            _wait_all(futures, progress, t0)
        except BaseException:
            stop(pools)
            raise
        return [f.result() for f in futures]


def _wait_all(futures: list[Future], progress: Callable[[Any], None] | None, t0: float) -> None:
    """Until every share is back (`progress` gets each); the first failure raises."""
    todo = set(futures)
    while todo:
        done, todo = wait(todo, return_when=FIRST_COMPLETED)
        for f in done:
            result = f.result()  # a worker's exception (BrokenProcessPool if its process died) raises here
            log.info("engine %d of %d done after %.0f s", futures.index(f), len(futures), time.time() - t0)
            if progress is not None:
                progress(result)


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
