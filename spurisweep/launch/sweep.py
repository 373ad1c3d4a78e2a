"""`spurisweep run` as functions: the checks made before anything is claimed (`prepare`), what a dry run
shows (`preview`), and the run itself (`run_sweep`: claim, submit, ingest). They return values and report
progress through callbacks; the command renders them (cli/sweep.py) and prints nothing of its own logic.

TRL's rules are checked only for the cells a run would submit now, so a run of a finished sweep never
imports TRL (nor torch): `prepare` reads the cell states once, and what it finds to submit is what it
validates. The store, the planner and the hub check are imported inside the functions: a job imports this
package, and the job side never imports the store (ARCHITECTURE.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .. import artifacts
from .claim import SUBMITTING
from .state import CellState, Plan, pending_labels, plan_submission, states
from .submission import plan_and_claim, submit, write_manifest

if TYPE_CHECKING:
    from ..plan.grid import Cell
    from .backend import Backend
    from .labeljob import LabelTask

#: executors whose jobs run on this machine: what their cells download must be reachable from here (a
#: cluster's nodes may see what the login node does not)
RUNS_HERE = ("local", "debug")

OnStates = Callable[[list[CellState]], None]


@dataclass(frozen=True)
class Prepared:
    """A sweep checked for a run through `backend`: what it would submit now (`plan`, read without the
    submit lock, nothing claimed) and every cell's state as read then. Those cells passed TRL's rules."""

    name: str
    file: Path
    cells: list[Cell]
    results: Path
    backend: Backend
    retry_failed: bool
    plan: Plan
    states: list[CellState]

    @property
    def validated(self) -> set[str]:
        """The ids of the cells whose TRL setups `prepare` checked."""
        return {c.id for c in self.plan.to_submit}


@dataclass(frozen=True)
class Preview:
    """What `run --dry-run` shows: the cells a run would submit with their states, the label jobs that
    would go out first, and the backend's words for how."""

    plan: Plan
    states: list[CellState]  # of the cells to submit, in sweep order
    labels: list[LabelTask]
    lines: list[str]  # Backend.describe


@dataclass(frozen=True)
class Outcome:
    """A run's end: the plan it claimed, every cell's state after submitting (after following the jobs, with
    `wait`), and what was ingested into the store at `database`."""

    plan: Plan
    states: list[CellState]
    ingested: dict[str, int]
    database: Path

    @property
    def bad(self) -> list[CellState]:
        """Cells that failed or were killed (the command exits 1)."""
        return [s for s in self.states if s.state in ("failed", "killed")]

    @property
    def claimed_elsewhere(self) -> list[CellState]:
        """Cells another live `run` claimed, which it submits."""
        return [s for s in self.states if s.state == SUBMITTING]


def prepare(
    name: str,
    sweep_file: Path,
    cells: list[Cell],
    results: Path,
    *,
    backend: Backend,
    retry_failed: bool = False,
    dry_run: bool = False,
) -> Prepared:
    """Every check before anything is claimed or queued, each a ConfigError naming the file: the executor
    can run the cells (e.g. several nodes on an executor of this machine only), their node shape and GPU
    memory, and, for the cells this run would submit only, TRL's cross-field rules and (for an executor of
    this machine) that their hub models, training sets and benchmarks are here or reachable. A dry run
    previews as `plan` does: setups this installation validated before are not validated again (a real run
    validates every one afresh)."""
    from ..plan import node as resources

    backend.check(cells, file=str(sweep_file))
    resources.check_cells(cells, file=str(sweep_file))
    plan, sts = plan_submission(cells, results, retry_failed=retry_failed)
    if plan.to_submit and backend.name in RUNS_HERE:
        check_reachable(plan.to_submit, sweep_file)
    if plan.to_submit:
        validate(plan.to_submit, sweep_file, cached=dry_run)
    return Prepared(name, Path(sweep_file), cells, Path(results), backend, retry_failed, plan, sts)


def preview(ready: Prepared) -> Preview:
    """What a run would submit, claiming and queueing nothing."""
    chosen = {c.id for c in ready.plan.to_submit}
    labels = pending_labels(ready.plan.to_submit, ready.results, ready.backend)
    return Preview(
        ready.plan,
        [s for s in ready.states if s.cell.id in chosen],
        labels,
        ready.backend.describe(ready.plan.to_submit, labels),
    )


def run_sweep(
    ready: Prepared,
    *,
    max_parallel: int | None = None,
    wait: bool = True,
    on_claimed: Callable[[Plan], None] | None = None,
    on_update: OnStates | None = None,
    on_submitted: OnStates | None = None,
) -> Outcome:
    """Claim the cells to submit under the results folder's submit lock (a second `run` leaves them alone),
    validate those freed since `prepare` looked, write the sweep's manifest, submit them through the
    backend (following them with `wait`), then ingest what the cells wrote. Callbacks: `on_claimed(plan)`
    once the cells are claimed and the manifest written (before submitting; also when there is nothing to
    submit), `on_update(states)` while they run, `on_submitted(states)` when the backend returns (not
    called when nothing was submitted)."""
    plan, _ = plan_and_claim(ready.cells, ready.results, retry_failed=ready.retry_failed)
    validated = ready.validated
    late = [c for c in plan.to_submit if c.id not in validated]  # freed since prepare's look
    if late:
        validate(late, ready.file, cached=True)
    write_manifest(ready.name, str(ready.file.resolve()), ready.cells, ready.results)
    if on_claimed:
        on_claimed(plan)
    if plan.to_submit:
        after = submit(
            plan.to_submit,
            ready.results,
            executor=ready.backend.name,
            max_parallel=max_parallel,
            on_update=on_update,
            wait=wait,
            claimed=True,
        )
        if on_submitted:
            on_submitted(after)
    from .. import store

    counts = store.ingest(ready.results)
    return Outcome(plan, states(ready.cells, ready.results), counts, store.db_path(ready.results))


def unstarted_claims(cells: list[Cell], results: Path) -> list[CellState]:
    """Cells this process claimed and had not started (--max-parallel, labels first): a controller that
    detaches leaves them pending, and a later `run` submits them."""
    return [
        s
        for s in states(cells, results, live=False)
        if s.state == SUBMITTING
        and (artifacts.CellDir(s.dir).status().get("claim") or {}).get("pid") == os.getpid()
    ]


def check_reachable(cells: list[Cell], sweep_file: Path) -> None:
    """Cells of a run on this machine must find their hub models, training sets and benchmarks here or on
    the hub: offline, one ConfigError naming each missing one before anything is claimed (not a failed job
    per cell after the libraries' retries)."""
    from ..errors import ConfigError, DataError
    from ..evaluation import reach
    from ..models import families

    models, sets, benches = [], [], []
    for c in cells:
        cfg = c.config
        models.append(families.model_source(cfg.model, cfg.model_path, build=False))  # None: built here
        if cfg.data.train.startswith("benchmark:"):
            benches.append((cfg.data.train.split(":", 1)[1], None))
        else:
            sets.append(cfg.data.train)
        for b in cfg.eval.benchmarks:
            over = cfg.eval.protocols.get(b)
            benches.append((b, getattr(over, "path", None)))
    try:
        reach.check(
            models=dict.fromkeys(models), benchmarks=dict.fromkeys(benches), datasets=dict.fromkeys(sets)
        )
    except DataError as exc:
        raise ConfigError(f"{exc} (the cells run on this machine)", file=str(sweep_file)) from None


def validate(cells: list[Cell], sweep_file: Path, *, cached: bool) -> None:
    """The libraries' versions and TRL's cross-field rules for these cells' training setups (imports TRL:
    call it only for cells that will be submitted). `cached`: setups validated before are not again."""
    from .. import versions
    from ..plan import grpo

    versions.check()  # a library outside the tested set: refused before anything is queued
    grpo.validate_all(cells, file=str(sweep_file), cached=cached)
