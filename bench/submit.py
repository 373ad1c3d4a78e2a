"""Time to plan and submit a 1,000-cell sweep as one SLURM array, to ingest 1,000 finished cells, and to
plan a 20,000-cell sweep.

Targets (issue 6): submit < 5 s, ingest < 10 s on 2 cores. Issue 15: `plan` of 20,000 cells < 10 s and
< 600 MB, and `run --dry-run` about as fast (every per-cell step linear).

    python bench/submit.py [--cells 1000] [--skip-slurm] [--plan-cells 20000] [--only-plan]

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
  resources: {{partition: debug, cpus_per_task: 1, mem_gb: 1, timeout_min: 20, array_parallelism: 2}}
"""


def slurm_up() -> bool:
    conf = os.environ.get("SLURM_CONF", "/tmp/spurisweep-slurm/etc/slurm.conf")
    if not Path(conf).exists() or shutil.which("sinfo") is None:
        return False
    os.environ["SLURM_CONF"] = conf
    return subprocess.run(["sinfo", "-h"], capture_output=True).returncode == 0


def bench_submit(n: int, tmp: Path) -> None:
    from spurisweep import launch
    from spurisweep.plan import grid, grpo, spec

    sweep_file = tmp / "bench.yaml"
    sweep_file.write_text(SWEEP.format(n=n, seeds=list(range(n))))
    res = tmp / "res_submit"
    t0 = time.perf_counter()
    sweep = spec.load_sweep(sweep_file)
    cells = grid.expand(sweep)
    keys = {}
    for c in cells:
        keys.setdefault(grpo.validation_key(c.config), c)
    for c in keys.values():
        grpo.validate(c.config, file=str(sweep_file))
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


BIG = """
name: big
preset: smoke
grid:
  model: [tiny, toy-coder]
  reward: [ground_truth, random, format, python, no_repetition]
  seed: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
  train.learning_rate: {lrs}
"""


def _timed_cli(*args: str) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds and peak RSS (MB) of one `spurisweep` command in a fresh process (the
    CPU time says what the command costs when the machine is shared)."""
    code = (
        "import resource, sys, time\n"
        "from spurisweep import cli\n"
        f"sys.argv = ['spurisweep', *{list(args)!r}]\n"
        "t0 = time.perf_counter()\n"
        "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "dt = time.perf_counter() - t0\n"
        "ru = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print(f'@@ {dt} {ru.ru_maxrss / 1024} {code} {ru.ru_utime + ru.ru_stime}', file=sys.stderr)\n"
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("@@ ")]
    if not line or line[-1].split()[3] != "0":
        raise SystemExit(f"{args} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    _, _, rss, _, cpu = line[-1].split()
    return wall, float(cpu), float(rss), proc.stdout


def bench_plan(n: int, tmp: Path) -> None:
    """`plan` and `run --dry-run` of an n-cell sweep (model x reward x seed x learning rate, tiny models),
    each in a fresh process (wall time includes the interpreter and imports), after one `plan` that fills
    the validation cache; then the per-cell steps timed in this process."""
    import gc

    from spurisweep import launch
    from spurisweep.plan import grid, grpo, spec
    from spurisweep.plan import node as resources

    per = 2 * 5 * 10
    lrs = [round(1e-7 * (i + 1), 12) for i in range(max(1, n // per))]
    sweep_file = tmp / "big.yaml"
    sweep_file.write_text(BIG.format(lrs=lrs))
    res = tmp / "res_plan"
    res.mkdir()
    cells_n = per * len(lrs)
    first, _, _, _ = _timed_cli("plan", str(sweep_file), "--results", str(res))
    print(
        f"plan {cells_n} cells, first time     : {first:6.2f} s  (validates {len(lrs)} training setups with TRL)"
    )
    for cmd in (("plan",), ("run", "--dry-run")):
        wall, cpu, rss, out = _timed_cli(*cmd[:1], str(sweep_file), *cmd[1:], "--results", str(res))
        assert f"{cells_n}" in out
        what = " ".join(cmd)
        print(
            f"{what:<14} {cells_n} cells      : {wall:6.2f} s ({cpu:.2f} s CPU), peak {rss:5.0f} MB  "
            "(target < 10 s, < 600 MB)"
        )
    gc.collect()
    t = time.perf_counter()
    sweep = spec.load_sweep(sweep_file)
    cells = grid.expand(sweep)
    t_expand = time.perf_counter() - t
    t = time.perf_counter()
    grpo.validate_all((c.config for c in cells), file=str(sweep_file), cached=True)
    t_valid = time.perf_counter() - t
    t = time.perf_counter()
    resources.check_cells(cells, file=str(sweep_file))
    t_res = time.perf_counter() - t
    t = time.perf_counter()
    plan, _ = launch.plan_submission(cells, res, retry_failed=False)
    t_states = time.perf_counter() - t
    print(
        f"  in process: load + expand {t_expand:.2f} s, validation (cached) {t_valid:.2f} s, "
        f"memory planner {t_res:.2f} s, cell states {t_states:.2f} s ({len(plan.to_submit)} to submit)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cells", type=int, default=1000)
    ap.add_argument("--skip-slurm", action="store_true")
    ap.add_argument("--plan-cells", type=int, default=20000, help="cells of the planning benchmark")
    ap.add_argument("--only-plan", action="store_true", help="only the planning benchmark")
    args = ap.parse_args()
    os.environ.setdefault("SPURISWEEP_CACHE", tempfile.mkdtemp(prefix="spurisweep-cache-"))
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        bench_plan(args.plan_cells, tmp)
        if args.only_plan:
            return
        if args.skip_slurm:
            print("submit: skipped (--skip-slurm)")
        elif not slurm_up():
            print("submit: skipped -- no SLURM cluster (start one: sudo bash scripts/slurm/start_slurm.sh)")
        else:
            bench_submit(args.cells, tmp)
        bench_ingest(args.cells, tmp)


if __name__ == "__main__":
    main()
