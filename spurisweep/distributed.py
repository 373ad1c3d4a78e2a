"""This process's place among a cell's data-parallel processes, from torch.distributed's env:// variables
(exported by launch.distributed_setup for multi-task jobs, or by torchrun / accelerate launch)."""

from __future__ import annotations

import os


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


def local_device_index(visible: int | None = None) -> int:
    """The CUDA device index of this process: LOCAL_RANK among the GPUs it sees, or 0 where the site binds
    one GPU per task (each task then sees only its own, as device 0, while LOCAL_RANK still counts the
    node's tasks). `visible`: torch.cuda.device_count() (read when not given)."""
    try:
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        local = 0
    if visible is None:
        import torch

        visible = torch.cuda.device_count()
    if local < visible:
        return local
    if visible == 1:
        return 0
    raise RuntimeError(
        f"LOCAL_RANK {local} but this process sees {visible} GPUs: neither one GPU per task nor all of the "
        "node's GPUs (check the job's --gpus-per-task / CUDA_VISIBLE_DEVICES)"
    )
