"""Cell states: read from a cell's folder first (DONE, status.json, the CANCELLED marker), then from the
scheduler for cells that claim to be queued or running, so a job that died without a word (kill -9,
node failure) shows as killed and is picked up again by the next `run`. Label jobs the same way: their
labels file first, then their record, then the scheduler."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import artifacts
from .backend import BACKENDS, Backend, get_backend
from .labeljob import ACTIVE as LABEL_ACTIVE
from .labeljob import LabelState, LabelTask, label_tasks, labels_needed, made, read_record

if TYPE_CHECKING:
    from ..grid import Cell

log = logging.getLogger(__name__)

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
    """States of many cells: folders first, then one query per backend for the ones that claim to be
    queued or running, so a job that vanished without a word (kill -9, node failure, OOM) shows as killed."""
    out = [folder_state(c, results) for c in cells]
    if not live:
        return out
    by_executor: dict[str, list[CellState]] = {}
    for s in out:
        if s.state in ACTIVE and s.job_id:
            by_executor.setdefault(str(s.executor), []).append(s)
    for executor, active in by_executor.items():
        if executor not in BACKENDS:
            # never declared dead: `run` would submit the cell again while its job may still be running
            log.warning(
                "%d cell(s) were submitted with executor %r, which this version does not know; "
                "their state is shown as recorded (valid: %s)",
                len(active),
                executor,
                ", ".join(BACKENDS),
            )
            continue
        verdicts = get_backend(executor).alive([str(s.job_id) for s in active])
        for s in active:
            alive, why = verdicts[str(s.job_id)]
            if not alive:
                s.state, s.error = "killed", why
    return out


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


def watch(cells: list[Cell], results: Path, *, on_update=None, poll_s: float = 5.0) -> list[CellState]:
    while True:
        sts = states(cells, results)
        if on_update:
            on_update(sts)
        if not any(s.state in ACTIVE for s in sts):
            return sts
        time.sleep(poll_s)


def label_states(cells: list[Cell], results: Path, *, live: bool = True) -> list[LabelState]:
    """The state of every set of labels these cells train on: done when the labels file exists, else
    its label job's recorded state (a job the scheduler no longer has reads `killed`), else missing."""
    out = []
    for path, n in labels_needed(cells, results).items():
        rec = read_record(path)
        job, executor = rec.get("job_id"), rec.get("executor")
        job = None if job is None else str(job)
        if made(path):
            out.append(LabelState(path.stem, path, "done", n, job, executor))
            continue
        state, error = rec.get("state") or "missing", rec.get("error")
        if live and state in LABEL_ACTIVE and job and executor in BACKENDS:
            alive, why = get_backend(str(executor)).alive([job])[job]
            if not alive:
                state, error = "killed", why
        out.append(LabelState(path.stem, path, state, n, job, executor, error))
    return out


def pending_labels(cells: list[Cell], results: Path, backend: Backend) -> list[LabelTask]:
    """The labels these cells need that do not exist yet (labeljob.label_tasks); a label job of this
    backend still queued or running from an earlier `run` is waited for (its `job_id`), not submitted
    again."""
    tasks = label_tasks(cells, results)
    for t in tasks:
        rec = read_record(t.path)
        job = rec.get("job_id")
        if rec.get("state") in LABEL_ACTIVE and job and rec.get("executor") == backend.name:
            if backend.alive([str(job)])[str(job)][0]:
                t.job_id = str(job)
    return tasks
