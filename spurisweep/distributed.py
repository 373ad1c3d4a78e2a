"""This process's place among a cell's data-parallel processes, from torch.distributed's env:// variables
(exported by launch.distributed_setup for multi-task jobs, or by torchrun / accelerate launch).

LOCAL_RANK is the task's index on its node, and accelerate puts each rank on cuda:LOCAL_RANK. That holds
where every task sees all of the node's GPUs; where the site binds one GPU per task (`--gpus-per-task=1`,
each task's CUDA_VISIBLE_DEVICES naming its own device), every task sees its GPU as cuda:0 and
`bind_task_gpu` exports LOCAL_RANK=0, keeping the node-local index in SPURISWEEP_NODE_LOCAL_RANK."""

from __future__ import annotations

import os
from collections.abc import MutableMapping

#: the task's index on its node, kept here when LOCAL_RANK is rewritten to the one GPU the task sees
NODE_LOCAL_RANK = "SPURISWEEP_NODE_LOCAL_RANK"


def world_size() -> int:
    """Data-parallel processes; 1 for a plain process."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def rank() -> int:
    """This process's data-parallel rank (0 for a plain process): rank 0 alone writes the cell's files."""
    try:
        return int(os.environ.get("RANK", "0")) if world_size() > 1 else 0
    except ValueError:
        return 0


def visible_gpus(environ: MutableMapping[str, str] | None = None) -> int:
    """The GPUs this process sees: the entries of CUDA_VISIBLE_DEVICES when it is set (read without any
    CUDA call, up to the first one CUDA would stop at), else torch.cuda.device_count() (which creates no
    CUDA context)."""
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is None:
        import torch

        return torch.cuda.device_count()
    count = 0
    for entry in (e.strip() for e in listed.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):  # "", "-1", "NoDevFiles": the end
            break
        count += 1
    return count


def gpu_names() -> list[str]:
    """The GPUs this process may hand to children, as CUDA_VISIBLE_DEVICES entries in this process's order
    (its own restriction kept); [] without CUDA."""
    try:
        import torch

        count = torch.cuda.device_count()
    except Exception:  # no torch, or a CUDA driver that will not answer: no GPU to hand out
        count = 0
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip()][:count]
    return [str(i) for i in range(count)]


def device_index(local: int, visible: int) -> int:
    """The CUDA device index of the task with node-local index `local` that sees `visible` GPUs: `local`
    among all of the node's GPUs, 0 where it sees one GPU (its own); any other count is an error."""
    if local < visible:
        return local
    if visible == 1:
        return 0
    raise RuntimeError(
        f"LOCAL_RANK {local} but this process sees {visible} GPUs: neither one GPU per task nor all of the "
        "node's GPUs (check the job's --gpus-per-task / CUDA_VISIBLE_DEVICES)"
    )


def local_device_index(visible: int | None = None) -> int:
    """The CUDA device index of this process: LOCAL_RANK among the GPUs it sees, or 0 where the site binds
    one GPU per task (see `device_index`). `visible`: torch.cuda.device_count() (read when not given)."""
    try:
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        local = 0
    if visible is None:
        import torch

        visible = torch.cuda.device_count()
    return device_index(local, visible)


def bind_task_gpu(environ: MutableMapping[str, str] | None = None, visible: int | None = None) -> int | None:
    """Make LOCAL_RANK (exported for a multi-task job) the device accelerate should use: unchanged where
    the task sees all of the node's GPUs, 0 where it sees one GPU only (the node-local index is kept in
    SPURISWEEP_NODE_LOCAL_RANK); a RuntimeError for any other count. Returns the device index, or None
    without LOCAL_RANK or without GPUs (CPU ranks over gloo). `visible`: visible_gpus() when not given."""
    env = os.environ if environ is None else environ
    if "LOCAL_RANK" not in env:
        return None
    local = int(env["LOCAL_RANK"])
    count = visible_gpus(env) if visible is None else visible
    if count == 0:
        return None
    device = device_index(local, count)
    env[NODE_LOCAL_RANK] = str(local)
    env["LOCAL_RANK"] = str(device)
    return device


def shut_down() -> None:
    """End this process's default process group, if one is up (after a distributed cell finished well).

    Left to the interpreter's exit, a process group is torn down by static destructors while its
    background threads may still be joinable: gloo then aborts the process ("terminate called without an
    active exception", SIGABRT) after everything was written, and PyTorch asks NCCL users to call
    destroy_process_group for the same reason. Local: no collective, so no rank waits on another."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
