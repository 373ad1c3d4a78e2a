"""The one interface every executor implements, and the one registry that lists them.

A backend is what `run --executor NAME` submits through: it queues cells as jobs running
`CellJob(cell_dir)`, after the label jobs (`LabelJob`) of the labels they train on, tells whether the jobs it queued are still alive, cancels one, and describes what
it would submit (for `run --dry-run`). Nothing outside a Backend subclass branches on an executor's
name: code that needs executor-specific behaviour asks `get_backend(name)` and calls a method.

Adding an executor: one module with a Backend subclass, and one line in BACKENDS.
"""

from __future__ import annotations

import abc
import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..plan.grid import Cell
    from .labeljob import LabelTask

#: executor name -> "module:class". Named rather than imported, as the family registry names its builders:
#: the backends read cell states, which ask this registry whether jobs are alive, so importing them here
#: would make a circle; and a job loads only the backend it runs under.
BACKENDS: dict[str, str] = {
    "local": "spurisweep.launch.local:LocalBackend",
    "debug": "spurisweep.launch.debug:DebugBackend",
    "slurm": "spurisweep.launch.slurm:SlurmBackend",
}

#: called by a backend whose `submit` blocks, whenever cell states may have changed; the argument says
#: whether to ask the scheduler (live) or read the cell folders only
Progress = Callable[[bool], None]


class Backend(abc.ABC):
    """One executor. Subclasses set `name` (the key in BACKENDS, recorded in each cell's status.json)."""

    name: ClassVar[str]
    #: jobs run on after `submit` returns: a caller that waits follows them through the cell states
    detached: ClassVar[bool] = False
    #: address of rank 0 for data-parallel jobs, when the scheduler's own (the node name) will not do
    master_addr: ClassVar[str | None] = None

    @abc.abstractmethod
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
        """Queue the cells (their config.json already written), each as one job of `CellJob`, and record
        `queued` with the job id and this executor's name in each cell's status. `folder` holds
        submitit's files. Each of `labels` is first sent out as one `LabelJob` (unless it names a job
        still running) on the resources of one of its cells; its cells start only once it has made the
        labels, and a cell whose label job failed does not start (it is recorded failed, or on a
        scheduler its job is cancelled)."""

    @abc.abstractmethod
    def alive(self, job_ids: list[str]) -> dict[str, tuple[bool, str]]:
        """For each job id: whether the scheduler still has the job; if not, a one-line reason."""

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop one job (queued or running) of this backend."""

    def describe(self, cells: list[Cell], labels: Sequence[LabelTask] = ()) -> list[str]:
        """Lines saying how `submit` would send these cells out (for `run --dry-run`)."""
        return [
            f"label job for labels {t.name} first, then its {len(t.cells)} cell(s)"
            + (f" (label job {t.job_id} already queued)" if t.job_id else "")
            for t in labels
        ]

    def check(self, cells: list[Cell], file: str | None = None) -> None:
        """A ConfigError naming the cell and field for a cell this executor cannot run (before anything
        is submitted); none by default."""
        return None

    def release(self, job_ids: list[str]) -> None:
        """Let jobs that were queued held start (see launch/claim.py); nothing to do by default."""
        return None


def get_backend(name: str, *, file: str | None = None, field: str | None = None) -> Backend:
    """The backend called `name`; an unknown name is a ConfigError listing the valid ones."""
    target = BACKENDS.get(str(name))
    if target is None:
        raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(BACKENDS)}", file=file, field=field)
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)()


def check_one_machine(cells: list[Cell], executor: str, file: str | None = None) -> None:
    """Executors that run every job on this machine cannot give a cell several nodes."""
    for c in cells:
        if c.config.resources.nodes > 1:
            raise ConfigError(
                f"cell {c.id} ({c.label}) asks for {c.config.resources.nodes} nodes; the {executor} executor "
                "runs on this machine only (several nodes need --executor slurm)",
                file=file,
                field="resources.nodes",
            )
