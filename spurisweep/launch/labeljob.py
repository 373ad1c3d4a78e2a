"""Majority-vote labels as a job of their own, run before the cells that train on them.

At `run`, the cells that need labels (labels.needed: majority_vote and incorrect_label) are grouped by
label key; each key whose labels file does not exist yet becomes one LabelTask, which the backend sends
out before those cells (on SLURM the cells' array depends on the label job; locally the cells start
when it has ended). The job (job.LabelJob) runs labels.ensure_labels: the same key, file and lock as a
cell making them itself, so labels are shared exactly as before, and a cell that starts after its label
job finds them made. Labelling is a process of its own on the resources of one cell of that model, so its
GPUs (a vLLM engine's share of one of them) are free again before training starts.

Each label job keeps a record next to the labels file (<model>-<key>.job.json: state, job id, executor,
error), read by `status` and by the next `run`, which waits for a label job still queued or running
instead of submitting a second one (state.label_states, state.pending_labels).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import artifacts
from ..evaluation import labels

if TYPE_CHECKING:
    from ..plan.grid import Cell

ACTIVE = ("queued", "running", "requeued")


@dataclass
class LabelTask:
    """One set of labels to make, and the cells (of this submission) that train on them."""

    spec: labels.LabelSpec
    path: Path  # the labels file (labels.labels_path)
    cells: list[Cell] = field(default_factory=list)
    #: a label job already queued or running (an earlier `run`): waited for, not submitted again
    job_id: str | None = None

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def results(self) -> Path:
        return self.path.parent.parent

    def spec_dict(self) -> dict[str, Any]:
        return asdict(self.spec)

    def made(self) -> bool:
        return made(self.path)


def made(path: Path) -> bool:
    """Labels are complete once their metadata exists (labels.make_labels writes it last)."""
    return path.with_suffix(".json").exists()


def record_path(path: Path) -> Path:
    return path.with_suffix(".job.json")


def read_record(path: Path) -> dict[str, Any]:
    return artifacts.read_json(record_path(path), {}) or {}


def write_record(path: Path, **fields: Any) -> None:
    """Merge fields into a label job's record (under a lock: the submitter and the job both write it)."""
    from filelock import FileLock

    rec = record_path(path)
    rec.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(rec) + ".lock"):
        data = artifacts.read_json(rec, {}) or {}
        data.update(fields, updated=time.time())
        artifacts.atomic_write_json(rec, data, durable=False)


def mark_queued(task: LabelTask, job_id: str, executor: str) -> None:
    """Record a label job just submitted. The job may already have started and said so: its own state
    is kept then."""
    task.job_id = job_id
    rec = read_record(task.path)
    started = str(rec.get("job_id")) == str(job_id) and rec.get("state") in ("running", "done", "failed")
    state = {} if started else {"state": "queued", "error": None}
    write_record(task.path, job_id=job_id, executor=executor, submitted=time.time(), **state)


def label_tasks(cells: list[Cell], results: Path) -> list[LabelTask]:
    """The labels these cells need that do not exist yet, one task per label key, in cell order (the
    label jobs still alive from an earlier `run`: state.pending_labels)."""
    tasks: dict[str, LabelTask] = {}
    for c in cells:
        spec = labels.needed(c.config)
        if spec is None:
            continue
        path = labels.labels_path(Path(results), spec)
        if made(path):
            continue
        tasks.setdefault(str(path), LabelTask(spec, path)).cells.append(c)
    return list(tasks.values())


def failure(task: LabelTask) -> str:
    """Why a task's label job ended without labels (for the cells that waited on it)."""
    rec = read_record(task.path)
    why = rec.get("error") or "it ended without making them"
    return f"label job {task.job_id or rec.get('job_id')} for labels {task.name} failed: {why}"[:500]


@dataclass
class LabelState:
    """One set of labels a sweep trains on, as `status` shows it (state.label_states)."""

    name: str
    path: Path
    state: str  # done | queued | running | requeued | failed | killed | missing
    cells: int  # cells of the sweep that train on these labels
    job_id: str | None = None
    executor: str | None = None
    error: str | None = None

    def __str__(self) -> str:
        job = f" (job {self.job_id}, {self.executor})" if self.job_id else ""
        err = f": {self.error}" if self.error and self.state in ("failed", "killed") else ""
        return f"labels {self.name} for {self.cells} cell(s): {self.state}{job}{err}"


def labels_needed(cells: list[Cell], results: Path) -> dict[Path, int]:
    """Labels file -> how many of these cells train on it."""
    out: dict[Path, int] = {}
    for c in cells:
        spec = labels.needed(c.config)
        if spec is not None:
            path = labels.labels_path(Path(results), spec)
            out[path] = out.get(path, 0) + 1
    return out
