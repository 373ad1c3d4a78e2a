"""Integration tests of submitit's SlurmExecutor against a real single-node SLURM (tests/slurm_cluster.py).

These pin down the behaviour spurisweep relies on when it submits cells with ``executor.map_array(fn, cells)``:
one sbatch per array, results, cancellation, and requeue after preemption/timeout through submitit's
checkpoint mechanism. See docs/slurm.md.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit
from submitit.core.utils import UncompletedJobError

pytestmark = pytest.mark.slurm

# The jobs unpickle these functions in a fresh interpreter whose sys.path is the *submission* cwd; pickling
# this module's functions by value makes the tests independent of where pytest was started from.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _wait_for_file(path: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.1)


def _job_info(x: int) -> dict:
    return {
        "square": x * x,
        "python": sys.executable,
        "probe_env": os.environ.get("SPURISWEEP_PROBE"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "array_job_id": os.environ.get("SLURM_ARRAY_JOB_ID"),
        "array_task_id": os.environ.get("SLURM_ARRAY_TASK_ID"),
    }


def test_map_array_is_one_sbatch_and_returns_results(slurm_cluster, tmp_path, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_PROBE", "propagated")  # the submitting environment reaches the job
    ex = slurm_cluster.executor(tmp_path / "%j", slurm_array_parallelism=3)
    t0 = time.monotonic()
    jobs = ex.map_array(_job_info, [1, 2, 3])
    results = [j.result() for j in jobs]
    elapsed = time.monotonic() - t0

    array_ids = {j.job_id.split("_")[0] for j in jobs}
    assert len(array_ids) == 1, [j.job_id for j in jobs]  # one sbatch --array=0-2%3
    (array_id,) = array_ids
    assert [j.job_id for j in jobs] == [f"{array_id}_{i}" for i in range(3)]
    assert [r["square"] for r in results] == [1, 4, 9]
    assert {r["array_job_id"] for r in results} == {array_id}
    assert sorted(r["array_task_id"] for r in results) == ["0", "1", "2"]
    # jobs run `sys.executable -m submitit.core._submit` and inherit the submitter's environment
    assert {r["python"] for r in results} == {sys.executable}
    assert {r["probe_env"] for r in results} == {"propagated"}
    # sacct knows the three tasks under the one array job id
    for j in jobs:
        assert slurm_cluster.wait_state(j.job_id, "COMPLETED", timeout=30) == "COMPLETED"
    assert slurm_cluster.run("sacct", "-X", "-n", "-P", "-o", "JobID", "-j", array_id).split() == [
        f"{array_id}_{i}" for i in range(3)
    ]
    assert elapsed < 60, elapsed


def _sleep_unless_quick(marker_dir: str, i: int) -> int:
    if i == 0:
        Path(marker_dir, "started").write_text(os.environ["SLURM_JOB_ID"])
        time.sleep(60)
    return i


def test_cancel_running_array_task(slurm_cluster, tmp_path):
    ex = slurm_cluster.executor(tmp_path / "%j")
    jobs = ex.map_array(_sleep_unless_quick, [str(tmp_path)] * 2, [0, 1])
    try:
        _wait_for_file(tmp_path / "started")
        jobs[0].cancel()  # scancel ARRAYID_0: only that task
        assert slurm_cluster.wait_state(jobs[0].job_id, "CANCELLED", timeout=30) == "CANCELLED"
        assert jobs[1].result() == 1  # the sibling task is unaffected
        # submitit's own view (sacct through SlurmJob.watcher): done, state "CANCELLED by <uid>"
        deadline = time.monotonic() + 30
        while not jobs[0].done(force_check=True) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert jobs[0].state.startswith("CANCELLED"), jobs[0].state
        jobs[0]._results_timeout_s = 1  # result() waits this long (default 15 s) for a result pickle
        with pytest.raises(UncompletedJobError):
            jobs[0].result()
    finally:
        for j in jobs:
            j.cancel(check=False)


class Resumable(submitit.helpers.Checkpointable):
    """First attempt: writes a marker and sleeps; after requeue it sees the marker and returns."""

    def __init__(self, marker_dir: str) -> None:
        self.marker_dir = marker_dir
        self.checkpoints = 0  # incremented in checkpoint(), i.e. in the pickle submitit re-dumps

    def __call__(self, i: int) -> dict:
        marker = Path(self.marker_dir, f"attempt-{i}")
        if i == 1 or marker.exists():
            return {
                "i": i,
                "resumed": marker.exists(),
                "checkpoints": self.checkpoints,
                "restart_count": os.environ.get("SLURM_RESTART_COUNT"),
            }
        marker.write_text(os.environ["SLURM_JOB_ID"])
        time.sleep(90)
        return {"i": i, "resumed": False, "checkpoints": self.checkpoints, "restart_count": None}

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        self.checkpoints += 1
        return super().checkpoint(*args, **kwargs)


def test_preemption_signal_requeues_through_checkpoint(slurm_cluster, tmp_path):
    # timeout_min=20: submitit calls it "preempted" (not "timed-out") if the signal comes in the first 10 min,
    # so the timeout countdown is not decremented.
    ex = slurm_cluster.executor(tmp_path / "%j", timeout_min=20)
    jobs = ex.map_array(Resumable(str(tmp_path)), [0, 1])
    try:
        _wait_for_file(tmp_path / "attempt-0")  # python is running, submitit's USR2 handler is installed
        t0 = time.monotonic()
        slurm_cluster.preempt(jobs[0].job_id)  # scancel --signal=USR2 ARRAYID_0
        first, second = (j.result() for j in jobs)
        requeue_s = time.monotonic() - t0
    except (
        BaseException
    ):  # cancel only on failure: cancelling a job that is still completing marks it CANCELLED
        for j in jobs:
            j.cancel(check=False)
        raise
    slurm_cluster.wait_state(jobs[0].job_id, "COMPLETED", timeout=30)
    assert first == {"i": 0, "resumed": True, "checkpoints": 1, "restart_count": "1"}
    assert second["i"] == 1 and second["checkpoints"] == 0
    assert slurm_cluster.sacct_history(jobs[0].job_id) == ["REQUEUED", "COMPLETED"]
    assert "this job is preempted" in (jobs[0].stderr() or "")
    assert requeue_s < 60, requeue_s


def test_scontrol_requeue_reruns_without_checkpoint(slurm_cluster, tmp_path):
    ex = slurm_cluster.executor(tmp_path / "%j", timeout_min=20)
    job = ex.submit(Resumable(str(tmp_path)), 0)
    try:
        _wait_for_file(tmp_path / "attempt-0")
        slurm_cluster.requeue(job.job_id)  # hard requeue: SIGTERM/SIGKILL only, submitit is not involved
        result = job.result()
    except BaseException:
        job.cancel(check=False)
        raise
    slurm_cluster.wait_state(job.job_id, "COMPLETED", timeout=30)
    assert result == {"i": 0, "resumed": True, "checkpoints": 0, "restart_count": "1"}
    assert slurm_cluster.sacct_history(job.job_id) == ["REQUEUED", "COMPLETED"]


def test_time_limit_signal_requeues_through_checkpoint(slurm_cluster, tmp_path):
    # --time=2 --signal=USR2@115: slurmctld sends USR2 at its next time-limit check (every 30 s; once seen only
    # a cycle later), submitit sees a "timed-out" job, checkpoints (countdown 3 -> 2) and requeues it. With
    # --time=1 a late signal can race the time-limit kill.
    ex = slurm_cluster.executor(tmp_path / "%j", timeout_min=2, slurm_signal_delay_s=115)
    job = ex.submit(Resumable(str(tmp_path)), 0)
    try:
        result = job.result()
    except BaseException:
        job.cancel(check=False)
        raise
    assert result["resumed"] and result["checkpoints"] == 1
    assert job.submission()._timeout_countdown == 2
    assert "this job is timed-out" in (job.stderr() or "")
