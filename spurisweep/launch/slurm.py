"""The SLURM backend: all pending cells of a sweep go out as one job array (one sbatch) per distinct
resource profile; job states come from one sacct call for many jobs; `cancel` is scancel."""

from __future__ import annotations

import logging
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import submitit

from .. import artifacts
from ..errors import SubmissionError
from .backend import Backend, Progress
from .claim import crash_hook
from .job import CellJob
from .state import cell_dir

if TYPE_CHECKING:
    from ..grid import Cell

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
    ) -> None:
        sweep = cells[0].sweep
        validate_slurm_parameters(cells, folder)
        arrays = []
        for group in group_by_resources(cells):
            ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
            ex.update_parameters(**held(slurm_parameters(group)))
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
                    claim=None,
                    held=True,
                    durable=False,
                )
            arrays.append(str(jobs[0].job_id).split("_")[0])
        self.release(arrays)  # recorded: now the jobs may start

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

    def describe(self, cells: list[Cell]) -> list[str]:
        return [
            f"sbatch array of {len(group)} cells: {slurm_parameters(group)}"
            for group in group_by_resources(cells)
        ]


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


def held(params: dict[str, Any]) -> dict[str, Any]:
    """The parameters with sbatch --hold added: a job may start only once its cell records it (claim.py)."""
    extra = dict(params.get("slurm_additional_parameters") or {})
    extra["hold"] = True
    return {**params, "slurm_additional_parameters": extra}


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
