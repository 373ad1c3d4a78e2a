"""Cell states: read from a cell's folder first (DONE, status.json, the CANCELLED marker), then from the
scheduler for cells that claim to be queued or running, so a job that died without a word (kill -9,
node failure) shows as killed and is picked up again by the next `run`. Label jobs the same way: their
labels file first, then their record, then the scheduler.

A cell has one folder in the results folder, whatever the number of sweeps that have it: a sweep that
finds its cell in another sweep's folder links to it (`link_shared`: results/B/<cell> -> ../A/<cell>) and
reads its state there; a cell done, queued or running for another sweep says which (`elsewhere`). Cells
of a sweep's folder that its file no longer has (a setting edited since) are its earlier cells
(`earlier_cells`): kept, never shown as the sweep's."""

from __future__ import annotations

import dataclasses
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
    from ..plan.grid import Cell

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
    #: the other sweep this cell's job was claimed or submitted for (an active cell), or whose folder holds
    #: its result (a done cell): a cell two sweeps share runs once, for one of them
    elsewhere: str | None = None

    @property
    def shared(self) -> str:
        """What the state table says of a cell another sweep runs or ran ('' for a cell of this sweep's)."""
        if not self.elsewhere:
            return ""
        return f"(in sweep {self.elsewhere})" if self.state == "done" else f"(for sweep {self.elsewhere})"


def cell_dir(results: Path, sweep: str, cell_id: str) -> Path:
    return artifacts.cell_path(results, sweep, cell_id)


def read_state(cell: Cell, results: Path, *, live: bool = True) -> CellState:
    return states([cell], results, live=live)[0]


def folder_state(cell: Cell, results: Path, *, listing: Listing | None = None) -> CellState:
    """A cell's state from its folder alone (no scheduler query). A damaged status.json or DONE (stray
    bytes, not JSON) is warned about, naming the file, and read as empty: it never stops a command over
    the other cells. `listing`: the results folder's sweep folders and their entries, read once by the
    caller (see `listing`), so a cell without a folder costs no file system call. A cell with no folder in
    its sweep's but one in another sweep's (not linked yet) is read there."""
    if listing is None:
        listing = _listing(results)
    sweep_dir = _sweep_dir(str(results), cell.sweep)
    d = sweep_dir / cell.id
    if cell.id not in listing.get(sweep_dir, ()):
        other = _other_folder(cell.id, listing, sweep_dir)
        if other is None:
            return CellState(cell, d, "pending")
        d = other
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
        where = _holding_sweep(done_in)
        return CellState(
            cell, d, "done", done_in=done_in, health=health, elsewhere=_other(where, cell), **base
        )
    state = st.get("state") if isinstance(st.get("state"), str) else "pending"
    if state != "pending":  # whom its claim or job is for (recorded since claims name it; else its folder's)
        owner = st.get("sweep")
        base["elsewhere"] = _other(owner if isinstance(owner, str) else _holding_sweep(d), cell)
    if (d / CANCELLED).exists():  # sticky: a job still winding down after scancel may rewrite status.json
        return CellState(cell, d, "cancelled", error=_text(st.get("error")) or "cancelled by user", **base)
    if state == "done":  # status says done but no marker: the job died right at the end
        state = "failed"
    return CellState(cell, d, state, error=damaged or _text(st.get("error")), **base)


def _other(sweep: object, cell: Cell) -> str | None:
    return sweep if isinstance(sweep, str) and sweep and sweep != cell.sweep else None


def _holding_sweep(folder: Path) -> str:
    """The sweep whose folder really holds a cell's folder (a link's target's)."""
    if os.path.islink(folder):
        return Path(os.path.realpath(folder)).parent.name
    return folder.parent.name


def _other_folder(cell_id: str, listing: Listing, sweep_dir: Path) -> Path | None:
    """This cell's folder in another sweep's folder: a finished one first (see _find_done)."""
    found = [s / cell_id for s, names in listing.items() if s != sweep_dir and cell_id in names]
    if len(found) > 1:
        return next((f for f in found if (f / "DONE").exists()), found[0])
    return found[0] if found else None


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


_listing = listing  # for functions whose `listing` argument hides this one


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
                s.elsewhere = None
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
    here. A cell claimed, queued or running for another sweep is left to it (`<state> for sweep <name>`),
    also when that sweep runs it in a folder of its own (two copies of one cell, from before cells were
    linked)."""
    sts = states(cells, results)
    plan = Plan([], {})
    for s in sts:
        h = s.holder
        if s.stopping:  # a new job would find the cell's lock held and leave: wait for the old one to end
            plan.skipped.setdefault("stopping", []).append(s.cell)
        elif s.state in ACTIVE and s.elsewhere:
            plan.skipped.setdefault(f"{s.state} for sweep {s.elsewhere}", []).append(s.cell)
        elif s.state in RESUBMIT or (s.state == "failed" and retry_failed):
            plan.to_submit.append(s.cell)
            if s.state == "pending" and h is not None:
                plan.cleared.append((s.cell, f"stale claim by controller {h}"))
        elif s.state == SUBMITTING and retry_failed and h is not None and not h.local:
            plan.to_submit.append(s.cell)
            plan.cleared.append((s.cell, f"live claim by controller {h} (taken over: --retry-failed)"))
        else:
            plan.skipped.setdefault(s.state, []).append(s.cell)
    _leave_copies_running(plan, sts, results)
    return plan, sts


def _leave_copies_running(plan: Plan, sts: list[CellState], results: Path) -> None:
    """Take out of `plan.to_submit` the cells another sweep's folder holds a second copy of (not a link to
    this one) that is claimed, queued or running there."""
    names = listing(results)
    by_id = {s.cell.id: s for s in sts}
    copies: list[Cell] = []
    for c in plan.to_submit:
        mine = os.path.realpath(by_id[c.id].dir)
        for sweep_dir, entries in names.items():
            if c.id in entries and sweep_dir.name != c.sweep:
                if os.path.realpath(sweep_dir / c.id) != mine:
                    copies.append(dataclasses.replace(c, sweep=sweep_dir.name))
    if not copies:
        return
    busy = {s.cell.id: s for s in states(copies, results) if s.state in ACTIVE or s.stopping}
    for c in list(plan.to_submit):
        if c.id in busy:
            plan.to_submit.remove(c)
            key = f"{busy[c.id].state} for sweep {busy[c.id].cell.sweep}"
            plan.skipped.setdefault(key, []).append(c)


def link_shared(cells: list[Cell], results: Path) -> int:
    """Link each cell with no folder in its sweep's to its folder in another sweep's (results/B/<cell> ->
    ../A/<cell>, a relative link): one folder per cell id, so one claim, one running lock, one attempts log
    and one result, read by every sweep that has the cell. A link whose folder is gone is removed first.
    Call under the submit lock (claim.submit_lock). Returns how many links it made."""
    if not cells:
        return 0
    names = listing(results)
    sweep_dir = _sweep_dir(str(results), cells[0].sweep)
    own = names.get(sweep_dir, frozenset())
    made = 0
    for c in cells:
        link = sweep_dir / c.id
        if c.id in own:
            if not (os.path.islink(link) and not link.exists()):
                continue
            link.unlink()  # its target was removed: link again below, or start afresh
        other = _other_folder(c.id, names, sweep_dir)
        if other is None:
            continue
        sweep_dir.mkdir(parents=True, exist_ok=True)
        target = os.path.relpath(os.path.realpath(other), os.path.realpath(sweep_dir))
        os.symlink(target, link, target_is_directory=True)
        made += 1
    return made


def earlier_cells(sweep: str, cells: list[Cell], results: Path) -> list[Path]:
    """The folders in a sweep's folder of cells its file no longer has (a setting edited since they ran):
    its history, kept on disk and in the store, shown by `report --history`."""
    current = {c.id for c in cells}
    folder = Path(results) / sweep
    try:
        entries = sorted(os.listdir(folder))
    except OSError:
        return []
    return [
        folder / e
        for e in entries
        if e not in current and not e.startswith((".", "_")) and (folder / e / "config.json").exists()
    ]


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
