"""One run per cell, whatever runs at once: the controller's claims and the job's running lock.

Two controllers (`spurisweep run` started twice, on one sweep or on two sweeps that share cells, in one
results folder) must never train a cell twice, and a controller that crashes between queueing a job and
recording it must not leave a cell that looks pending while its job runs. A cell has one folder in the
whole results folder: the first sweep to run it holds it (results/A/<cell>), and every other sweep that
has the same cell (the same id: the same config) links to it (results/B/<cell> -> ../A/<cell>, made by
state.link_shared), so the claim, the running lock, the attempts log and the results below are per cell
id, not per sweep. Three mechanisms, each covering what the one before cannot:

1. **The submit lock** (results/.submit.lock, a filelock for the whole results folder): a controller holds
   it while it links shared cells, reads the cell states, decides what to submit and claims those cells,
   so two controllers (of one sweep or of two) never both see a cell as pending and both choose it.
2. **The claim**: before a cell's job is queued its status.json says `submitting`, with the claiming
   controller's host, pid, process start time, pid namespace, sweep and time, and the name of its heartbeat
   file. Another controller sees a live claim as active and leaves the cell alone; a claim whose
   controller died is resolved through the running lock (a job holds it: the cell is running) or else
   given up (the cell is pending again). A claim made here (same host and pid namespace) is live while its
   pid is the same process; one made elsewhere (another host: a restarted container has a new host name)
   cannot be checked by pid, and is live only while its controller's heartbeat
   (results/<its sweep>/.controllers/<file>, rewritten every HEARTBEAT_S by a thread of the controller while
   it lives, removed when it exits) is younger than CLAIM_EXPIRY_S. `cancel` and `run --retry-failed` clear
   a live claim of another host (the user knows better); `status` shows who holds a claim and since when.
   The backend then records `queued` with the job id before the job may start: SLURM arrays go out held
   and are released after the record; a local job waits (`wait_for_record`) while its cell is claimed by a
   live controller. A job whose cell was cancelled meanwhile (the CANCELLED marker) does not train.
3. **The running lock** (<the cell's folder>/.running.lock, a filelock held for the life of the job by
   rank 0): a job that cannot take it, because another live job holds it, exits without touching the
   cell's files. A job that takes it records itself in the cell's attempts log (attempts.jsonl: job id,
   pid, host, time) before it trains, so every start of training leaves one line.

The running lock is an flock: the kernel drops it when the process dies (kill -9, node failure), so a
killed cell can be resubmitted at once; on NFS, Linux emulates flock with the server's byte-range locks.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from .. import artifacts

log = logging.getLogger(__name__)

SUBMITTING = "submitting"
#: the results folder's submit lock (one for every sweep in it: sweeps share cells)
SUBMIT_LOCK = ".submit.lock"
#: marker file written by `cancel` in a cell's folder, removed when the cell is submitted again
CANCELLED = "CANCELLED"
#: the sweep folder's folder of controller heartbeats (one file per live controller)
HEARTBEATS = ".controllers"
#: a controller rewrites its heartbeat this often while it lives
HEARTBEAT_S = 15.0
#: a claim that cannot be checked by pid (made on another host) is live while its heartbeat is this fresh
CLAIM_EXPIRY_S = 120.0
#: rank 0 waits this long for the running lock: a controller probing it holds it for an instant only
JOB_LOCK_TIMEOUT_S = 10.0
#: a local job waits this long for its controller to record `queued` (it takes milliseconds)
RECORD_WAIT_S = 120.0
#: ranks > 0 wait this long for their rank 0 to take the running lock
RANK_WAIT_S = 300.0
#: test hook: the controller exits right after queueing jobs, before recording them (issue 15)
CRASH_AFTER_SUBMIT = "SPURISWEEP_TEST_CRASH_AFTER_SUBMIT"


# ---------------------------------------------------------------------------------------------- controller
@contextlib.contextmanager
def submit_lock(results: Path) -> Iterator[None]:
    """Held while a controller links shared cells, decides what to submit and claims it (see the module
    docstring): one lock for the whole results folder, since two sweeps may share cells."""
    results = Path(results)
    results.mkdir(parents=True, exist_ok=True)
    path = results / SUBMIT_LOCK
    lock = FileLock(str(path))
    t0 = time.time()
    while True:
        try:
            lock.acquire(timeout=10)
            break
        except Timeout:
            log.warning("waiting for %s (another `run` in this results folder is choosing its cells)", path)
    try:
        if time.time() - t0 > 1:
            log.info("took %s after %.0f s", path, time.time() - t0)
        yield
    finally:
        lock.release()


def owner(sweep_dir: Path | None = None) -> dict[str, Any]:
    """Who claims: this controller process. With `sweep_dir` (the folder of the sweep it claims for), its
    heartbeat there starts (or goes on), and the claim names that sweep."""
    pid = os.getpid()
    who: dict[str, Any] = {
        "host": socket.gethostname(),
        "pid": pid,
        "start": proc_start(pid),
        "pidns": _pid_namespace(),
        "time": time.time(),
    }
    if sweep_dir is not None:
        who["heartbeat"] = _HEARTBEAT.beat(Path(sweep_dir))
        who["sweep"] = Path(sweep_dir).name
    return who


def crash_hook() -> None:
    """Tests only: die like a controller killed between queueing jobs and recording them."""
    if os.environ.get(CRASH_AFTER_SUBMIT):
        os._exit(1)


@dataclass
class Holder:
    """The controller that claimed a cell, and whether it is still there (see the module docstring)."""

    host: str
    pid: int
    since: float | None  # when it claimed the cell
    local: bool  # made here: checked by pid; else by heartbeat
    alive: bool
    beat: float | None = None  # its last heartbeat (a claim made elsewhere)

    def __str__(self) -> str:
        since = f" since {_clock(self.since)}" if self.since else ""
        text = f"host {self.host} pid {self.pid}{since}"
        if self.local:
            return text + ("" if self.alive else ", ended")
        if self.beat is None:
            return text + ", no heartbeat"
        age = max(0.0, time.time() - self.beat)
        return text + (
            f", last heartbeat {_age(age)} ago" if self.alive else f", no heartbeat for {_age(age)}"
        )


def holder(status: dict[str, Any], sweep_dir: Path | None = None) -> Holder | None:
    """Who claimed this cell (its status.json), None without a readable claim. `sweep_dir`: the folder of the
    sweep the cell was read in; a claim's heartbeat file lives in the folder of the sweep it names (a cell
    two sweeps share may be claimed for either), else in `sweep_dir`."""
    who = status.get("claim")
    if not isinstance(who, dict):
        return None
    try:
        pid = int(who.get("pid"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    since = _number(who.get("time"))
    host = str(who.get("host"))
    ns = who.get("pidns")
    if host == socket.gethostname() and (ns is None or ns == _pid_namespace()):
        start = who.get("start")
        alive = pid_alive(pid) and (start is None or proc_start(pid) == start)
        return Holder(host, pid, since, local=True, alive=alive)
    beats = [since, _number(who.get("heartbeat"))]  # a number: a heartbeat written into the claim itself
    name = who.get("heartbeat")
    if sweep_dir is not None and _plain_name(name):
        sweep = who.get("sweep")
        folder = Path(sweep_dir).parent / sweep if _plain_name(sweep) else Path(sweep_dir)
        beat = artifacts.read_json(folder / HEARTBEATS / str(name), {})
        beats.append(_number(beat.get("time")) if isinstance(beat, dict) else None)
    last = max((b for b in beats if b is not None), default=None)
    alive = last is not None and time.time() - last < CLAIM_EXPIRY_S
    return Holder(host, pid, since, local=False, alive=alive, beat=last)


def _plain_name(name: object) -> bool:
    """A file or folder name read from a status file that names nothing outside its folder."""
    return isinstance(name, str) and bool(name) and "/" not in name and name[0] != "."


def claim_alive(status: dict[str, Any], sweep_dir: Path | None = None) -> bool:
    """Whether the controller that claimed a cell is still there (see Holder)."""
    h = holder(status, sweep_dir)
    return h is not None and h.alive


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _clock(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def _age(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def proc_start(pid: int) -> int | None:
    """When a process started (clock ticks since boot, /proc/<pid>/stat field 22): with the pid it names one
    process, never a later one given the same pid (a restarted container counts pids from 1 again)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


class _Heartbeat:
    """This controller's heartbeat files (one per sweep folder it claimed cells in), rewritten every
    HEARTBEAT_S by a daemon thread while the process lives and removed when it exits."""

    def __init__(self) -> None:
        self.paths: dict[Path, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.thread: threading.Thread | None = None
        self.pid = os.getpid()

    def beat(self, sweep_dir: Path) -> str:
        pid = os.getpid()
        name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', socket.gethostname()).lstrip('.')}-{pid}-{proc_start(pid)}.json"
        path = sweep_dir / HEARTBEATS / name
        with self.lock:
            if pid != self.pid:  # a forked child: its parent's files are not its own
                self.paths.clear()
                self.thread, self.pid = None, pid
            if path not in self.paths:
                self.paths[path] = {"host": socket.gethostname(), "pid": pid}
                self._write(path)
            if self.thread is None:
                atexit.register(self.stop)
                self.thread = threading.Thread(target=self._loop, name="spurisweep-heartbeat", daemon=True)
                self.thread.start()
        return name

    def _write(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            artifacts.atomic_write_json(path, {**self.paths[path], "time": time.time()}, durable=False)
        except OSError as exc:  # a full disk: the claim then expires, which is safe
            log.warning("could not write the heartbeat %s: %s", path, exc)

    def _loop(self) -> None:
        while True:
            time.sleep(HEARTBEAT_S)
            with self.lock:
                if os.getpid() != self.pid:
                    return
                for path in self.paths:
                    self._write(path)

    def stop(self) -> None:
        with self.lock:
            if os.getpid() != self.pid:
                return
            for path in self.paths:
                with contextlib.suppress(OSError):
                    path.unlink()
            self.paths.clear()


_HEARTBEAT = _Heartbeat()


def pid_alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def job_running(cell_dir: Path) -> bool:
    """Whether a live job holds the cell's running lock. Never creates the lock file; the probe holds the
    lock for an instant only (a job starting meanwhile waits JOB_LOCK_TIMEOUT_S for it)."""
    path = artifacts.CellDir(cell_dir).running_lock_path
    if not path.exists():
        return False
    lock = FileLock(str(path), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:  # a folder we may not write: say nothing runs, as before this lock existed
        return False
    lock.release()
    return False


# ---------------------------------------------------------------------------------------------- the job
@contextlib.contextmanager
def hold_cell(cell: artifacts.CellDir, *, rank: int, job_id: str | None) -> Iterator[bool]:
    """Yields True while this job owns the cell, False when another live job does (touch nothing then).

    Rank 0 takes the running lock and records the attempt; other ranks follow their rank 0: they own the
    cell once the attempts log names their job (a requeued job keeps its id, so they may go ahead of it)."""
    if rank != 0:
        yield _wait_for_rank0(cell, job_id)
        return
    lock = FileLock(str(cell.running_lock_path), thread_local=False)
    try:
        lock.acquire(timeout=JOB_LOCK_TIMEOUT_S)
    except Timeout:
        log.warning("%s: another live job runs this cell; this job (%s) exits", cell.root, job_id)
        yield False
        return
    try:
        wait_for_record(cell)
        if (cell.root / CANCELLED).exists():  # cancelled while its controller was submitting it
            log.warning("%s: the cell was cancelled; this job (%s) exits", cell.root, job_id)
            yield False
            return
        yield True
    finally:
        lock.release()


def record_attempt(cell: artifacts.CellDir, job_id: str | None, **info: Any) -> None:
    """One line per start of training (rank 0, under the running lock: the file has one writer)."""
    rows = artifacts.read_jsonl(cell.attempts_path)
    rows.append(
        {"job_id": job_id, "pid": os.getpid(), "host": socket.gethostname(), "time": time.time(), **info}
    )
    artifacts.atomic_write_jsonl(cell.attempts_path, rows)


def attempts(cell_dir: Path) -> list[dict[str, Any]]:
    return artifacts.read_jsonl(artifacts.CellDir(cell_dir).attempts_path)


def wait_for_record(cell: artifacts.CellDir, timeout: float = RECORD_WAIT_S) -> None:
    """Wait while the cell is claimed by a live controller that has not yet recorded its job."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = cell.status()
        if st.get("state") != SUBMITTING or not claim_alive(st, cell.root.parent):
            return
        time.sleep(0.2)
    log.warning("%s: its controller did not record the job within %.0f s; going ahead", cell.root, timeout)


def _wait_for_rank0(cell: artifacts.CellDir, job_id: str | None) -> bool:
    deadline = time.time() + RANK_WAIT_S
    while time.time() < deadline:
        rows = attempts(cell.root)
        if rows and rows[-1].get("job_id") == job_id:
            return True
        time.sleep(0.5)
    log.warning("%s: rank 0 of job %s never took the cell; this rank exits", cell.root, job_id)
    return False
