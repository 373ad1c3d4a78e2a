"""The job entry point: what runs inside every submitted job, whatever the backend.

`CellJob(cell_dir, results)` trains and evaluates one cell (train.run_cell), recording running / done /
failed in the cell's status.json; submitit requeues it on preemption or time limit and it resumes from
the last complete checkpoint. A job with several tasks trains data-parallel (`distributed_setup`), over
one node or several (resources.nodes: world size = nodes x tasks per node).

Preemption (SLURM's USR2 before the time limit or a preemption, to every task): submitit's handler runs in
each task's main thread, where rank 0 calls `checkpoint` (records `requeued`), runs `scontrol requeue`
and exits; the other ranks return from it and carry on until the requeue ends them. The handler saves
nothing and joins no collective, so it cannot deadlock: the job restarts from the newest complete
checkpoint on disk (a resume point, train.resume_every). A rank blocked inside a collective (rank 0 in
an evaluation's barrier) runs the handler as soon as the collective returns: Python runs signal handlers
between bytecodes, never inside a C++ wait, and the other ranks, whose handlers return at once, go on to
that same collective (tests/launch/test_job.py). Whatever a rank raises after the signal (rank 0's
exit, the others' broken collectives) leaves the `requeued` record alone.

`LabelJob(results, spec)` makes one set of majority-vote labels before the cells that train on them
(see labeljob.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import submitit

from .. import artifacts
from ..distributed import bind_task_gpu, shut_down
from ..evaluation import labels
from .backend import BACKENDS, get_backend
from .claim import hold_cell, record_attempt
from .labeljob import write_record


class CellJob(submitit.helpers.Checkpointable):
    """Runs one cell. Checkpointable: on preemption or time limit submitit calls `checkpoint`, the job
    is requeued with the same arguments, and training resumes from the last complete checkpoint."""

    def __call__(self, cell_dir: str, results: str) -> dict[str, Any]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        cell = artifacts.CellDir(Path(cell_dir))
        if cell.is_done():
            return artifacts.read_json(cell.done_path, {})
        note_preemption()
        rank, world = distributed_setup()
        job_id = _current_job_id()
        # one run per cell: a job that finds another live job on its cell leaves its files alone
        with hold_cell(cell, rank=rank, job_id=job_id) as owned:
            if not owned:
                return {"skipped": f"{cell.root} is run by another job"}
            if cell.is_done():  # finished by another job between our first look and the lock
                return artifacts.read_json(cell.done_path, {})
            return self._run(cell, rank, world, job_id, results)

    def _run(
        self, cell: artifacts.CellDir, rank: int, world: int, job_id: str | None, results: str
    ) -> dict[str, Any]:
        if rank == 0:  # data-parallel ranks: one writer
            record_attempt(cell, job_id, processes=world)
            st = cell.status()
            cell.set_status(
                "running",
                attempts=int(st.get("attempts", 0)) + 1,
                job_id=job_id or st.get("job_id"),
                host=os.uname().nodename,
                pid=os.getpid(),
                devices=os.environ.get("CUDA_VISIBLE_DEVICES") or None,
                processes=world,
                error=None,
                claim=None,
                held=None,
            )
        try:
            if world > 1:
                bind_task_gpu()  # one GPU per task: LOCAL_RANK 0 (before accelerate reads it)
            from ..training.cell import run_cell

            summary = run_cell(cell.root, Path(results))
        except BaseException as exc:  # a clean exit, and submitit's after a requeue, pass through
            if (isinstance(exc, SystemExit) and exc.code in (0, None)) or requeued(exc, rank):
                raise
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            name = "error.txt" if rank == 0 else f"error-rank{rank}.txt"
            artifacts.atomic_write_text(cell.root / name, traceback.format_exc())
            where = f" (rank {rank})" if rank else ""
            if isinstance(exc, KeyboardInterrupt):  # a signal sent to the job: killed, resumed by `run`
                cell.set_status("killed", error=f"interrupted (SIGINT){where}; `run` resumes it")
            else:
                cell.set_status("failed", error=f"{type(exc).__name__}{where}: {last}"[:500])
            raise
        if rank == 0:
            cell.set_status("done", error=None)
        if world > 1:
            shut_down()  # not left to the interpreter's exit, where gloo may abort a finished rank
        return summary

    def checkpoint(self, cell_dir: str, results: str) -> submitit.helpers.DelayedSubmission:
        cell = artifacts.CellDir(Path(cell_dir))
        st = cell.status()
        cell.set_status("requeued", requeues=int(st.get("requeues", 0)) + 1)
        return submitit.helpers.DelayedSubmission(self, cell_dir, results)


class LabelJob(submitit.helpers.Checkpointable):
    """Makes one set of majority-vote labels with labels.ensure_labels (under the labels' file lock, only
    if they are still missing), recording running / done / failed in its record next to the labels file.
    Checkpointable: a preempted label job is requeued and labels again from the start."""

    def __call__(self, results: str, spec: dict[str, Any]) -> str:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        label_spec = labels.LabelSpec(**spec)
        path = labels.labels_path(Path(results), label_spec)
        job_id = _current_job_id()
        write_record(
            path, state="running", job_id=job_id, host=os.uname().nodename, pid=os.getpid(), error=None
        )
        try:
            out = labels.ensure_labels(Path(results), label_spec)
        except BaseException as exc:
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                raise
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            artifacts.atomic_write_text(path.with_suffix(".error.txt"), traceback.format_exc())
            if isinstance(exc, KeyboardInterrupt):  # a signal sent to the job: made again by `run`
                write_record(path, state="killed", error="interrupted (SIGINT)")
            else:
                write_record(path, state="failed", error=f"{type(exc).__name__}: {last}"[:500])
            raise
        write_record(path, state="done", error=None)
        return str(out)

    def checkpoint(self, results: str, spec: dict[str, Any]) -> submitit.helpers.DelayedSubmission:
        write_record(labels.labels_path(Path(results), labels.LabelSpec(**spec)), state="requeued")
        return submitit.helpers.DelayedSubmission(self, results, spec)


#: set once this process has received submitit's preemption signal (USR2): the job is being requeued
PREEMPTED = threading.Event()


def note_preemption() -> None:
    """Have submitit's preemption handler (installed before the job's function runs) first set PREEMPTED,
    on every rank; nothing outside a submitit job, or off the main thread."""
    PREEMPTED.clear()  # a job starts unsignalled (the debug executor runs several in one process)
    sig = submitit.JobEnvironment._usr_sig()
    inner = signal.getsignal(sig)
    if not callable(inner) or getattr(inner, "notes_preemption", False):
        return

    def handler(signum: int, frame: Any) -> None:
        PREEMPTED.set()
        inner(signum, frame)

    handler.notes_preemption = True  # type: ignore[attr-defined]
    try:
        signal.signal(sig, handler)
    except ValueError:  # not the main thread
        pass


def requeued(exc: BaseException, rank: int) -> bool:
    """Whether `exc` ends this task because its job is being requeued, so that the cell's `requeued`
    record stays: rank 0's exit after `scontrol requeue` (submitit's SystemExit), or anything another rank
    raises after the signal (its collectives break once rank 0 has gone). Rank 0's other errors still
    count: a job that is not requeued (timed out too often) fails."""
    if not (PREEMPTED.is_set() and (rank != 0 or isinstance(exc, SystemExit))):
        return False
    logging.getLogger(__name__).info("rank %d ends after the preemption signal: %r", rank, exc)
    return True


def distributed_setup() -> tuple[int, int]:
    """(rank, processes) of this task. A job with several tasks (resources.tasks_per_node, or one per GPU)
    trains data-parallel (over all the job's nodes: submitit's ranks and task count are global):
    export torch.distributed's env:// variables (MASTER_ADDR/PORT, RANK, WORLD_SIZE,
    LOCAL_RANK) for accelerate, which TRL's trainer initialises from them, and accelerate puts rank r on
    cuda:LOCAL_RANK: the task's index on its node where every task sees all of the node's GPUs, 0 where
    the site binds one GPU per task (distributed.bind_task_gpu, run by CellJob before training)."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (tests calling run_cell directly)
        return 0, 1
    if env.num_tasks <= 1:
        return 0, 1
    dist = submitit.helpers.TorchDistributedEnvironment()
    dist.master_port = master_port(env.job_id, os.environ)
    executor = os.environ.get("SUBMITIT_EXECUTOR", "")
    master_addr = get_backend(executor).master_addr if executor in BACKENDS else None
    if master_addr:
        dist.master_addr = master_addr
    dist.export(set_cuda_visible_devices=False, overwrite=True)
    return dist.rank, dist.world_size


# Rank 0's rendezvous port must be the same number on every task without talking to them, so it is
# derived from the job id. submitit's own choice draws from 20000-60000, which overlaps the kernel's
# ephemeral range (Linux: 32768-60999), where the port can be taken before rank 0 listens: by any client
# socket the kernel hands it to, or by the other ranks' own retried connects to it (a TCP connect to a
# local port nobody listens on can be given that same port as its source and connect to itself). Either
# makes rank 0's listen fail with EADDRINUSE (seen once in CI). Below 32768 the kernel never hands ports
# out, so neither can happen.
PORT_RANGE = (20000, 32768)


def master_port(job_id: str, environ: Mapping[str, str]) -> int:
    """The TCP port rank 0 listens on: MASTER_PORT if the user set one, else a number in PORT_RANGE drawn
    from the job id and SLURM's restart count (a requeued job rendezvouses on a fresh port, so a task of
    the preempted attempt that is still exiting cannot hold it)."""
    if environ.get("MASTER_PORT"):
        return int(environ["MASTER_PORT"])
    restarts = environ.get("SLURM_RESTART_COUNT", "0")
    digest = hashlib.sha256(f"{job_id}/{restarts}".encode()).digest()
    low, high = PORT_RANGE
    return low + int.from_bytes(digest[:4], "big") % (high - low)


def _current_job_id() -> str | None:
    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:
        return None
