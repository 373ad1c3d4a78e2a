"""One task of a 2-task SLURM job, run the way srun runs it: submitit's own entry point (process_job: its
signal handlers, its checkpoint-and-requeue) on a pickled CellJob, with SLURM's per-task variables set by
tests/launch/test_job.py. Two things are stood in for: `scontrol requeue` (SlurmJobEnvironment._requeue
writes the file $REQUEUE_MARKER instead) and the cell's training (training.cell.run_cell), which is a real gloo
process group doing the following:

    rank 0  enters a barrier, where it sits when the test sends USR2 to both tasks
    rank 1  waits for the file `go` in the cell folder (created by the test after the signal), then joins
            the barrier, and goes on to a second collective, which breaks once rank 0 has left

    python -m tests.requeue_worker SUBMITIT_FOLDER
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any


def fake_run_cell(cell_root: Path, results: Path) -> dict[str, Any]:
    import torch.distributed as dist

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank = dist.get_rank()
    root = Path(cell_root)
    (root / f"in-{rank}").touch()
    if rank == 0:
        dist.barrier()  # the signal arrives here; its handler runs once the barrier returns
        (root / "rank0-after-barrier").touch()  # not reached: the handler requeues and exits first
        return {"finished": True}
    while not (root / "go").exists():
        time.sleep(0.05)
    dist.barrier()
    (root / "rank1-after-barrier").touch()
    time.sleep(1)
    dist.barrier()  # rank 0 has exited: the group is broken (SLURM would have killed this task by now)
    return {"finished": True}


def record_requeue(self: Any, countdown: int) -> None:
    Path(os.environ["REQUEUE_MARKER"]).write_text(f"{self.job_id} {countdown}")


def main(folder: str) -> None:
    import types

    from submitit.core.submission import process_job
    from submitit.slurm.slurm import SlurmJobEnvironment

    # CellJob._run imports run_cell from spurisweep.training.cell when it runs; this stands in for that
    # module (the real one loads torch and TRL, which this worker does not need)
    sys.modules["spurisweep.training.cell"] = types.SimpleNamespace(run_cell=fake_run_cell)  # type: ignore[assignment]
    SlurmJobEnvironment._requeue = record_requeue  # type: ignore[method-assign]
    process_job(folder)


if __name__ == "__main__":
    main(sys.argv[1])
