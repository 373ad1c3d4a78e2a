"""Cell states: read from a cell's folder first (DONE, status.json, the CANCELLED marker), then from the
scheduler for cells that claim to be queued or running, so a job that died without a word (kill -9,
node failure) shows as killed and is picked up again by the next `run`. Label jobs the same way: their
labels file first, then their record, then the scheduler."""

from __future__ import annotations

import functools
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .. import artifacts
from .backend import BACKENDS, Backend, get_backend
from .claim import CANCELLED, SUBMITTING, Holder, holder, job_running
from .labeljob import ACTIVE as LABEL_ACTIVE
from .labeljob import LabelState, LabelTask, label_tasks, labels_needed, made, read_record

if TYPE_CHECKING:
    from ..grid import Cell

log = logging.getLogger(__name__)

#: `submitting`: claimed by a controller that has not yet recorded the job (see launch/claim.py)
ACTIVE = ("queued", "running", "requeued", SUBMITTING)
#: states `run` submits again without being asked (a killed cell resumes from its last checkpoint)
RESUBMIT = ("pending", "killed", "cancelled")


@dataclass
class CellState:
    cell: Cell
    dir: Path
    state: str  # pending | submitting | queued | running | requeued | done | failed | killed | cancelled
    job_id: str | None = None
    executor: str | None = None
    error: str | None = None
    requeues: int = 0
    attempts: int = 0
    step: int | None = None
    done_in: Path | None = None
    health: list[str] = field(default_factory=list)
    #: what is missing or damaged in a finished cell's files (states(check_files=True) only)
    incomplete: list[str] = field(default_factory=list)
    #: cancelled, but its job still holds the running lock (it is winding down after scancel / SIGTERM)
    stopping: bool = False
    #: the controller that claimed the cell (state `submitting`, or a claim given up: its controller ended)
    holder: Holder | None = None


def cell_dir(results: Path, sweep: str, cell_id: str) -> Path:
    return artifacts.cell_path(results, sweep, cell_id)


def read_state(cell: Cell, results: Path, *, live: bool = True) -> CellState:
    return states([cell], results, live=live)[0]


def folder_state(cell: Cell, results: Path, *, listing: Listing | None = None) -> CellState:
    """A cell's state from its folder alone (no scheduler query). A damaged status.json or DONE (stray
    bytes, not JSON) is warned about, naming the file, and read as empty: it never stops a command over
    the other cells. `listing`: the results folder's sweep folders and their entries, read once by the
    caller (see `listing`), so a cell without a folder costs no file system call."""
    sweep_dir = _sweep_dir(str(results), cell.sweep)
    d = sweep_dir / cell.id
    if listing is not None and cell.id not in listing.get(sweep_dir, ()):
        if _find_done(results, cell.id, listing) is None:
            return CellState(cell, d, "pending")
    cd = artifacts.CellDir(d)
    st = cd.status()
    damaged = "status.json is damaged (state unknown)" if not st and cd.status_path.exists() else None
    base = dict(
        job_id=_text(st.get("job_id")),
        executor=_text(st.get("executor")),
        requeues=_int(st.get("requeues")),
        attempts=_int(st.get("attempts")),
        step=st.get("step") if isinstance(st.get("step"), int) else None,
    )
    done_in = d if cd.is_done() else _find_done(results, cell.id, listing)
    if done_in is not None:
        summary = artifacts.read_json(done_in / "DONE", {})
        health = summary.get("health") if isinstance(summary, dict) else None
        health = [str(h) for h in health] if isinstance(health, list) else []
        return CellState(cell, d, "done", done_in=done_in, health=health, **base)
    state = st.get("state") if isinstance(st.get("state"), str) else "pending"
    if (d / CANCELLED).exists():  # sticky: a job still winding down after scancel may rewrite status.json
        return CellState(cell, d, "cancelled", error=_text(st.get("error")) or "cancelled by user", **base)
    if state == "done":  # status says done but no marker: the job died right at the end
        state = "failed"
    return CellState(cell, d, state, error=damaged or _text(st.get("error")), **base)


@functools.lru_cache(maxsize=64)
def _sweep_dir(results: str, sweep: str) -> Path:
    return Path(results) / sweep  # built once per sweep: building a Path costs more than the rest of a state


#: sweep folder -> the names in it
Listing = dict[Path, frozenset[str]]


def listing(results: Path) -> Listing:
    """The results folder's sweep folders and their entries: one directory read per sweep, so the state of
    n cells is linear in n whatever the number of sweeps."""
    out: Listing = {}
    try:
        entries = sorted(Path(results).iterdir())
    except OSError:  # no results folder yet
        return out
    for p in entries:
        if p.name in artifacts.RESERVED_NAMES or p.name.startswith((".", "_")):
            continue
        try:
            out[p] = frozenset(os.listdir(p))
        except OSError:  # a file, or unreadable
            continue
    return out


def _find_done(results: Path, cell_id: str, listing: Listing | None) -> Path | None:
    """A finished copy of this cell in any sweep's folder (see artifacts.find_done)."""
    if listing is None:
        return artifacts.find_done(Path(results), cell_id)
    if not any(cell_id in names for names in listing.values()):
        return None
    return next(
        (s / cell_id for s, names in listing.items() if cell_id in names and (s / cell_id / "DONE").exists()),
        None,
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _int(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def states(
    cells: list[Cell], results: Path, *, live: bool = True, check_files: bool = False
) -> list[CellState]:
    """States of many cells: folders first, then one query per backend for the ones that claim to be
    queued or running, so a job that vanished without a word (kill -9, node failure, OOM) shows as killed.
    Live, a cell claimed by a controller that died is running if a job holds its running lock, else
    pending; and a cell any job holds the running lock of is running, whatever its status says.
    `check_files`: also list what is missing or damaged in each finished cell's files (`incomplete`)."""
    results = Path(results)
    names = listing(results)
    out = [folder_state(c, results, listing=names) for c in cells]
    if check_files:
        for s in out:
            if s.done_in is not None:
                s.incomplete = artifacts.incomplete(s.done_in)
    if not live:
        return out
    for s in out:
        if s.state == SUBMITTING:
            s.holder = h = holder(artifacts.CellDir(s.dir).status(), s.dir.parent)
            if h is not None and h.alive:
                s.error = f"claimed by controller {h}"
                continue
            who = f" ({h})" if h is not None else ""
            if job_running(s.dir):
                s.state, s.error = "running", f"its controller{who} ended before recording the job"
            else:
                s.state, s.error = "pending", f"stale claim: its controller{who} ended before submitting it"
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
    for s in out:  # a job outside the records (its controller crashed) still owns its cell
        if s.state in (*RESUBMIT, "failed") and job_running(s.dir):
            if s.state == "cancelled":  # already told to stop: not running again, not submitted again yet
                s.stopping, s.error = True, "cancelled by user; its job is still stopping"
            else:
                s.state, s.error = "running", "a job holds the cell's running lock"
    return out


@dataclass
class Plan:
    to_submit: list[Cell]
    skipped: dict[str, list[Cell]]  # reason -> cells
    #: claims this plan takes over, each with what it says about them: stale ones (their controller
    #: ended), and with retry_failed live ones made on another host
    cleared: list[tuple[Cell, str]] = field(default_factory=list)


def plan_submission(cells: list[Cell], results: Path, *, retry_failed: bool) -> tuple[Plan, list[CellState]]:
    """What to submit: pending, killed and cancelled cells (failed ones too with `retry_failed`), and cells
    whose claim is stale. `retry_failed` also takes over a live claim made on another host (which cannot be
    checked by pid: its heartbeat may come from a controller that is stuck); never one of a live process
    here."""
    sts = states(cells, results)
    plan = Plan([], {})
    for s in sts:
        h = s.holder
        if s.stopping:  # a new job would find the cell's lock held and leave: wait for the old one to end
            plan.skipped.setdefault("stopping", []).append(s.cell)
        elif s.state in RESUBMIT or (s.state == "failed" and retry_failed):
            plan.to_submit.append(s.cell)
            if s.state == "pending" and h is not None:
                plan.cleared.append((s.cell, f"stale claim by controller {h}"))
        elif s.state == SUBMITTING and retry_failed and h is not None and not h.local:
            plan.to_submit.append(s.cell)
            plan.cleared.append((s.cell, f"live claim by controller {h} (taken over: --retry-failed)"))
        else:
            plan.skipped.setdefault(s.state, []).append(s.cell)
    return plan, sts


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
