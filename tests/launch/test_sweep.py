"""`run` as functions (launch/sweep.py), called directly: the checks `prepare` makes before anything is
claimed, the dry run's preview, and a run through the real debug executor on the tiny model. The sweeps are
real files, the cells real (plan.grid), the results folders real; a finished sweep is the session's smoke
run (tests/storebuilder.py)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import artifacts, launch
from spurisweep.errors import ConfigError
from spurisweep.plan import grid, spec

ROOT = Path(__file__).resolve().parents[2]

ONE = """
name: one
preset: smoke
grid: {model: [tiny], reward: [ground_truth]}
settings: {train: {steps: 2}, eval: {limit: 4}}
"""

BAD_TRL = "name: bad\npreset: smoke\ngrid: {model: [tiny]}\nsettings: {trl: {not_a_field: 1}}\n"

HUB = "name: hub\npreset: smoke\ngrid: {model: [qwen2.5-math-1.5b]}\n"


def load(path: Path):
    sweep = spec.load_sweep(path)
    return sweep.name, grid.expand(sweep)


def prepared(path: Path, results: Path, executor: str = "debug", **kw) -> launch.Prepared:
    name, cells = load(path)
    return launch.prepare(name, path, cells, results, backend=launch.get_backend(executor), **kw)


def written(results: Path) -> list[Path]:
    """Every claim or cell config under the results folder (a claim is a status.json naming the run)."""
    return [*results.rglob("status.json"), *results.rglob("config.json")] if results.exists() else []


def test_a_noop_run_of_a_finished_sweep_never_imports_trl(smoke_results, tmp_path):
    """prepare + run_sweep over a sweep whose cells are all done: nothing claimed or submitted, nothing
    ingested anew, and TRL (nor torch) never imported: the TRL check covers only the cells to submit. In a
    subprocess, since this test session may have imported TRL already."""
    res = tmp_path / "res"
    shutil.copytree(smoke_results, res)
    code = f"""
import sys
from pathlib import Path
from spurisweep import launch
from spurisweep.plan import grid, spec
path = Path({str(ROOT / "sweeps" / "smoke.yaml")!r})
sweep = spec.load_sweep(path)
cells = grid.expand(sweep)
ready = launch.prepare(sweep.name, path, cells, Path({str(res)!r}), backend=launch.get_backend("local"))
claimed, submitted = [], []
out = launch.run_sweep(ready, on_claimed=claimed.append, on_submitted=submitted.append)
print("PLAN", len(claimed), len(claimed[0].to_submit), sorted(claimed[0].skipped), len(submitted))
print("OUT", sorted({{s.state for s in out.states}}), out.ingested["cells"], len(out.bad))
print("MODULES", "trl" in sys.modules, "torch" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "PLAN 1 0 ['done'] 0" in proc.stdout, proc.stdout
    assert "OUT ['done'] 0 0" in proc.stdout, proc.stdout
    assert "MODULES False False" in proc.stdout, proc.stdout


def test_a_finished_cell_is_not_validated_and_a_pending_one_is_before_any_claim(tmp_path):
    """TRL's rules are checked for the cells a run would submit: a cell whose setup TRL refuses raises a
    ConfigError naming the sweep file from `prepare`, with nothing claimed or written; the same cell once
    finished is not checked at all (there is nothing to submit)."""
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(BAD_TRL)
    results = tmp_path / "results"
    with pytest.raises(ConfigError) as exc:
        prepared(sweep, results)
    assert str(sweep) in str(exc.value) and "not_a_field" in str(exc.value)
    assert written(results) == []

    _, cells = load(sweep)
    done = launch.cell_dir(results, cells[0].sweep, cells[0].id)
    done.mkdir(parents=True)
    artifacts.CellDir(done).mark_done({})
    ready = prepared(sweep, results)
    assert ready.plan.to_submit == [] and ready.validated == set()
    assert [s.state for s in ready.states] == ["done"]


def test_a_dry_run_preview_claims_and_submits_nothing(tmp_path):
    sweep = tmp_path / "one.yaml"
    sweep.write_text(ONE)
    results = tmp_path / "results"
    ready = prepared(sweep, results, dry_run=True)
    view = launch.preview(ready)
    assert [c.id for c in view.plan.to_submit] == [c.id for c in ready.cells]
    assert [s.state for s in view.states] == ["pending"]
    assert view.labels == [] and view.lines == []  # ground truth trains on no labels: no label job first
    assert written(results) == []
    again = launch.states(ready.cells, results, live=False)
    assert [(s.state, s.holder) for s in again] == [("pending", None)]


def test_a_run_on_this_machine_names_a_missing_hub_model_offline(tmp_path, monkeypatch):
    """A cell of a local run whose hub model is neither cached nor reachable (HF_HUB_OFFLINE, an empty hub
    cache): one ConfigError naming the model and the file, raised by `prepare` before TRL or any claim. The
    hub cache is pointed at an empty folder so a model this machine happens to hold does not hide it."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    sweep = tmp_path / "hub.yaml"
    sweep.write_text(HUB)
    results = tmp_path / "results"
    with pytest.raises(ConfigError) as exc:
        prepared(sweep, results, executor="local")
    text = str(exc.value)
    assert "model Qwen/Qwen2.5-Math-1.5B" in text and "HF_HUB_OFFLINE is set" in text and str(sweep) in text
    assert "builtin:arith" not in text  # the smoke preset's training set is built here: not named
    assert written(results) == []


@pytest.mark.slow
def test_run_sweep_claims_submits_follows_and_ingests(tmp_path):
    """A one-cell sweep through the debug executor (TRL trains the tiny model in this process): the cell is
    claimed, submitted and followed through the callbacks, and ingested; a second run finds nothing to
    submit and calls no submission callback."""
    sweep = tmp_path / "one.yaml"
    sweep.write_text(ONE)
    results = tmp_path / "results"
    claimed, updates, submitted = [], [], []
    out = launch.run_sweep(
        prepared(sweep, results),
        on_claimed=claimed.append,
        on_update=updates.append,
        on_submitted=submitted.append,
    )
    assert len(claimed) == 1 and len(claimed[0].to_submit) == 1
    assert updates and len(submitted) == 1 and [s.state for s in submitted[0]] == ["done"]
    assert [s.state for s in out.states] == ["done"] and out.bad == [] and out.claimed_elsewhere == []
    assert out.ingested["cells"] == 1 and out.database.exists()
    assert (results / "one" / "sweep.json").exists()  # the manifest

    claimed, submitted = [], []
    again = launch.run_sweep(
        prepared(sweep, results), on_claimed=claimed.append, on_submitted=submitted.append
    )
    assert claimed[0].to_submit == [] and submitted == [] and again.ingested["cells"] == 0
