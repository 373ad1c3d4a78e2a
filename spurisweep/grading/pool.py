"""The grading pool: worker processes with hard per-answer time limits, and the public entry points.

Graders run in worker processes, each answer under the grader's own SIGALRM budget (see
``grading.verify``). A parent-side watchdog (:class:`GradingPool`) covers what no signal can interrupt:
a worker that has made no progress for ``timeout + margin`` seconds (a C-level hang) is killed and
replaced, its in-flight answer grades ``None``/"timeout" and the rest of its chunk is re-queued.

The function a worker runs is chosen by name from :data:`GRADERS`, so every grader ("math_verify" now)
shares this pool and its limits ("paper" and "paper_r1": the official rules, grading/paper.py). Tasks, results and messages cross processes by name (dataclasses and
dicts), never as positional tuples.

Why our own pool and not ``pebble.ProcessPool`` (5.2.3: per-task timeouts, replaces hung workers):
measured on bench/grading.py's MATH-500 responses (600, warmed the same way, 2 workers, 3 interleaved
runs, on the shared 2-core machine at load 14-16), pebble with one future per answer (its timeouts are
per task, so chunks would lose a whole chunk to one hang) graded 54.9 responses/s at best and spent
3.42-4.17 CPU ms per response (parent + workers), this pool 87.8 responses/s and 2.80-3.27 CPU ms:
pebble pays a future, a pickled call and two thread hand-offs per answer. This pool also re-queues the
rest of a chunk after a kill and falls back to grading in-process when no worker can start.
"""

from __future__ import annotations

import atexit
import dataclasses
import importlib
import itertools
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait as _mp_wait
from types import ModuleType
from typing import Any

from ..errors import ConfigError, suggest
from .extract import MAX_RESPONSE_CHARS, as_text, code_flags, extract_answer, tail
from .verify import INTERNAL_ERROR, POOL_UNAVAILABLE, TIMEOUT, WORKER_CRASHED, Verdict, in_main_thread

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_GRADER",
    "GRADERS",
    "GradingPool",
    "GraderSpec",
    "answers_equal",
    "grade_batch",
    "grade_one",
]


@dataclass(frozen=True)
class GraderSpec:
    """Where a grader lives. ``module`` defines ``grade(response, answer, timeout) -> Verdict``,
    ``equal(a, b, timeout) -> bool | None`` and ``warm_up()``, and keeps to ``timeout`` with
    ``verify.with_budget`` (main thread); ``preload``: heavy modules the fork server imports once."""

    module: str
    preload: tuple[str, ...] = ()
    entry: str = "grade"  # the module's grading function


#: grader name -> where it lives; named rather than imported so that a grader's imports happen only in
#: the processes that grade. Every worker warms up every grader here before it takes work.
GRADERS: dict[str, GraderSpec] = {
    "math_verify": GraderSpec("spurisweep.grading.verify", preload=("math_verify",)),
    # the paper's official rules (grading/paper.py); paper_r1 reads the answer after the last <answer>
    "paper": GraderSpec("spurisweep.grading.paper", preload=("sympy", "pylatexenc")),
    "paper_r1": GraderSpec("spurisweep.grading.paper", preload=("sympy", "pylatexenc"), entry="grade_r1"),
}
DEFAULT_GRADER = "math_verify"
#: grading worker processes per job (launch/local.py sets it to share a machine's CPUs among cells)
WORKERS_ENV = "SPURISWEEP_GRADING_WORKERS"

_loaded: dict[str, ModuleType] = {}


def check_grader(name: str) -> str:
    """``name`` if it is a registered grader, else a ConfigError listing the valid ones."""
    if name not in GRADERS:
        raise ConfigError(suggest(name, list(GRADERS)), field="grader")
    return name


def grader_module(name: str) -> ModuleType:
    """The module of grader ``name``, imported on first use in this process."""
    module = _loaded.get(name)
    if module is None:
        module = _loaded[name] = importlib.import_module(GRADERS[check_grader(name)].module)
    return module


def grade_fn(name: str) -> Any:
    """Grader ``name``'s grading function ``(response, answer, timeout) -> Verdict``."""
    return getattr(grader_module(name), GRADERS[name].entry)


# --------------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    """One answer to grade ("g": response vs gold -> Verdict) or compare ("e": a vs b -> bool | None)."""

    kind: str
    a: str
    b: str
    flags: tuple[bool, bool] | None = None  # code flags of the full response when only its tail is sent


def _unfinished(task: _Task, reason: str, extracted: str | None) -> Verdict | None:
    """The result of a task that could not be graded (None for a comparison)."""
    if task.kind == "e":
        return None
    hp, hb = task.flags if task.flags is not None else code_flags(task.a)
    return Verdict(correct=None, extracted=extracted, reason=reason, has_python=hp, has_code_block=hb)


def _execute(task: _Task, timeout: float, grader: str) -> Verdict | bool | None:
    """Run one task with grader ``grader``; a grader bug becomes an "internal_error" result, never an
    exception."""
    try:
        if task.kind == "e":
            return grader_module(grader).equal(task.a, task.b, timeout)
        verdict = grade_fn(grader)(task.a, task.b, timeout)
        if task.flags is not None:
            verdict = dataclasses.replace(verdict, has_python=task.flags[0], has_code_block=task.flags[1])
        return verdict
    except Exception:
        logger.exception("internal error in grading worker")
        return _unfinished(task, INTERNAL_ERROR, None)


def _worker_main(conn: Any, progress: Any, warmup: bool = True) -> None:
    """Worker loop: receive chunks of tasks, send back their results; ``progress`` counts tasks started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and shuts us down
    try:
        if warmup:  # import sympy's lazy parts and compile the parsers before the first real answer
            for module in {spec.module for spec in GRADERS.values()}:
                importlib.import_module(module).warm_up()
        conn.send({"event": "ready", "pid": os.getpid()})
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            grader = msg["grader"]
            out = []
            for task in msg["tasks"]:
                progress.value += 1
                out.append(_execute(task, msg["timeout"], grader))
            conn.send({"event": "done", "chunk_id": msg["chunk_id"], "results": out})
    except (KeyboardInterrupt, BrokenPipeError, EOFError, OSError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


class _Worker:
    __slots__ = ("proc", "conn", "progress", "state", "chunk", "chunk_id", "base", "seen", "seen_at", "born")

    def __init__(self, proc: Any, conn: Any, progress: Any) -> None:
        self.proc = proc
        self.conn = conn
        self.progress = progress
        self.state = "starting"  # -> "idle" <-> "busy"; "dead"
        self.chunk: list[int] = []
        self.chunk_id = -1
        self.base = 0
        self.seen = 0
        self.seen_at = 0.0
        self.born = time.monotonic()


def _cpu_count() -> int:
    """CPUs usable by this process: os.cpu_count(), narrowed by the affinity mask where there is one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def workers_from_env() -> int | None:
    """Grading workers from SPURISWEEP_GRADING_WORKERS (a job's share of its CPUs), None when unset (every
    CPU): what evaluations and rewards pass as ``workers``."""
    n = os.environ.get(WORKERS_ENV, "").strip()
    return int(n) if n else None


def _default_start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class GradingPool:
    """Worker processes that grade (response, gold) pairs with hard per-answer timeouts.

    ``workers=None`` -> the CPUs this process may use (``os.cpu_count()`` unless an affinity mask, e.g.
    a SLURM allocation, says fewer); ``workers=0`` -> grade in this process (no pool, no
    watchdog; main thread only). Workers are started at construction (the "forkserver" context, else
    "spawn": safe in a process that already initialised torch/CUDA) and reused across calls. Work goes
    out in chunks; a worker whose current answer has taken more than ``timeout + kill_margin`` seconds
    is killed and replaced. Thread-safe (calls are serialised). Use as a context manager or call
    :meth:`close`.
    """

    #: workers that fail to start this many times in a row mark the pool as broken
    MAX_START_FAILURES = 3
    #: a task re-queued this many times (its worker died each time) is given up as "worker_crashed"
    MAX_TASK_ATTEMPTS = 3

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        *,
        chunk_size: int | None = None,
        kill_margin: float | None = None,
        start_method: str | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.workers = _cpu_count() if workers is None else max(0, int(workers))
        self.timeout = float(timeout)
        self.chunk_size = chunk_size
        self.kill_margin = kill_margin
        self.startup_timeout = float(startup_timeout)
        self.start_method = start_method or _default_start_method()
        self.kills = 0  # workers killed by the watchdog (a hang beyond the signal budget)
        self.crashes = 0  # workers that died on their own
        self._lock = threading.RLock()
        self._pool: list[_Worker] = []
        self._chunk_ids = itertools.count()
        self._start_failures = 0
        self._broken = False
        self._closed = False
        self._ctx: Any = None
        if self.workers > 0:
            self._ctx = multiprocessing.get_context(self.start_method)
            if self.start_method == "forkserver":
                # the fork server imports the graders once, so (re)started workers are ready in ms
                preload = ["__main__", "spurisweep.grading"]
                for spec in GRADERS.values():
                    preload += [spec.module, *spec.preload]
                try:
                    self._ctx.set_forkserver_preload(preload)
                except Exception:  # pragma: no cover - defensive
                    logger.debug("could not set forkserver preload", exc_info=True)
            for _ in range(self.workers):
                if not self._broken:
                    self._spawn()

    # -- public API -------------------------------------------------------------------------------

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def grade(
        self,
        pairs: Sequence[tuple[str, str]],
        timeout: float | None = None,
        grader: str = DEFAULT_GRADER,
    ) -> list[Verdict]:
        """Grade (response, gold answer) pairs with ``grader``; results in input order. Never raises for
        bad input (an unknown grader is a ConfigError)."""
        check_grader(grader)
        timeout = self.timeout if timeout is None else float(timeout)
        tasks: list[_Task] = []
        for response, answer in pairs:
            response, answer = as_text(response), as_text(answer)
            flags = None
            if len(response) > MAX_RESPONSE_CHARS:  # ship only the tail; flag the full text here
                flags = code_flags(response)
                response = tail(response)
            tasks.append(_Task("g", response, answer, flags))
        if self.workers == 0 or self._closed:
            if self._closed:
                logger.warning("GradingPool is closed; grading in-process")
            return [self._grade_local(t, timeout, grader) for t in tasks]
        return self._run(tasks, timeout, grader)  # type: ignore[return-value]

    def equal(
        self,
        pairs: Sequence[tuple[str, str]],
        timeout: float | None = None,
        grader: str = DEFAULT_GRADER,
    ) -> list[bool | None]:
        """:func:`answers_equal` for many pairs, in the workers."""
        check_grader(grader)
        timeout = self.timeout if timeout is None else float(timeout)
        tasks = [_Task("e", as_text(a), as_text(b)) for a, b in pairs]
        if self.workers == 0 or self._closed:
            return [self._equal_local(t, timeout, grader) for t in tasks]
        return self._run(tasks, timeout, grader)  # type: ignore[return-value]

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every worker has started (imported math-verify and warmed up); True if they all
        did within ``timeout`` seconds (default: the pool's startup timeout)."""
        if self.workers == 0 or self._closed:
            return True
        limit = self.startup_timeout if timeout is None else float(timeout)
        with self._lock:
            run = _Run(self, [], self.timeout, DEFAULT_GRADER)
            deadline = time.monotonic() + limit
            while not self._broken and time.monotonic() < deadline:
                if not any(w.state == "starting" for w in self._pool):
                    break
                run._wait_and_collect()
                run._watchdog()
            self._pool = [w for w in self._pool if w.state != "dead"]
            return not self._broken and all(w.state == "idle" for w in self._pool)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests; lock-free, may be momentarily stale)."""
        return [w.proc.pid for w in list(self._pool) if w.state != "dead"]

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for w in self._pool:
                if w.state != "dead":
                    try:
                        w.conn.send(None)
                    except (OSError, ValueError):
                        pass
            deadline = time.monotonic() + 2.0
            for w in self._pool:
                w.proc.join(max(0.0, deadline - time.monotonic()))
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(1.0)
                self._release(w)
            self._pool = []

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- internals --------------------------------------------------------------------------------

    def _grade_local(self, task: _Task, timeout: float, grader: str) -> Verdict:
        if in_main_thread():
            v = grade_fn(grader)(task.a, task.b, timeout)
        else:
            v = grade_batch([(task.a, task.b)], timeout=timeout, grader=grader)[0]
        if task.flags is not None:
            v = dataclasses.replace(v, has_python=task.flags[0], has_code_block=task.flags[1])
        return v

    def _equal_local(self, task: _Task, timeout: float, grader: str) -> bool | None:
        if in_main_thread():
            return grader_module(grader).equal(task.a, task.b, timeout)
        return _shared_pool(None).equal([(task.a, task.b)], timeout=timeout, grader=grader)[0]

    def _spawn(self) -> None:
        try:
            parent_conn, child_conn = self._ctx.Pipe(duplex=True)
            progress = self._ctx.RawValue("q", 0)
            proc = self._ctx.Process(
                target=_worker_main, args=(child_conn, progress), name="spurisweep-grader", daemon=True
            )
            proc.start()
            child_conn.close()
        except Exception:  # e.g. "daemonic processes are not allowed to have children"
            logger.exception("cannot start a grading worker; grading in-process instead")
            self._broken = True
            return
        self._pool.append(_Worker(proc, parent_conn, progress))

    @staticmethod
    def _release(w: _Worker) -> None:
        w.state = "dead"
        try:
            w.conn.close()
        except OSError:
            pass
        try:
            w.proc.close()
        except (ValueError, AttributeError):
            pass

    def _chunk_len(self, n: int) -> int:
        if self.chunk_size:
            return max(1, int(self.chunk_size))
        return max(1, min(64, math.ceil(n / (4 * max(1, self.workers)))))

    def _run(self, tasks: list[_Task], timeout: float, grader: str) -> list[Verdict | bool | None]:
        with self._lock:
            return _Run(self, tasks, timeout, grader).go()


_PENDING: Any = object()  # a result not in yet (None is a result: "ungradable")


class _Run:
    """One GradingPool.grade call: dispatch chunks, collect results, watch for hung/dead workers."""

    def __init__(self, pool: GradingPool, tasks: list[_Task], timeout: float, grader: str) -> None:
        self.pool = pool
        self.tasks = tasks
        self.timeout = timeout
        self.grader = grader
        margin = pool.kill_margin if pool.kill_margin is not None else max(2.0, 0.5 * timeout)
        self.hard_limit = timeout + margin
        self.results: list[Any] = [_PENDING] * len(tasks)
        self.remaining = len(tasks)
        size = pool._chunk_len(len(tasks))
        self.queue: deque[list[int]] = deque(
            list(range(i, min(i + size, len(tasks)))) for i in range(0, len(tasks), size)
        )
        self.attempts: dict[int, int] = {}

    def _lost_result(self, idx: int, reason: str) -> Verdict | None:
        """The result of a task that a worker could not finish."""
        task = self.tasks[idx]
        return _unfinished(task, reason, extract_answer(task.a) if task.kind == "g" else None)

    def _set(self, idx: int, result: Verdict | bool | None) -> None:
        if self.results[idx] is _PENDING:
            self.results[idx] = result
            self.remaining -= 1

    def go(self) -> list[Verdict | bool | None]:
        pool = self.pool
        while self.remaining:
            if pool._broken or not any(w.state != "dead" for w in pool._pool):
                self._finish_without_pool()
                break
            self._dispatch()
            if not self.queue and not any(w.state == "busy" for w in pool._pool):
                # nothing queued or in flight, yet results missing: never expected; settle, don't spin
                for i in range(len(self.tasks)):
                    self._set(i, self._lost_result(i, INTERNAL_ERROR))
                break
            self._wait_and_collect()
            self._watchdog()
        pool._pool = [w for w in pool._pool if w.state != "dead"]
        return list(self.results)

    def _dispatch(self) -> None:
        for w in self.pool._pool:
            if not self.queue:
                return
            if w.state != "idle":
                continue
            chunk = self.queue.popleft()
            chunk_id = next(self.pool._chunk_ids)
            w.chunk, w.chunk_id = chunk, chunk_id
            w.base = w.seen = w.progress.value
            w.seen_at = time.monotonic()
            w.state = "busy"
            try:
                tasks = [self.tasks[i] for i in chunk]
                w.conn.send(
                    {"chunk_id": chunk_id, "tasks": tasks, "timeout": self.timeout, "grader": self.grader}
                )
            except (OSError, ValueError):
                self._lost(w, WORKER_CRASHED, killed=False)

    def _wait_and_collect(self) -> None:
        active = [w for w in self.pool._pool if w.state in ("busy", "starting")]
        if not active:
            if self.queue and not any(w.state == "idle" for w in self.pool._pool):
                time.sleep(0.01)
            return
        by_obj: dict[Any, _Worker] = {}
        for w in active:
            by_obj[w.conn] = w
            by_obj[w.proc.sentinel] = w
        try:
            ready = _mp_wait(list(by_obj), timeout=0.1)
        except OSError:
            ready = []
        seen: set[int] = set()
        for obj in ready:
            w = by_obj[obj]
            if id(w) in seen or w.state == "dead":
                continue
            seen.add(id(w))
            self._receive(w)

    def _receive(self, w: _Worker) -> None:
        # drain every message available; a dead worker with nothing left to say is "lost"
        while w.state != "dead":
            try:
                if not w.conn.poll():
                    if not w.proc.is_alive():
                        self._lost(w, WORKER_CRASHED, killed=False)
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                self._lost(w, WORKER_CRASHED, killed=False)
                return
            if msg["event"] == "ready":
                w.state = "idle"
                self.pool._start_failures = 0
            elif msg["event"] == "done":
                out = msg["results"]
                if msg["chunk_id"] == w.chunk_id:
                    for idx, result in zip(w.chunk, out, strict=False):
                        self._set(idx, result)
                    for idx in w.chunk[len(out) :]:  # never expected; settle rather than wait forever
                        self._set(idx, self._lost_result(idx, INTERNAL_ERROR))
                w.chunk, w.chunk_id = [], -1
                w.state = "idle"

    def _watchdog(self) -> None:
        now = time.monotonic()
        for w in list(self.pool._pool):
            if w.state == "busy":
                value = w.progress.value
                if value != w.seen:
                    w.seen, w.seen_at = value, now
                elif now - w.seen_at > self.hard_limit:
                    logger.warning(
                        "grading worker %s made no progress for %.1fs: killing and replacing it",
                        w.proc.pid,
                        now - w.seen_at,
                    )
                    self._lost(w, TIMEOUT, killed=True)
            elif w.state == "starting" and now - w.born > self.pool.startup_timeout:
                logger.error(
                    "grading worker %s did not start in %.0fs", w.proc.pid, self.pool.startup_timeout
                )
                self._lost(w, WORKER_CRASHED, killed=True)

    def _lost(self, w: _Worker, reason: str, *, killed: bool) -> None:
        """Worker ``w`` is hung or dead: settle its in-flight task, re-queue the rest, replace it."""
        pool = self.pool
        was = w.state
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(1.0)
        if not killed:
            logger.warning("grading worker %s died (exit code %s); replacing it", w.proc.pid, w.proc.exitcode)
        started = 0
        try:
            started = w.progress.value - w.base
        except Exception:  # pragma: no cover - defensive
            pass
        if was != "starting":
            if killed:
                pool.kills += 1
            else:
                pool.crashes += 1
        if was == "busy":
            chunk = [i for i in w.chunk if self.results[i] is _PENDING]
            in_flight = w.chunk[started - 1] if 0 < started <= len(w.chunk) else None
            if in_flight is not None and self.results[in_flight] is _PENDING:
                self._set(in_flight, self._lost_result(in_flight, reason))
            retry = []
            for i in chunk:
                if i == in_flight:
                    continue
                self.attempts[i] = self.attempts.get(i, 0) + 1
                if self.attempts[i] >= pool.MAX_TASK_ATTEMPTS:
                    self._set(i, self._lost_result(i, WORKER_CRASHED))
                else:
                    retry.append(i)
            if retry:
                self.queue.appendleft(retry)
        elif was == "starting":
            pool._start_failures += 1
            if pool._start_failures >= pool.MAX_START_FAILURES:
                logger.error("grading workers keep failing to start; grading in-process instead")
                pool._broken = True
        pool._release(w)
        if not pool._broken and not pool._closed:
            pool._spawn()

    def _finish_without_pool(self) -> None:
        """No usable workers: grade what is left in this process (SIGALRM: main thread only)."""
        main = in_main_thread()
        for i, task in enumerate(self.tasks):
            if self.results[i] is not _PENDING:
                continue
            if not main:
                self._set(i, self._lost_result(i, POOL_UNAVAILABLE))
            else:
                self._set(i, _execute(task, self.timeout, self.grader))


# --------------------------------------------------------------------------------------------------
# Module-level shared pool
# --------------------------------------------------------------------------------------------------

_shared: GradingPool | None = None
_shared_lock = threading.Lock()


def _shared_pool(workers: int | None) -> GradingPool:
    global _shared
    want = _cpu_count() if workers is None else max(1, int(workers))
    with _shared_lock:
        if _shared is None or _shared._closed or _shared.workers != want:
            if _shared is not None:
                _shared.close()
            _shared = GradingPool(workers=want)
        return _shared


def _close_shared() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None


atexit.register(_close_shared)


def grade_batch(
    pairs: Iterable[tuple[str, str]],
    workers: int | None = None,
    timeout: float = 5.0,
    grader: str = DEFAULT_GRADER,
) -> list[Verdict]:
    """Grade (response, gold) pairs in a module-level pool, started on first use and reused.

    ``workers=0`` grades in-process (main thread only). The pool is closed at interpreter exit.
    ``grader`` names an entry of :data:`GRADERS`; an unknown one is a ConfigError.
    """
    check_grader(grader)
    pairs = list(pairs)
    if not pairs:
        return []
    if workers == 0 and in_main_thread():
        fn = grade_fn(grader)
        return [fn(r, a, timeout) for r, a in pairs]
    return _shared_pool(workers).grade(pairs, timeout=timeout, grader=grader)


def grade_one(response: str, answer: str, timeout: float = 5.0, grader: str = DEFAULT_GRADER) -> Verdict:
    """Grade one response against a gold answer, in this process.

    Uses SIGALRM, so it must run in the main thread; called from another thread it hands the work to
    the shared worker pool (see :func:`grade_batch`) instead. Never raises for any input (an unknown
    ``grader`` is a ConfigError).
    """
    if not in_main_thread():
        return grade_batch([(response, answer)], timeout=timeout, grader=grader)[0]
    return grade_fn(check_grader(grader))(response, answer, timeout)


def answers_equal(a: str, b: str, timeout: float = 5.0, grader: str = DEFAULT_GRADER) -> bool | None:
    """Whether two answer strings are the same by ``grader`` (math-verify equivalence by default,
    symmetric; e.g. to cluster majority votes; "paper": the official ``grade_answer(a, b)``, b the gold).

    None if either is empty, over-long, unparseable (math-verify) or the comparison timed out. In-process
    and main thread only (called from another thread it uses the shared worker pool).
    """
    check_grader(grader)
    if not in_main_thread():
        return _shared_pool(None).equal([(a, b)], timeout=timeout, grader=grader)[0]
    return grader_module(grader).equal(a, b, timeout)
