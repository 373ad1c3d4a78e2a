"""Orchestration on the local executor: kill -9 and resume, status, cancel, idempotent re-runs, and
concurrent ingest of many finished cells (real submitit processes, real DuckDB file)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spurisweep import artifacts, launch, store
from spurisweep.errors import ConfigError
from spurisweep.launch import local, slurm
from spurisweep.plan import grid, grpo, spec

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]

LONG = """
name: long
preset: smoke
grid:
  model: [tiny]
  reward: [random]
  seed: [0]
settings:
  train: {steps: 40, save_every: 4, keep_checkpoints: 2}
  eval: {limit: 16}
"""


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def keys(db: Path) -> dict[str, set]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        return {
            "samples": set(con.execute("SELECT eval_id, problem_id, sample_idx FROM samples").fetchall()),
            "metrics": set(con.execute("SELECT cell_id, update_idx, key FROM metrics").fetchall()),
            "evals": set(con.execute("SELECT eval_id, step FROM evals").fetchall()),
            "n_samples": con.execute("SELECT count(*) FROM samples").fetchone()[0],
            "n_metrics": con.execute("SELECT count(*) FROM metrics").fetchone()[0],
        }
    finally:
        con.close()


def wait_for(pred, timeout: float, what: str) -> None:
    t0 = time.time()
    while not pred():
        if time.time() - t0 > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.slow
def test_kill9_is_reported_and_a_rerun_resumes_to_the_rows_of_an_uninterrupted_run(tmp_path):
    sweep = tmp_path / "long.yaml"
    sweep.write_text(LONG)
    ref = tmp_path / "ref"
    assert cli("run", str(sweep), "--results", str(ref)).returncode == 0

    res = tmp_path / "killed"
    proc = cli("run", str(sweep), "--results", str(res), "--no-wait")
    assert proc.returncode == 0, proc.stderr
    (cell,) = [p for p in (res / "long").iterdir() if (p / "config.json").exists()]
    # kill the whole job (controller and worker) as the OOM killer or a node failure would,
    # once it has written a complete checkpoint and is training on
    wait_for(
        lambda: any((c / "COMPLETE").exists() for c in (cell / "checkpoints").glob("checkpoint-*")),
        300,
        "a first checkpoint",
    )
    st = json.loads((cell / "status.json").read_text())
    for pid in {int(st["pid"]), int(st["job_id"])}:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(
        lambda: (
            not Path(f"/proc/{st['pid']}").exists()
            or Path(f"/proc/{st['pid']}/stat").read_text().split()[2] == "Z"
        ),
        30,
        "the worker to die",
    )
    assert not (cell / "DONE").exists()

    status = cli("status", str(sweep), "--results", str(res))
    assert status.returncode == 0
    assert "killed" in status.stdout and "1 killed" in status.stdout

    rerun = cli("run", str(sweep), "--results", str(res))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    done = json.loads((cell / "DONE").read_text())
    assert len(done["resumed_from"]) == 1 and done["resumed_from"][0].startswith("checkpoint-")

    a, b = keys(ref / "spurisweep.duckdb"), keys(res / "spurisweep.duckdb")
    assert a["evals"] == b["evals"]
    assert a["samples"] == b["samples"] and a["n_samples"] == b["n_samples"] == len(b["samples"])
    assert a["metrics"] == b["metrics"] and a["n_metrics"] == b["n_metrics"] == len(b["metrics"])


@pytest.mark.slow
def test_status_and_cancel_touch_only_this_sweep(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(LONG.replace("name: long", "name: other").replace("seed: [0]", "seed: [1]"))
    mine = tmp_path / "long.yaml"
    mine.write_text(LONG)
    res = tmp_path / "res"
    assert cli("run", str(other), "--results", str(res), "--no-wait").returncode == 0
    assert cli("run", str(mine), "--results", str(res), "--no-wait").returncode == 0
    sweep = spec.load_sweep(mine)
    cells = grid.expand(sweep)
    wait_for(lambda: launch.states(cells, res)[0].state == "running", 60, "the cell to run")

    out = cli("cancel", str(mine), "--results", str(res))
    assert out.returncode == 0 and "cancelled 1 job" in out.stdout
    wait_for(lambda: launch.states(cells, res)[0].state == "cancelled", 30, "the cancelled state")
    other_cells = grid.expand(spec.load_sweep(other))
    assert launch.states(other_cells, res)[0].state in ("queued", "running", "done")
    assert cli("cancel", str(other), "--results", str(res)).returncode == 0

    dry = cli("run", str(mine), "--results", str(res), "--dry-run")
    assert dry.returncode == 0 and "would submit 1 of 1" in dry.stdout


def clone_cell(src: Path, dst_root: Path, new_id: str) -> Path:
    """A finished cell folder copied under a new id (every occurrence of the old id rewritten)."""
    old = src.name
    dst = dst_root / new_id
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("checkpoints"))
    for p in dst.rglob("*"):
        if p.is_file() and p.suffix in (".json", ".jsonl", "") and p.name != "DONE" or p.name == "DONE":
            p.write_text(p.read_text().replace(old, new_id))
        if old in p.name:
            p.rename(p.with_name(p.name.replace(old, new_id)))
    return dst


@pytest.mark.slow
def test_hundred_cells_ingested_once_under_concurrent_ingest(tmp_path):
    res = tmp_path / "res"
    sweep = tmp_path / "one.yaml"
    sweep.write_text(LONG.replace("steps: 40", "steps: 4").replace("save_every: 4", "save_every: 2"))
    assert cli("run", str(sweep), "--executor", "debug", "--results", str(res)).returncode == 0
    (src,) = [p for p in (res / "long").iterdir() if (p / "DONE").exists()]
    (res / "spurisweep.duckdb").unlink()
    many = res / "many"
    ids = [f"c{i:011d}" for i in range(100)]
    for cid in ids:
        clone_cell(src, many, cid)
    artifacts.atomic_write_json(many / "sweep.json", {"sweep": "many", "cells": {c: {"i": c} for c in ids}})
    procs = [
        subprocess.Popen(
            [*EXE, "ingest", "--results", str(res)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    # the ones kept waiting say so (store: "waiting for the database lock, held by ..."); no lock error
    lines = [ln for _, err in outs for ln in err.splitlines() if "waiting for the database lock" not in ln]
    assert not any("lock" in ln.lower() for ln in lines), outs
    with store.connect(res / "spurisweep.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 101
        assert con.execute("SELECT count(*) FROM sweep_cells WHERE sweep = 'many'").fetchone()[0] == 100
        per_cell = con.execute("SELECT count(*) FROM evals WHERE cell_id = ?", [ids[0]]).fetchone()[0]
        assert con.execute("SELECT count(*) FROM evals WHERE NOT is_baseline").fetchone()[0] == 101 * per_cell
        dup = con.execute(
            "SELECT count(*) FROM (SELECT eval_id, problem_id, sample_idx FROM samples "
            "GROUP BY ALL HAVING count(*) > 1)"
        ).fetchone()[0]
        assert dup == 0
        n = con.execute("SELECT count(*) FROM samples").fetchone()[0]
    again = store.ingest(res)
    assert again == {"cells": 0, "baselines": 0, "probes": 0}
    with store.connect(res / "spurisweep.duckdb", read_only=True) as con:
        assert con.execute("SELECT count(*) FROM samples").fetchone()[0] == n


def test_states_from_folders(tmp_path, results):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(LONG)
    (cell,) = grid.expand(spec.load_sweep(sweep))
    assert launch.read_state(cell, results).state == "pending"
    d = launch.write_cell_config(cell, results)
    cd = artifacts.CellDir(d)
    cd.set_status("failed", error="ValueError: boom", attempts=1)
    s = launch.read_state(cell, results)
    assert (s.state, s.error) == ("failed", "ValueError: boom")
    plan, _ = launch.plan_submission([cell], results, retry_failed=False)
    assert plan.to_submit == []
    plan, _ = launch.plan_submission([cell], results, retry_failed=True)
    assert plan.to_submit == [cell]
    # a job that claims to run but whose process is gone is reported as killed and resubmitted
    dead = subprocess.Popen(["true"])
    dead.wait()
    cd.set_status("running", executor="local", job_id=str(dead.pid))
    assert launch.read_state(cell, results).state == "killed"
    plan, _ = launch.plan_submission([cell], results, retry_failed=False)
    assert plan.to_submit == [cell]
    # the same cell finished under another sweep's folder counts as done here too
    other = results / "elsewhere" / cell.id
    other.mkdir(parents=True)
    (other / "DONE").write_text("{}")
    assert launch.read_state(cell, results).state == "done"


def test_every_backend_in_the_registry_is_a_backend_under_its_own_name():
    assert list(launch.BACKENDS) == ["local", "debug", "slurm"]
    for name in launch.BACKENDS:
        backend = launch.get_backend(name)
        assert isinstance(backend, launch.Backend) and backend.name == name
    with pytest.raises(ConfigError, match="unknown executor 'kubernetes'; valid: local, debug, slurm"):
        launch.get_backend("kubernetes")


def test_a_job_of_an_unknown_executor_is_never_declared_dead(tmp_path, results):
    """A status.json naming an executor this version does not know (a newer version wrote it, or it was
    edited) must not read as killed: `run` would submit the cell again while its job may still run."""
    sweep = tmp_path / "s.yaml"
    sweep.write_text(LONG)
    (cell,) = grid.expand(spec.load_sweep(sweep))
    cd = artifacts.CellDir(launch.write_cell_config(cell, results))
    cd.set_status("running", executor="kubernetes", job_id="42")
    assert launch.read_state(cell, results).state == "running"
    plan, _ = launch.plan_submission([cell], results, retry_failed=True)
    assert plan.to_submit == []
    # cancel cannot stop a job it does not know how to reach: it says so and marks nothing cancelled
    with pytest.raises(ConfigError, match="status.json: executor: unknown executor 'kubernetes'"):
        launch.cancel([cell], results)
    assert not (cd.root / launch.CANCELLED).exists() and cd.status()["state"] == "running"


# ---------------------------------------------------------------------------------------------- processes
DP = """
name: dp
preset: smoke
grid:
  model: [tiny]
  reward: [random]
  seed: {seeds}
settings:
  train: {{steps: 2, save_every: 1}}
  eval: {{limit: 4}}
{extra}
"""


def test_one_task_per_gpu_in_the_sbatch_parameters(tmp_path):
    def params(resources: str) -> dict:
        sweep = tmp_path / "p.yaml"
        sweep.write_text(DP.format(seeds="[0]", extra=f"  resources: {resources}"))
        return slurm.slurm_parameters(grid.expand(spec.load_sweep(sweep)))

    assert params("{gpus_per_node: 8}")["tasks_per_node"] == 8  # data-parallel: one process per GPU
    assert "tasks_per_node" not in params("{gpus_per_node: 8, tasks_per_node: 1}")  # one process, told so
    assert "tasks_per_node" not in params("{gpus_per_node: 1}")
    assert params("{tasks_per_node: 2}")["tasks_per_node"] == 2


def test_local_processes_follow_the_gpus_there_are(tmp_path):
    sweep = tmp_path / "p.yaml"
    sweep.write_text(
        DP.format(
            seeds="[0, 1, 2]",
            extra="""overrides:
  - {when: {seed: 1}, set: {resources.gpus_per_node: 8}}
  - {when: {seed: 2}, set: {resources.tasks_per_node: 2}}""",
        )
    )
    one, eight, two = grid.expand(spec.load_sweep(sweep))
    assert [local.local_processes(c, []) for c in (one, eight, two)] == [1, 1, 2]  # CPU: only if asked
    assert [local.local_processes(c, ["0", "1", "2", "3"]) for c in (one, eight, two)] == [1, 4, 2]


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def test_rendezvous_port_is_outside_the_kernels_ephemeral_range():
    """Rank 0's port is agreed without talking (from the job id), so it must be one the kernel never hands
    to a client socket: submitit's own pick (20000-60000) once collided with one in CI (EADDRINUSE)."""
    from spurisweep.launch.job import master_port

    ports = [master_port(str(job), {}) for job in range(1, 5001)]
    low, high = job_ports = min(ports), max(ports)
    assert 1024 <= low and high < _ephemeral_low(), job_ports
    assert len(set(ports)) > 4000  # spread: two jobs on one node rarely meet on a port
    assert master_port("123", {}) == master_port("123", {"SLURM_RESTART_COUNT": "0"})  # every task agrees
    requeued = [master_port(str(job), {"SLURM_RESTART_COUNT": "1"}) for job in range(1, 101)]
    moved = sum(a != b for a, b in zip(requeued, ports[:100], strict=True))
    assert moved > 95  # a requeued attempt moves port
    assert master_port("123", {"MASTER_PORT": "29512"}) == 29512  # the user's own choice wins


@pytest.mark.slow
def test_data_parallel_cell_trains_on_two_processes_with_one_writer(tmp_path):
    import pickle

    sweep = tmp_path / "dp.yaml"
    sweep.write_text(DP.format(seeds="[0]", extra="  resources: {tasks_per_node: 2}"))
    (cell,) = grid.expand(spec.load_sweep(sweep))
    single = tmp_path / "single.yaml"
    single.write_text(DP.format(seeds="[0]", extra=""))
    assert grid.expand(spec.load_sweep(single))[0].id == cell.id  # processes are a resource, not identity

    res = tmp_path / "res"
    proc = cli("run", str(sweep), "--results", str(res))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = res / "dp" / cell.id
    done = json.loads((d / "DONE").read_text())
    status = json.loads((d / "status.json").read_text())
    assert done["world_size"] == 2 and status["processes"] == 2 and status["state"] == "done"
    # both ranks trained and returned: rank 1 reports itself and wrote nothing of the cell's own
    results = {}
    for p in (res / "dp" / "_submitit").glob("*_result.pkl"):
        outcome, value = pickle.loads(p.read_bytes())
        assert outcome == "success", value
        results[int(p.name.split("_")[1])] = value
    assert sorted(results) == [0, 1] and results[1]["rank"] == 1 and results[1]["world_size"] == 2
    assert not list(d.glob("error*.txt"))
    # the global batch and the update schedule are those of one process; every update logged once
    upr = grpo.updates_per_rollout(grpo.grpo_kwargs(cell.config, str(tmp_path), cpu=True))
    assert done["updates"] == 2 * upr
    updates = [json.loads(x)["update"] for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert updates == list(range(1, 2 * upr + 1))
    metas = [json.loads(p.read_text()) for p in (d / "evals").glob("*.json")]
    assert sorted(m["step"] for m in metas) == [1, 2]
    assert all(m["processes"] == 2 for m in metas)  # both ranks evaluated their share (data-parallel)


@pytest.mark.slow
def test_local_jobs_get_their_own_gpus(tmp_path):
    """submitit's local executor hides every GPU from a job unless told which: each local job gets its
    own CUDA_VISIBLE_DEVICES, one GPU per process, and waits until they are free. (On this CPU machine
    the devices are names only: torch sees no CUDA either way and the cells train on CPU.)"""
    sweep = tmp_path / "p.yaml"
    sweep.write_text(
        DP.format(
            seeds="[0, 1, 2]",
            extra="""overrides:
  - {when: {seed: 2}, set: {resources.tasks_per_node: 2}}""",
        )
    )
    cells = grid.expand(spec.load_sweep(sweep))
    res = tmp_path / "res"
    folder = res / "dp" / artifacts.SUBMITIT
    folder.mkdir(parents=True)
    for c in cells:
        launch.write_cell_config(c, res)
    local.run_local(
        cells,
        res,
        folder,
        max_parallel=None,
        wait=True,
        poll_s=0.2,
        progress=lambda live: None,
        gpus=["5", "7"],
    )
    sts = launch.states(cells, res)
    assert [s.state for s in sts] == ["done"] * 3
    seen = {c.config.seed: json.loads((res / "dp" / c.id / "status.json").read_text()) for c in cells}
    assert {seen[0]["devices"], seen[1]["devices"]} == {"5", "7"}
    assert seen[2]["devices"] == "5,7" and seen[2]["processes"] == 2
    # the two-GPU cell started only after both one-GPU cells had finished and freed theirs
    ended = max((res / "dp" / c.id / "DONE").stat().st_mtime for c in cells[:2])
    assert seen[2]["submitted"] >= ended
