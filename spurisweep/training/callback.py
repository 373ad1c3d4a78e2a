"""The TrainerCallback that turns TRL's events into a cell's files: every logged update into metrics.jsonl,
progress and training health into status.json, each saved checkpoint into a COMPLETE marker (then pruning
and the checkpoint's evaluation)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .. import artifacts, health
from .checkpoints import prune_checkpoints


class CellCallback(TrainerCallback):
    """One cell's TrainerCallback.

    `metric_rows` is the cell's list of update rows (those kept from before a resume first); it is
    extended in place, so the caller reads the final rows from the same list. `evaluate_at(model, step)`
    evaluates a model at a rollout step (a no-op on data-parallel ranks other than 0)."""

    def __init__(
        self,
        cell: artifacts.CellDir,
        *,
        updates_per_rollout: int,
        resumed_update: int,
        resumed: bool,
        keep_checkpoints: int | None,
        evaluate_checkpoints: bool,
        metric_rows: list[dict[str, Any]],
        evaluate_at: Callable[[Any, int], None],
    ) -> None:
        self.cell = cell
        self.ckpt_dir: Path = cell.checkpoints_dir
        self.upr = updates_per_rollout
        self.resumed_update = resumed_update
        self.resumed = resumed
        self.keep_checkpoints = keep_checkpoints
        self.evaluate_checkpoints = evaluate_checkpoints
        self.metric_rows = metric_rows
        self.evaluate_at = evaluate_at

    def on_train_begin(self, args, state, control, model=None, **kw):
        if state.global_step != self.resumed_update:  # TRL restored another step than the one we chose
            raise RuntimeError(f"resumed at update {state.global_step}, expected {self.resumed_update}")
        if self.resumed and self.evaluate_checkpoints:  # killed between a save and its evaluation
            self.evaluate_at(model, self.resumed_update // self.upr)

    def on_log(self, args, state, control, logs=None, **kw):
        if not state.is_world_process_zero or not logs or "train_runtime" in logs:  # not an update row
            return
        upr, metric_rows = self.upr, self.metric_rows
        row = {
            "update": state.global_step,
            "step": math.ceil(state.global_step / upr),
            "time": time.time(),
        }
        row.update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float))})
        if metric_rows and metric_rows[-1]["update"] == row["update"]:
            metric_rows[-1] = row
        else:
            metric_rows.append(row)
        artifacts.atomic_write_jsonl(self.cell.metrics_path, metric_rows)
        if (state.global_step - 1) % upr == 0:  # first update of a rollout: progress and health so far
            found = health.names(health.flags(metric_rows))
            self.cell.set_status("running", step=row["step"], update=state.global_step, health=found)

    def on_save(self, args, state, control, model=None, **kw):
        if not state.is_world_process_zero:  # data-parallel ranks: one writer
            return
        path = self.ckpt_dir / f"checkpoint-{state.global_step}"
        artifacts.atomic_write_text(path / "COMPLETE", str(time.time()))
        pruned = prune_checkpoints(self.ckpt_dir, self.keep_checkpoints)
        self.cell.set_status(
            "running",
            checkpoint=path.name,
            step=state.global_step // self.upr,
            pruned=[p.name for p in pruned] or None,
        )
        if self.evaluate_checkpoints:
            self.evaluate_at(model, state.global_step // self.upr)
