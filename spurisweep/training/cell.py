"""One cell's GRPO run with TRL: the job's entry point into training.

Reads top to bottom: resolve the model and data, evaluate the untrained model (shared baseline), train
with GRPOTrainer while a callback writes every logged update, checkpoints and evaluates every `save_every`
rollout steps, then evaluate the final model, flag training health and write DONE. How the settings map
onto TRL is in config.py; the callback is callback.py; the GRPOTrainer subclass is trainer.py.

Resume: a killed run restarts from its newest complete checkpoint (checkpoints.py): TRL restores the
weights, optimizer, scheduler, RNG states and data position; metric rows after that update are dropped
and logged again; evaluations already on disk are not repeated, and evaluation saves and restores the RNG
so the resumed trajectory equals the uninterrupted one. Checkpoints (resume points) come every
`train.resume_every` rollout steps, evaluations every `eval.eval_every` (default: `save_every`); see
callback.py.

Sharded cells (`train.sharding: fsdp`, spurisweep.training.sharding): FSDP2 through TRL/transformers' own FSDP
support, with accelerate's CPU gate lifted so 2 CPU processes over gloo run the cluster's configuration.
The cell fails at start (ShardingError) if the backend did not shard. A checkpoint holds the sharded
state (TRL/transformers' sharded model and optimizer, scheduler, per-rank RNG, data position) and, at
every save, an HF export in `checkpoint-N/hf` (config, bf16 safetensors, tokenizer), written by all ranks
before rank 0's COMPLETE marker; pruning a checkpoint removes its export.

Evaluation with vLLM rollouts (`train.generation_backend: vllm`, what a GPU cluster runs), and why this
way: every rank already holds TRL's colocated engine, so evaluations run on it (engine.py). At an
evaluation point its weights are synced to the training step (the sync TRL would run before the next
rollout anyway, so it is not repeated), the evaluation's problems are split across the ranks' engines
(problem i on rank i % world; a tensor-parallel group counts as one), rank 0 merges the shares in problem
order, and training goes on. No export, no checkpoint load and no second engine inside a training
process (an engine started there would join, move or, on release, destroy the training process group);
the baseline runs on the same engines before the first update (they hold the untrained weights), so the
baseline and every checkpoint are evaluated by one engine, in one dtype. The trainer (and its engine) is
kept until the final evaluation is written. In the same job rather than a follow-up job: the engine
is already awake between rollouts, and at the paper's cadence (every step) a follow-up job per
evaluation point would queue for hours.

Evaluation without vLLM (the CPU rehearsal's transformers backend). Sharded: the live sharded model is
never evaluated (one rank alone would deadlock the others, and each rank holds only a shard); every rank
loads the HF export (a checkpoint's, or a scratch export between saves) in the baseline's dtype (bf16 on
GPU, fp32 on CPU) and evaluates its share, rank 0 merges them exactly as one process would (same ids,
same rows: each problem's samples depend on its index and the seed only); baselines the same way.
Unsharded (single-process and DDP) cells evaluate on rank 0 with the live model, which writes the same
rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from filelock import FileLock
from transformers import AutoTokenizer

from .. import artifacts, rewards
from ..distributed import local_device_index, rank, world_size
from ..errors import ShardingError
from ..evaluation import run as evaluate
from ..evaluation.generate import choose_backend, vllm_platform
from ..evaluation.run import Colocated, DataParallel, EvalJob, ResolvedProtocol
from ..grading.pool import workers_from_env
from ..models import families
from ..plan.algorithms import advantage_scale
from ..plan.grpo import (
    DDP_TIMEOUT_S,
    eval_interval,
    grpo_kwargs,
    sharded_grpo_kwargs,
    training_stops,
    updates_per_rollout,
)
from ..plan.spec import CellConfig
from . import health, sharding
from .callback import EXPORT_DIR, CellCallback
from .checkpoints import checkpoint_number, latest_complete_checkpoint, preserved_rng, prune_checkpoints
from .data import training_problems, training_rows
from .engine import awake, colocated, eval_placement
from .trackers import check_trackers_installed, tracker_env
from .trainer import grpo_config, make_trainer

log = logging.getLogger(__name__)


def run_cell(cell_dir: Path, results: Path) -> dict[str, Any]:
    """Train, checkpoint, evaluate and resume one cell in its folder; returns the DONE summary."""
    threads()
    run = CellRun(cell_dir, results)  # config, this process's role, model source and tokenizer
    model = run.evaluate_baselines()  # the untrained model, if a baseline evaluation had to load it
    run.probe_untrained()  # eval.probe: the memorisation probe of the untrained model, shared like baselines
    # training data, rendered with the cell's prompt template (the same text evaluation uses)
    dataset = Dataset.from_list(training_rows(run.cfg, run.tok, training_problems(run.cfg, results)))
    sched = run.schedule()  # GRPOConfig arguments, updates per rollout, the checkpoint to resume from
    reward_fn = build_reward(run.cfg, run.tok)
    del model  # the trainer loads its own copy of the policy
    run.announce(sched)
    if sched.resumed_update >= sched.max_updates:  # killed after the last save: evaluate if missing
        updates = run.evaluate_final(sched)
    else:
        updates = run.train(sched, dataset, reward_fn)
    if not run.writer:
        return {"cell_id": run.cell_id, "rank": rank(), "world_size": run.world, "updates": updates}
    return run.finish(sched, updates)


def threads() -> None:
    n = os.environ.get("SPURISWEEP_THREADS")
    if n:
        torch.set_num_threads(int(n))


def build_reward(cfg: CellConfig, tokenizer: Any = None) -> Any:
    """The cell's reward callable for TRL; under train.reward_text "raw" it reads each rollout decoded with
    its special tokens (an EOS, a chat turn's end), as the official reward does, instead of TRL's text."""
    fn = _reward(cfg)
    if cfg.train.reward_text != "raw" or tokenizer is None:
        return fn
    return raw_text_reward(fn, tokenizer)


def raw_text_reward(fn: Any, tokenizer: Any) -> Any:
    """`fn` reading the decode of `completion_ids` with special tokens kept (TRL passes both)."""
    import functools

    @functools.wraps(fn)
    def reward(completions: list[Any], completion_ids: list[list[int]] | None = None, **kw: Any) -> Any:
        if completion_ids is not None:
            completions = tokenizer.batch_decode(completion_ids, skip_special_tokens=False)
        return fn(completions, completion_ids=completion_ids, **kw)

    return reward


def _reward(cfg: CellConfig) -> Any:
    return rewards.build(
        cfg.reward,
        cfg.reward_params,
        rewards.RewardContext(
            seed=cfg.seed,
            grading_workers=workers_from_env(),
            grader=cfg.grader,
            answer_tag=families.template(cfg.prompt).answer_tag if cfg.prompt else False,
        ),
    )


@dataclasses.dataclass
class Schedule:
    """How many updates the cell trains and where it resumes (config.grpo_kwargs' arithmetic)."""

    kw: dict[str, Any]  # GRPOConfig keyword arguments
    upr: int  # updates per rollout step
    max_updates: int
    final_step: int
    resume: Path | None  # the newest complete checkpoint, if any
    resumed_update: int
    metric_rows: list[dict[str, Any]]  # rows logged up to resumed_update; the callback extends them
    resumes: list[str]  # every checkpoint this cell has resumed from, this time included


class CellRun:
    """One cell's context while it runs: its config and folder, this process's role (rank 0 evaluates and
    writes; all ranks train), the model source and tokenizer, and the evaluations it shares."""

    def __init__(self, cell_dir: Path, results: Path) -> None:
        self.cell = artifacts.CellDir(cell_dir)
        raw = self.cell.config()
        self.cfg = cfg = CellConfig.model_validate(raw["config"])
        self.results = results
        self.sweep: str = raw.get("sweep", "")
        self.cell_id = self.cell.cell_id
        self.cpu = not torch.cuda.is_available()
        self.world = world_size()
        self.writer = rank() == 0  # data-parallel ranks: rank 0 evaluates and writes; all ranks train
        self.sharded = cfg.train.sharding == "fsdp"
        if self.sharded:
            if self.world < 2:  # planning refuses this (grid.check_sharding); a job started short of it
                raise ShardingError(
                    f"train.sharding is fsdp but cell {self.cell_id} runs as {self.world} process: FSDP "
                    "needs 2 or more (resources.tasks_per_node or resources.gpus_per_node)"
                )
            sharding.enable_cpu_fsdp()  # before any GRPOConfig/trainer: CPU processes shard over gloo
        self.backend = choose_backend(cfg.train.generation_backend)
        if self.backend == "vllm" and vllm_platform() == "cpu":  # the CPU build would claim most of the RAM
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB per rank's colocated engine
        self.trainer: Any = None  # the GRPOTrainer while it trains: its colocated engine evaluates
        self.engine_baselines: list[EvalJob] = []  # for the colocated engine, at step 0
        check_trackers_installed(cfg)
        self.source = families.model_source(cfg.model, cfg.model_path)
        self.t_start = time.time()
        self.dtype = None if cfg.train.bf16 is None else ("bf16" if cfg.train.bf16 else "fp32")
        self.tok = AutoTokenizer.from_pretrained(self.source)
        # each benchmark's protocol, then each under every eval.variants entry: all evaluated at every point
        self.protos = evaluate.protocols_for(cfg.eval, cfg.seed)
        self.baselines: dict[str, str] = {}  # benchmark -> the untrained model's (default) evaluation id
        self.baseline_ids: dict[ResolvedProtocol, str] = {}  # every protocol's (variants too)

    # ------------------------------------------------------------------------------------------ evaluation
    def baseline_jobs(self) -> list[EvalJob]:
        """The untrained model's evaluations (shared by every cell of this model, prompt and protocol)."""
        folder = artifacts.baselines_dir(self.results)
        return [evaluate.cell_job(self.cfg, p, self.weights(), folder=folder, step=0) for p in self.protos]

    def step_jobs(self, step: int) -> list[EvalJob]:
        """The cell's evaluations at a rollout step, one per benchmark."""
        return [
            evaluate.cell_job(
                self.cfg,
                p,
                self.weights(),
                folder=self.cell.evals_dir,
                step=step,
                cell_id=self.cell_id,
                baseline_id=self.baseline_ids.get(p),
            )
            for p in self.protos
        ]

    def weights(self) -> evaluate.Weights:
        """The cell's model source and tokenizer, for transformers; each placement sets its model or engine."""
        return evaluate.Weights(self.source, "transformers", tokenizer=self.tok)

    def probe_untrained(self) -> None:
        """The memorisation probe of the untrained model on the cell's benchmarks (eval.probe), once per
        model and shared like a baseline (probe_run.ensure_probe locks and never recomputes); rank 0."""
        cfg = self.cfg
        if not cfg.eval.probe or rank() != 0:
            return
        from ..evaluation import probe_run

        probe_run.ensure_probe(
            cfg.model,
            cfg.model_path,
            cfg.eval.benchmarks,
            cfg.eval.probe_fractions,
            self.results,
            settings=cfg.eval,
            prompt=cfg.prompt,
        )

    def evaluate_baselines(self) -> Any:
        """The untrained model's evaluation, shared by every cell of this model/prompt/protocol; returns the
        untrained model when it had to be loaded (None otherwise)."""
        model = None  # the untrained model, loaded only if a baseline evaluation is missing
        if not self.cfg.eval.baseline:
            return model
        jobs = self.baseline_jobs()
        self.baseline_ids = {j.proto: j.eval_id for j in jobs}
        self.baselines = {j.proto.benchmark: j.eval_id for j in jobs if j.proto.variant is None}
        artifacts.baselines_dir(self.results).mkdir(parents=True, exist_ok=True)
        if (
            self.backend == "vllm"
            and latest_complete_checkpoint(self.cell.checkpoints_dir, clean=False) is None
        ):
            # a fresh start: on TRL's colocated engine before the first update (on_begin), as checkpoints are
            self.engine_baselines = jobs
            return model
        if self.sharded:  # every rank evaluates its share; rank 0 holds the shared baselines' locks
            with self.baseline_locks(jobs):
                self.evaluate_parallel(self.source, jobs)
            return model
        if not self.writer:
            return model
        for job in jobs:
            with FileLock(str(job.folder / f"{job.eval_id}.lock")):  # concurrent cells of one model: once
                if model is None and not job.stored():
                    model, self.tok = families.load_model_and_tokenizer(self.source, dtype=self.dtype)
                evaluate.run(job.placed(evaluate.SINGLE, model=model, tokenizer=self.tok))
        return model

    @contextlib.contextmanager
    def baseline_locks(self, jobs: list[EvalJob]) -> Any:
        """Rank 0 holds the shared baselines' locks while the ranks evaluate (concurrent cells of one
        model: evaluated once)."""
        with contextlib.ExitStack() as locks:
            if self.writer:
                for job in jobs:
                    locks.enter_context(FileLock(str(job.folder / f"{job.eval_id}.lock")))
            yield

    def evaluate_at(self, mdl: Any, step: int, checkpoint: Path | None = None) -> None:
        """Evaluate the cell's model at a rollout step (evaluations on disk are skipped). Unsharded: rank 0
        evaluates the live model. Sharded (collective: every rank calls it): the checkpoint's HF export,
        or, between saves, a scratch export of the live model, evaluated data-parallel. With TRL's colocated
        engine (collective): on that engine, every rank its share."""
        if colocated(self.trainer) is not None:
            jobs = self.step_jobs(step)
            with preserved_rng():
                self.evaluate_on_engine(jobs)
            return
        if not self.sharded:
            self.evaluate_replica(mdl, step)
            return
        jobs = self.step_jobs(step)
        with preserved_rng():
            if checkpoint is not None:
                self.evaluate_parallel(str(checkpoint / EXPORT_DIR), jobs)
                return
            if not self.missing(jobs):  # decided before exporting: a resumed run finds it on disk
                return
            scratch = self.cell.root / "eval-export"
            sharding.export_hf(mdl, self.tok, scratch)
            try:
                self.evaluate_parallel(str(scratch), jobs)
            finally:
                if self.writer:
                    shutil.rmtree(scratch, ignore_errors=True)

    def evaluate_replica(self, mdl: Any, step: int) -> None:
        """Unsharded, without vLLM: every rank holds the whole model, so each evaluates its share of the
        problems (data-parallel; one process alone evaluates everything) on a copy in the baseline's dtype
        (bf16 on a GPU, where training keeps fp32 master weights), freed afterwards."""
        todo = self.todo(self.step_jobs(step))
        if not todo:
            return
        with preserved_rng(), self.eval_copy(mdl) as model:
            if self.world == 1:
                for job in todo:
                    evaluate.run(job.placed(evaluate.SINGLE, model=model))
                return
            self.evaluate_shares(model, self.source, todo)

    @contextlib.contextmanager
    def eval_copy(self, mdl: Any) -> Any:
        """`mdl` in the dtype evaluations use (the baseline's): itself when it already is, else a copy."""
        import copy

        want = {"bf16": torch.bfloat16, "fp32": torch.float32}.get(
            self.dtype or ""
        ) or families.default_dtype(next(mdl.parameters()).device)
        if next(mdl.parameters()).dtype == want:
            yield mdl
            return
        twin = copy.deepcopy(mdl).to(want)
        try:
            yield twin
        finally:
            del twin
            gc.collect()
            if not self.cpu:
                torch.cuda.empty_cache()

    def evaluate_on_engine(self, jobs: list[EvalJob]) -> None:
        """Each missing evaluation on TRL's colocated engines, which hold the training step's weights (synced
        once, as for a rollout): the problems split across the ranks' engines, rank 0 merges and writes.
        Collective; no export, no other engine, nothing released."""
        import torch.distributed as dist

        todo = self.todo(jobs)
        if not todo:
            return
        share, shares, writes = eval_placement(self.trainer, rank(), self.world)
        barrier = dist.barrier if self.world > 1 else (lambda: None)
        with awake(self.trainer) as llm:
            where = Colocated(share, shares, barrier, writer=self.writer, write_share=writes, engine=llm)
            for job in todo:
                evaluate.run(job.placed(where, backend="vllm", model=None))

    def on_begin(self, model: Any) -> None:
        """Training starts: record the sharding; on a fresh start, the baselines on the colocated engine
        (it holds the untrained weights; rank 0 holds the shared baselines' locks, as evaluate_baselines)."""
        if self.sharded:
            self.record_sharding(model)
        if not self.engine_baselines:
            return
        jobs, self.engine_baselines = self.engine_baselines, []
        with self.baseline_locks(jobs), preserved_rng():
            self.evaluate_on_engine(jobs)

    def todo(self, jobs: list[EvalJob]) -> list[EvalJob]:
        """The jobs not on disk; with several processes as rank 0 sees them (`missing`, collective)."""
        if self.world > 1:
            self.process_group()
            return self.missing(jobs)
        return [j for j in jobs if not j.stored()]

    @property
    def device(self) -> str:
        """This process's device: its own GPU, or the CPU."""
        return f"cuda:{local_device_index()}" if not self.cpu else "cpu"

    def missing(self, jobs: list[EvalJob]) -> list[EvalJob]:
        """The evaluations not on disk, as rank 0 sees them (broadcast, so every rank takes the same path)."""
        import torch.distributed as dist

        todo = [j.eval_id for j in jobs if not j.stored()] if self.writer else None
        box = [todo]
        dist.broadcast_object_list(box, src=0)
        return [j for j in jobs if j.eval_id in set(box[0])]

    def evaluate_parallel(self, source: str, jobs: list[EvalJob]) -> None:
        """Every rank loads `source` (an HF folder or hub id) in the baseline's dtype and evaluates its share
        of each missing evaluation with transformers; rank 0 writes them. Collective; the evaluation model
        is freed afterwards. Never a vLLM engine: the only one a training process holds is TRL's own."""
        todo = self.todo(jobs)
        if not todo:
            return
        mdl, _ = families.load_model_and_tokenizer(source, dtype=self.dtype, device=self.device)
        try:
            self.evaluate_shares(mdl, source, todo)
        finally:
            del mdl
            gc.collect()
            if not self.cpu:
                torch.cuda.empty_cache()

    def evaluate_shares(self, mdl: Any, source: str, todo: list[EvalJob]) -> None:
        """Each evaluation in `todo` data-parallel with transformers on `mdl` (collective)."""
        import torch.distributed as dist

        where = DataParallel(dist.get_rank(), dist.get_world_size(), dist.barrier)
        for job in todo:
            evaluate.run(job.placed(where, model=mdl, source=source))

    def process_group(self) -> None:
        """The cell's process group, for evaluations before the trainer exists (accelerate, which the
        trainer then reuses: gloo on CPU, NCCL on GPUs)."""
        import datetime

        import torch.distributed as dist

        if not dist.is_initialized():
            from accelerate import PartialState

            PartialState(timeout=datetime.timedelta(seconds=DDP_TIMEOUT_S))

    def record_sharding(self, model: Any) -> None:
        """status.json `sharding`: each rank's share of the parameters (the prepared model's DTensors)."""
        import torch.distributed as dist

        report = sharding.sharding_report(model)
        local = sum(n for n, _ in report.values())
        per_rank: list[Any] = [None] * self.world
        dist.all_gather_object(per_rank, local)
        if self.writer:
            full = sum(f for _, f in report.values())
            self.cell.set_status(
                "running",
                sharding={
                    "kind": "fsdp",
                    "parameters": len(report),
                    "numel": full,
                    "numel_per_rank": per_rank,
                },
            )

    # ------------------------------------------------------------------------------------------ training
    def schedule(self) -> Schedule:
        """The update schedule and the resume point; removes half-written checkpoints (one writer)."""
        cfg, cell = self.cfg, self.cell
        ckpt_dir = cell.checkpoints_dir
        kw = grpo_kwargs(cfg, str(ckpt_dir), cpu=self.cpu, world=self.world, backend=self.backend)
        kw["run_name"] = self.cell_id
        if (
            self.sharded
        ):  # what plan --check built: FSDP's own activation checkpointing replaces transformers'
            kw = sharded_grpo_kwargs(kw, cfg, self.source)
        upr = updates_per_rollout(kw, self.world)
        max_updates = int(kw["max_steps"])
        resume = latest_complete_checkpoint(ckpt_dir, clean=self.writer)
        if self.writer:
            prune_checkpoints(ckpt_dir, cfg.train.keep_checkpoints)  # a kill between a save and its pruning
        resumed_update = (checkpoint_number(resume) or 0) if resume else 0
        by_update = {
            int(r["update"]): r
            for r in artifacts.read_jsonl(cell.metrics_path)
            if 0 < int(r.get("update", 0)) <= resumed_update
        }
        resumes = list(cell.status().get("resumed_from") or []) if resume else []
        if resume:
            resumes.append(resume.name)
            log.info(
                "cell %s resumes from %s (update %d of %d)",
                self.cell_id,
                resume.name,
                resumed_update,
                max_updates,
            )
        return Schedule(
            kw=kw,
            upr=upr,
            max_updates=max_updates,
            final_step=max_updates // upr,
            resume=resume,
            resumed_update=resumed_update,
            metric_rows=[by_update[u] for u in sorted(by_update)],
            resumes=resumes,
        )

    def announce(self, sched: Schedule) -> None:
        if self.writer:
            self.cell.set_status(
                "running",
                backend=self.backend,
                updates_per_rollout=sched.upr,
                resumed_from=sched.resumes or None,
                world_size=self.world,
                sharding=self.cfg.train.sharding if self.sharded else None,
            )

    def callback(self, sched: Schedule) -> CellCallback:
        return CellCallback(
            self.cell,
            updates_per_rollout=sched.upr,
            resumed_update=sched.resumed_update,
            resume=sched.resume,
            keep_checkpoints=self.cfg.train.keep_checkpoints,
            evaluate_checkpoints=self.cfg.eval.checkpoints,
            eval_every=eval_interval(self.cfg),
            metric_rows=sched.metric_rows,
            evaluate_at=self.evaluate_at,
            export=self.export if self.sharded else None,
            on_sharded=self.on_begin,
        )

    def export(self, model: Any, folder: Path) -> None:
        sharding.export_hf(model, self.tok, folder)

    def train(self, sched: Schedule, dataset: Dataset, reward_fn: Any) -> int:
        """Train from the resume point to max_updates, then evaluate the final model; returns the updates."""
        with tracker_env(self.cfg, self.cell.root, self.cell_id, self.sweep):
            args = grpo_config(sched.kw, cpu=self.cpu, world=self.world, sharded=self.sharded)
            trainer = make_trainer(
                args,
                model=self.source,
                reward_fn=reward_fn,
                dataset=dataset,
                tokenizer=self.tok,
                callback=self.callback(sched),
                token_whitening=self.cfg.train.token_whitening,
                sharded=self.sharded,
                stop_strings=training_stops(self.cfg),
                advantage_scale=advantage_scale(self.cfg),
            )
            self.trainer = trainer
            trainer.train(resume_from_checkpoint=str(sched.resume) if sched.resume else None)
        updates = trainer.state.global_step
        # the final model's evaluation: a no-op when the final checkpoint was evaluated in on_save
        if colocated(trainer) is not None:  # on the engine, trainer kept: releasing it ends the group
            self.evaluate_at(trainer.model, sched.final_step)
        elif self.sharded:  # its export, once training's memory is freed
            del trainer
            gc.collect()
            if not self.cpu:
                torch.cuda.empty_cache()
            self.evaluate_at(None, sched.final_step, self.cell.checkpoints_dir / f"checkpoint-{updates}")
        else:
            self.evaluate_at(trainer.model, sched.final_step)
        return updates

    def evaluate_final(self, sched: Schedule) -> int:
        """Already trained (killed after the last save): evaluate the final checkpoint if that is missing."""
        step = sched.final_step
        if self.sharded:  # the checkpoint's export, data-parallel (evaluate_parallel skips what is on disk)
            self.evaluate_at(None, step, sched.resume)
            return sched.resumed_update
        if self.todo(self.step_jobs(step)):  # every rank: the evaluation is data-parallel
            final_model, _ = families.load_model_and_tokenizer(
                str(sched.resume), dtype=self.dtype, device=self.device
            )
            self.evaluate_replica(final_model, step)
        return sched.resumed_update

    # ------------------------------------------------------------------------------------------ DONE
    def finish(self, sched: Schedule, updates: int) -> dict[str, Any]:
        """Flag training health, write the DONE summary and return it (rank 0 only)."""
        cell = self.cell
        flags = health.flags(sched.metric_rows)
        artifacts.atomic_write_json(cell.health_path, flags)
        summary = {
            "cell_id": self.cell_id,
            "sweep": self.sweep,
            "final_step": sched.final_step,
            "updates": updates,
            "updates_per_rollout": sched.upr,
            "backend": self.backend,
            "device": "cpu" if self.cpu else "cuda",
            "world_size": self.world,
            "sharding": self.cfg.train.sharding,
            "seconds": round(time.time() - self.t_start, 1),
            "baselines": self.baselines,
            "health": health.names(flags),
            "resumed_from": sched.resumes or None,
        }
        cell.set_status("running", health=summary["health"], step=sched.final_step, update=updates)
        cell.mark_done(summary)
        return summary
