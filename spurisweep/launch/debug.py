"""The debug backend: cells run one after another in this process (submitit's debug executor), for
stepping through with pdb."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import submitit

from .. import artifacts
from .backend import Backend, Progress
from .job import CellJob
from .state import cell_dir

if TYPE_CHECKING:
    from ..grid import Cell

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
    ) -> None:
        sweep = cells[0].sweep
        ex = submitit.AutoExecutor(folder=folder, cluster="debug")
        for c in cells:
            d = cell_dir(results, sweep, c.id)
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
