"""The local backend: cells run as separate processes on this machine (submitit's local executor).

On a GPU machine every job gets its own GPUs (CUDA_VISIBLE_DEVICES), one per process, and waits until
that many are free; without GPUs at most `max_parallel` (default: cores) jobs run at once. A job's id is
its controller's pid: it is alive while that process is, and `cancel` stops the process tree.

Every job runs in a session of its own (setsid: its own process group, no controlling terminal) with
stdin, stdout and stderr away from the terminal: Ctrl-C (a terminal signals its whole foreground process
group), a closed terminal or a dropped ssh session (SIGHUP) stop `run` only, which detaches, and the
jobs run on to the end. A signal sent to a job itself (`cancel`, someone's kill) leaves its cell
`killed` or `cancelled`, which a plain `run` resumes.

Label jobs start first (one process, with the GPUs of one of its cells); a cell that trains on labels
starts once its label job has ended, so even without --wait `run` returns only after the label jobs.
One machine: a cell asking for several nodes is a plan-time error.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit

from .. import artifacts
from ..distributed import gpu_names
from .backend import Backend, Progress, check_one_machine
from .claim import CANCELLED, crash_hook
from .job import CellJob, LabelJob
from .labeljob import LabelTask, failure, mark_queued, read_record
from .state import cell_dir
from .submission import critical

if TYPE_CHECKING:
    from ..plan.grid import Cell

log = logging.getLogger(__name__)


class LocalBackend(Backend):
    name = "local"
    master_addr = "127.0.0.1"  # one machine: the hostname may not resolve to a reachable address

    def submit(
        self,
        cells: list[Cell],
        results: Path,
        folder: Path,
        *,
        max_parallel: int | None,
        wait: bool,
        poll_s: float,
        progress: Progress,
        labels: Sequence[LabelTask] = (),
    ) -> None:
        run_local(
            cells,
            results,
            folder,
            max_parallel=max_parallel,
            wait=wait,
            poll_s=poll_s,
            progress=progress,
            labels=labels,
        )

    def check(self, cells: list[Cell], file: str | None = None) -> None:
        check_one_machine(cells, self.name, file)

    def alive(self, job_ids: list[str]) -> dict[str, tuple[bool, str]]:
        out = {}
        for job_id in job_ids:
            if _alive(int(job_id.split("_")[0])):
                out[job_id] = (True, "")
            else:
                out[job_id] = (False, f"local job {job_id} ended without finishing (killed?)")
        return out

    def cancel(self, job_id: str) -> None:
        # submitit's job only logs SIGTERM; SIGINT is what submitit's own LocalJob.cancel sends (the
        # controller then kills its tasks). Whatever is left after a grace period is killed.
        root = int(job_id.split("_")[0])
        tree = [root, *_descendants(root)]
        for sig in (signal.SIGINT, signal.SIGKILL):
            for pid in tree:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.time() + 5
            while time.time() < deadline and any(_alive(p) for p in tree):
                time.sleep(0.1)


def local_processes(cell: Cell, gpus: list[str]) -> int:
    """Processes of one cell on this machine: one per GPU it asks for, at most the GPUs there are; on a
    machine without GPUs only an explicit resources.tasks_per_node starts several (CPU processes, gloo)."""
    s = cell.config.resources
    if not gpus:
        return s.tasks_per_node or 1
    if s.processes > len(gpus):
        log.warning(
            "cell %s asks for %d processes (one per GPU); this machine has %d GPUs: using %d",
            cell.id,
            s.processes,
            len(gpus),
            len(gpus),
        )
    return min(s.processes, len(gpus))


def run_local(
    cells: list[Cell],
    results: Path,
    folder: Path,
    *,
    max_parallel: int | None,
    wait: bool,
    poll_s: float,
    progress: Progress,
    gpus: list[str] | None = None,
    labels: Sequence[LabelTask] = (),
) -> None:
    """Cells as local processes, each with its own GPUs from one free pool (see the module docstring).
    Without `wait` every cell starts at once (once its labels are made) and GPUs are shared round-robin."""
    gpus = gpu_names() if gpus is None else list(gpus)
    n = max_parallel or (len(gpus) or max(1, os.cpu_count() or 1))
    if not wait:
        n = len(cells) + len(labels)
    ex = submitit.AutoExecutor(folder=folder, cluster="local")
    cpus = os.cpu_count() or 1
    sweep = cells[0].sweep
    after = {c.id: t for t in labels for c in t.cells}  # cell id -> the label task it waits for
    # label jobs queued by an earlier `run` (still alive): waited for like our own
    outside = {t.name: int(str(t.job_id).split("_")[0]) for t in labels if t.job_id}
    pending: list[Cell | LabelTask] = [*(t for t in labels if not t.job_id), *cells]
    running: dict[str, tuple[Any, list[str]]] = {}
    free = list(gpus)

    def waiting(t: LabelTask) -> bool:
        return not t.made() and (t in pending or f"labels {t.name}" in running or t.name in outside)

    while pending or running:
        i = 0
        while i < len(pending) and len(running) < n:
            item = pending[i]
            task = after.get(item.id) if not isinstance(item, LabelTask) else None
            if task is not None and waiting(task):
                i += 1  # its labels are being made: later items may start meanwhile
                continue
            if task is not None and not task.made():
                pending.pop(i)  # its label job ended without labels: the cell does not start
                # killed (a plain `run` starts it again) unless the label job itself failed
                failed = read_record(task.path).get("state") == "failed"
                artifacts.CellDir(cell_dir(results, sweep, item.id)).set_status(
                    "failed" if failed else "killed", executor=LocalBackend.name, error=failure(task)
                )
                continue
            if not isinstance(item, LabelTask) and (cell_dir(results, sweep, item.id) / CANCELLED).exists():
                pending.pop(i)  # cancelled while this controller held its claim (claim.py)
                continue
            cell = item.cells[0] if isinstance(item, LabelTask) else item
            k = local_processes(cell, gpus)
            if gpus and len(free) < k:
                if wait:
                    break  # its GPUs are busy: wait for a job to end
                free += gpus  # starting every cell at once (no wait): GPUs are shared round-robin
            pending.pop(i)
            mine, free = free[:k], free[k:]
            key, job = _start(
                ex, item, cell, k, mine, results, sweep, threads=max(1, cpus // (min(n, len(cells)) * k))
            )
            running[key] = (job, mine)
        if not wait and not pending:
            break  # every job started (cells that waited for labels too)
        for key, (job, mine) in list(running.items()):
            if job.done():
                running.pop(key)
                free.extend(mine)
        for name, pid in list(outside.items()):
            if not _alive(pid):
                outside.pop(name)
        # in device order, whichever job ended first: a job's devices do not depend on timing
        free.sort(key=gpus.index)
        progress(True)
        if pending or running:
            time.sleep(poll_s)


def _start(
    ex: Any, item: Any, cell: Cell, k: int, mine: list[str], results: Path, sweep: str, *, threads: int
) -> tuple[str, Any]:
    """Start one label job or cell as local processes on `mine` GPUs; (its key in `running`, its job)."""
    setup = [
        f"export SPURISWEEP_THREADS={threads} OMP_NUM_THREADS={threads} "
        f"SPURISWEEP_GRADING_WORKERS={min(threads, 2)}"
    ]
    if mine:  # submitit's local executor hides every GPU unless told which
        setup.append(f"export CUDA_VISIBLE_DEVICES={','.join(mine)}")
    if isinstance(item, LabelTask):  # one process, with the GPUs of one of its cells
        ex.update_parameters(
            timeout_min=cell.config.resources.timeout_min, tasks_per_node=1, local_setup=setup
        )
        with critical():  # a Ctrl-C meanwhile waits for the record
            with _detached_stdio(), _own_session():
                job = ex.submit(LabelJob(), str(results), item.spec_dict())
            mark_queued(item, str(job.job_id), LocalBackend.name)
        _check_session(job)
        return f"labels {item.name}", job
    ex.update_parameters(timeout_min=cell.config.resources.timeout_min, tasks_per_node=k, local_setup=setup)
    d = cell_dir(results, sweep, cell.id)
    with critical():  # a Ctrl-C meanwhile waits for the record
        with _detached_stdio(), _own_session():
            job = ex.submit(CellJob(), str(d), str(results))
        crash_hook()
        # the job waits for this record before it trains (claim.wait_for_record)
        artifacts.CellDir(d).set_status(
            "queued", job_id=str(job.job_id), executor=LocalBackend.name, error=None, submitted=time.time()
        )
    _check_session(job)
    return cell.id, job


class _NewSessions:
    """submitit's local executor's view of the `subprocess` module while it starts a job (_own_session):
    the same module, but its Popen starts the job in a session of its own (setsid)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    @staticmethod
    def Popen(*args: Any, **kwargs: Any) -> subprocess.Popen:  # noqa: N802 (subprocess's name)
        kwargs["start_new_session"] = True
        return subprocess.Popen(*args, **kwargs)


@contextlib.contextmanager
def _own_session():
    """Jobs started inside run in sessions of their own (see the module docstring). submitit starts a local
    job with `subprocess.Popen` in submitit.local.local.start_controller and offers no hook: its module's
    `subprocess` is swapped for the span of one submit (this controller's only thread that starts jobs)."""
    from submitit.local import local as submitit_local

    saved = submitit_local.subprocess
    submitit_local.subprocess = _NewSessions()  # type: ignore[assignment]
    try:
        yield
    finally:
        submitit_local.subprocess = saved


_warned_session = False


def _check_session(job: Any) -> None:
    """A job not in a session of its own (a submitit that starts jobs otherwise) would die with this
    terminal's Ctrl-C: said once."""
    global _warned_session
    pid = int(str(job.job_id).split("_")[0])
    try:
        own = os.getsid(pid) == pid
    except OSError:  # ended already
        return
    if not own and not _warned_session:
        _warned_session = True
        log.warning("local job %s shares this terminal's session: Ctrl-C or a hang-up would stop it", pid)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _descendants(pid: int) -> list[int]:
    """Child processes of pid, recursively, parents before children (from /proc; Linux)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(0), []):
            out.append(c)
            todo.append(c)
    return out


@contextlib.contextmanager
def _detached_stdio():
    """Local jobs outlive this process: they must not inherit its stdin/stdout/stderr (a caller reading our
    output through a pipe would otherwise wait for every job to end; a terminal closed would fail their
    writes). Their output goes to submitit's log files in the sweep's _submitit folder."""
    fds = (0, 1, 2)
    saved = {fd: _dup(fd) for fd in fds}
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in fds:
            os.dup2(devnull, fd)
        yield
    finally:
        for fd, old in saved.items():
            if old is None:
                os.close(fd)
            else:
                os.dup2(old, fd)
                os.close(old)
        os.close(devnull)


def _dup(fd: int) -> int | None:
    """A copy of fd, None when fd is not open (a controller started with stdin closed)."""
    try:
        return os.dup(fd)
    except OSError:
        return None
