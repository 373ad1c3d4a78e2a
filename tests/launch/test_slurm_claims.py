"""One run per cell on a real SLURM cluster (tests/slurm_cluster.py starts one; issue 15, point 1): two
`spurisweep run --executor slurm` of one sweep started together, and a controller killed between sbatch
and recording the jobs. Every cell is trained by exactly one job, counted from the jobs' own records (the
cell's attempts.jsonl, one line per start of training). Real sbatch/sacct/scontrol, real submitit, real
training of the tiny model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import launch
from spurisweep.launch import claim
from spurisweep.plan import grid, spec
from tests.claimhelpers import trained_once, wait_for

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]

SWEEP = """
name: {name}
preset: smoke
grid:
  model: [tiny]
  reward: [ground_truth, random]
  seed: [0, 1]
settings:
  train: {{steps: 2}}
  eval: {{limit: 4}}
  resources: {{partition: debug, cpus_per_task: 1, mem_gb: 3, timeout_min: 20}}
"""


def popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [*EXE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_two_slurm_runs_started_together_train_every_cell_once(slurm_cluster, tmp_path):
    sweep = tmp_path / "both.yaml"
    sweep.write_text(SWEEP.format(name="both"))
    res = tmp_path / "res"
    procs = [popen("run", str(sweep), "--executor", "slurm", "--results", str(res)) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, errs) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + errs
    cells = grid.expand(spec.load_sweep(sweep))
    wait_for(lambda: all((res / "both" / c.id / "DONE").exists() for c in cells), 600, "every cell")
    trained_once(res, "both", cells)
    submitted = [int(o.split("submitting ")[1].split()[0]) for o, _ in outs if "submitting " in o]
    assert sum(submitted) == len(cells), [o for o, _ in outs]


def test_a_slurm_controller_killed_between_sbatch_and_record_never_leads_to_double_training(
    slurm_cluster, tmp_path
):
    sweep = tmp_path / "crash.yaml"
    sweep.write_text(SWEEP.format(name="crash"))
    res = tmp_path / "res"
    crashed = popen(
        "run", str(sweep), "--executor", "slurm", "--results", str(res), env={claim.CRASH_AFTER_SUBMIT: "1"}
    )
    out, errs = crashed.communicate(timeout=300)
    assert crashed.returncode == 1, out + errs
    squeue = slurm_cluster.run("squeue", "-h", "-n", "spurisweep-crash", "-o", "%i %T %r", check=False)
    orphans = [ln for ln in squeue.splitlines() if ln.strip()]
    assert orphans and all("PENDING" in ln and "Held" in ln for ln in orphans), orphans  # cannot start
    orphan_arrays = {ln.split()[0].split("_")[0] for ln in orphans}
    cells = grid.expand(spec.load_sweep(sweep))
    assert [s.state for s in launch.states(cells, res)] == ["pending"] * 4  # nothing runs, nothing recorded

    again = popen("run", str(sweep), "--executor", "slurm", "--results", str(res))
    out, errs = again.communicate(timeout=900)
    assert again.returncode == 0, out + errs
    assert "4 cells: 4 done" in out, out
    trained_once(res, "crash", cells)
    for c in cells:  # the orphan array never started: no job of it touched a cell
        assert claim.attempts(res / "crash" / c.id)[0]["job_id"].split("_")[0] not in orphan_arrays
    slurm_cluster.cancel_all()
