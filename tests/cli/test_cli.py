"""The real CLI end to end: the smoke sweep through the local executor (real submitit processes, real
TRL, real DuckDB), and every bad-input path ending in one line and exit code 2 with nothing submitted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]


def cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: int = 600):
    e = {**os.environ, **(env or {})}
    return subprocess.run(
        [*EXE, *args], capture_output=True, text=True, cwd=cwd or ROOT, env=e, timeout=timeout
    )


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("smoke") / "results"
    proc = cli("run", "sweeps/smoke.yaml", "--executor", "local", "--results", str(results))
    return results, proc


@pytest.mark.slow
def test_smoke_sweep_runs_through_the_local_executor(smoke_run):
    results, proc = smoke_run
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 cells: 4 done" in proc.stdout
    cells = [p for p in (results / "smoke").iterdir() if (p / "DONE").exists()]
    assert len(cells) == 4
    for c in cells:
        cfg = json.loads((c / "config.json").read_text())
        assert cfg["cell_id"] == c.name
        rows = [json.loads(x) for x in (c / "metrics.jsonl").read_text().splitlines()]
        assert rows and {"reward", "entropy", "clip_ratio/region_mean", "token_prob/mean"} <= set().union(
            *rows
        )
    # no temporary files left behind by the atomic writes
    assert not list(results.rglob("*.tmp"))


@pytest.mark.slow
def test_smoke_report_table_and_database_rows(smoke_run):
    results, _ = smoke_run
    proc = cli(
        "report", "--sweep", "smoke", "--pivot", "model,reward", "--format", "json", "--results", str(results)
    )
    assert proc.returncode == 0, proc.stderr
    table = json.loads(proc.stdout)
    by_reward = {c["reward"]: c for c in table["cells"]}
    assert set(by_reward) == {"ground_truth", "random"}
    for c in by_reward.values():
        assert c["model"] == "tiny" and c["n"] == 2  # two clip modes x one seed
        assert 0.0 <= c["mean"] <= 100.0 and c["base"] is not None
        assert c["delta"] == pytest.approx(c["mean"] - c["base"])

    import duckdb

    con = duckdb.connect(str(results / "spurisweep.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 4
        assert con.execute("SELECT count(*) FROM sweep_cells WHERE sweep = 'smoke'").fetchone()[0] == 4
        # one shared baseline (same model, prompt and protocol for all four cells)
        assert con.execute("SELECT count(*) FROM evals WHERE is_baseline").fetchone()[0] == 1
        n_problems = 12  # smoke preset: eval.limit
        per_eval = con.execute("SELECT eval_id, count(*) FROM samples GROUP BY eval_id").fetchall()
        assert per_eval and all(n == n_problems for _, n in per_eval)
        # checkpoints every 2 of 4 steps -> evaluations at steps 2 and 4 for each cell, plus the baseline
        steps = con.execute("SELECT DISTINCT step FROM evals ORDER BY step").fetchall()
        assert [s for (s,) in steps] == [0, 2, 4]
        assert con.execute("SELECT count(*) FROM evals WHERE NOT is_baseline").fetchone()[0] == 8
        assert con.execute("SELECT count(*) FROM metrics WHERE key = 'reward'").fetchone()[0] >= 16
    finally:
        con.close()

    text = cli("report", "--sweep", "smoke", "--pivot", "model,reward", "--results", str(results))
    assert (
        text.returncode == 0
        and "ground_truth" in text.stdout
        and "random" in text.stdout
        and "tiny" in text.stdout
    )


@pytest.mark.slow
def test_rerun_submits_nothing_and_ingest_is_idempotent(smoke_run):
    results, _ = smoke_run
    proc = cli("run", "sweeps/smoke.yaml", "--results", str(results))
    assert proc.returncode == 0
    assert "nothing to submit (4 done)" in proc.stdout
    plan = cli("plan", "sweeps/smoke.yaml", "--json", "--results", str(results))
    assert {c["state"] for c in json.loads(plan.stdout)["cells"]} == {"done"}
    cli("ingest", "--results", str(results))
    import duckdb

    con = duckdb.connect(str(results / "spurisweep.duckdb"), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 4
        dup = con.execute(
            "SELECT count(*) FROM (SELECT eval_id, problem_id, sample_idx, count(*) n FROM samples "
            "GROUP BY ALL HAVING n > 1)"
        ).fetchone()[0]
        assert dup == 0
    finally:
        con.close()


def test_plan_json_lists_the_paper_grid():
    proc = cli("plan", "sweeps/paper_table.yaml", "--json")
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["count"] == 72 and len(payload["cells"]) == 72
    assert all(c["state"] == "pending" for c in payload["cells"])
    assert len({c["id"] for c in payload["cells"]}) == 72


def test_help_explains_the_commands():
    proc = cli("--help")
    assert proc.returncode == 0
    for cmd in ("plan", "run", "status", "report", "eval", "ingest", "cancel"):
        assert cmd in proc.stdout


BAD = {
    "malformed.yaml": "name: x\ngrid: {model: [tiny]\n",
    "unknown_axis.yaml": "name: x\ngrid: {model: [tiny], colour: [red]}\n",
    "unknown_setting.yaml": "name: x\ngrid: {model: [tiny]}\nsettings: {train: {learning_rat: 1}}\n",
    "unknown_reward.yaml": "name: x\ngrid: {model: [tiny], reward: [gold]}\n",
    "unknown_clip.yaml": "name: x\ngrid: {model: [tiny], clip: [maybe]}\n",
    "unknown_model.yaml": "name: x\ngrid: {model: [gpt-9]}\n",
    "empty_grid.yaml": "name: x\ngrid: {model: [tiny], seed: [0]}\nexclude: [{seed: 0}]\n",
    "bad_trl.yaml": "name: x\npreset: smoke\ngrid: {model: [tiny]}\nsettings: {trl: {not_a_field: 1}}\n",
    # 8 GPUs = 8 data-parallel processes, which cannot share the smoke preset's mini-batch of 4
    "gpus.yaml": "name: x\npreset: smoke\ngrid: {model: [tiny]}\nsettings: {resources: {gpus_per_node: 8}}\n",
}


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("command", ["plan", "run"])
def test_bad_sweep_exits_2_with_one_line_and_submits_nothing(tmp_path, name, command):
    sweep = tmp_path / name
    sweep.write_text(BAD[name])
    results = tmp_path / "results"
    proc = cli(command, str(sweep), "--results", str(results))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, proc.stderr
    assert str(sweep) in lines[0] and "Traceback" not in proc.stderr
    assert not results.exists() or not any(results.rglob("config.json"))


def test_batch_that_data_parallel_processes_cannot_share_names_the_setting(tmp_path):
    sweep = tmp_path / "gpus.yaml"
    sweep.write_text(BAD["gpus.yaml"])
    proc = cli("plan", str(sweep))
    assert proc.returncode == 2 and "train.micro_batch" in proc.stderr and "8 processes" in proc.stderr


def test_missing_sweep_file(tmp_path):
    proc = cli("plan", str(tmp_path / "nope.yaml"))
    assert proc.returncode == 2 and "file not found" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_report_options_exit_2(tmp_path):
    proc = cli("report", "--pivot", "model", "--results", str(tmp_path))
    assert proc.returncode == 2 and "two comma-separated" in proc.stderr
    proc = cli("report", "--pivot", "model,colour", "--results", str(tmp_path))
    assert proc.returncode == 2 and "unknown 'colour'" in proc.stderr


def test_unknown_executor_exits_2():
    proc = cli("run", "sweeps/smoke.yaml", "--executor", "kubernetes", "--dry-run")
    assert proc.returncode == 2 and "valid: local, debug, slurm" in proc.stderr


def test_a_local_run_that_must_download_offline_says_so_before_submitting(tmp_path):
    """A local run of cells whose hub model, training set and benchmark are not on this machine, with the
    hub unreachable: exit 2 with one line naming each, before anything is claimed or submitted (not one
    failed job per cell after the libraries' retries). A dry run says the same."""
    sweep = tmp_path / "hub.yaml"
    sweep.write_text(
        "name: hub\npreset: smoke\ngrid: {model: [qwen2.5-math-1.5b]}\nsettings: {eval: {benchmarks: [aime24]}}\n"
    )
    results = tmp_path / "results"
    (tmp_path / "no-data").mkdir()  # a data folder without aime24.json: the benchmark must come from the hub
    env = {
        "HF_HUB_OFFLINE": "1",
        "SPURISWEEP_DATA_DIR": str(tmp_path / "no-data"),
        "HF_HOME": str(tmp_path / "hf"),
    }
    for extra in ([], ["--dry-run"]):
        proc = cli("run", str(sweep), "--executor", "local", "--results", str(results), *extra, env=env)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "HF_HUB_OFFLINE is set" in lines[0] and str(sweep) in lines[0]
        for need in ("model Qwen/Qwen2.5-Math-1.5B", "benchmark aime24"):
            assert need in lines[0]
        assert "builtin:arith" not in lines[0]  # the smoke preset's training set is built in: not named
    assert not results.exists() or not any(results.rglob("config.json"))
