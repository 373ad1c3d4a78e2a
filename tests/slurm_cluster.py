"""Pytest plugin: a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd, munge, MariaDB) for tests.

Load it with ``pytest_plugins = ["tests.slurm_cluster"]`` in tests/conftest.py, ``-p tests.slurm_cluster`` on the
command line, or ``from tests.slurm_cluster import slurm_cluster`` in a test module.

The session-scoped fixture ``slurm_cluster`` runs scripts/slurm/start_slurm.sh (which apt-installs the Debian
packages the first time; needs root), points ``SLURM_CONF`` at the test cluster for the whole session (jobs
inherit it), makes submitit's state watcher poll sacct every second instead of backing off to 10 minutes, and
at the end cancels leftover jobs and runs scripts/slurm/stop_slurm.sh -- unless the cluster was already running
before the session, in which case it is left running.

Where the cluster cannot be started (not root, no apt/dpkg, start script failed) the tests are skipped with the
reason -- except when ``CI=true``, where that is a test error so that CI never silently skips SLURM tests.
``SPURISWEEP_SLURM_TESTS=0`` skips them on purpose (still an error under ``CI=true``).
See docs/slurm.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = REPO_ROOT / "scripts" / "slurm"
START_SCRIPT = SCRIPTS / "start_slurm.sh"
STOP_SCRIPT = SCRIPTS / "stop_slurm.sh"
DEFAULT_TEST_DIR = "/tmp/spurisweep-slurm"
PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "slurmdbd", "mariadb-server")
START_TIMEOUT_S = 900  # first start apt-installs the packages
# submitit's SlurmJob.watcher polls sacct at 0, 2, 4, 8, ... s after the last submission, then every delay_s
# (600 s by default); in tests we want at most this many seconds between polls.
WATCHER_DELAY_S = 1


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


def _unavailable(reason: str) -> None:
    """Skip -- or, under CI=true, fail -- because the SLURM test cluster is not available."""
    if _in_ci():
        pytest.fail(
            f"SLURM test cluster unavailable under CI=true (refusing to skip): {reason}", pytrace=False
        )
    pytest.skip(f"SLURM test cluster unavailable: {reason}")


@dataclass
class SlurmCluster:
    """Handle on the running test cluster, with small helpers for tests."""

    test_dir: Path
    conf: Path
    started_here: bool  # True if this session started it (and so stops it at the end)
    start_seconds: float = 0.0
    env: dict[str, str] = field(default_factory=dict)

    # ---- commands --------------------------------------------------------------------------------------
    def run(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        """Run a SLURM client command against this cluster and return its stdout."""
        proc = subprocess.run(
            list(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def sacct_state(self, job_id: str) -> str:
        """Current state of a job (``"123"``) or array task (``"123_4"``) from sacct, e.g. ``"RUNNING"``,
        ``"CANCELLED"`` (the ``by UID`` suffix is dropped); ``""`` if sacct does not know it (yet).
        sacct lags the controller by ~1-3 s (slurmdbd is updated asynchronously)."""
        from submitit.slurm.slurm import SlurmInfoWatcher  # parses array ranges such as 12_[0-2]

        out = self.run("sacct", "-o", "JobID,State", "--parsable2", "-j", str(job_id), check=False)
        info = SlurmInfoWatcher().read_info(out).get(str(job_id), {})
        state = info.get("State", "")
        return state.split()[0].upper() if state else ""

    def sacct_history(self, job_id: str) -> list[str]:
        """All recorded states of a job, one per incarnation (``sacct --duplicates``), e.g.
        ``["REQUEUED", "COMPLETED"]`` for a job that was requeued once."""
        out = self.run("sacct", "-D", "-X", "-n", "-P", "-o", "JobID,State", "-j", str(job_id), check=False)
        states = []
        for line in out.splitlines():
            jid, _, state = line.partition("|")
            if jid == str(job_id) and state:
                states.append(state.split()[0].upper())
        return states

    def squeue_state(self, job_id: str) -> str:
        """State from the controller (no lag; jobs drop out of squeue once finished): ``""`` if absent."""
        out = self.run("squeue", "-h", "-j", str(job_id), "-o", "%T", check=False)
        return out.strip().splitlines()[0] if out.strip() else ""

    def wait_state(
        self, job_id: str, states: str | Iterable[str], timeout: float = 60, poll: float = 0.25
    ) -> str:
        """Poll sacct until the job is in one of ``states``; return that state. Raises TimeoutError."""
        wanted = {states} if isinstance(states, str) else set(states)
        wanted = {s.upper() for s in wanted}
        seen: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            state = self.sacct_state(job_id)
            if not seen or seen[-1] != state:
                seen.append(state)
            if state in wanted:
                return state
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} not in {sorted(wanted)} after {timeout}s; states seen: {seen}"
                )
            time.sleep(poll)

    def requeue(self, job_id: str) -> None:
        """``scontrol requeue``: kill the job and put it back in the queue *without* any signal to the
        program (submitit's checkpoint is not called; the job re-runs from its last submitted pickle)."""
        self.run("scontrol", "requeue", str(job_id))

    def preempt(self, job_id: str, signal: str = "USR2") -> None:
        """Simulate preemption/timeout the way submitit expects: send its preemption signal (USR2 unless
        SUBMITIT_PREEMPT_SIGNAL says otherwise) to the job's steps -- not with ``--batch``, which would kill
        the batch shell. submitit's handler then checkpoints, runs ``scontrol requeue`` itself and exits.
        Only send it once the python function is running (before that, USR2's default action kills it)."""
        self.run("scancel", f"--signal={signal}", str(job_id))

    def cancel_all(self) -> None:
        """Cancel every job of the current user on this cluster."""
        self.run("scancel", "--user", _username(), check=False)

    def drain(self, timeout: float) -> None:
        """Cancel every job of the current user and wait up to `timeout` s for the queue to be empty."""
        self.cancel_all()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.run("squeue", "-h", check=False).strip():
            time.sleep(0.5)

    # ---- submitit ----------------------------------------------------------------------------------------
    def executor(self, folder: str | os.PathLike[str], **params: Any):
        """A submitit AutoExecutor for this cluster with small defaults; ``params`` override them."""
        import submitit

        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
        defaults: dict[str, Any] = {
            "slurm_partition": "debug",
            "timeout_min": 5,
            "cpus_per_task": 1,
            "mem_gb": 1,
        }
        ex.update_parameters(**{**defaults, **params})
        return ex


def _username() -> str:
    import getpass

    return getpass.getuser()


def _controller_up(env: dict[str, str]) -> bool:
    if shutil.which("scontrol") is None or not Path(env["SLURM_CONF"]).is_file():
        return False
    try:
        out = subprocess.run(["scontrol", "ping"], env=env, capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and " is UP" in out.stdout


def _packages_installed() -> bool:
    if shutil.which("dpkg") is None:
        return all(shutil.which(b) for b in ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd"))
    return all(subprocess.run(["dpkg", "-s", p], capture_output=True).returncode == 0 for p in PACKAGES)


def _start_cluster(test_dir: Path) -> Iterator[SlurmCluster]:
    env = dict(os.environ, SLURM_TEST_DIR=str(test_dir), SLURM_CONF=str(test_dir / "etc" / "slurm.conf"))
    if os.environ.get("SPURISWEEP_SLURM_TESTS", "1") == "0":
        _unavailable("SPURISWEEP_SLURM_TESTS=0")
    was_running = _controller_up(env)
    is_root = hasattr(os, "geteuid") and os.geteuid() == 0
    t0 = time.monotonic()
    if not was_running or is_root:  # (re)running the idempotent start script also revives dead daemons
        if not is_root:
            _unavailable(
                "the test cluster runs its daemons as root; run the tests as root (or start it first)"
            )
        if not _packages_installed() and shutil.which("apt-get") is None:
            _unavailable(
                f"SLURM packages ({' '.join(PACKAGES)}) are not installed and apt-get is not available"
            )
        try:
            proc = subprocess.run(
                ["bash", str(START_SCRIPT)],
                env=env,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            _unavailable(f"{START_SCRIPT} did not finish in {START_TIMEOUT_S}s")
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
            _unavailable(f"{START_SCRIPT} failed (exit {proc.returncode}); logs in {test_dir}/log:\n{tail}")
    cluster = SlurmCluster(
        test_dir=test_dir,
        conf=test_dir / "etc" / "slurm.conf",
        started_here=not was_running,
        start_seconds=time.monotonic() - t0,
        env=env,
    )
    yield cluster
    if cluster.started_here:
        cluster.drain(20)
        subprocess.run(["bash", str(STOP_SCRIPT)], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(autouse=True)
def _no_slurm_leftovers(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test that uses the cluster, cancel its jobs and wait for the queue to drain, so a test
    that failed halfway (and never reached its own cleanup) cannot hold the node's CPUs for the next one."""
    if "slurm_cluster" not in request.fixturenames:
        yield
        return
    cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
    yield
    cluster.drain(90)  # scancel's SIGKILL follows SIGTERM after KillWait (5 s on the test cluster)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """Session-wide real SLURM cluster; sets os.environ["SLURM_CONF"] while it is up (see module doc)."""
    test_dir = Path(os.environ.get("SLURM_TEST_DIR", DEFAULT_TEST_DIR))
    gen = _start_cluster(test_dir)
    cluster = next(gen)
    old_conf = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    watcher = old_delay = None
    try:
        from submitit.slurm.slurm import SlurmJob

        watcher = SlurmJob.watcher  # class attribute: shared by every SlurmJob in this process
        old_delay = watcher._delay_s
        watcher._delay_s = WATCHER_DELAY_S
    except ImportError:
        pass
    try:
        yield cluster
    finally:
        if watcher is not None:
            watcher._delay_s = old_delay
        if old_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old_conf
        for _ in gen:  # teardown: cancel leftovers and stop (only if started here)
            pass
