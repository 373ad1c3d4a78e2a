"""The TrainerCallback that turns TRL's events into a cell's files: every logged update into metrics.jsonl,
progress and training health into status.json, each saved checkpoint into a COMPLETE marker (its files'
modes first made to follow the umask, then pruning), and the evaluations at their own cadence.

Cadence: checkpoints (resume points) every `train.resume_every` rollout steps (default save_every);
evaluations every `eval_interval` rollout steps (eval.eval_every, else save_every) and at the last update.
An evaluation point that is also a save is evaluated in `on_save`, after its COMPLETE marker (a kill during
the evaluation resumes from that checkpoint and evaluates it in `on_train_begin`); any other evaluation
point is evaluated in `on_step_end`, and a kill before the next save retrains up to it and finds the
evaluation on disk.

Under sharding (`export` given) every callback below runs on every rank: the HF export at each save is a
collective (sharding.export_hf) written before COMPLETE, and evaluation is data-parallel over all ranks
(CellRun.evaluate_at); rank 0 alone writes the cell's files.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .. import artifacts
from ..artifacts import follow_umask
from . import health
from .checkpoints import prune_checkpoints

#: the HF export inside a checkpoint folder (config.json, bf16 safetensors, tokenizer): what is evaluated
EXPORT_DIR = "hf"


class CellCallback(TrainerCallback):
    """One cell's TrainerCallback.

    `metric_rows` is the cell's list of update rows (those kept from before a resume first); it is
    extended in place, so the caller reads the final rows from the same list. `evaluate_at(model, step,
    checkpoint)` evaluates the model at a rollout step (`checkpoint`: the saved folder at that step, or
    None between saves); `export(model, folder)` writes the HF export under sharding (None: unsharded).
    `on_sharded(model)` is called at the start of training with the prepared (sharded) model."""

    def __init__(
        self,
        cell: artifacts.CellDir,
        *,
        updates_per_rollout: int,
        resumed_update: int,
        resume: Path | None,
        keep_checkpoints: int | None,
        evaluate_checkpoints: bool,
        eval_every: int,
        metric_rows: list[dict[str, Any]],
        evaluate_at: Callable[[Any, int, Path | None], None],
        export: Callable[[Any, Path], None] | None = None,
        on_sharded: Callable[[Any], None] | None = None,
    ) -> None:
        self.cell = cell
        self.ckpt_dir: Path = cell.checkpoints_dir
        self.upr = updates_per_rollout
        self.resumed_update = resumed_update
        self.resume = resume
        self.keep_checkpoints = keep_checkpoints
        self.evaluate_checkpoints = evaluate_checkpoints
        self.eval_every = eval_every
        self.metric_rows = metric_rows
        self.evaluate_at = evaluate_at
        self.export = export
        self.on_sharded = on_sharded

    def is_eval_point(self, update: int, max_updates: int) -> bool:
        """An evaluation during training: a rollout boundary at the evaluation cadence, or the last update."""
        if not self.evaluate_checkpoints or update % self.upr:
            return False
        return (update // self.upr) % self.eval_every == 0 or update >= max_updates

    def on_train_begin(self, args, state, control, model=None, **kw):
        if state.global_step != self.resumed_update:  # TRL restored another step than the one we chose
            raise RuntimeError(f"resumed at update {state.global_step}, expected {self.resumed_update}")
        if self.on_sharded is not None:
            self.on_sharded(model)
        # killed between a save and its evaluation: evaluate it now (skipped when it is on disk)
        if self.resume is not None and self.is_eval_point(self.resumed_update, state.max_steps):
            self.evaluate_at(model, self.resumed_update // self.upr, self.resume)

    def on_step_end(self, args, state, control, model=None, **kw):
        # an evaluation point that is not saved now (DefaultFlowCallback decided should_save before us)
        if not control.should_save and self.is_eval_point(state.global_step, state.max_steps):
            self.evaluate_at(model, state.global_step // self.upr, None)

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
        path = self.ckpt_dir / f"checkpoint-{state.global_step}"
        if self.export is not None:  # every rank: gathers the shards; rank 0 writes, all wait for it
            self.export(model, path / EXPORT_DIR)
        if state.is_world_process_zero:  # data-parallel ranks: one writer
            follow_umask(path)  # the weights too (safetensors writes them 0600), before they count as saved
            artifacts.atomic_write_text(path / "COMPLETE", str(time.time()))
            pruned = prune_checkpoints(self.ckpt_dir, self.keep_checkpoints)
            self.cell.set_status(
                "running",
                checkpoint=path.name,
                step=state.global_step // self.upr,
                pruned=[p.name for p in pruned] or None,
            )
        if self.is_eval_point(state.global_step, state.max_steps):
            self.evaluate_at(model, state.global_step // self.upr, path)
