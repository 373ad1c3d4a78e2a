"""Submitting and cancelling the cells of a sweep through a backend, idempotently: each cell's
config.json and a `submitting` claim are written before its job is queued, and a re-run submits only
what is not done, claimed, queued or running (see state.plan_submission and plan_and_claim). Labels the
cells train on that do not exist yet go out first, as label jobs (labeljob.py).

A controller told to stop (Ctrl-C, a hang-up, SIGTERM) detaches: inside `detachable` those signals raise
Detached (the command exits 128 + the signal) and the jobs run on, since local jobs live in sessions of
their own (local.py) and no terminal signal reaches them; inside `critical` (a job queued and not yet
recorded) the signal waits until the record is written."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import artifacts
from ..plan.clipping import label as clip_label
from .backend import BACKENDS, Backend, get_backend
from .claim import SUBMITTING, owner, submit_lock
from .state import (
    ACTIVE,
    CANCELLED,
    CellState,
    Plan,
    cell_dir,
    link_shared,
    pending_labels,
    plan_submission,
    states,
    watch,
)

if TYPE_CHECKING:
    from ..plan.grid import Cell

log = logging.getLogger(__name__)


def write_cell_config(cell: Cell, results: Path) -> Path:
    d = cell_dir(results, cell.sweep, cell.id)
    payload = {
        "cell_id": cell.id,
        "sweep": cell.sweep,
        "axes": cell.axes,
        "reward_label": cell.axes.get("reward", cell.config.reward),
        # the clip as tables show it: the mode, with its epsilons when they are not the mode's defaults
        "clip_label": clip_label(cell.config.clip, cell.config.clip_params),
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


def submit(
    cells: list[Cell],
    results: Path,
    *,
    executor: str,
    max_parallel: int | None = None,
    on_update: Callable[[list[CellState]], None] | None = None,
    wait: bool = True,
    poll_s: float = 2.0,
    claimed: bool = False,
) -> list[CellState]:
    """Submit the given cells (already filtered to the ones that need running). `claimed`: their configs
    and claims are already written (plan_and_claim); otherwise they are claimed here."""
    backend = get_backend(executor)
    results = Path(results)
    if not cells:
        return []
    backend.check(cells)
    folder = artifacts.submitit_dir(results, cells[0].sweep)
    folder.mkdir(parents=True, exist_ok=True)
    if not claimed:
        with submit_lock(results):
            link_shared(cells, results)
            claim_cells(cells, results)

    def progress(live: bool) -> None:
        if on_update:
            on_update(states(cells, results, live=live))

    backend.submit(
        cells,
        results,
        folder,
        max_parallel=max_parallel,
        wait=wait,
        poll_s=poll_s,
        progress=progress,
        labels=pending_labels(cells, results, backend),
    )
    if wait and backend.detached:
        return watch(cells, results, on_update=on_update, poll_s=poll_s)
    # no scheduler query right after queueing jobs elsewhere; local processes are checked at once
    return states(cells, results, live=not backend.detached)


def cancel(cells: list[Cell], results: Path) -> list[CellState]:
    """Cancel queued and running jobs of these cells only, and clear the live claims on them (state
    `submitting`, with the claiming controller in `holder`): each becomes `cancelled` (a later `run`
    submits it again) and a controller still submitting it leaves it alone (launch/claim.py). A cell this
    sweep shares with another, whose job was submitted for the other sweep, is left running (a warning says
    so: cancel it from that sweep). Returns their states as they were. A cell recorded under an executor
    this version does not know is a ConfigError, raised before anything is cancelled."""
    sts = states(cells, results)
    for s in sts:
        if s.elsewhere and s.state in ACTIVE:
            log.warning(
                "cell %s (%s) is %s for sweep %s, which shares it: not cancelled (cancel it from that sweep)",
                s.cell.id,
                s.cell.label,
                s.state,
                s.elsewhere,
            )
    mine = [s for s in sts if not s.elsewhere]
    claimed = [s for s in mine if s.state == SUBMITTING]
    # not `stopping` ones (they read cancelled)
    active = [s for s in mine if s.state in ACTIVE and s.state != SUBMITTING and s.job_id]
    backends: dict[str, Backend] = {}
    for s in active:
        if str(s.executor) not in backends:
            status = str(artifacts.CellDir(s.dir).status_path)
            backends[str(s.executor)] = get_backend(str(s.executor), file=status, field="executor")
    for s in active:
        backends[str(s.executor)].cancel(str(s.job_id))
        artifacts.atomic_write_text(s.dir / CANCELLED, f"{time.time()}\n")
        artifacts.CellDir(s.dir).set_status("cancelled", error="cancelled by user")
    for s in claimed:
        artifacts.atomic_write_text(s.dir / CANCELLED, f"{time.time()}\n")
        why = (
            f"cancelled by user (claim by controller {s.holder} cleared)" if s.holder else "cancelled by user"
        )
        artifacts.CellDir(s.dir).set_status("cancelled", error=why, claim=None)
    return [s for s in sts if s in active or s in claimed]


def claim_cells(cells: list[Cell], results: Path) -> None:
    """Write each cell's config.json and a `submitting` claim in its status, naming the sweep it is claimed
    for (call under the submit lock, after link_shared): a second controller, of this sweep or of another
    that shares the cell, sees these cells as active (launch/claim.py)."""
    if not cells:
        return
    who = owner(Path(results) / cells[0].sweep)  # its heartbeat, for controllers on other hosts
    for c in cells:
        d = write_cell_config(c, results)
        artifacts.CellDir(d).set_status(
            SUBMITTING, job_id=None, claim=who, sweep=c.sweep, error=None, durable=False
        )


def plan_and_claim(cells: list[Cell], results: Path, *, retry_failed: bool) -> tuple[Plan, list[CellState]]:
    """Under the results folder's submit lock: link the cells other sweeps already have (link_shared), read
    the states, choose what to submit and claim it, so two `run`s, of one sweep or of two that share cells,
    never both choose a cell. Queued jobs left held by a controller that died before releasing them are
    released here."""
    if not cells:
        return plan_submission(cells, results, retry_failed=retry_failed)
    with submit_lock(results):
        link_shared(cells, results)
        plan, sts = plan_submission(cells, results, retry_failed=retry_failed)
        release_held(sts)
        claim_cells(plan.to_submit, results)
    return plan, sts


def release_held(sts: list[CellState]) -> None:
    """Release queued jobs that were submitted held and never released (see SlurmBackend.submit)."""
    held: dict[str, list[str]] = {}
    for s in sts:
        if s.state == "queued" and s.job_id and s.executor in BACKENDS:
            if artifacts.CellDir(s.dir).status().get("held"):
                held.setdefault(str(s.executor), []).append(str(s.job_id))
    for executor, job_ids in held.items():
        get_backend(executor).release(job_ids)


# ---------------------------------------------------------------------------------------------- signals
#: what detaches a controller: Ctrl-C (the terminal's whole foreground group), a hang-up, `kill`
DETACH_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)


class Detached(KeyboardInterrupt):
    """The controller was told to stop by a signal; its jobs run on. `exit_code`: 128 + the signal."""

    def __init__(self, signum: int):
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(self.name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class _Signals:
    depth = 0  # nested `critical` sections
    held: list[int] = []  # signals received inside them
    ttys: list[int] = []  # stdout / stderr when they were a terminal (detachable)


@contextlib.contextmanager
def detachable() -> Iterator[None]:
    """SIGINT, SIGHUP and SIGTERM raise Detached in this (main) thread while inside; a signal this process
    was started ignoring (nohup, `&` in a script) stays ignored. The handlers before are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    _Signals.ttys = [fd for fd in (1, 2) if _isatty(fd)]

    def handler(signum: int, frame: Any) -> None:
        if signum == signal.SIGHUP:
            _quiet_hung_up(_Signals.ttys)
        if _Signals.depth:
            _Signals.held.append(signum)
            return
        raise Detached(signum)

    old = {s: signal.getsignal(s) for s in DETACH_SIGNALS}
    for s, h in old.items():
        if h is not signal.SIG_IGN:
            signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            if h is not signal.SIG_IGN:
                signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """A job queued and not yet recorded: a detaching signal received inside is raised on leaving, so the
    record is always written (claim.py: a job waits for it)."""
    _Signals.depth += 1
    try:
        yield
    finally:
        _Signals.depth -= 1
    if not _Signals.depth and _Signals.held:
        signum, _Signals.held = _Signals.held[0], []
        if signum == signal.SIGHUP:  # the section may have put the terminal's descriptors back
            _quiet_hung_up(_Signals.ttys)
        raise Detached(signum)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def _quiet_hung_up(ttys: list[int]) -> None:
    """After a hang-up: stdout / stderr on the terminal that is gone (a hung-up terminal is no terminal any
    more, and every write to it fails with EIO) go to /dev/null, so that unwinding (a progress bar drawn one
    last time) and exiting write nothing that fails."""
    gone = [fd for fd in ttys if not _isatty(fd)]
    if not gone:
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for fd in gone:
            os.dup2(devnull, fd)
    finally:
        os.close(devnull)
