"""One run per cell (issue 15, point 1) and one bad file never blocks the rest (point 4, launch side).

Every cell must be trained by exactly one job, counted from the jobs' own records (each start of training
appends one line, job id and pid, to the cell's attempts.jsonl under the cell's running lock), not from the
database: two `spurisweep run` of one sweep started together, and a controller killed between queueing a
job and recording it. Real CLI in subprocesses, real submitit local jobs, TRL on the tiny model; the
SLURM variants are in tests/launch/test_slurm_claims.py. Damaged files are real bytes written into a real results
folder (the smoke sweep)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from filelock import FileLock

from spurisweep import artifacts, launch
from spurisweep.launch import claim
from spurisweep.plan import grid, spec
from tests.claimhelpers import trained_once, wait_for
from tests.storebuilder import run_cli

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]

FOUR = """
name: twice
preset: smoke
grid:
  model: [tiny]
  reward: [ground_truth, random]
  seed: [0, 1]
settings:
  train: {steps: 2}
  eval: {limit: 4}
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


@pytest.mark.slow
def test_two_runs_started_together_train_every_cell_once(tmp_path):
    sweep = tmp_path / "twice.yaml"
    sweep.write_text(FOUR)
    res = tmp_path / "res"
    procs = [popen("run", str(sweep), "--results", str(res), "--max-parallel", "2") for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, errs) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + errs
    cells = grid.expand(spec.load_sweep(sweep))
    # the second `run` may end while cells the first claimed still run: they finish on their own
    wait_for(lambda: all((res / "twice" / c.id / "DONE").exists() for c in cells), 600, "every cell")
    trained_once(res, "twice", cells)
    # between them the two controllers submitted each cell once: one of them says it skipped the rest
    submitted = [int(o.split("submitting ")[1].split()[0]) for o, _ in outs if "submitting " in o]
    assert sum(submitted) == len(cells), [o for o, _ in outs]


@pytest.mark.slow
def test_a_controller_killed_between_submit_and_record_never_leads_to_double_training(tmp_path):
    sweep = tmp_path / "twice.yaml"
    sweep.write_text(FOUR)
    res = tmp_path / "res"
    crashed = popen("run", str(sweep), "--results", str(res), env={claim.CRASH_AFTER_SUBMIT: "1"})
    out, errs = crashed.communicate(timeout=300)
    assert crashed.returncode == 1, out + errs
    cells = grid.expand(spec.load_sweep(sweep))
    # its first job runs on, unrecorded: the cell reads running (never pending), the rest pending again
    first = res / "twice" / cells[0].id
    wait_for(lambda: claim.job_running(first) or (first / "DONE").exists(), 120, "the orphan job to start")
    sts = launch.states(cells, res)
    assert sts[0].state in ("running", "done"), sts[0]
    assert [s.state for s in sts[1:]] == ["pending"] * 3, [(s.state, s.error) for s in sts]
    dry = run_cli("run", str(sweep), "--results", str(res), "--dry-run")
    assert "would submit 3 of 4" in dry.stdout, dry.stdout

    again = popen("run", str(sweep), "--results", str(res), "--max-parallel", "2")
    out, errs = again.communicate(timeout=900)
    assert again.returncode == 0, out + errs
    wait_for(lambda: (first / "DONE").exists(), 600, "the orphan job to finish")
    trained_once(res, "twice", cells)


def test_a_job_finding_its_cell_held_by_a_live_job_leaves_its_files_alone(tmp_path, monkeypatch):
    """CellJob called in this process (rank 0, no scheduler) while the test holds the cell's running lock,
    as another live job would."""
    sweep = tmp_path / "twice.yaml"
    sweep.write_text(FOUR)
    res = tmp_path / "res"
    (cell,) = grid.expand(spec.load_sweep(sweep))[:1]
    d = launch.write_cell_config(cell, res)
    artifacts.CellDir(d).set_status("running", job_id="other", pid=1)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    monkeypatch.setattr(claim, "JOB_LOCK_TIMEOUT_S", 0.2)
    other = FileLock(str(artifacts.CellDir(d).running_lock_path))
    with other:
        assert claim.job_running(d)
        out = launch.CellJob()(str(d), str(res))
    assert "skipped" in out
    after = {p.name: p.read_bytes() for p in d.iterdir() if p.name != ".running.lock"}
    assert after == {k: v for k, v in before.items() if k != ".running.lock"}
    assert not claim.job_running(d)


def test_claims_of_dead_and_live_controllers(tmp_path):
    sweep = tmp_path / "twice.yaml"
    sweep.write_text(FOUR)
    res = tmp_path / "res"
    cells = grid.expand(spec.load_sweep(sweep))
    plan, _ = launch.plan_and_claim(cells, res, retry_failed=False)
    assert len(plan.to_submit) == 4
    # claimed by this (live) process: a second controller submits nothing
    again, sts = launch.plan_and_claim(cells, res, retry_failed=False)
    assert again.to_submit == [] and {s.state for s in sts} == {"submitting"}
    # a claim whose controller died: pending again, unless a job holds the cell's running lock
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    for c in cells:
        cd = artifacts.CellDir(res / "twice" / c.id)
        cd.set_status("submitting", claim={**cd.status()["claim"], "pid": int(dead.stdout)})
    with FileLock(str(artifacts.CellDir(res / "twice" / cells[0].id).running_lock_path)):
        sts = launch.states(cells, res)
    assert [s.state for s in sts] == ["running", "pending", "pending", "pending"]


def test_a_cancelled_cell_whose_job_is_still_stopping_is_neither_cancelled_again_nor_resubmitted(tmp_path):
    """After `cancel`, SLURM sends SIGTERM and kills only after KillWait: meanwhile the job still holds the
    cell's running lock (held here by the test). The cell reads `cancelled` (stopping), a second `cancel`
    does not count it, and `run` waits for it instead of queueing a job that would find the lock held."""
    sweep = tmp_path / "twice.yaml"
    sweep.write_text(FOUR)
    res = tmp_path / "res"
    cells = grid.expand(spec.load_sweep(sweep))
    for c in cells:
        artifacts.CellDir(launch.write_cell_config(c, res)).set_status("queued", job_id="1", executor="debug")
    stopping = cells[0]
    d = res / "twice" / stopping.id
    (d / launch.CANCELLED).write_text("0\n")
    artifacts.CellDir(d).set_status("cancelled", error="cancelled by user")
    with FileLock(str(artifacts.CellDir(d).running_lock_path)):
        sts = launch.states(cells, res, live=False) + launch.states([stopping], res)[:1]
        assert sts[-1].state == "cancelled" and sts[-1].stopping and "still stopping" in str(sts[-1].error)
        plan, _ = launch.plan_submission(cells, res, retry_failed=False)
        assert stopping not in plan.to_submit and plan.skipped.get("stopping") == [stopping]
        assert launch.cancel([stopping], res) == []
    plan, _ = launch.plan_submission([stopping], res, retry_failed=False)
    assert plan.to_submit == [stopping]  # its job has ended: submitted again


def test_one_bad_file_never_blocks_the_commands_over_the_other_cells(smoke_results, tmp_path):
    """Stray bytes in DONE, config.json, status.json and metrics.jsonl, a cut-off metrics line and a missing
    sample file: plan, status, run --dry-run, cancel and report name the file, go on, and show the cell
    as incomplete."""
    res = tmp_path / "results"
    shutil.copytree(smoke_results, res)
    cells = sorted(p for p in (res / "smoke").iterdir() if (p / "DONE").exists())
    assert len(cells) == 4
    (cells[0] / "DONE").write_bytes(b"\xff\xfe\x00garbage")
    (cells[1] / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    (cells[2] / "status.json").write_bytes(b"\x80\x81 not json")
    metrics = cells[2] / "metrics.jsonl"
    metrics.write_bytes(metrics.read_bytes() + b'{"step": 9, "loss": 0.')
    samples = sorted((cells[3] / "evals").glob("*.jsonl"))[0]
    samples.unlink()
    sweep = str(ROOT / "sweeps" / "smoke.yaml")
    for args in (
        ("plan", sweep),
        ("status", sweep),
        ("run", sweep, "--dry-run"),
        ("cancel", sweep),
        ("report", "--sweep", "smoke", "--format", "csv"),
    ):
        proc = run_cli(*args, "--results", str(res), check=False)
        assert proc.returncode == 0, (args, proc.stdout + proc.stderr)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        if args[0] in ("status", "report"):
            for named in (cells[0] / "DONE", cells[1] / "config.json", metrics, samples):
                assert str(named) in proc.stderr, (args, named, proc.stderr)
    status = run_cli("status", sweep, "--results", str(res))
    assert str(cells[2] / "status.json") in status.stderr
    assert "4 done; 4 incomplete" in status.stdout, status.stdout
    flat = _flat(status.stdout)
    for what in (
        "DONE damaged",
        "config.json damaged",
        "metrics.jsonl: 1 damaged",
        f"{samples.name} missing",
    ):
        assert _flat(what) in flat, (what, status.stdout)
    report = run_cli("report", "--sweep", "smoke", "--format", "csv", "--results", str(res))
    assert report.stderr.count("incomplete") >= 4, report.stderr


def _flat(text: str) -> str:
    """Text without whitespace or table rules: a rich table's detail column folds long text over lines."""
    return "".join(text.split()).replace("│", "")


def test_a_run_with_nothing_to_submit_never_imports_trl(smoke_results, tmp_path):
    """TRL's rules are checked for the cells a run will submit: a run of a finished sweep loads no TRL
    (nor torch), which is what made such a run take seconds."""
    res = tmp_path / "res"
    shutil.copytree(smoke_results, res)
    code = (
        "import sys\n"
        "from spurisweep.cli import main\n"
        f"sys.argv = ['spurisweep', 'run', {str(ROOT / 'sweeps' / 'smoke.yaml')!r}, '--results', {str(res)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
        "print('EXIT', code, 'trl' in sys.modules, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert "nothing to submit (4 done)" in proc.stdout, proc.stdout + proc.stderr
    assert "EXIT 0 False False" in proc.stdout, proc.stdout
