"""Submitting cells through submitit (slurm, local, debug), idempotent re-runs, and cell states.

One abstraction for every backend: a cell is one job running `CellJob(cell_dir)`. On SLURM all pending
cells of a sweep go out as one job array (one sbatch); locally, cells run as separate processes, at
most `max_parallel` at a time; `debug` runs them in this process (for stepping through with pdb).

A cell's state is read from its folder first (DONE, status.json), then from the scheduler for cells
that claim to be queued or running, so a job that died without a word (kill -9, node failure) shows as
killed and is picked up again by the next `run`.

Modules: backend (the Backend interface and the registry of executors), local / debug / slurm (one per
backend), job (what runs inside a job: a cell, or a label job), labeljob (labels made as their own job before the
cells that train on them), state (cell states), submission (submit and cancel), claim (one run per cell: the
submit lock, the controller's claims and the job's running lock; one folder per cell id, linked from every
sweep that shares the cell), sweep (`run` as functions: prepare, preview, run_sweep; values the command
renders).
"""

from __future__ import annotations

from .backend import BACKENDS, Backend, get_backend
from .job import CellJob, LabelJob, distributed_setup
from .labeljob import LabelState, LabelTask, label_tasks
from .state import (
    ACTIVE,
    CANCELLED,
    RESUBMIT,
    CellState,
    Plan,
    cell_dir,
    earlier_cells,
    folder_state,
    label_states,
    link_shared,
    pending_labels,
    plan_submission,
    read_state,
    states,
    watch,
)
from .submission import cancel, plan_and_claim, submit, write_cell_config, write_manifest
from .sweep import Outcome, Prepared, Preview, prepare, preview, run_sweep, unstarted_claims

__all__ = [
    "ACTIVE",
    "BACKENDS",
    "CANCELLED",
    "RESUBMIT",
    "Backend",
    "CellJob",
    "CellState",
    "LabelJob",
    "LabelState",
    "LabelTask",
    "Outcome",
    "Plan",
    "Prepared",
    "Preview",
    "cancel",
    "cell_dir",
    "distributed_setup",
    "earlier_cells",
    "folder_state",
    "get_backend",
    "label_states",
    "label_tasks",
    "link_shared",
    "pending_labels",
    "plan_and_claim",
    "plan_submission",
    "prepare",
    "preview",
    "read_state",
    "run_sweep",
    "states",
    "submit",
    "unstarted_claims",
    "watch",
    "write_cell_config",
    "write_manifest",
]
