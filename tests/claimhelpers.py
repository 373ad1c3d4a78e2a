"""Checks shared by the one-run-per-cell tests (local and SLURM): each cell trained by exactly one job."""

from __future__ import annotations

import json
import time
from pathlib import Path

from spurisweep.launch import claim


def wait_for(pred, timeout: float, what: str) -> None:
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)


def trained_once(results: Path, sweep: str, cells) -> None:
    """Every cell finished, and its attempts log holds exactly one start of training, by the job whose id
    and pid its status names."""
    for c in cells:
        d = results / sweep / c.id
        assert (d / "DONE").exists(), d
        rows = claim.attempts(d)
        assert len(rows) == 1, (c.label, rows)
        st = json.loads((d / "status.json").read_text())
        assert (st["job_id"], st["pid"]) == (rows[0]["job_id"], rows[0]["pid"]), (st, rows)
