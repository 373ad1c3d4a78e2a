"""Local jobs outlive the terminal of the `run` that started them (issue 24, point 1).

A terminal sends Ctrl-C to its whole foreground process group, and a hang-up (the terminal closed, an ssh
session dropped) to its session leader, which a shell resends to its jobs. Here a pseudo-terminal plays the
terminal and a small launcher the shell: session leader of the pty, it runs `spurisweep run` as the
terminal's foreground process group and resends a hang-up to it, as bash does. Ctrl-C is typed (b"\\x03"
written to the pty's master side), or the whole group is signalled (os.killpg, SIGINT or SIGHUP), or the
terminal goes away (the master side closed). Each time `run` detaches with 128 + the signal, the job is
still alive after `run` has ended, and the cell finishes `done`, trained once. A signal sent to the job
itself leaves the cell `killed`, never `failed`, and a plain `run` resumes it. Real CLI, real submitit
local jobs, TRL on the tiny model (the smoke preset)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import submitit

from spurisweep import launch
from spurisweep.launch import claim, local
from spurisweep.launch.submission import Detached, critical, detachable
from spurisweep.plan import grid, spec
from tests.claimhelpers import trained_once, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]

ONE = """
name: detach
preset: smoke
grid:
  model: [tiny]
  reward: [random]
  seed: [0]
settings:
  train: {steps: 24}
  eval: {limit: 4}
"""

# the shell's part: session leader of the pty (its controlling terminal), the command in a process group of
# its own made the terminal's foreground group, a hang-up resent to that group; exits with the command's
# status (100 + the signal when a signal ended it, so that a death by SIGHUP never reads as exit 129)
SHELL = r"""
import fcntl, os, signal, sys, termios
pidfile, argv = sys.argv[1], sys.argv[2:]
os.setsid()
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.execv(argv[0], argv)
for s in (signal.SIGINT, signal.SIGQUIT, signal.SIGTTOU):
    signal.signal(s, signal.SIG_IGN)
signal.signal(signal.SIGHUP, lambda *a: os.killpg(pid, signal.SIGHUP))
try:
    os.setpgid(pid, pid)
except OSError:
    pass
os.tcsetpgrp(0, pid)
with open(pidfile, "w") as f:
    f.write(str(pid))
while True:
    try:
        _, status = os.waitpid(pid, 0)
        break
    except InterruptedError:
        continue
sys.exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 100 + os.WTERMSIG(status))
"""


class Terminal:
    """`spurisweep run` in a pseudo-terminal, started by SHELL; what it writes is read (and kept) until
    the terminal is closed."""

    def __init__(self, tmp: Path, *args: str):
        self.master, slave = os.openpty()
        self.pidfile = tmp / "fg.pid"
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SHELL, str(self.pidfile), *EXE, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
        )
        os.close(slave)
        self.out = bytearray()
        self.open = True
        threading.Thread(target=self._read, daemon=True).start()
        wait_for(lambda: self.pidfile.exists() and self.pidfile.read_text(), 30, "the shell to start `run`")

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.out.extend(chunk)

    @property
    def foreground(self) -> int:
        """The process group of `run` (its pid: the shell made it a group leader)."""
        return int(self.pidfile.read_text())

    def close(self) -> None:
        if self.open:
            self.open = False
            os.close(self.master)

    def text(self) -> str:
        return self.out.decode(errors="replace")


def running_job(cell: Path, timeout: float = 300) -> dict:
    """The cell's status once its job trains (the job's pid and id in it)."""
    status = cell / "status.json"
    wait_for(
        lambda: status.exists() and json.loads(status.read_text()).get("state") == "running",
        timeout,
        "the job to start training",
    )
    return json.loads(status.read_text())


def alive(pid: int) -> bool:
    return claim.pid_alive(pid)


def ctrl_c(term: Terminal) -> None:
    os.write(term.master, b"\x03")  # typed: the terminal signals its foreground group


def killpg_int(term: Terminal) -> None:
    os.killpg(term.foreground, signal.SIGINT)


def hang_up(term: Terminal) -> None:
    term.close()  # the terminal goes away: SIGHUP to the shell, which resends it to `run`


def killpg_hup(term: Terminal) -> None:
    os.killpg(term.foreground, signal.SIGHUP)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "code", "name"),
    [
        (ctrl_c, 130, "SIGINT"),
        (killpg_int, 130, "SIGINT"),
        (hang_up, 129, "SIGHUP"),
        (killpg_hup, 129, "SIGHUP"),
    ],
    ids=["ctrl-c typed", "killpg SIGINT", "terminal closed", "killpg SIGHUP"],
)
def test_a_terminal_signal_detaches_run_and_its_local_jobs_finish(tmp_path, how, code, name):
    sweep = tmp_path / "detach.yaml"
    sweep.write_text(ONE)
    res = tmp_path / "res"
    (cell,) = grid.expand(spec.load_sweep(sweep))
    d = res / "detach" / cell.id
    term = Terminal(tmp_path, "run", str(sweep), "--results", str(res))
    try:
        st = running_job(d)
        job, worker = int(st["job_id"]), int(st["pid"])
        assert os.getsid(job) == job  # the job leads a session of its own: no terminal of ours reaches it
        assert os.getpgid(worker) != term.foreground
        how(term)
        assert term.proc.wait(60) == code, term.text()
        # `run` has ended; its job has not: still training, in its own session
        assert not (d / "DONE").exists(), "the cell finished before the signal: the test proved nothing"
        assert alive(worker) and alive(job)
        if term.open:
            time.sleep(0.5)
            assert f"detached ({name}): jobs keep running" in term.text(), term.text()
    finally:
        term.close()
        if term.proc.poll() is None:
            term.proc.kill()
    wait_for(lambda: (d / "DONE").exists() or not alive(worker), 600, "the job to end")
    assert launch.states([cell], res)[0].state == "done", (d / "status.json").read_text()
    trained_once(res, "detach", [cell])  # one start of training: never killed and started again


@pytest.mark.slow
def test_cells_not_started_at_ctrl_c_are_left_pending_and_a_plain_run_submits_them(tmp_path):
    """--max-parallel 1 over two cells: Ctrl-C while the first trains. It finishes; the second, claimed but
    never started, reads pending at once (its controller ended) and the next `run` trains it."""
    sweep = tmp_path / "detach.yaml"
    sweep.write_text(ONE.replace("seed: [0]", "seed: [0, 1]"))
    res = tmp_path / "res"
    cells = grid.expand(spec.load_sweep(sweep))
    term = Terminal(tmp_path, "run", str(sweep), "--results", str(res), "--max-parallel", "1")
    try:
        st = running_job(res / "detach" / cells[0].id)
        ctrl_c(term)
        assert term.proc.wait(60) == 130, term.text()
        time.sleep(0.5)
        assert "1 cell(s) not started yet are left pending" in " ".join(term.text().split()), term.text()
    finally:
        term.close()
        if term.proc.poll() is None:
            term.proc.kill()
    sts = launch.states(cells, res)
    assert sts[1].state == "pending" and "stale claim" in str(sts[1].error), (sts[1].state, sts[1].error)
    wait_for(lambda: not alive(int(st["pid"])), 600, "the first job to end")
    assert launch.states(cells, res)[0].state == "done"
    again = subprocess.run(
        [*EXE, "run", str(sweep), "--results", str(res)], capture_output=True, text=True, cwd=ROOT
    )
    assert again.returncode == 0, again.stdout + again.stderr
    trained_once(res, "detach", cells)


@pytest.mark.slow
def test_ctrl_c_in_a_pipeline_whose_reader_dies_with_it_still_detaches(tmp_path):
    """`spurisweep run ... | tee log` and Ctrl-C: the reader dies too, and the progress bar's last drawing
    meets a broken pipe. `run` still exits 130 and its job finishes."""
    sweep = tmp_path / "detach.yaml"
    sweep.write_text(ONE)
    res = tmp_path / "res"
    (cell,) = grid.expand(spec.load_sweep(sweep))
    d = res / "detach" / cell.id
    read, write = os.pipe()
    with open(tmp_path / "run.err", "w") as errors:
        proc = subprocess.Popen(
            [*EXE, "run", str(sweep), "--results", str(res)], stdout=write, stderr=errors, cwd=ROOT
        )
    os.close(write)
    try:
        st = running_job(d)
        os.close(read)  # the reader is gone
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130, (tmp_path / "run.err").read_text()
        assert not (d / "DONE").exists() and alive(int(st["pid"]))
        assert "detached (SIGINT)" in (tmp_path / "run.err").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_for(lambda: (d / "DONE").exists() or not alive(int(st["pid"])), 600, "the job to end")
    assert launch.states([cell], res)[0].state == "done"
    trained_once(res, "detach", [cell])


@pytest.mark.slow
def test_a_signal_sent_to_the_job_itself_leaves_the_cell_killed_and_a_plain_run_resumes_it(tmp_path):
    """Someone interrupts the job on purpose (its whole process group, as `kill -INT -<pgid>`): the cell
    reads `killed` (resumable), never `failed: KeyboardInterrupt`, and a plain `run` finishes it."""
    sweep = tmp_path / "detach.yaml"
    sweep.write_text(ONE)
    res = tmp_path / "res"
    (cell,) = grid.expand(spec.load_sweep(sweep))
    d = res / "detach" / cell.id
    first = subprocess.run(
        [*EXE, "run", str(sweep), "--results", str(res), "--no-wait"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert first.returncode == 0, first.stdout + first.stderr
    st = running_job(d)
    os.killpg(os.getpgid(int(st["job_id"])), signal.SIGINT)
    wait_for(lambda: not alive(int(st["pid"])) and not alive(int(st["job_id"])), 60, "the job to stop")
    state = launch.states([cell], res)[0]
    assert state.state == "killed", (state.state, state.error)
    assert "KeyboardInterrupt" not in str(state.error)
    status = subprocess.run(
        [*EXE, "status", str(sweep), "--results", str(res)], capture_output=True, text=True, cwd=ROOT
    )
    assert status.returncode == 0 and "1 killed" in status.stdout, status.stdout
    again = subprocess.run(
        [*EXE, "run", str(sweep), "--results", str(res)], capture_output=True, text=True, cwd=ROOT
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert launch.states([cell], res)[0].state == "done"
    assert len(claim.attempts(d)) == 2


# ---------------------------------------------------------------------------------------------- the parts
def test_local_jobs_start_in_a_session_of_their_own(tmp_path):
    ex = submitit.AutoExecutor(folder=tmp_path, cluster="local")
    ex.update_parameters(timeout_min=1, local_setup=["export X=1"])
    with local._own_session():
        job = ex.submit(time.sleep, 30)
    pid = int(job.job_id)
    try:
        assert os.getsid(pid) == pid and os.getpgid(pid) == pid
        assert os.getsid(pid) != os.getsid(0)
    finally:
        os.killpg(pid, signal.SIGKILL)
    # submitit's module is left as it was
    from submitit.local import local as submitit_local

    assert submitit_local.subprocess is subprocess


def test_a_detaching_signal_raises_its_exit_code_and_waits_for_a_critical_section():
    for sig, code in ((signal.SIGINT, 130), (signal.SIGHUP, 129), (signal.SIGTERM, 143)):
        before = signal.getsignal(sig)
        with pytest.raises(Detached) as caught, detachable():
            os.kill(os.getpid(), sig)
            time.sleep(1)
        assert caught.value.exit_code == code
        assert signal.getsignal(sig) is before  # restored
    # inside a critical section (a job queued, not yet recorded) the signal waits for its end
    done = []
    with pytest.raises(Detached), detachable():
        with critical():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            done.append("recorded")
        done.append("after")
    assert done == ["recorded"]


def test_a_signal_ignored_at_start_stays_ignored(tmp_path):
    """Under nohup (SIGHUP ignored) a hang-up must not stop `run`."""
    code = (
        "import os, signal, time\n"
        "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "from spurisweep.launch.submission import detachable\n"
        "with detachable():\n"
        "    os.kill(os.getpid(), signal.SIGHUP)\n"
        "    time.sleep(0.3)\n"
        "print('still here')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0 and "still here" in out.stdout, out.stderr
