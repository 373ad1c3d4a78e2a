"""Training one cell with TRL's GRPOTrainer, and the plan-time mapping of its settings onto TRL.

    config.py       settings -> GRPOConfig keyword arguments; `trl:` and cross-field validation (plan time)
    data.py         the problems a reward trains on, as the prompt rows TRL reads
    checkpoints.py  complete/incomplete checkpoints, pruning, RNG kept across evaluation
    trackers.py     the environment and install check of experiment trackers
    callback.py     the TrainerCallback writing metrics, status, COMPLETE markers, checkpoint evaluations
    trainer.py      the GRPOTrainer subclass: the one place that touches TRL internals
    cell.py         run_cell: one cell's run as named steps (the job's entry point)

Importing this package loads no torch, transformers or trl (the planner uses config.py); run_cell imports
them when it is called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .checkpoints import checkpoint_number, latest_complete_checkpoint, preserved_rng, prune_checkpoints
from .config import (
    DDP_TIMEOUT_S,
    BatchShape,
    batch_shape,
    check_shape,
    grpo_fields,
    grpo_kwargs,
    known_trackers,
    updates_per_rollout,
    validate,
    validate_all,
    validation_key,
)
from .data import for_trl, training_problems, training_rows
from .trackers import check_trackers_installed, tracker_env

__all__ = [
    "DDP_TIMEOUT_S",
    "BatchShape",
    "batch_shape",
    "check_shape",
    "check_trackers_installed",
    "checkpoint_number",
    "for_trl",
    "grpo_fields",
    "grpo_kwargs",
    "known_trackers",
    "latest_complete_checkpoint",
    "preserved_rng",
    "prune_checkpoints",
    "run_cell",
    "tracker_env",
    "training_problems",
    "training_rows",
    "updates_per_rollout",
    "validate",
    "validate_all",
    "validation_key",
]


def run_cell(cell_dir: Path, results: Path) -> dict[str, Any]:
    """Train, checkpoint, evaluate and resume one cell in its folder; returns the DONE summary
    (cell.run_cell, imported here on first call because it loads torch and trl)."""
    from .cell import run_cell as run

    return run(cell_dir, results)
