"""Load: N tiny cells (seconds each) through the local executor and through SLURM, end to end.

    python bench/load.py [--cells 100] [--executor local|slurm|both]

Checks and prints: every cell done, every cell ingested exactly once (cells, evals, samples with no
duplicate keys), no lock errors in any job log, and the wall time. SLURM needs the test cluster
(scripts/slurm/start_slurm.sh).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SWEEP = """
name: load_{executor}
preset: smoke
grid:
  model: [tiny]
  reward: [random, ground_truth]
  seed: {seeds}
settings:
  train: {{steps: 1, save_every: 1}}
  eval: {{limit: 2, checkpoints: false}}
  resources: {{partition: debug, cpus_per_task: 1, mem_gb: 2, timeout_min: 30, array_parallelism: 2}}
"""


def run(executor: str, n: int, tmp: Path) -> None:
    from spurisweep import store

    sweep = tmp / f"load_{executor}.yaml"
    sweep.write_text(SWEEP.format(executor=executor, seeds=list(range(n // 2))))
    res = tmp / f"res_{executor}"
    t0 = time.time()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spurisweep.cli",
            "run",
            str(sweep),
            "--executor",
            executor,
            "--results",
            str(res),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.time() - t0
    logs = "".join(
        p.read_text(errors="replace") for p in (res / f"load_{executor}" / "_submitit").glob("*.err")
    )
    lock_errors = sum("lock" in line.lower() and "error" in line.lower() for line in logs.splitlines())
    with store.connect(res / store.DB_NAME, read_only=True) as con:
        cells = con.execute("SELECT count(*) FROM cells").fetchone()[0]
        evals = con.execute("SELECT count(*) FROM evals WHERE NOT is_baseline").fetchone()[0]
        dup = con.execute(
            "SELECT count(*) FROM (SELECT eval_id, problem_id, sample_idx FROM samples "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
    done = sum(1 for _ in (res / f"load_{executor}").glob("*/DONE"))
    print(
        f"{executor:5s}: {n} cells in {wall:6.1f} s ({wall / n:.1f} s/cell on {os.cpu_count()} cores); "
        f"done {done}/{n}, ingested {cells} cells / {evals} evals, duplicate sample rows {dup}, "
        f"lock errors in job logs {lock_errors}, exit code {proc.returncode}"
    )
    if proc.returncode:
        print(proc.stdout[-2000:], proc.stderr[-2000:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=100)
    ap.add_argument("--executor", default="both", choices=["local", "slurm", "both"])
    args = ap.parse_args()
    os.environ.setdefault("SPURISWEEP_CACHE", tempfile.mkdtemp(prefix="spurisweep-cache-"))
    with tempfile.TemporaryDirectory() as d:
        for ex in ["local", "slurm"] if args.executor == "both" else [args.executor]:
            if (
                ex == "slurm"
                and not Path(os.environ.get("SLURM_CONF", "/tmp/spurisweep-slurm/etc/slurm.conf")).exists()
            ):
                print(
                    "slurm: skipped -- no SLURM cluster (start one: sudo bash scripts/slurm/start_slurm.sh)"
                )
                continue
            os.environ.setdefault("SLURM_CONF", "/tmp/spurisweep-slurm/etc/slurm.conf")
            run(ex, args.cells, Path(d))


if __name__ == "__main__":
    main()
