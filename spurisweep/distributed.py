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
