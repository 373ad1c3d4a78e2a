"""Time to plan and submit a 1,000-cell sweep as one SLURM array, and to ingest 1,000 finished cells.

Targets (issue 6): submit < 5 s, ingest < 10 s on 2 cores.

    python bench/submit.py [--cells 1000] [--skip-slurm]

The SLURM part needs the test cluster (scripts/slurm/start_slurm.sh; root). The array is cancelled
right after submission: what is measured is planning (load, expand, validate) and submission (cell
folders + one sbatch). The ingest part clones one real finished tiny cell 1,000 times (new ids, so the
rows are distinct) and times a cold ingest, then a warm no-op re-ingest.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SWEEP = """
name: bench{n}
preset: smoke
grid:
  model: [tiny]
  reward: [random]
  seed: {seeds}
settings:
  slurm: {{partition: debug, cpus_per_task: 1, mem_gb: 1, timeout_min: 20, array_parallelism: 2}}
"""


def slurm_up() -> bool:
    conf = os.environ.get("SLURM_CONF", "/tmp/spurisweep-slurm/etc/slurm.conf")
    if not Path(conf).exists() or shutil.which("sinfo") is None:
        return False
    os.environ["SLURM_CONF"] = conf
    return subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0


def bench_submit(n: int, tmp: Path) -> None:
    from spurisweep import grid, launch, spec, training

    sweep_file = tmp / "bench.yaml"
    sweep_file.write_text(SWEEP.format(n=n, seeds=list(range(n))))
    res = tmp / "res_submit"
    t0 = time.perf_counter()
    sweep = spec.load_sweep(sweep_file)
    cells = grid.expand(sweep)
    keys = {}
    for c in cells:
        keys.setdefault(training.validation_key(c.config), c)
    for c in keys.values():
        training.validate(c.config, file=str(sweep_file))
    plan, _ = launch.plan_submission(cells, res, retry_failed=False)
    t_plan = time.perf_counter() - t0
    t1 = time.perf_counter()
    launch.write_manifest(sweep.name, str(sweep_file), cells, res)
    launch.submit(plan.to_submit, res, executor="slurm", wait=False)
    t_submit = time.perf_counter() - t1
    job = launch.read_state(cells[0], res, live=False).job_id
    array = str(job).split("_")[0]
    subprocess.run(["scancel", array], check=False)
    arrays = {str(launch.read_state(c, res, live=False).job_id).split("_")[0] for c in cells}
    print(f"plan   {n} cells: {t_plan:6.2f} s  (load + expand + TRL validation + state of every cell)")
    print(f"submit {n} cells: {t_submit:6.2f} s  (cell folders + {len(arrays)} sbatch; target < 5 s)")
    print(f"plan + submit   : {t_plan + t_submit:6.2f} s")


def bench_ingest(n: int, tmp: Path) -> None:
    from spurisweep import artifacts, store

    res = tmp / "res_ingest"
    sweep_file = tmp / "one.yaml"
    sweep_file.write_text(SWEEP.format(n=1, seeds=[0]).replace("settings:", "settings:\n  train: {steps: 2}"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spurisweep.cli",
            "run",
            str(sweep_file),
            "--executor",
            "debug",
            "--results",
            str(res),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    if proc.returncode:
        raise SystemExit(proc.stdout + proc.stderr)
    (src,) = [p for p in (res / "bench1").iterdir() if (p / "DONE").exists()]
    (res / store.DB_NAME).unlink()
    sys.path.insert(0, str(ROOT / "tests"))
    from test_launch import clone_cell  # the same cloning the concurrency test uses

    many = res / "many"
    ids = [f"c{i:011d}" for i in range(n)]
    for cid in ids:
        clone_cell(src, many, cid)
    artifacts.atomic_write_json(many / "sweep.json", {"sweep": "many", "cells": {c: {} for c in ids}})
    t0 = time.perf_counter()
    counts = store.ingest(res)
    t_cold = time.perf_counter() - t0
    t1 = time.perf_counter()
    store.ingest(res)
    t_warm = time.perf_counter() - t1
    with store.connect(res / store.DB_NAME, read_only=True) as con:
        rows = con.execute("SELECT count(*) FROM samples").fetchone()[0]
        mrows = con.execute("SELECT count(*) FROM metrics").fetchone()[0]
    print(
        f"ingest {counts['cells']} finished cells: {t_cold:6.2f} s  ({rows} sample rows, {mrows} metric rows; "
        f"target < 10 s)"
    )
    print(f"re-ingest (nothing new)     : {t_warm:6.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--skip-slurm", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("SPURISWEEP_CACHE", tempfile.mkdtemp(prefix="spurisweep-cache-"))
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.skip_slurm:
            print("submit: skipped (--skip-slurm)")
        elif not slurm_up():
            print("submit: skipped -- no SLURM cluster (start one: sudo bash scripts/slurm/start_slurm.sh)")
        else:
            bench_submit(args.cells, tmp)
        bench_ingest(args.cells, tmp)


if __name__ == "__main__":
    main()
