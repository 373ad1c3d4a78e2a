"""Training one cell with TRL's GRPOTrainer (the plan-time mapping of its settings onto TRL is plan/grpo.py).

    data.py         the problems a reward trains on, as the prompt rows TRL reads
    checkpoints.py  complete/incomplete checkpoints, pruning, RNG kept across evaluation
    trackers.py     the environment and install check of experiment trackers
    callback.py     the TrainerCallback writing metrics, status, COMPLETE markers, checkpoint evaluations
    trainer.py      the GRPOTrainer subclass: the one place that touches TRL internals
    cell.py         run_cell: one cell's run as named steps (the job's entry point)

Importing this package loads no torch, transformers or trl; cell.py (the job's entry point, run_cell) does.
"""

from __future__ import annotations

from .checkpoints import checkpoint_number, latest_complete_checkpoint, preserved_rng, prune_checkpoints
from .data import for_trl, training_problems, training_rows
from .trackers import check_trackers_installed, tracker_env

__all__ = [
    "check_trackers_installed",
    "checkpoint_number",
    "for_trl",
    "latest_complete_checkpoint",
    "preserved_rng",
    "prune_checkpoints",
    "tracker_env",
    "training_problems",
    "training_rows",
]
