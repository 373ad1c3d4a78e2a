"""Submitting cells through submitit (slurm, local, debug), idempotent re-runs, and cell states.

One abstraction for every backend: a cell is one job running `CellJob(cell_dir)`. On SLURM all pending
cells of a sweep go out as one job array (one sbatch); locally, cells run as separate processes, at
most `max_parallel` at a time; `debug` runs them in this process (for stepping through with pdb).

A cell's state is read from its folder first (DONE, status.json), then from the scheduler for cells
that claim to be queued or running, so a job that died without a word (kill -9, node failure) shows as
failed and is picked up again by the next `run`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

from . import artifacts
from .errors import SubmissionError
from .grid import Cell

log = logging.getLogger(__name__)

EXECUTORS = ("local", "debug", "slurm")
ACTIVE = ("queued", "running", "requeued")
CANCELLED = "CANCELLED"  # marker file written by `cancel`, removed when the cell is submitted again
#: states `run` submits again without being asked (a killed cell resumes from its last checkpoint)
RESUBMIT = ("pending", "killed", "cancelled")


@dataclass
class CellState:
    cell: Cell
    dir: Path
    state: str  # pending | queued | running | requeued | done | failed | killed | cancelled
    job_id: str | None = None
    executor: str | None = None
    error: str | None = None
    requeues: int = 0
    attempts: int = 0
    step: int | None = None
    done_in: Path | None = None
    health: list[str] = field(default_factory=list)


class CellJob(submitit.helpers.Checkpointable):
    """Runs one cell. Checkpointable: on preemption or time limit submitit calls `checkpoint`, the job
    is requeued with the same arguments, and training resumes from the last complete checkpoint."""

    def __call__(self, cell_dir: str, results: str) -> dict[str, Any]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
        cell = artifacts.CellDir(Path(cell_dir))
        if cell.is_done():
            return artifacts.read_json(cell.done_path, {})
        rank, world = distributed_setup()
        if rank == 0:  # data-parallel ranks: one writer
            st = cell.status()
            job_id = _current_job_id()
            cell.set_status(
                "running",
                attempts=int(st.get("attempts", 0)) + 1,
                job_id=job_id or st.get("job_id"),
                host=os.uname().nodename,
                pid=os.getpid(),
                devices=os.environ.get("CUDA_VISIBLE_DEVICES") or None,
                processes=world,
                error=None,
            )
        try:
            from .training import run_cell

            summary = run_cell(Path(cell_dir), Path(results))
        except BaseException as exc:  # SystemExit from submitit's requeue passes through `checkpoint`
            if isinstance(exc, SystemExit) and exc.code in (0, None):
                raise
            last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
            name = "error.txt" if rank == 0 else f"error-rank{rank}.txt"
            artifacts.atomic_write_text(cell.root / name, traceback.format_exc())
            where = f" (rank {rank})" if rank else ""
            cell.set_status("failed", error=f"{type(exc).__name__}{where}: {last}"[:500])
            raise
        if rank == 0:
            cell.set_status("done", error=None)
        return summary

    def checkpoint(self, cell_dir: str, results: str) -> submitit.helpers.DelayedSubmission:
        cell = artifacts.CellDir(Path(cell_dir))
        st = cell.status()
        cell.set_status("requeued", requeues=int(st.get("requeues", 0)) + 1)
        return submitit.helpers.DelayedSubmission(self, cell_dir, results)


def distributed_setup() -> tuple[int, int]:
    """(rank, processes) of this task. A job with several tasks (slurm.tasks_per_node, or one per GPU)
    trains data-parallel: export torch.distributed's env:// variables (MASTER_ADDR/PORT, RANK, WORLD_SIZE,
    LOCAL_RANK) for accelerate, which TRL's trainer initialises from them. Every task keeps seeing all the
    job's GPUs and accelerate puts rank r on cuda:LOCAL_RANK."""
    try:
        env = submitit.JobEnvironment()
    except RuntimeError:  # not inside a submitit job (tests calling run_cell directly)
        return 0, 1
    if env.num_tasks <= 1:
        return 0, 1
    dist = submitit.helpers.TorchDistributedEnvironment()
    if os.environ.get("SUBMITIT_EXECUTOR") == "local":
        dist.master_addr = "127.0.0.1"  # one machine: the hostname may not resolve to a reachable address
    dist.export(set_cuda_visible_devices=False, overwrite=True)
    return dist.rank, dist.world_size


def _current_job_id() -> str | None:
    try:
        return submitit.JobEnvironment().job_id
    except RuntimeError:
        return None


# ---------------------------------------------------------------------------------------------- states
def cell_dir(results: Path, sweep: str, cell_id: str) -> Path:
    return Path(results) / sweep / cell_id


def read_state(cell: Cell, results: Path, *, live: bool = True) -> CellState:
    return states([cell], results, live=live)[0]


def folder_state(cell: Cell, results: Path) -> CellState:
    """A cell's state from its folder alone (no scheduler query)."""
    d = cell_dir(results, cell.sweep, cell.id)
    cd = artifacts.CellDir(d)
    st = cd.status()
    base = dict(
        job_id=st.get("job_id"),
        executor=st.get("executor"),
        requeues=int(st.get("requeues", 0)),
        attempts=int(st.get("attempts", 0)),
        step=st.get("step"),
    )
    done_in = d if cd.is_done() else artifacts.find_done(Path(results), cell.id)
    if done_in is not None:
        summary = artifacts.read_json(done_in / "DONE", {}) or {}
        return CellState(cell, d, "done", done_in=done_in, health=summary.get("health", []), **base)
    state = st.get("state") or "pending"
    if (d / CANCELLED).exists():  # sticky: a job still winding down after scancel may rewrite status.json
        return CellState(cell, d, "cancelled", error=st.get("error") or "cancelled by user", **base)
    if state == "done":  # status says done but no marker: the job died right at the end
        state = "failed"
    return CellState(cell, d, state, error=st.get("error"), **base)


def states(cells: list[Cell], results: Path, *, live: bool = True) -> list[CellState]:
    """States of many cells: folders first, then one scheduler query for the ones that claim to be
    queued or running, so a job that vanished without a word (kill -9, node failure, OOM) shows as killed."""
    out = [folder_state(c, results) for c in cells]
    if not live:
        return out
    active = [s for s in out if s.state in ACTIVE and s.job_id]
    slurm = slurm_states([str(s.job_id) for s in active if s.executor == "slurm"])
    for s in active:
        alive, why = job_alive(str(s.executor), str(s.job_id), slurm)
        if not alive:
            s.state, s.error = "killed", why
    return out


SLURM_ALIVE = (
    "PENDING",
    "RUNNING",
    "REQUEUED",
    "CONFIGURING",
    "COMPLETING",
    "SUSPENDED",
    "RESIZING",
    "REQUEUE_HOLD",
    "REQUEUE_FED",
    "UNKNOWN",
    "PREEMPTED",
    "SIGNALING",
    "STAGE_OUT",
)


def job_alive(executor: str, job_id: str, slurm: dict[str, str] | None = None) -> tuple[bool, str]:
    """Whether the scheduler still has this job; if not, a one-line reason."""
    if executor == "local":
        pid = int(job_id.split("_")[0])
        if not _alive(pid):
            return False, f"local job {job_id} ended without finishing (killed?)"
        return True, ""
    if executor == "slurm":
        state = (slurm or {}).get(job_id) or slurm_states([job_id]).get(job_id, "UNKNOWN")
        if state in SLURM_ALIVE:
            return True, ""
        return False, f"slurm job {job_id} is {state}"
    return False, f"{executor} job {job_id} is not running"


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """One sacct call for many jobs / array tasks (submitit's parser expands pending ranges like 12_[3-9]).
    A job sacct does not know (yet), or an unreachable scheduler, reads UNKNOWN: never declared dead."""
    import subprocess

    if not job_ids:
        return {}
    arrays = sorted({j.split("_")[0] for j in job_ids})
    info: dict[str, dict[str, str]] = {}
    try:
        for i in range(0, len(arrays), 200):
            out = subprocess.run(
                ["sacct", "-o", "JobID,State,NodeList", "--parsable2", "-j", ",".join(arrays[i : i + 200])],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            ).stdout
            info.update(submitit.slurm.slurm.SlurmInfoWatcher().read_info(out))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("cannot read job states from sacct: %s", exc)
    return {j: (info.get(j, {}).get("State") or "UNKNOWN").split()[0].upper() for j in job_ids}


# ---------------------------------------------------------------------------------------------- submit
def write_cell_config(cell: Cell, results: Path) -> Path:
    d = cell_dir(results, cell.sweep, cell.id)
    payload = {
        "cell_id": cell.id,
        "sweep": cell.sweep,
        "axes": cell.axes,
        "reward_label": cell.axes.get("reward", cell.config.reward),
        "config": cell.config.model_dump(mode="json"),
    }
    artifacts.atomic_write_json(d / "config.json", payload, durable=False)
    (d / CANCELLED).unlink(missing_ok=True)
    return d


def write_manifest(sweep: str, source: str, cells: list[Cell], results: Path) -> None:
    artifacts.atomic_write_json(
        Path(results) / sweep / "sweep.json",
        {"sweep": sweep, "file": source, "cells": {c.id: c.axes for c in cells}},
    )


def make_executor(kind: str, folder: Path, cells: list[Cell]) -> submitit.Executor:
    if kind not in EXECUTORS:
        raise SubmissionError(f"unknown executor {kind!r}; valid: {', '.join(EXECUTORS)}")
    ex = submitit.AutoExecutor(folder=folder, cluster=kind)
    if kind == "slurm":
        ex.update_parameters(**slurm_parameters(cells))
    elif kind == "local":
        ex.update_parameters(timeout_min=cells[0].config.slurm.timeout_min)
    return ex


def slurm_parameters(cells: list[Cell]) -> dict[str, Any]:
    """sbatch parameters for one array: resources must agree across its cells (see group_by_resources)."""
    s = cells[0].config.slurm
    p: dict[str, Any] = {
        "timeout_min": s.timeout_min,
        "slurm_array_parallelism": s.array_parallelism,
        "name": f"spurisweep-{cells[0].sweep}",
    }
    for key, value in (
        ("slurm_partition", s.partition),
        ("slurm_account", s.account),
        ("slurm_qos", s.qos),
        ("gpus_per_node", s.gpus_per_node),
        ("cpus_per_task", s.cpus_per_task),
        ("slurm_constraint", s.constraint),
    ):
        if value is not None:
            p[key] = value
    if s.processes > 1:  # one task per GPU: data-parallel training (see CellJob / distributed_setup)
        p["tasks_per_node"] = s.processes
    if s.mem_gb is not None:
        p["mem_gb"] = s.mem_gb
    for key, value in s.additional.items():
        p[key if key.startswith("slurm_") else f"slurm_{key}"] = value
    return p


def group_by_resources(cells: list[Cell]) -> list[list[Cell]]:
    """One array per distinct resource profile (a 1.5B and a 7B model may need different GPUs)."""
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.config.slurm.model_dump_json(), []).append(c)
    return list(groups.values())


def validate_slurm_parameters(cells: list[Cell], folder: Path) -> None:
    """All invalid sbatch parameters reported at once, before anything is submitted."""
    for group in group_by_resources(cells):
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        try:
            ex.update_parameters(**slurm_parameters(group))
        except (ValueError, TypeError) as exc:
            raise SubmissionError(f"invalid slurm parameters for {group[0].label}: {exc}") from None


@dataclass
class Plan:
    to_submit: list[Cell]
    skipped: dict[str, list[Cell]]  # reason -> cells


def plan_submission(cells: list[Cell], results: Path, *, retry_failed: bool) -> tuple[Plan, list[CellState]]:
    sts = states(cells, results)
    to_submit, skipped = [], {}
    for s in sts:
        if s.state in RESUBMIT or (s.state == "failed" and retry_failed):
            to_submit.append(s.cell)
        else:
            skipped.setdefault(s.state, []).append(s.cell)
    return Plan(to_submit, skipped), sts


def submit(
    cells: list[Cell],
    results: Path,
    *,
    executor: str,
    max_parallel: int | None = None,
    on_update: Callable[[list[CellState]], None] | None = None,
    wait: bool = True,
    poll_s: float = 2.0,
) -> list[CellState]:
    """Submit the given cells (already filtered to the ones that need running)."""
    results = Path(results)
    if not cells:
        return []
    sweep = cells[0].sweep
    folder = results / sweep / artifacts.SUBMITIT
    folder.mkdir(parents=True, exist_ok=True)
    for c in cells:
        write_cell_config(c, results)
    if executor == "slurm":
        validate_slurm_parameters(cells, folder)
        for group in group_by_resources(cells):
            ex = make_executor("slurm", folder, group)
            jobs = ex.map_array(
                CellJob(), [str(cell_dir(results, sweep, c.id)) for c in group], [str(results)] * len(group)
            )
            for c, j in zip(group, jobs, strict=True):
                artifacts.CellDir(cell_dir(results, sweep, c.id)).set_status(
                    "queued",
                    job_id=j.job_id,
                    executor="slurm",
                    error=None,
                    submitted=time.time(),
                    durable=False,
                )
        if wait:
            return watch(cells, results, on_update=on_update, poll_s=poll_s)
        return states(cells, results, live=False)
    if executor == "debug":
        ex = make_executor("debug", folder, cells)
        for c in cells:
            d = cell_dir(results, sweep, c.id)
            artifacts.CellDir(d).set_status("queued", executor="debug", job_id=None, error=None)
            job = ex.submit(CellJob(), str(d), str(results))
            try:
                job.result()
            except Exception as exc:
                log.info("cell %s failed: %s", c.id, exc)
            if on_update:
                on_update(states(cells, results, live=False))
        return states(cells, results, live=False)
    return _run_local(
        cells, results, folder, max_parallel=max_parallel, on_update=on_update, wait=wait, poll_s=poll_s
    )


def local_gpus() -> list[str]:
    """The GPUs local jobs may use, as CUDA_VISIBLE_DEVICES entries (this process's own restriction kept)."""
    try:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        count = 0
    if not count:
        return []
    visible = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return visible[:count] if visible else [str(i) for i in range(count)]


def local_processes(cell: Cell, gpus: list[str]) -> int:
    """Processes of one cell on this machine: one per GPU it asks for, at most the GPUs there are; on a
    machine without GPUs only an explicit slurm.tasks_per_node starts several (CPU processes, gloo)."""
    s = cell.config.slurm
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


def _run_local(
    cells, results, folder, *, max_parallel, on_update, wait, poll_s, gpus: list[str] | None = None
) -> list[CellState]:
    """Cells as local processes. On a GPU machine every job gets its own GPUs (CUDA_VISIBLE_DEVICES), one
    per process, and waits until that many are free; without GPUs at most `max_parallel` (default: cores)
    jobs run at once."""
    gpus = local_gpus() if gpus is None else list(gpus)
    n = max_parallel or (len(gpus) or max(1, os.cpu_count() or 1))
    if not wait:
        n = len(cells)
    ex = submitit.AutoExecutor(folder=folder, cluster="local")
    sweep = cells[0].sweep
    pending = list(cells)
    running: dict[str, tuple[Any, list[str]]] = {}
    free = list(gpus)
    while pending or running:
        while pending and len(running) < n:
            c = pending[0]
            k = local_processes(c, gpus)
            if gpus and len(free) < k:
                if wait:
                    break  # its GPUs are busy: wait for a job to end
                free += gpus  # starting every cell at once (no wait): GPUs are shared round-robin
            pending.pop(0)
            mine, free = free[:k], free[k:]
            threads = max(1, (os.cpu_count() or 1) // (min(n, len(cells)) * k))
            setup = [
                f"export SPURISWEEP_THREADS={threads} OMP_NUM_THREADS={threads} "
                f"SPURISWEEP_GRADING_WORKERS={min(threads, 2)}"
            ]
            if mine:  # submitit's local executor hides every GPU unless told which
                setup.append(f"export CUDA_VISIBLE_DEVICES={','.join(mine)}")
            ex.update_parameters(timeout_min=c.config.slurm.timeout_min, tasks_per_node=k, local_setup=setup)
            d = cell_dir(results, sweep, c.id)
            with _detached_stdio():
                job = ex.submit(CellJob(), str(d), str(results))
            artifacts.CellDir(d).set_status(
                "queued", job_id=str(job.job_id), executor="local", error=None, submitted=time.time()
            )
            running[c.id] = (job, mine)
        if not wait:
            break
        for cid, (job, mine) in list(running.items()):
            if job.done():
                running.pop(cid)
                free.extend(mine)
        if on_update:
            on_update(states(cells, results))
        if pending or running:
            time.sleep(poll_s)
    return states(cells, results)


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
    """Local jobs outlive this process: they must not inherit its stdout/stderr (a caller reading our
    output through a pipe would otherwise wait for every job to end). Their output goes to submitit's
    log files in the sweep's _submitit folder."""
    saved = [os.dup(1), os.dup(2)]
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)


def watch(cells: list[Cell], results: Path, *, on_update=None, poll_s: float = 5.0) -> list[CellState]:
    while True:
        sts = states(cells, results)
        if on_update:
            on_update(sts)
        if not any(s.state in ACTIVE for s in sts):
            return sts
        time.sleep(poll_s)


def cancel(cells: list[Cell], results: Path) -> list[CellState]:
    """Cancel queued and running jobs of these cells only."""
    out = []
    for s in states(cells, results):
        if s.state not in ACTIVE or not s.job_id:
            continue
        if s.executor == "slurm":
            import subprocess

            subprocess.run(["scancel", s.job_id], check=False, capture_output=True)
        elif s.executor == "local":
            import signal

            # submitit's job only logs SIGTERM; SIGINT is what submitit's own LocalJob.cancel sends (the
            # controller then kills its tasks). Whatever is left after a grace period is killed.
            root = int(s.job_id.split("_")[0])
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
        artifacts.atomic_write_text(s.dir / CANCELLED, f"{time.time()}\n")
        artifacts.CellDir(s.dir).set_status("cancelled", error="cancelled by user")
        out.append(s)
    return out
