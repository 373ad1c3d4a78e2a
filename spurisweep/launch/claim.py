"""One run per cell, whatever runs at once: the controller's claims and the job's running lock.

Two controllers (`spurisweep run` started twice on one sweep and results folder) must never train a
cell twice, and a controller that crashes between queueing a job and recording it must not leave a cell
that looks pending while its job runs. Three mechanisms, each covering what the one before cannot:

1. **The sweep lock** (results/<sweep>/.submit.lock, a filelock): a controller holds it while it reads
   the cell states, decides what to submit and claims those cells, so two controllers never both see a
   cell as pending and both choose it.
2. **The claim**: before a cell's job is queued its status.json says `submitting`, with the claiming
   controller's host, pid and time. Another controller sees a live claim as active and leaves the cell
   alone; a claim whose controller died is resolved through the running lock (a job holds it: the cell
   is running) or else given up (the cell is pending again). The backend then records `queued` with the
   job id before the job may start: SLURM arrays go out held and are released after the record; a local
   job waits (`wait_for_record`) while its cell is claimed by a live controller.
3. **The running lock** (results/<sweep>/<cell>/.running.lock, a filelock held for the life of the job by
   rank 0): a job that cannot take it, because another live job holds it, exits without touching the
   cell's files. A job that takes it records itself in the cell's attempts log (attempts.jsonl: job id,
   pid, host, time) before it trains, so every start of training leaves one line.

The running lock is an flock: the kernel drops it when the process dies (kill -9, node failure), so a
killed cell can be resubmitted at once; on NFS, Linux emulates flock with the server's byte-range locks.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .. import artifacts

log = logging.getLogger(__name__)

SUBMITTING = "submitting"
SWEEP_LOCK = ".submit.lock"
#: a claim made on another host cannot be checked by pid: it counts as live this long
FOREIGN_CLAIM_TTL_S = 6 * 3600
#: rank 0 waits this long for the running lock: a controller probing it holds it for an instant only
JOB_LOCK_TIMEOUT_S = 10.0
#: a local job waits this long for its controller to record `queued` (it takes milliseconds)
RECORD_WAIT_S = 120.0
#: ranks > 0 wait this long for their rank 0 to take the running lock
RANK_WAIT_S = 300.0
#: test hook: the controller exits right after queueing jobs, before recording them (issue 15)
CRASH_AFTER_SUBMIT = "SPURISWEEP_TEST_CRASH_AFTER_SUBMIT"


# ---------------------------------------------------------------------------------------------- controller
@contextlib.contextmanager
def sweep_lock(results: Path, sweep: str) -> Iterator[None]:
    """Held while a controller decides what to submit and claims it (see the module docstring)."""
    folder = Path(results) / sweep
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / SWEEP_LOCK))
    t0 = time.time()
    while True:
        try:
            lock.acquire(timeout=10)
            break
        except Timeout:
            log.warning("waiting for %s (another `run` of this sweep is submitting)", folder / SWEEP_LOCK)
    try:
        if time.time() - t0 > 1:
            log.info("took %s after %.0f s", folder / SWEEP_LOCK, time.time() - t0)
        yield
    finally:
        lock.release()


def owner() -> dict[str, Any]:
    """Who claims: this controller process."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()}


def crash_hook() -> None:
    """Tests only: die like a controller killed between queueing jobs and recording them."""
    if os.environ.get(CRASH_AFTER_SUBMIT):
        os._exit(1)


def claim_alive(status: dict[str, Any]) -> bool:
    """Whether the controller that claimed a cell is still running (see FOREIGN_CLAIM_TTL_S)."""
    who = status.get("claim")
    if not isinstance(who, dict):
        return False
    try:
        pid, when = int(who.get("pid")), float(who.get("time"))
    except (TypeError, ValueError):
        return False
    if who.get("host") != socket.gethostname():
        return time.time() - when < FOREIGN_CLAIM_TTL_S
    return pid_alive(pid)


def pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def job_running(cell_dir: Path) -> bool:
    """Whether a live job holds the cell's running lock. Never creates the lock file; the probe holds the
    lock for an instant only (a job starting meanwhile waits JOB_LOCK_TIMEOUT_S for it)."""
    path = artifacts.CellDir(cell_dir).running_lock_path
    if not path.exists():
        return False
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:  # a folder we may not write: say nothing runs, as before this lock existed
        return False
    lock.release()
    return False


# ---------------------------------------------------------------------------------------------- the job
@contextlib.contextmanager
def hold_cell(cell: artifacts.CellDir, *, rank: int, job_id: str | None) -> Iterator[bool]:
    """Yields True while this job owns the cell, False when another live job does (touch nothing then).

    Rank 0 takes the running lock and records the attempt; other ranks follow their rank 0: they own the
    cell once the attempts log names their job (a requeued job keeps its id, so they may go ahead of it)."""
    if rank != 0:
        yield _wait_for_rank0(cell, job_id)
        return
    lock = FileLock(str(cell.running_lock_path), thread_local=False)
    try:
        lock.acquire(timeout=JOB_LOCK_TIMEOUT_S)
    except Timeout:
        log.warning("%s: another live job runs this cell; this job (%s) exits", cell.root, job_id)
        yield False
        return
    try:
        wait_for_record(cell)
        yield True
    finally:
        lock.release()


def record_attempt(cell: artifacts.CellDir, job_id: str | None, **info: Any) -> None:
    """One line per start of training (rank 0, under the running lock: the file has one writer)."""
    rows = artifacts.read_jsonl(cell.attempts_path)
    rows.append(
        {"job_id": job_id, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **info}
    )
    artifacts.atomic_write_jsonl(cell.attempts_path, rows)


def attempts(cell_dir: Path) -> list[dict[str, Any]]:
    return artifacts.read_jsonl(artifacts.CellDir(cell_dir).attempts_path)


def wait_for_record(cell: artifacts.CellDir, timeout: float = RECORD_WAIT_S) -> None:
    """Wait while the cell is claimed by a live controller that has not yet recorded its job."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = cell.status()
        if st.get("state") != SUBMITTING or not claim_alive(st):
            return
        time.sleep(0.2)
    log.warning("%s: its controller did not record the job within %.0f s; going ahead", cell.root, timeout)


def _wait_for_rank0(cell: artifacts.CellDir, job_id: str | None) -> bool:
    deadline = time.time() + RANK_WAIT_S
    while time.time() < deadline:
        rows = attempts(cell.root)
        if rows and rows[-1].get("job_id") == job_id:
            return True
        time.sleep(0.5)
    log.warning("%s: rank 0 of job %s never took the cell; this rank exits", cell.root, job_id)
    return False
