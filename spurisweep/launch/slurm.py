"""The SLURM backend: all pending cells of a sweep go out as one job array (one sbatch) per distinct
resource profile; job states come from one sacct call for many jobs; `cancel` is scancel.

Label jobs go out first, one plain job each on the resources of one of its cells (one task with the
node's CPUs); the cells that train on those labels form arrays of their own that depend on it
(`--dependency=afterok:<label job>`, `--kill-on-invalid-dep=yes`: if labelling fails, SLURM cancels
them instead of keeping them pending forever).

A cell of several tasks (data-parallel or sharded ranks) runs its srun step with `--kill-on-bad-exit=1`:
one rank that dies ends the step, instead of the others waiting in their next collective (up to the
process group's timeout, hours) on GPUs that do nothing. The preemption path is unaffected: rank 0 runs
`scontrol requeue` before it exits (submitit's handler), so the job is already requeued when its non-zero
exit ends the step."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit

from .. import artifacts
from ..errors import SubmissionError
from ..plan.node import node_totals
from .backend import Backend, Progress
from .claim import crash_hook
from .job import CellJob, LabelJob
from .labeljob import LabelTask, mark_queued
from .state import cell_dir

if TYPE_CHECKING:
    from ..plan.grid import Cell

log = logging.getLogger(__name__)

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


class SlurmBackend(Backend):
    name = "slurm"
    detached = True

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
        sweep = cells[0].sweep
        validate_slurm_parameters(cells, folder, labels)
        for t in labels:
            if t.job_id:
                continue  # queued by an earlier run and still there: the cells wait for that one
            ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
            ex.update_parameters(**label_parameters(t))
            job = ex.submit(LabelJob(), str(results), t.spec_dict())
            mark_queued(t, str(job.job_id), self.name)
        submitted = []
        for group, after in arrays(cells, labels):
            ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
            ex.update_parameters(**held(slurm_parameters(group, after=after)))
            jobs = ex.map_array(
                CellJob(), [str(cell_dir(results, sweep, c.id)) for c in group], [str(results)] * len(group)
            )
            crash_hook()
            for c, j in zip(group, jobs, strict=True):
                artifacts.CellDir(cell_dir(results, sweep, c.id)).set_status(
                    "queued",
                    job_id=j.job_id,
                    executor=self.name,
                    error=None,
                    submitted=time.time(),
                    after=after,
                    claim=None,
                    held=True,
                    durable=False,
                )
            submitted.append(str(jobs[0].job_id).split("_")[0])
        self.release(submitted)  # recorded: now the jobs may start

    def release(self, job_ids: list[str]) -> None:
        # an array id releases all its tasks; a job already released is an error scontrol reports, harmless
        arrays = sorted({j.split("_")[0] for j in job_ids})
        for i in range(0, len(arrays), 200):
            subprocess.run(
                ["scontrol", "release", ",".join(arrays[i : i + 200])], check=False, capture_output=True
            )

    def alive(self, job_ids: list[str]) -> dict[str, tuple[bool, str]]:
        out = {}
        for job_id, state in slurm_states(job_ids).items():
            out[job_id] = (True, "") if state in SLURM_ALIVE else (False, f"slurm job {job_id} is {state}")
        return out

    def cancel(self, job_id: str) -> None:
        subprocess.run(["scancel", job_id], check=False, capture_output=True)

    def describe(self, cells: list[Cell], labels: Sequence[LabelTask] = ()) -> list[str]:
        """Per label job and per array: the sbatch parameters, and what one node of the job holds."""
        out = []
        for t in labels:
            if t.job_id:
                out.append(f"label job {t.job_id} (already queued) makes labels {t.name}")
            else:
                out.append(f"label job for labels {t.name}: {label_parameters(t)}")
        for group, after in arrays(cells, labels, placeholder=True):
            wait = f" after label job {after}" if after else ""
            shardings = sorted({c.config.train.sharding for c in group})
            out.append(f"sbatch array of {len(group)} cells{wait}: {slurm_parameters(group, after=after)}")
            out.append(f"  per node: {node_totals(group[0].config)}; sharding: {', '.join(shardings)}")
        return out


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """One sacct call for many jobs / array tasks (submitit's parser expands pending ranges like 12_[3-9]).
    A job sacct does not know (yet), or an unreachable scheduler, reads UNKNOWN: never declared dead."""
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


def slurm_parameters(cells: list[Cell], *, after: str | None = None) -> dict[str, Any]:
    """sbatch parameters for one array: resources must agree across its cells (see group_by_resources).
    `after`: a job the array waits for (its label job) to end successfully. `cpus_per_task` is per task,
    as SLURM means it: 8 tasks x 12 CPUs is --ntasks-per-node=8 --cpus-per-task=12."""
    s = cells[0].config.resources
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
    if s.nodes > 1:  # tasks_per_node tasks on each node: world size = nodes x tasks per node
        p["nodes"] = s.nodes
    if s.mem_gb is not None:
        p["mem_gb"] = s.mem_gb
    for key, value in s.additional.items():
        p[key if key.startswith("slurm_") else f"slurm_{key}"] = value
    if s.world_size > 1:
        p["slurm_srun_args"] = kill_on_bad_exit(p.get("slurm_srun_args"))
    if after is not None:
        extra = dict(p.get("slurm_additional_parameters") or {})
        extra.update(dependency=f"afterok:{after}", kill_on_invalid_dep="yes")
        p["slurm_additional_parameters"] = extra
    return p


#: srun's option that ends a step when one of its tasks exits non-zero (submitit passes srun_args to srun)
KILL_ON_BAD_EXIT = "--kill-on-bad-exit=1"


def kill_on_bad_exit(srun_args: Sequence[str] | None) -> list[str]:
    """The user's srun arguments (resources.additional srun_args) with --kill-on-bad-exit=1 added, unless
    they already say how a bad exit is handled (-K / --kill-on-bad-exit)."""
    args = [srun_args] if isinstance(srun_args, str) else list(srun_args or [])
    if any(a.startswith(("-K", "--kill-on-bad-exit")) for a in args):
        return args
    return [*args, KILL_ON_BAD_EXIT]


def label_parameters(task: LabelTask) -> dict[str, Any]:
    """sbatch parameters for a label job: the node of one of its cells (GPUs, memory, all the CPUs its
    tasks would have) as one task on one node: labelling is one process."""
    cfg = task.cells[0].config
    p = slurm_parameters(task.cells[:1])
    p.pop("tasks_per_node", None)
    p.pop("nodes", None)
    p.pop("slurm_array_parallelism", None)
    srun = [a for a in p.pop("slurm_srun_args", []) if a != KILL_ON_BAD_EXIT]  # ours is for several tasks
    if srun:
        p["slurm_srun_args"] = srun
    cpus = node_totals(cfg).cpus
    if cpus is not None:
        p["cpus_per_task"] = cpus
    p["name"] = f"spurisweep-labels-{task.spec.model}"
    return p


def arrays(
    cells: list[Cell], labels: Sequence[LabelTask] = (), *, placeholder: bool = False
) -> list[tuple[list[Cell], str | None]]:
    """The arrays the cells go out as: one per resource profile and label job waited for, with that job's
    id (with `placeholder`, before submission: the labels' name for a job not submitted yet)."""
    after: dict[str, str] = {}
    for t in labels:
        job = t.job_id or (f"<labels {t.name}>" if placeholder else None)
        if job is None:
            raise SubmissionError(f"label job for labels {t.name} was not submitted")
        for c in t.cells:
            after[c.id] = job
    out: list[tuple[list[Cell], str | None]] = []
    for group in group_by_resources(cells):
        by_job: dict[str | None, list[Cell]] = {}
        for c in group:
            by_job.setdefault(after.get(c.id), []).append(c)
        out.extend((g, job) for job, g in by_job.items())
    return out


def held(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters with sbatch --hold added: a job may start only once its cell records it (claim.py)."""
    extra = dict(params.get("slurm_additional_parameters") or {})
    extra["hold"] = True
    return {**params, "slurm_additional_parameters": extra}


def group_by_resources(cells: list[Cell]) -> list[list[Cell]]:
    """One array per distinct resource profile (a 1.5B and a 7B model may need different GPUs)."""
    groups: dict[str, list[Cell]] = {}
    for c in cells:
        groups.setdefault(c.config.resources.model_dump_json(), []).append(c)
    return list(groups.values())


def validate_slurm_parameters(cells: list[Cell], folder: Path, labels: Sequence[LabelTask] = ()) -> None:
    """All invalid sbatch parameters reported at once, before anything is submitted."""
    for params, what in [
        *((label_parameters(t), f"the label job of {t.name}") for t in labels),
        *((slurm_parameters(group), group[0].label) for group in group_by_resources(cells)),
    ]:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        try:
            ex.update_parameters(**params)
        except (ValueError, TypeError) as exc:
            raise SubmissionError(f"invalid slurm parameters for {what}: {exc}") from None
