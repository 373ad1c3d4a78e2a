"""How multi-task cells behave on a cluster (issue 21, item 7):

1. a cell of several tasks runs its srun step with --kill-on-bad-exit=1: one rank that dies ends the job
   (a real SLURM daemon, a tiny function payload), and the preemption path still requeues
   (tests/launch/test_slurm_e2e.py's preempted data-parallel cell);
2. where the site binds one GPU per task, LOCAL_RANK becomes 0 for accelerate (CUDA mocked: no GPU here);
3. the paper preset saves a resume point every few rollout steps, with a bounded number kept;
4. a preemption signal that reaches rank 0 while it sits in a barrier is handled once the barrier returns:
   the cell is recorded `requeued` and the job requeued (two real gloo processes under submitit's own
   entry point; no GPU, no SLURM).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cloudpickle
import pytest
import submitit

from spurisweep import artifacts
from spurisweep.distributed import NODE_LOCAL_RANK, bind_task_gpu, local_device_index, shut_down, visible_gpus
from spurisweep.launch import slurm
from spurisweep.launch.job import CellJob
from spurisweep.plan import fidelity, grid, spec
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]

# The SLURM job below unpickles this module's payload in a fresh interpreter: pickled by value, it does not
# depend on the job's sys.path.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

SWEEP = """
name: t
preset: {preset}
grid: {{model: [{model}], reward: [random]}}
settings:
{settings}
"""


def cells(tmp_path: Path, *, preset: str = "smoke", model: str = "tiny", settings: str = "") -> list:
    p = tmp_path / "s.yaml"
    p.write_text(SWEEP.format(preset=preset, model=model, settings=settings or "  train: {steps: 2}"))
    return grid.expand(spec.load_sweep(p))


# ------------------------------------------------------------------------------- 1. --kill-on-bad-exit
def test_several_tasks_run_their_step_with_kill_on_bad_exit(tmp_path):
    def params(resources: str) -> dict:
        return slurm.slurm_parameters(cells(tmp_path, settings=f"  resources: {resources}"))

    assert params("{tasks_per_node: 2}")["slurm_srun_args"] == ["--kill-on-bad-exit=1"]
    assert params("{gpus_per_node: 8}")["slurm_srun_args"] == ["--kill-on-bad-exit=1"]  # one task per GPU
    assert params("{gpus_per_node: 8, tasks_per_node: 1, nodes: 2}")["slurm_srun_args"] == [
        "--kill-on-bad-exit=1"
    ]  # one task on each of two nodes: still two ranks
    assert "slurm_srun_args" not in params("{gpus_per_node: 1}")  # one task: nothing to kill
    assert "slurm_srun_args" not in params("{gpus_per_node: 8, tasks_per_node: 1}")
    # the user's own srun arguments are kept; their own choice about bad exits wins
    mine = params("{tasks_per_node: 2, additional: {srun_args: [--cpu-bind=cores]}}")
    assert mine["slurm_srun_args"] == ["--cpu-bind=cores", "--kill-on-bad-exit=1"]
    off = params("{tasks_per_node: 2, additional: {srun_args: [--kill-on-bad-exit=0]}}")
    assert off["slurm_srun_args"] == ["--kill-on-bad-exit=0"]


def test_the_sbatch_script_passes_kill_on_bad_exit_to_srun(tmp_path):
    group = cells(tmp_path, settings="  resources: {tasks_per_node: 2, partition: debug}")
    ex = submitit.AutoExecutor(folder=tmp_path / "sub", cluster="slurm")
    ex.update_parameters(**slurm.slurm_parameters(group))
    script = ex._executor._make_submission_file_text("python -m job", "uid")
    (srun,) = [line for line in script.splitlines() if line.startswith("srun ")]
    assert "--kill-on-bad-exit=1" in srun.split() and srun.endswith("python -m job")
    assert "#SBATCH --ntasks-per-node=2" in script


def test_a_label_job_is_one_task_without_kill_on_bad_exit(tmp_path):
    from spurisweep import launch

    p = tmp_path / "l.yaml"
    resources = "  resources: {tasks_per_node: 2, additional: {srun_args: [--cpu-bind=cores]}}"
    p.write_text(
        SWEEP.format(preset="smoke", model="tiny", settings=resources).replace("[random]", "[majority_vote]")
    )
    (task,) = launch.label_tasks(grid.expand(spec.load_sweep(p)), tmp_path / "res")
    lp = slurm.label_parameters(task)
    assert "tasks_per_node" not in lp and lp["slurm_srun_args"] == ["--cpu-bind=cores"]


def _one_rank_dies(marker_dir: str) -> str:
    """Rank 1 fails at once; rank 0 waits (as in a barrier) far longer than the test does."""
    rank = submitit.JobEnvironment().global_rank
    Path(marker_dir, f"started-{rank}").write_text(str(time.time()))
    if rank == 1:
        time.sleep(2)
        Path(marker_dir, "rank1-died").write_text(str(time.time()))
        raise RuntimeError("rank 1 dies")
    time.sleep(600)  # submitit ignores SIGTERM: only the step's end (SIGKILL) stops this
    Path(marker_dir, "rank0-finished").touch()
    return "rank 0 finished"


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout}s")
        time.sleep(0.2)


@pytest.mark.slurm
def test_one_dead_rank_ends_the_whole_job(slurm_cluster, tmp_path):
    """Two tasks: rank 1 raises, rank 0 sleeps. Without --kill-on-bad-exit rank 0 runs on (the job holds
    its node until the time limit); with spurisweep's srun arguments the step ends within seconds and the
    job is FAILED."""
    srun_args = slurm.slurm_parameters(cells(tmp_path, settings="  resources: {tasks_per_node: 2}"))[
        "slurm_srun_args"
    ]
    for kill in (False, True):
        marks = tmp_path / f"kill-{kill}"
        marks.mkdir()
        extra = {"slurm_srun_args": srun_args} if kill else {}
        ex = slurm_cluster.executor(tmp_path / "sub" / "%j", tasks_per_node=2, timeout_min=5, **extra)
        job = ex.submit(_one_rank_dies, str(marks))
        try:
            _wait_for(marks / "rank1-died", 120)
            died = time.time()
            if not kill:  # the control: rank 0 idles on after rank 1's death
                time.sleep(15)
                assert slurm_cluster.squeue_state(job.job_id) == "RUNNING"
                job.cancel(check=False)
                slurm_cluster.wait_state(job.job_id, "CANCELLED", timeout=60)
                continue
            assert slurm_cluster.wait_state(job.job_id, ("FAILED", "COMPLETED", "TIMEOUT"), 60) == "FAILED"
            ended = time.time()
        finally:
            job.cancel(check=False)
        assert ended - died < 30, ended - died  # KillWait is 5 s on the test cluster
        assert (marks / "started-0").exists() and not (marks / "rank0-finished").exists()
        script = Path(job.paths.submission_file).read_text()
        assert "--kill-on-bad-exit=1" in script


# ----------------------------------------------------------------- 2. LOCAL_RANK with one GPU per task
def test_a_finished_rank_ends_its_process_group_itself():
    """shut_down (what CellJob calls after a distributed cell finished) destroys a real gloo group, and is a
    no-op without one: the group is not left to the interpreter's exit, where gloo may abort the process."""
    import torch.distributed as dist

    shut_down()  # no group: nothing to do
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1)
    assert dist.is_initialized()
    shut_down()
    assert not dist.is_initialized()
    shut_down()


def test_local_rank_stays_where_every_task_sees_all_of_the_nodes_gpus():
    """CUDA mocked (no GPU here): the visible GPUs come from CUDA_VISIBLE_DEVICES alone."""
    env = {"LOCAL_RANK": "3", "CUDA_VISIBLE_DEVICES": "0,1,2,3,4,5,6,7"}
    assert visible_gpus(env) == 8
    assert bind_task_gpu(env) == 3
    assert env["LOCAL_RANK"] == "3" and env[NODE_LOCAL_RANK] == "3"


def test_local_rank_becomes_zero_where_the_site_binds_one_gpu_per_task(monkeypatch):
    """CUDA mocked (no GPU here): --gpus-per-task=1 gives task 5 CUDA_VISIBLE_DEVICES=5 (or 0 under
    cgroups), which it sees as cuda:0; accelerate must be told LOCAL_RANK 0."""
    for listed in ("5", "0", "GPU-8f6e2b1c-0000-0000-0000-000000000000"):
        env = {"LOCAL_RANK": "5", "CUDA_VISIBLE_DEVICES": listed}
        assert bind_task_gpu(env) == 0
        assert env["LOCAL_RANK"] == "0" and env[NODE_LOCAL_RANK] == "5"
    # the device the training and evaluation code then picks agrees
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert local_device_index(visible=1) == 0


def test_a_gpu_count_that_fits_neither_layout_is_a_clear_error():
    """CUDA mocked (no GPU here): task 3 seeing 2 GPUs has no device of its own."""
    env = {"LOCAL_RANK": "3", "CUDA_VISIBLE_DEVICES": "0,1"}
    with pytest.raises(RuntimeError, match="LOCAL_RANK 3 but this process sees 2 GPUs.*--gpus-per-task"):
        bind_task_gpu(env)
    assert env["LOCAL_RANK"] == "3"  # left as it was


def test_cpu_ranks_and_plain_processes_are_left_alone(monkeypatch):
    """CUDA mocked (no GPU here): no GPUs (gloo ranks) or no LOCAL_RANK: nothing to bind."""
    env = {"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": ""}
    assert bind_task_gpu(env) is None and env == {"LOCAL_RANK": "1", "CUDA_VISIBLE_DEVICES": ""}
    assert bind_task_gpu({}) is None
    # CUDA_VISIBLE_DEVICES unset: torch's count, which creates no CUDA context
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    env = {"LOCAL_RANK": "6"}
    assert visible_gpus(env) == 8 and bind_task_gpu(env) == 6
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "0,1,-1,3"}) == 2  # CUDA stops at the first invalid entry


# --------------------------------------------------------------------- 3. resume points on the paper preset
def test_the_paper_preset_saves_a_resume_point_every_ten_steps_and_keeps_one(tmp_path):
    table = grid.expand(spec.load_sweep(ROOT / "sweeps" / "paper_table.yaml"))
    for c in table:
        t = c.config.train
        assert (t.resume_every, t.save_every, t.keep_checkpoints) == (10, 50, 1)
        assert t.steps % t.resume_every == 0  # the final step is a resume point too
    from spurisweep.plan.grpo import grpo_kwargs

    kw = grpo_kwargs(table[0].config, str(tmp_path), cpu=False, world=8, backend="vllm")
    assert kw["save_steps"] == 10 * 8  # 8 updates per rollout step
    # neither setting moves a cell's id (resume_every is outside it; keep_checkpoints is the default)
    cfg = table[0].config
    plain = cfg.model_dump()
    plain["train"].update(resume_every=None, keep_checkpoints=1)
    assert grid.cell_id(spec.CellConfig(**plain)) == grid.cell_id(cfg) == table[0].id


def test_fidelity_does_not_count_resume_points_as_a_difference(tmp_path):
    (cfg,) = [c.config for c in cells(tmp_path, preset="paper", model="llama3.1-8b", settings="  {}")]
    assert cfg.train.resume_every == 10
    found = {d.setting for d in fidelity.differences(cfg)}
    plain = cfg.model_dump()
    plain["train"]["resume_every"] = None
    assert found == {d.setting for d in fidelity.differences(spec.CellConfig(**plain))}
    assert not any("resume" in s or "checkpoint" in s for s in found)


# ----------------------------------------------------------------- 4. a preemption while rank 0 is in a barrier
def _start_tasks(folder: Path, job_id: str, marker: Path, logs: Path) -> list[subprocess.Popen]:
    """Both tasks of the job, with the variables srun gives each task of a 2-task job on one node."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SUBMITIT_"))}
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = dict(
            base,
            SUBMITIT_EXECUTOR="slurm",
            SLURM_JOB_ID=job_id,
            SLURM_NTASKS="2",
            SLURM_JOB_NUM_NODES="1",
            SLURM_NODEID="0",
            SLURM_JOB_NODELIST="localhost",
            SLURM_PROCID=str(rank),
            SLURM_LOCALID=str(rank),
            MASTER_PORT=port,
            CUDA_VISIBLE_DEVICES="",
            OMP_NUM_THREADS="1",
            REQUEUE_MARKER=str(marker),
        )
        log = open(logs / f"task{rank}.log", "w")  # noqa: SIM115 (the child keeps it)
        cmd = [sys.executable, "-m", "tests.requeue_worker", str(folder)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT))
        log.close()
    return procs


def _wait_until(pred, timeout: float, what: str, logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tails}")
        time.sleep(0.1)


def test_a_preemption_signal_while_rank0_sits_in_a_barrier_still_requeues(tmp_path):
    """SLURM's USR2 reaches both tasks while rank 0 waits in a barrier for rank 1. Python runs rank 0's
    handler (submitit's checkpoint-and-requeue) only once the barrier returns; rank 1's handler returns at
    once (not rank 0), so rank 1 goes on to the barrier, rank 0 leaves it, calls CellJob.checkpoint (the
    cell reads `requeued`), re-dumps the job and requeues it. The handler saves nothing and joins no
    collective, so nothing can deadlock; rank 0's exit and rank 1's broken collective afterwards leave the
    `requeued` record alone."""
    from submitit.core.utils import DelayedSubmission, JobPaths

    results = tmp_path / "res"
    cell = artifacts.CellDir(results / "sw" / "cell")
    cell.root.mkdir(parents=True)
    cell.set_status("queued", job_id="4242")
    folder, logs, marker = tmp_path / "submitit", tmp_path / "logs", tmp_path / "requeued"
    folder.mkdir()
    logs.mkdir()
    pickle = JobPaths(folder, job_id="4242").submitted_pickle
    delayed = DelayedSubmission(CellJob(), str(cell.root), str(results))
    delayed.set_timeout(60, 3)  # 60 minutes: a signal now is a preemption, not the time limit
    delayed.dump(pickle)
    first_dump = pickle.stat().st_mtime_ns
    procs = _start_tasks(folder, "4242", marker, logs)
    try:
        ready = lambda: (cell.root / "in-0").exists() and (cell.root / "in-1").exists()  # noqa: E731
        _wait_until(ready, 300, "both ranks in training", logs)
        time.sleep(2)  # rank 0 is inside dist.barrier() now
        for p in procs:  # as SLURM signals every task of the job
            p.send_signal(signal.SIGUSR2)
        time.sleep(3)
        # the handler has not run yet: rank 0 is still in the barrier (a handler outside it would have
        # requeued within milliseconds)
        assert not marker.exists() and cell.status()["state"] == "running"
        assert procs[0].poll() is None and procs[1].poll() is None
        (cell.root / "go").touch()  # rank 1 goes on to the barrier
        codes = [p.wait(timeout=180) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert (cell.root / "rank1-after-barrier").exists()  # the barrier completed
    assert marker.read_text() == "4242 3"  # scontrol requeue ran (a preemption: countdown unchanged)
    st = cell.status()
    assert st["state"] == "requeued" and st["requeues"] == 1 and st.get("error") is None, st
    assert not list(cell.root.glob("error*.txt"))  # nothing recorded as a failure, on either rank
    assert pickle.stat().st_mtime_ns > first_dump  # submitit re-dumped the job for its next start
    again = DelayedSubmission.load(pickle)
    assert isinstance(again.function, CellJob) and again.args == (str(cell.root), str(results))
    assert codes[0] == 255 and codes[1] != 0  # both tasks end: rank 0 by sys.exit(-1) after requeueing
    assert "this job is preempted" in (logs / "task0.log").read_text()
