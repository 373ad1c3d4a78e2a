"""A sweep is its file as it is now, and a cell runs once across sweeps (issue 24, items 2 and 3).

2. Membership of a sweep is its current cells: a cell run before a setting was edited stays on disk and in
   the store as the sweep's history, out of `report --sweep` unless `--history`, and `status` / `report`
   say in one line how many earlier cells are not shown. The answer is the same before and after
   `ingest --rebuild`. A pivot that pools runs of other settings (not only other axes) says so.
3. A cell has one folder in the results folder: a second sweep with the same cell links to the first one's
   folder, so the claim, the running lock and the result are per cell id; two sweeps run at once train a
   shared cell once. Ingest reads a cell found in several folders (a copy of a sweep's folder) once, by a
   stated rule, in one line naming the folders; `ingest --rebuild` never fails on it.

Real components: a real DuckDB file, real cell folders, and (the slow tests) real `spurisweep run
--executor local` controllers training the tiny model."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import launch, store
from spurisweep.launch import claim
from spurisweep.plan import grid, spec
from tests.claimhelpers import wait_for
from tests.storebuilder import ROOT, StoreBuilder, outcomes, run_cli
from tests.test_store_faults import make_results

EXE = [sys.executable, "-m", "spurisweep.cli"]

SWEEP = """
name: {name}
preset: smoke
grid:
  model: [tiny]
  reward: {rewards}
  seed: [0]
settings:
  train: {{steps: 2{extra}}}
  eval: {{limit: 4}}
"""


def sweep_file(tmp_path: Path, name: str, rewards: str, extra: str = "") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, rewards=rewards, extra=extra))
    return path


def cells_of(path: Path) -> list[grid.Cell]:
    return grid.expand(spec.load_sweep(path))


def popen(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*EXE, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )


# ---------------------------------------------------------------------------------------------- one run per cell
def test_a_second_sweep_links_to_a_cell_another_sweep_claimed_and_leaves_it_to_it(tmp_path, caplog):
    a = cells_of(sweep_file(tmp_path, "a", "[ground_truth, random]"))
    b = cells_of(sweep_file(tmp_path, "b", "[ground_truth, format]"))
    res = tmp_path / "res"
    shared = a[0]
    assert b[0].id == shared.id and b[1].id not in {c.id for c in a}
    plan_a, _ = launch.plan_and_claim(a, res, retry_failed=False)
    assert plan_a.to_submit == a
    plan_b, sts = launch.plan_and_claim(b, res, retry_failed=False)
    # the shared cell is claimed for sweep a (a live controller): b links to it and leaves it alone
    assert plan_b.to_submit == [b[1]]
    assert plan_b.skipped == {"submitting for sweep a": [b[0]]}
    link = res / "b" / shared.id
    assert link.is_symlink() and os.readlink(link) == f"../a/{shared.id}"
    s = launch.states(b, res)[0]
    assert (s.state, s.elsewhere, s.shared) == ("submitting", "a", "(for sweep a)")
    # cancelling sweep b cancels its own claim only: the shared cell runs on for sweep a, and a says so
    caplog.set_level(logging.WARNING)
    cancelled = launch.cancel(b, res)
    assert [c.cell.id for c in cancelled] == [b[1].id]
    assert any(shared.id in r.getMessage() and "for sweep a" in r.getMessage() for r in caplog.records)
    assert [s.state for s in launch.states(a, res)] == ["submitting", "submitting"]


def test_a_separate_copy_of_a_cell_claimed_for_another_sweep_is_not_submitted_again(tmp_path):
    """Two folders of one cell (made before cells were linked): the one of sweep b is not submitted while
    sweep a's copy is claimed."""
    a = cells_of(sweep_file(tmp_path, "a", "[ground_truth]"))
    b = cells_of(sweep_file(tmp_path, "b", "[ground_truth]"))
    res = tmp_path / "res"
    for c in (a[0], b[0]):  # two folders of their own, both pending
        launch.write_cell_config(c, res)
    plan_a, _ = launch.plan_and_claim(a, res, retry_failed=False)
    assert plan_a.to_submit == a and not (res / "b" / b[0].id).is_symlink()
    plan_b, _ = launch.plan_and_claim(b, res, retry_failed=False)
    assert plan_b.to_submit == [] and plan_b.skipped == {"submitting for sweep a": b}


def test_a_link_whose_folder_was_removed_is_made_afresh(tmp_path):
    a = cells_of(sweep_file(tmp_path, "a", "[ground_truth]"))
    b = cells_of(sweep_file(tmp_path, "b", "[ground_truth]"))
    res = tmp_path / "res"
    launch.write_cell_config(a[0], res)
    assert launch.link_shared(b, res) == 1
    shutil.rmtree(res / "a")  # sweep a's results deleted: b's link points nowhere
    assert launch.states(b, res)[0].state == "pending"
    plan, _ = launch.plan_and_claim(b, res, retry_failed=False)
    d = res / "b" / b[0].id
    assert plan.to_submit == b and d.is_dir() and not d.is_symlink()


# ---------------------------------------------------------------------------------------------- the store
def _sweep_cells(results: Path) -> set[tuple[str, str]]:
    with store.connect(store.db_path(results), read_only=True) as con:
        return set(con.execute("SELECT sweep, cell_id FROM sweep_cells").fetchall())


def test_membership_is_the_manifest_now_before_and_after_a_rebuild(tmp_path):
    results = make_results(tmp_path)
    store.ingest(results)
    assert ("t", "bad000000000") in _sweep_cells(results)
    # `run` rewrote the manifest: a setting was edited, bad000000000 is no cell of the sweep any more
    manifest = results / "t" / "sweep.json"
    man = json.loads(manifest.read_text())
    del man["cells"]["bad000000000"]
    manifest.write_text(json.dumps(man))
    store.ingest(results)
    after = _sweep_cells(results)
    assert after == {("t", "good00000000"), ("u", "good00000000")}
    assert set(store.history(results, "t")) == {"bad000000000"}
    store.rebuild(results)
    assert _sweep_cells(results) == after


def test_a_copied_sweep_folder_is_read_once_and_named_in_one_line(tmp_path, caplog):
    results = make_results(tmp_path)
    store.ingest(results)
    shutil.copytree(results / "t", results / "t-backup")  # a later copy: newer DONE files
    caplog.set_level(logging.WARNING)
    for again in range(2):
        caplog.clear()
        counts = store.ingest(results)
        assert counts["cells"] == 0, again  # never re-loaded from the copy
        lines = [r.getMessage() for r in caplog.records if "several folders" in r.getMessage()]
        assert len(lines) == 1, lines
        assert str(results / "t") in lines[0] and str(results / "t-backup") in lines[0]
        assert f"read once, from {results / 't'} " in lines[0]
    caplog.clear()
    counts = store.rebuild(results)
    assert counts["cells"] == 2
    assert not any("aborted" in r.getMessage().lower() for r in caplog.records)
    with store.connect(store.db_path(results), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 2
    # the copy's manifest names sweep t: it is no sweep of its own
    assert {s for s, _ in _sweep_cells(results)} == {"t", "u"}


def test_a_linked_cell_is_one_cell_and_no_copy(tmp_path, caplog):
    results = make_results(tmp_path)
    (results / "u" / "good00000000").symlink_to("../t/good00000000", target_is_directory=True)
    caplog.set_level(logging.WARNING)
    assert store.rebuild(results)["cells"] == 2
    assert not any("several folders" in r.getMessage() for r in caplog.records)
    assert store.ingest(results)["cells"] == 0


def test_a_pivot_pooling_runs_of_other_settings_says_which(tmp_path):
    """Two runs with the same axes (model, reward, clip, seed 0 and 1) whose learning rates differ: the
    pivot cell pools them, and a note names the setting and its values."""
    with StoreBuilder(tmp_path / "r" / "spurisweep.duckdb") as b:
        b.baseline("m", "math500", outcomes(0.2))
        for seed, lr in ((0, "5e-07"), (1, "1e-06")):
            cid = b.cell("m", "random", seed=seed, settings={"train.learning_rate": lr})
            b.con.execute(
                "UPDATE sweep_cells SET axes = ? WHERE cell_id = ?",
                [json.dumps({"model": "m", "reward": "random", "seed": seed}), cid],
            )
            b.evaluation(cid, 10, "math500", outcomes(0.5))
    from spurisweep.analysis import report

    with store.connect(tmp_path / "r" / "spurisweep.duckdb", read_only=True) as con:
        p = report.pivot(con, sweep="t", rows="model", cols="reward")
        separated = report.pivot(con, sweep="t", rows="model", cols="train.learning_rate")
    assert p.cells[("m", "random")]["n"] == 2
    (note,) = [n for n in p.notes if "settings differ" in n]
    assert "train.learning_rate (1e-06, 5e-07)" in note and "seed" not in note.split(":")[1]
    assert not any("settings differ" in n for n in separated.notes)


def test_report_and_status_say_how_many_earlier_cells_are_not_shown(smoke_results, tmp_path):
    """The smoke sweep with one setting edited since it ran: its four cells are earlier cells."""
    res = tmp_path / "results"
    shutil.copytree(smoke_results, res)
    edited = tmp_path / "smoke.yaml"
    edited.write_text(
        (ROOT / "sweeps" / "smoke.yaml").read_text() + "settings:\n  train: {learning_rate: 0.01}\n"
    )
    status = run_cli("status", str(edited), "--results", str(res))
    assert "4 earlier cell(s) of this sweep (other settings) are not shown" in status.stderr, status.stderr
    assert "4 pending" in status.stdout
    report = run_cli("report", "--sweep", "smoke", "--format", "json", "--results", str(res))
    assert json.loads(report.stdout)["cells"] == []  # its current cells have not run yet
    assert "4 earlier cell(s) of sweep smoke (other settings) are not shown" in report.stderr
    history = run_cli("report", "--sweep", "smoke", "--history", "--format", "json", "--results", str(res))
    assert sum(c["n"] for c in json.loads(history.stdout)["cells"]) == 4


# ---------------------------------------------------------------------------------------------- end to end
def _report(res: Path, *args: str) -> tuple[str, str]:
    proc = run_cli("report", "--pivot", "model,reward", "--format", "json", *args, "--results", str(res))
    return proc.stdout, proc.stderr


@pytest.mark.slow
def test_an_edited_setting_leaves_the_old_cell_as_history_the_same_after_a_rebuild(tmp_path):
    res = tmp_path / "res"
    path = sweep_file(tmp_path, "edit", "[ground_truth]")
    for extra in ("", ", learning_rate: 0.01"):  # the second run: a setting that is no axis, edited
        path.write_text(SWEEP.format(name="edit", rewards="[ground_truth]", extra=extra))
        run_cli("run", str(path), "--executor", "local", "--results", str(res))
    current, earlier = _report(res, "--sweep", "edit")
    assert json.loads(current)["cells"][0]["n"] == 1
    assert "1 earlier cell(s) of sweep edit (other settings) are not shown; --history shows them" in earlier
    both, _ = _report(res, "--sweep", "edit", "--history")
    table = json.loads(both)
    assert table["cells"][0]["n"] == 2
    assert any("train.learning_rate (0.01, 0.02)" in n for n in table["notes"]), table["notes"]
    status = run_cli("status", str(path), "--results", str(res))
    assert "1 earlier cell(s) of this sweep" in status.stderr, status.stderr
    before = [_report(res, "--sweep", "edit"), _report(res, "--sweep", "edit", "--history"), _report(res)]
    run_cli("ingest", "--rebuild", "--results", str(res))
    after = [_report(res, "--sweep", "edit"), _report(res, "--sweep", "edit", "--history"), _report(res)]
    assert after == before


@pytest.mark.slow
def test_two_sweeps_sharing_a_cell_run_at_once_train_it_once(tmp_path):
    a_file = sweep_file(tmp_path, "a", "[ground_truth, random]")
    b_file = sweep_file(tmp_path, "b", "[ground_truth, format]")
    res = tmp_path / "res"
    procs = [
        popen("run", str(f), "--executor", "local", "--max-parallel", "1", "--results", str(res))
        for f in (a_file, b_file)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, errs) in zip(procs, outs, strict=True):
        assert p.returncode == 0, out + errs
    a, b = cells_of(a_file), cells_of(b_file)
    shared = a[0].id
    folders = [res / "a" / shared, res / "b" / shared]
    wait_for(lambda: all((d / "DONE").exists() for d in folders), 600, "the shared cell")
    assert sum(d.is_symlink() for d in folders) == 1  # one folder, linked from the other sweep
    assert len(claim.attempts(folders[0])) == 1  # trained once: one start of training
    for name, cells in (("a", a), ("b", b)):
        assert [s.state for s in launch.states(cells, res)] == ["done", "done"]
        rows = json.loads(_report(res, "--sweep", name)[0])["cells"]
        assert {r["reward"] for r in rows} == {c.axes["reward"] for c in cells}
    rebuilt = run_cli("ingest", "--rebuild", "--results", str(res))
    assert "several folders" not in rebuilt.stderr and "ingested 3 cell(s)" in rebuilt.stdout
