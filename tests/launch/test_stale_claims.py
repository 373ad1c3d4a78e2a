"""Claims that outlive their controller, and commands over a sweep whose inputs moved (issue 24, points 5
and 4).

A claim (`submitting`, launch/claim.py) made on another host cannot be checked by pid: it is trusted only
while its controller's heartbeat is fresh (claim.CLAIM_EXPIRY_S), never for hours; `status` says who holds
a claim and since when; `cancel` and `run --retry-failed` clear a live one, saying so. The claims here are
written as another host's controller would write them (a host name that is not this one, a pid, its
heartbeat file), with an old heartbeat and with a fresh one.

`status` and `cancel` look at and stop what was submitted: a data set or model folder moved since must not
stop them; `run` refuses in one line."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from spurisweep import artifacts, launch
from spurisweep.launch import claim
from spurisweep.plan import grid, spec
from tests.claimhelpers import trained_once, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]
OTHER = "restarted-container-7f3a"  # a host name that is not this one

TWO = """
name: held
preset: smoke
grid:
  model: [tiny]
  reward: [random]
  seed: [0, 1]
settings:
  train: {steps: 2}
  eval: {limit: 4}
"""


def cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200"}  # rich's tables, wide enough not to wrap the lines looked for
    return subprocess.run([*EXE, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=env)


def detail(table: str) -> str:
    """The state table's detail column, its folded lines joined (rich folds long text within a column)."""
    parts = [line.split("│")[-2].strip() for line in table.splitlines() if line.count("│") >= 3]
    return " ".join(p for p in parts if p)


def foreign_claim(res: Path, cell, *, since: float, beat: float | None, pid: int = 4242) -> Path:
    """The cell as another host's controller leaves it: config written, `submitting`, its claim naming that
    host and its heartbeat file (written with time `beat`; none when None)."""
    d = launch.write_cell_config(cell, res)
    name = f"{OTHER}-{pid}-123.json"
    if beat is not None:
        hb = res / cell.sweep / claim.HEARTBEATS / name
        hb.parent.mkdir(parents=True, exist_ok=True)
        hb.write_text(json.dumps({"host": OTHER, "pid": pid, "time": beat}))
    who = {"host": OTHER, "pid": pid, "start": 123, "pidns": "pid:[1]", "time": since, "heartbeat": name}
    artifacts.CellDir(d).set_status(claim.SUBMITTING, job_id=None, claim=who, error=None)
    return d


def held_sweep(tmp_path: Path):
    sweep = tmp_path / "held.yaml"
    sweep.write_text(TWO)
    res = tmp_path / "res"
    return sweep, res, grid.expand(spec.load_sweep(sweep))


# ---------------------------------------------------------------------------------------------- point 5
def test_a_claim_from_another_host_with_an_old_heartbeat_is_stale_and_run_takes_it(tmp_path):
    sweep, res, cells = held_sweep(tmp_path)
    hours_ago = time.time() - 5 * 3600  # within the old 6-hour trust, far beyond the heartbeat's
    foreign_claim(res, cells[0], since=hours_ago, beat=hours_ago + 60)
    foreign_claim(res, cells[1], since=time.time() - 3 * claim.CLAIM_EXPIRY_S, beat=None)  # no heartbeat file
    sts = launch.states(cells, res)
    assert [s.state for s in sts] == ["pending", "pending"], [(s.state, s.error) for s in sts]
    assert (
        OTHER in str(sts[0].error)
        and "stale claim" in str(sts[0].error)
        and "no heartbeat for" in sts[0].error
    )
    plan, _ = launch.plan_submission(cells, res, retry_failed=False)
    assert plan.to_submit == cells and [c for c, _ in plan.cleared] == cells

    status = cli("status", str(sweep), "--results", str(res))
    assert status.returncode == 0, status.stderr
    assert "2 pending" in status.stdout and f"stale claim: its controller (host {OTHER} pid 4242" in detail(
        status.stdout
    )
    dry = cli("run", str(sweep), "--results", str(res), "--dry-run")
    assert dry.returncode == 0 and "would submit 2 of 2" in dry.stdout, dry.stdout + dry.stderr
    assert "would clear a claim" in dry.stderr and OTHER in dry.stderr


def test_a_claim_from_another_host_with_a_fresh_heartbeat_is_live_status_names_it_cancel_clears_it(tmp_path):
    sweep, res, cells = held_sweep(tmp_path)
    since = time.time() - 3 * 3600  # claimed long ago, but its controller still beats
    for c in cells:
        foreign_claim(res, c, since=since, beat=time.time())
    sts = launch.states(cells, res)
    assert [s.state for s in sts] == ["submitting"] * 2
    h = sts[0].holder
    assert h is not None and h.alive and not h.local and h.host == OTHER and h.pid == 4242
    plan, _ = launch.plan_submission(cells, res, retry_failed=False)
    assert plan.to_submit == [] and plan.skipped == {"submitting": cells}

    # status: who holds the claim and since when
    status = cli("status", str(sweep), "--results", str(res))
    assert status.returncode == 0, status.stderr
    assert "2 submitting" in status.stdout
    text = detail(status.stdout)
    assert f"claimed by controller host {OTHER} pid 4242 since" in text, status.stdout
    assert time.strftime("%Y-%m-%d %H:%M", time.localtime(since)) in text and "last heartbeat" in text

    # run --retry-failed takes a live claim of another host over, saying so
    dry = cli("run", str(sweep), "--results", str(res), "--dry-run", "--retry-failed")
    assert dry.returncode == 0 and "would submit 2 of 2" in dry.stdout, dry.stdout + dry.stderr
    assert "would clear a claim" in dry.stderr and "--retry-failed" in dry.stderr
    assert "skipped: 2 submitting" in cli("run", str(sweep), "--results", str(res), "--dry-run").stdout

    # cancel clears it, saying whose it was; the cell is cancelled, and a plain `run` submits it again
    out = cli("cancel", str(sweep), "--results", str(res), "--cell", cells[0].id)
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    assert f"cleared the claim on cell {cells[0].id} by controller host {OTHER} pid 4242" in text, out.stdout
    sts = launch.states(cells, res)
    assert [s.state for s in sts] == ["cancelled", "submitting"]
    assert artifacts.CellDir(res / "held" / cells[0].id).status().get("claim") is None
    plan, _ = launch.plan_submission(cells, res, retry_failed=False)
    assert plan.to_submit == [cells[0]]


def test_a_heartbeat_expires_and_a_claim_of_this_host_is_checked_by_pid_and_start(tmp_path, monkeypatch):
    sweep, res, cells = held_sweep(tmp_path)
    d = foreign_claim(res, cells[0], since=time.time(), beat=None)
    assert launch.states(cells[:1], res)[0].state == "submitting"  # just claimed: its claim time counts
    st = artifacts.CellDir(d).status()
    monkeypatch.setattr(claim.time, "time", lambda: st["claim"]["time"] + claim.CLAIM_EXPIRY_S + 1)
    assert not claim.claim_alive(st, d.parent)
    monkeypatch.undo()

    # a claim of this host: its pid must be the same process (a restarted container counts pids from 1)
    who = claim.owner()
    mine = {"claim": who}
    assert claim.holder(mine).local and claim.claim_alive(mine)
    reused = {"claim": {**who, "start": (who["start"] or 0) + 1}}  # same pid, another process
    assert not claim.claim_alive(reused)


def test_a_controller_keeps_its_heartbeat_while_it_lives_and_removes_it_when_it_ends(tmp_path):
    """Seen from another host (a different host name), a live controller's claim stays live past the
    expiry while it beats, and ends with it."""
    sweep_dir = tmp_path / "res" / "held"
    code = (
        "import json, sys, time\n"
        "from pathlib import Path\n"
        "from spurisweep.launch import claim\n"
        "claim.HEARTBEAT_S = 0.2\n"
        f"who = claim.owner(Path({str(sweep_dir)!r}))\n"
        "print(json.dumps(who), flush=True)\n"
        "sys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        who = json.loads(proc.stdout.readline())
        elsewhere = {"claim": {**who, "host": OTHER, "time": time.time() - 10 * claim.CLAIM_EXPIRY_S}}
        hb = sweep_dir / claim.HEARTBEATS / who["heartbeat"]
        first = json.loads(hb.read_text())["time"]
        wait_for(lambda: json.loads(hb.read_text())["time"] > first, 10, "a second heartbeat")
        assert claim.claim_alive(elsewhere, sweep_dir)
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert not hb.exists()
    assert not claim.claim_alive(elsewhere, sweep_dir)


@pytest.mark.slow
def test_run_trains_a_stale_foreign_claim_and_retry_failed_a_live_one(tmp_path):
    """A cell frozen by a stale claim of another host: a plain `run` trains it and exits 0 with the sweep
    finished; a cell claimed by a live controller elsewhere is left to it, said, and `run --retry-failed`
    takes it over."""
    sweep, res, cells = held_sweep(tmp_path)
    # two controllers of that host: one long gone, one alive
    foreign_claim(res, cells[0], since=time.time() - 5 * 3600, beat=time.time() - 5 * 3600, pid=4141)
    foreign_claim(res, cells[1], since=time.time(), beat=time.time())
    hb = res / "held" / claim.HEARTBEATS / f"{OTHER}-4242-123.json"
    stop = threading.Event()

    def beat() -> None:  # the other host's controller, alive
        while not stop.wait(1):
            if hb.exists():
                hb.write_text(json.dumps({"host": OTHER, "pid": 4242, "time": time.time()}))

    threading.Thread(target=beat, daemon=True).start()
    try:
        out = cli("run", str(sweep), "--results", str(res))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "cleared a claim on cell " + cells[0].id in out.stderr and OTHER in out.stderr
        assert f"submitting {cells[1].id}" in out.stderr and "claimed by controller" in out.stderr
        sts = launch.states(cells, res)
        assert [s.state for s in sts] == ["done", "submitting"]
    finally:
        stop.set()
    again = cli("run", str(sweep), "--results", str(res), "--retry-failed")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "cleared a claim on cell " + cells[1].id in again.stderr and "--retry-failed" in again.stderr
    assert [s.state for s in launch.states(cells, res)] == ["done", "done"]
    trained_once(res, "held", cells)


# ---------------------------------------------------------------------------------------------- point 4
MOVED = """
name: moved
preset: smoke
grid:
  model: [tiny]
  reward: [random]
  seed: [0, 1]
settings:
  model_path: {model}
  data: {{train: {data}}}
"""


def test_status_and_cancel_work_once_an_input_has_moved_and_run_refuses_in_one_line(tmp_path):
    data = tmp_path / "in" / "train.jsonl"
    data.parent.mkdir()
    data.write_text("".join(json.dumps({"problem": f"{i}+1", "answer": str(i + 1)}) + "\n" for i in range(8)))
    model = tmp_path / "in" / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "max_position_embeddings": 2048}))
    sweep = tmp_path / "moved.yaml"
    sweep.write_text(MOVED.format(model=model, data=data))
    res = tmp_path / "res"
    cells = grid.expand(spec.load_sweep(sweep))
    # cell 0 runs (a local job: a process in a session of its own), cell 1 is pending
    job = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        d = launch.write_cell_config(cells[0], res)
        artifacts.CellDir(d).set_status("running", job_id=str(job.pid), executor="local", pid=job.pid)
        assert launch.states(cells, res)[0].state == "running"

        shutil.move(data, tmp_path / "train-moved.jsonl")
        shutil.move(model, tmp_path / "model-moved")

        status = cli("status", str(sweep), "--results", str(res))
        assert status.returncode == 0, status.stderr
        assert "1 running" in status.stdout and "1 pending" in status.stdout
        out = cli("cancel", str(sweep), "--results", str(res))
        assert out.returncode == 0 and "cancelled 1 job" in out.stdout, out.stdout + out.stderr
        assert job.wait(30) is not None
        status = cli("status", str(sweep), "--results", str(res))
        assert status.returncode == 0 and "1 cancelled" in status.stdout, status.stdout + status.stderr

        # the commands that submit check their inputs: one line naming the file and the setting
        run = cli("run", str(sweep), "--results", str(res))
        assert run.returncode == 2, run.stdout + run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "model_path" in run.stderr and str(sweep) in run.stderr
        shutil.move(tmp_path / "model-moved", model)
        run = cli("run", str(sweep), "--results", str(res), "--dry-run")
        assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert "data.train" in run.stderr and "train.jsonl" in run.stderr
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait()
