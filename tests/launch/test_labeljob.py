"""Submission at the cluster's shape: per-node totals and sharding next to every sbatch array of the paper
sweep, several nodes per cell (SLURM's parameters; a plan-time error on this machine's executors), and
majority-vote labels made by a label job of their own before the cells that train on them (real submitit
local processes and the tiny model; the SLURM side of label jobs is in tests/launch/test_slurm_e2e.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import launch
from spurisweep.errors import ConfigError
from spurisweep.evaluation import labels
from spurisweep.launch import slurm
from spurisweep.plan import grid, spec
from spurisweep.plan import node as resources

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]

MV = """
name: mv
preset: smoke
grid:
  model: [tiny]
  reward: [majority_vote, ground_truth]
  seed: [0, 1]
exclude: [{{reward: ground_truth, seed: 1}}]
settings:
  train: {{steps: 1, save_every: 1}}
  data: {{train: "builtin:arith", limit: 8, label_samples: 3, label_max_new_tokens: 8}}
  eval: {{limit: 2, baseline: false}}
{extra}
"""


def sweep_cells(tmp_path: Path, extra: str = "") -> tuple[Path, list]:
    path = tmp_path / "mv.yaml"
    path.write_text(MV.format(extra=extra))
    return path, grid.expand(spec.load_sweep(path))


def cli(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


def test_paper_sweep_arrays_show_node_totals_and_sharding(tmp_path):
    """Every array of the paper grid (the label jobs' dependent ones too) asks for what one 8-GPU node
    grants, with --cpus-per-task per task: 8 tasks x 12 CPUs, never 8 x 64."""
    cells = grid.expand(spec.load_sweep(ROOT / "sweeps" / "paper_table.yaml"))
    tasks = launch.label_tasks(cells, tmp_path)
    assert len(tasks) == 4 and all(len(t.cells) == 6 for t in tasks)  # one per 7-8B family
    lines = slurm.SlurmBackend().describe(cells, tasks)
    arrays = [i for i, line in enumerate(lines) if line.startswith("sbatch array of")]
    assert len(arrays) == 5  # the cells without labels, and one array per label job
    assert sum(int(lines[i].split()[3]) for i in arrays) == 72
    for i in arrays:
        assert lines[i + 1] == "  per node: 8 tasks, 8 GPUs, 96 CPUs, 900 GB per node; sharding: fsdp"
    for group, _ in slurm.arrays(cells, tasks, placeholder=True):
        p = slurm.slurm_parameters(group)
        assert (p["tasks_per_node"], p["cpus_per_task"], p["gpus_per_node"]) == (8, 12, 8)
        assert "nodes" not in p
    # a label job: one process on the node of one of its cells, with all the CPUs its tasks would have
    lp = slurm.label_parameters(tasks[0])
    assert "tasks_per_node" not in lp and (lp["gpus_per_node"], lp["cpus_per_task"]) == (8, 96)


def test_dry_run_prints_label_jobs_and_node_totals(tmp_path):
    sweep, cells = sweep_cells(tmp_path, "  resources: {cpus_per_task: 2, tasks_per_node: 2, mem_gb: 4}")
    res = tmp_path / "res"
    out = cli("run", str(sweep), "--executor", "slurm", "--dry-run", "--results", str(res))
    assert out.returncode == 0, out.stdout + out.stderr
    text = " ".join(out.stdout.split())  # rich wraps long lines
    name = labels.labels_path(res, labels.spec_for(cells[0].config)).stem
    assert f"label job for labels {name}:" in text
    assert f"sbatch array of 2 cells after label job <labels {name}>" in text
    assert "sbatch array of 1 cells:" in text  # ground_truth needs no labels: it does not wait
    assert text.count("per node: 2 tasks, 0 GPUs, 4 CPUs, 4 GB per node; sharding: none") == 2
    assert not (res / "_labels").exists()  # nothing made or submitted


def test_two_nodes_are_submitit_nodes_and_world_size_counts_both(tmp_path):
    _, cells = sweep_cells(tmp_path, "  resources: {gpus_per_node: 8, nodes: 2, cpus_per_task: 12}")
    p = slurm.slurm_parameters(cells[:1])
    assert (p["nodes"], p["tasks_per_node"], p["cpus_per_task"]) == (2, 8, 12)
    cfg = cells[0].config
    assert cfg.resources.world_size == 16
    assert str(resources.node_totals(cfg)) == "2 nodes x 8 tasks, 8 GPUs, 96 CPUs, ? per node"
    # the label job runs on one node of the cell's shape
    (task,) = launch.label_tasks(cells, tmp_path)
    assert "nodes" not in slurm.label_parameters(task)


def test_several_nodes_on_this_machines_executors_is_a_plan_time_error(tmp_path):
    sweep, cells = sweep_cells(tmp_path, "  resources: {nodes: 2}")
    for name in ("local", "debug"):
        with pytest.raises(ConfigError, match="asks for 2 nodes; the .* executor runs on this machine only"):
            launch.get_backend(name).check(cells, file=str(sweep))
        with pytest.raises(ConfigError, match="resources.nodes"):
            launch.submit(cells, tmp_path / "lib", executor=name)
    launch.get_backend("slurm").check(cells)  # SLURM can
    res = tmp_path / "res"
    out = cli("run", str(sweep), "--results", str(res))
    assert out.returncode == 2, out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert str(sweep) in line and "resources.nodes" in line and cells[0].id in line
    assert not res.exists() and not (tmp_path / "lib").exists()


@pytest.mark.slow
def test_labels_are_made_once_by_their_own_job_before_the_cells(tmp_path):
    sweep, cells = sweep_cells(tmp_path)
    res = tmp_path / "res"
    out = cli("run", str(sweep), "--results", str(res), "--max-parallel", "2")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "3 cells: 3 done" in out.stdout
    mv = [c for c in cells if c.config.reward == "majority_vote"]
    path = labels.labels_path(res, labels.spec_for(mv[0].config))
    (made,) = (res / "_labels").glob("*.jsonl")
    assert made == path and len(path.read_text().splitlines()) == 8
    record = json.loads(path.with_suffix(".job.json").read_text())
    assert record["state"] == "done" and record["executor"] == "local"
    # exactly one label job ran, and it made the labels; no cell made them itself
    logs = {p: p.read_text() for p in (res / "mv" / "_submitit").glob("*_log.*")}
    making = [p for p, text in logs.items() if "making majority-vote labels" in text]
    assert [p.name.split("_")[0] for p in making] == [str(record["job_id"])]
    # the cells that train on the labels started after they existed, and read that file
    labelled = path.with_suffix(".json").stat().st_mtime
    for c in mv:
        st = json.loads((res / "mv" / c.id / "status.json").read_text())
        assert st["submitted"] >= labelled and st["state"] == "done"
    status = cli("status", str(sweep), "--results", str(res))
    assert f"labels {path.stem} for 2 cell(s): done (job {record['job_id']}, local)" in status.stdout
    # a re-run has nothing to label
    assert launch.label_tasks(cells, res) == []


@pytest.mark.slow
def test_cells_do_not_start_when_their_label_job_fails(tmp_path):
    """Labels that cannot be made (the model folder passes the plan-time check, a config.json, but holds no
    model) fail their label job; the cells that wait on it are recorded failed with its error and never
    start, while the others train."""
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    sweep, cells = sweep_cells(
        tmp_path, f'overrides: [{{when: {{reward: majority_vote}}, set: {{model_path: "{broken}"}}}}]'
    )
    res = tmp_path / "res"
    out = cli("run", str(sweep), "--results", str(res))
    assert out.returncode == 1
    sts = {s.cell.config.reward: s for s in launch.states(cells, res)}
    assert sts["ground_truth"].state == "done"
    failed = [s for s in launch.states(cells, res) if s.cell.config.reward == "majority_vote"]
    assert [s.state for s in failed] == ["failed", "failed"]
    assert all("label job" in s.error and "failed" in s.error for s in failed)
    assert all(s.job_id is None for s in failed)  # never started
    (state,) = launch.label_states(cells, res)
    assert state.state == "failed" and state.error  # the label job's own error, recorded for status
