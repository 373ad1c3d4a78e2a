"""spurisweep on a real SLURM cluster (tests/slurm_cluster.py starts one): a sweep goes out as one job
array through the CLI, a simulated preemption requeues a cell that resumes from its checkpoint, and
`cancel` stops this sweep's jobs only. Real sbatch/sacct/scancel, real submitit, real training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spurisweep import launch
from spurisweep.plan import grid, spec

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]

SWEEP = """
name: {name}
preset: smoke
grid:
  model: [tiny]
  reward: [ground_truth, random]
  seed: {seeds}
settings:
  train: {{steps: {steps}, save_every: {save_every}}}
  eval: {{limit: {limit}}}
  resources: {{partition: debug, cpus_per_task: 1, mem_gb: 3, timeout_min: 20}}
"""


def write(tmp_path: Path, name: str, *, seeds="[0]", steps=4, save_every=2, limit=8) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(SWEEP.format(name=name, seeds=seeds, steps=steps, save_every=save_every, limit=limit))
    return p


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*EXE, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=dict(os.environ)
    )


#: how long a test waits for a job's progress before it gives up: a hung job fails the test, a slow (loaded)
#: machine only makes it take longer; run 2 of this suite on a loaded 2-core machine needed more than 300 s
#: for a 2-task cell's first checkpoint
PATIENCE_S = 900


def wait_for(pred, timeout: float, what: str, poll: float = 0.5, logs: Path | None = None) -> None:
    """Poll `pred` until it holds; on timeout, fail with the tails of the job logs under `logs`."""
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            tails = (
                "".join(
                    f"\n--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:])
                    for p in sorted(logs.glob("*_log.*"))[-4:]
                )
                if logs is not None
                else ""
            )
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tails}")
        time.sleep(poll)


def job_ids(results: Path, sweep: str) -> dict[str, str]:
    out = {}
    for st in (results / sweep).glob("*/status.json"):
        out[st.parent.name] = json.loads(st.read_text()).get("job_id")
    return out


def test_sweep_goes_out_as_one_array_and_is_ingested(slurm_cluster, tmp_path):
    sweep = write(tmp_path, "arr", seeds="[0, 1]")
    res = tmp_path / "res"
    dry = cli("run", str(sweep), "--executor", "slurm", "--dry-run", "--results", str(res))
    assert dry.returncode == 0 and "sbatch array of 4 cells" in dry.stdout and "slurm_partition" in dry.stdout
    assert not (res / "arr").exists() or not list((res / "arr").glob("*/config.json"))

    proc = cli("run", str(sweep), "--executor", "slurm", "--results", str(res))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 cells: 4 done" in proc.stdout
    ids = job_ids(res, "arr")
    arrays = {j.split("_")[0] for j in ids.values()}
    assert len(ids) == 4 and len(arrays) == 1, ids  # one sbatch for the whole sweep
    (array,) = arrays
    slurm_cluster.wait_state(array + "_0", "COMPLETED", timeout=60)  # DONE comes just before the job's end

    import duckdb

    con = duckdb.connect(str(res / "spurisweep.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 4
    finally:
        con.close()
    again = cli("run", str(sweep), "--executor", "slurm", "--results", str(res))
    assert again.returncode == 0 and "nothing to submit (4 done)" in again.stdout


def test_preempted_cell_is_requeued_and_resumes_from_its_checkpoint(slurm_cluster, tmp_path):
    sweep = write(tmp_path, "pre", steps=40, save_every=4, limit=16)
    res = tmp_path / "res"
    cells = grid.expand(spec.load_sweep(sweep))
    target = cells[0]
    # submit just one of the two cells, through the library, without waiting
    launch.write_manifest("pre", str(sweep), cells, res)
    launch.submit([target], res, executor="slurm", wait=False)
    cdir = res / "pre" / target.id
    wait_for(
        lambda: any((c / "COMPLETE").exists() for c in (cdir / "checkpoints").glob("checkpoint-*")),
        PATIENCE_S,
        "a first checkpoint",
        logs=cdir.parent / "_submitit",
    )
    job = json.loads((cdir / "status.json").read_text())["job_id"]
    assert not (cdir / "DONE").exists(), "the cell finished before it could be preempted"
    slurm_cluster.preempt(job)  # USR2, as SLURM sends before preemption / the time limit
    wait_for(
        lambda: (cdir / "DONE").exists(),
        PATIENCE_S,
        "the requeued cell to finish",
        logs=cdir.parent / "_submitit",
    )
    st = json.loads((cdir / "status.json").read_text())
    assert st["requeues"] == 1 and st["attempts"] == 2
    assert not list(cdir.glob("error*.txt"))  # the exit after the requeue was not recorded as a failure
    done = json.loads((cdir / "DONE").read_text())
    assert len(done["resumed_from"]) == 1 and done["resumed_from"][0].startswith("checkpoint-")
    assert "REQUEUED" in slurm_cluster.sacct_history(job)
    # every evaluation once, and one metrics row per update: nothing repeated by the second attempt
    steps = sorted(json.loads(p.read_text())["step"] for p in (cdir / "evals").glob("*.json"))
    assert steps == list(range(4, 41, 4))
    updates = [json.loads(x)["update"] for x in (cdir / "metrics.jsonl").read_text().splitlines()]
    assert updates == sorted(set(updates)) and len(updates) == done["updates"]
    status = cli("status", str(sweep), "--results", str(res))
    assert status.returncode == 0 and "requeued 1x" in status.stdout


def test_cancel_stops_only_this_sweeps_jobs(slurm_cluster, tmp_path):
    mine = write(tmp_path, "mine", steps=200, save_every=100)
    other = write(tmp_path, "other", steps=200, save_every=100, seeds="[5]")
    res = tmp_path / "res"
    for s in (mine, other):
        assert cli("run", str(s), "--executor", "slurm", "--no-wait", "--results", str(res)).returncode == 0
    mine_jobs, other_jobs = job_ids(res, "mine"), job_ids(res, "other")
    assert len(mine_jobs) == 2 and len(other_jobs) == 2
    one = sorted(mine_jobs)[0]
    out = cli("cancel", str(mine), "--cell", one, "--results", str(res))
    assert out.returncode == 0 and f"cancelled 1 job(s): {one}" in out.stdout
    slurm_cluster.wait_state(mine_jobs[one], "CANCELLED", timeout=60)
    out = cli("cancel", str(mine), "--results", str(res))
    assert out.returncode == 0 and "cancelled 1 job(s)" in out.stdout
    for j in mine_jobs.values():
        slurm_cluster.wait_state(j, "CANCELLED", timeout=60)
    for j in other_jobs.values():  # sacct does not list array tasks that have not started: ask squeue too
        alive = slurm_cluster.squeue_state(j) in ("PENDING", "RUNNING", "CONFIGURING")
        assert alive or slurm_cluster.sacct_state(j) == "COMPLETED", j
    status = cli("status", str(mine), "--results", str(res))
    assert "2 cancelled" in status.stdout
    cli("cancel", str(other), "--results", str(res))


def test_sharded_cell_runs_as_two_srun_tasks_each_holding_half(slurm_cluster, tmp_path):
    """A sharded cell (train.sharding: fsdp, tasks_per_node 2) on the cluster: one sbatch with two tasks
    that srun starts, which meet through torch.distributed (gloo on CPU) and train one cell with FSDP2,
    each process holding part of every parameter (spurisweep's own sharding on CPU, where accelerate
    refuses FSDP). The unsharded 2-task path is the preemption test below."""
    sweep = tmp_path / "dp.yaml"
    sweep.write_text(
        SWEEP.format(name="dp", seeds="[0]", steps=2, save_every=1, limit=4)
        .replace("reward: [ground_truth, random]", "reward: [random]")
        .replace("cpus_per_task: 1,", "cpus_per_task: 1, tasks_per_node: 2,")
        .replace("save_every: 1}", "save_every: 1, sharding: fsdp}")
    )
    res = tmp_path / "res"
    dry = cli("run", str(sweep), "--executor", "slurm", "--dry-run", "--results", str(res))
    assert dry.returncode == 0 and "tasks_per_node" in dry.stdout and "sharding: fsdp" in dry.stdout, (
        dry.stdout
    )
    proc = cli("run", str(sweep), "--executor", "slurm", "--results", str(res))
    assert proc.returncode == 0 and "1 cells: 1 done" in proc.stdout, proc.stdout + proc.stderr
    ((cell, job),) = job_ids(res, "dp").items()
    done = json.loads((res / "dp" / cell / "DONE").read_text())
    assert done["world_size"] == 2 and done["sharding"] == "fsdp"
    record = json.loads((res / "dp" / cell / "status.json").read_text())["sharding"]
    per_rank = record["numel_per_rank"]
    assert len(per_rank) == 2 and sum(per_rank) == record["numel"] and max(per_rank) < record["numel"]
    ckpt = sorted((res / "dp" / cell / "checkpoints").glob("checkpoint-*"))[-1]
    assert (ckpt / "COMPLETE").exists() and (ckpt / "hf" / "model.safetensors").exists()
    slurm_cluster.wait_state(job, "COMPLETED", timeout=60)  # DONE is written before both tasks have exited
    logs = sorted(p.name for p in (res / "dp" / "_submitit").glob(f"{job}_*_log.out"))
    assert logs == [f"{job}_0_log.out", f"{job}_1_log.out"], logs  # one log per task


def test_preempted_data_parallel_cell_resumes_on_both_ranks(slurm_cluster, tmp_path):
    sweep = tmp_path / "dpre.yaml"
    sweep.write_text(
        SWEEP.format(name="dpre", seeds="[0]", steps=40, save_every=4, limit=8)
        .replace("reward: [ground_truth, random]", "reward: [random]")
        .replace("cpus_per_task: 1,", "cpus_per_task: 1, tasks_per_node: 2,")
    )
    res = tmp_path / "res"
    (cell,) = grid.expand(spec.load_sweep(sweep))
    launch.write_manifest("dpre", str(sweep), [cell], res)
    launch.submit([cell], res, executor="slurm", wait=False)
    cdir = res / "dpre" / cell.id
    wait_for(
        lambda: any((c / "COMPLETE").exists() for c in (cdir / "checkpoints").glob("checkpoint-*")),
        PATIENCE_S,
        "a first checkpoint",
        logs=cdir.parent / "_submitit",
    )
    job = json.loads((cdir / "status.json").read_text())["job_id"]
    assert not (cdir / "DONE").exists(), "the cell finished before it could be preempted"
    # the step ends when one task exits non-zero (--kill-on-bad-exit=1): rank 0 does, after the requeue
    script = next((cdir.parent / "_submitit").glob("*_submission.sh")).read_text()
    assert "--kill-on-bad-exit=1" in script
    slurm_cluster.preempt(job)  # every task gets USR2; rank 0 checkpoints and requeues the whole job
    wait_for(
        lambda: (cdir / "DONE").exists(),
        PATIENCE_S,
        "the requeued cell to finish",
        logs=cdir.parent / "_submitit",
    )
    st = json.loads((cdir / "status.json").read_text())
    done = json.loads((cdir / "DONE").read_text())
    assert st["requeues"] == 1 and st["attempts"] == 2 and done["world_size"] == 2
    assert not list(cdir.glob("error*.txt"))  # neither rank 0's exit nor rank 1's broken group
    assert len(done["resumed_from"]) == 1
    steps = sorted(json.loads(p.read_text())["step"] for p in (cdir / "evals").glob("*.json"))
    assert steps == list(range(4, 41, 4))  # every evaluation once
    updates = [json.loads(x)["update"] for x in (cdir / "metrics.jsonl").read_text().splitlines()]
    assert updates == list(range(1, done["updates"] + 1))


def test_label_job_runs_before_the_array_that_depends_on_it(slurm_cluster, tmp_path):
    """majority_vote cells: one label job (a plain sbatch) makes the labels, and the cells' array is
    submitted with --dependency=afterok:<label job>, so every cell starts after the label job ended."""
    sweep = tmp_path / "lab.yaml"
    sweep.write_text(
        SWEEP.format(name="lab", seeds="[0, 1]", steps=1, save_every=1, limit=2)
        .replace("reward: [ground_truth, random]", "reward: [majority_vote]")
        .replace("  eval:", "  data: {limit: 8, label_samples: 3, label_max_new_tokens: 8}\n  eval:")
    )
    res = tmp_path / "res"
    proc = cli("run", str(sweep), "--executor", "slurm", "--results", str(res))
    assert proc.returncode == 0 and "2 cells: 2 done" in proc.stdout, proc.stdout + proc.stderr
    (record,) = (res / "_labels").glob("*.job.json")
    label = json.loads(record.read_text())
    assert label["state"] == "done" and label["executor"] == "slurm"
    label_job = str(label["job_id"])
    ids = job_ids(res, "lab")
    (array,) = {j.split("_")[0] for j in ids.values()}
    script = (res / "lab" / "_submitit" / f"{array}_submission.sh").read_text()
    assert f"#SBATCH --dependency=afterok:{label_job}" in script and "--kill-on-invalid-dep=yes" in script
    for cell in ids:
        st = json.loads((res / "lab" / cell / "status.json").read_text())
        assert st["after"] == label_job
    # sacct: the label job ended before any cell started
    slurm_cluster.wait_state(label_job, "COMPLETED", timeout=60)
    for j in ids.values():
        slurm_cluster.wait_state(j, "COMPLETED", timeout=60)
    rows = slurm_cluster.run(
        "sacct", "-X", "-n", "--parsable2", "-o", "JobID,Start,End", "-j", f"{label_job},{array}"
    )
    times = {r.split("|")[0]: r.split("|")[1:] for r in rows.strip().splitlines()}
    label_end = times[label_job][1]
    starts = [v[0] for k, v in times.items() if k != label_job]
    assert len(starts) == 2 and all(s >= label_end for s in starts), times
    logs = [p.read_text() for p in (res / "lab" / "_submitit").glob(f"{array}_*_log.*")]
    assert logs and not any("making majority-vote labels" in t for t in logs)  # no cell labelled
