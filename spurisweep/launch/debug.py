"""The debug backend: cells run one after another in this process (submitit's debug executor), for
stepping through with pdb; label jobs first, each before the cells that train on its labels."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import submitit

from .. import artifacts
from .backend import Backend, Progress, check_one_machine
from .job import CellJob, LabelJob
from .labeljob import LabelTask, failure, write_record
from .state import cell_dir

if TYPE_CHECKING:
    from ..plan.grid import Cell

log = logging.getLogger(__name__)


class DebugBackend(Backend):
    name = "debug"

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
        ex = submitit.AutoExecutor(folder=folder, cluster="debug")
        after = {c.id: t for t in labels for c in t.cells}
        for t in labels:
            write_record(t.path, state="queued", executor=self.name, job_id=None, error=None)
            try:
                ex.submit(LabelJob(), str(results), t.spec_dict()).result()
            except Exception as exc:
                log.info("label job for %s failed: %s", t.name, exc)
        for c in cells:
            d = cell_dir(results, sweep, c.id)
            if c.id in after and not after[c.id].made():
                artifacts.CellDir(d).set_status(
                    "failed", executor=self.name, job_id=None, error=failure(after[c.id])
                )
                progress(False)
                continue
            artifacts.CellDir(d).set_status("queued", executor=self.name, job_id=None, error=None)
            job = ex.submit(CellJob(), str(d), str(results))
            try:
                job.result()
            except Exception as exc:
                log.info("cell %s failed: %s", c.id, exc)
            progress(False)

    def alive(self, job_ids: list[str]) -> dict[str, tuple[bool, str]]:
        # no scheduler keeps debug jobs: one still marked active had its `run` interrupted
        return {j: (False, f"debug job {j} is not running") for j in job_ids}

    def cancel(self, job_id: str) -> None:
        pass  # nothing outlives the process that ran it

    def check(self, cells: list[Cell], file: str | None = None) -> None:
        check_one_machine(cells, self.name, file)
