"""One cell's GRPO run with TRL (the only module that imports trl).

Reads top to bottom: resolve the model and data, evaluate the untrained model (shared baseline), train
with GRPOTrainer while a callback writes every logged update and evaluates every checkpoint, then
evaluate the final model, flag training health and write DONE. A killed run restarts from its last
complete checkpoint: metrics after that point are dropped and rewritten, evaluations already on disk
are not repeated.

Step vocabulary: a *rollout step* (the paper's "step") generates prompts_per_step x samples_per_prompt
responses; TRL's global_step counts gradient *updates*, `updates_per_rollout` of them per rollout step.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from . import artifacts, clipping, data, evaluate, families, health, rewards
from .errors import ConfigError, DataError
from .generate import choose_backend
from .spec import CellConfig, TrainSettings

log = logging.getLogger(__name__)

#: GRPOConfig fields that spurisweep sets from its own settings; `trl:` may still override them
MANAGED = (
    "per_device_train_batch_size", "gradient_accumulation_steps", "generation_batch_size", "num_generations",
    "num_iterations", "max_steps", "save_steps", "epsilon", "epsilon_high",
)


# ---------------------------------------------------------------------------------------------- config
def batch_shape(t: TrainSettings, clip: str) -> dict[str, int]:
    """Responses per rollout, per update and per forward pass; updates per rollout step."""
    rollout = t.prompts_per_step * t.samples_per_prompt
    on_policy = clipping.CLIP_MODES[clip].on_policy
    mini = rollout if on_policy else t.mini_batch
    micro = min(t.micro_batch or mini, mini)
    iterations = 1 if on_policy else t.epochs_per_rollout
    return {"rollout": rollout, "mini": mini, "micro": micro, "iterations": iterations,
            "updates_per_rollout": (rollout // mini) * iterations if mini else 0}


def check_shape(cfg: CellConfig) -> None:
    s = batch_shape(cfg.train, cfg.clip)
    if s["rollout"] % s["mini"]:
        raise ConfigError(
            f"prompts_per_step x samples_per_prompt ({s['rollout']}) must be divisible by mini_batch ({s['mini']})",
            field="train.mini_batch",
        )
    if s["mini"] % s["micro"]:
        raise ConfigError(f"mini_batch ({s['mini']}) must be divisible by micro_batch ({s['micro']})",
                          field="train.micro_batch")


def grpo_kwargs(cfg: CellConfig, output_dir: str, *, cpu: bool, sweep: str = "", backend: str = "transformers"):
    """GRPOConfig keyword arguments for a cell (pure: imports nothing heavy)."""
    check_shape(cfg)
    t = cfg.train
    s = batch_shape(t, cfg.clip)
    bf16 = (not cpu) if t.bf16 is None else t.bf16
    kw: dict[str, Any] = dict(
        output_dir=output_dir,
        run_name=None,
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_steps,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        per_device_train_batch_size=s["micro"],
        gradient_accumulation_steps=s["mini"] // s["micro"],
        generation_batch_size=s["rollout"],
        num_generations=t.samples_per_prompt,
        num_iterations=s["iterations"],
        max_steps=t.steps * s["updates_per_rollout"],
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        top_p=t.top_p,
        beta=t.beta,
        loss_type=t.loss_type,
        scale_rewards=t.scale_rewards,
        logging_steps=1,
        save_strategy="steps",
        save_steps=t.save_every * s["updates_per_rollout"],
        save_total_limit=t.keep_checkpoints,
        report_to=cfg.tracking.report_to or "none",
        use_cpu=cpu,
        bf16=bf16,
        gradient_checkpointing=t.gradient_checkpointing,
        use_vllm=backend == "vllm",
        disable_tqdm=True,
        **clipping.grpo_args(cfg.clip, cfg.clip_params),
    )
    if backend == "vllm":
        kw.update(vllm_mode="colocate", vllm_gpu_memory_utilization=t.vllm_gpu_memory_utilization)
    kw.update(cfg.trl)
    return kw


def grpo_fields() -> set[str]:
    from trl import GRPOConfig

    return {f.name for f in dataclasses.fields(GRPOConfig)}


def validate(cfg: CellConfig, file: str | None = None) -> None:
    """Plan-time check of `trl:` overrides and TRL's own cross-field rules, by building GRPOConfig."""
    import tempfile
    import warnings

    from trl import GRPOConfig

    valid = grpo_fields()
    for key in cfg.trl:
        if key not in valid:
            from .errors import suggest

            raise ConfigError(suggest(key, sorted(valid)) + " (GRPOConfig fields)", file=file, field=f"trl.{key}")
    try:
        check_shape(cfg)
    except ConfigError as exc:
        raise ConfigError(exc.detail, file=file, field=exc.field) from None
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = grpo_kwargs(cfg, tmp, cpu=True)
        kw["report_to"] = "none"  # trackers need not be installed to plan
        try:
            GRPOConfig(**kw)
        except (ValueError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0]
            raise ConfigError(f"TRL rejects this configuration: {msg}", file=file, field="trl") from None


# ---------------------------------------------------------------------------------------------- data
def training_problems(cfg: CellConfig, results: Path) -> list[data.Problem]:
    kind = rewards.data_kind(rewards.parse(cfg.reward))
    d = cfg.data
    if kind == "one_shot":
        if d.one_shot_id is None:
            one = data.PI1
        else:
            pool = data.load_problems(d.train, split=d.split, problem_field=d.problem_field,
                                      answer_field=d.answer_field)
            match = [p for p in pool if p.id == d.one_shot_id]
            if not match:
                raise DataError(f"one_shot_id {d.one_shot_id!r} is not an id in {d.train}")
            one = match[0]
        return [one] * d.one_shot_repeat
    if kind in ("majority", "incorrect"):
        from . import labels

        return labels.labelled_problems(cfg, results, incorrect=kind == "incorrect")
    return data.load_problems(d.train, split=d.split, limit=d.limit, problem_field=d.problem_field,
                              answer_field=d.answer_field)


# ---------------------------------------------------------------------------------------------- running
def threads() -> None:
    import torch

    n = os.environ.get("SPURISWEEP_THREADS")
    if n:
        torch.set_num_threads(int(n))


def latest_complete_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest checkpoint with our COMPLETE marker; half-written ones (killed mid-save) are removed."""
    best: tuple[int, Path] | None = None
    for p in ckpt_dir.glob("checkpoint-*"):
        try:
            n = int(p.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if not (p / "COMPLETE").exists():
            shutil.rmtree(p, ignore_errors=True)
            continue
        if best is None or n > best[0]:
            best = (n, p)
    return best[1] if best else None


def run_cell(cell_dir: Path, results: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig

    threads()
    cell = artifacts.CellDir(cell_dir)
    raw = cell.config()
    cfg = CellConfig.model_validate(raw["config"])
    sweep = raw.get("sweep", "")
    cell_id = cell.cell_id
    cpu = not torch.cuda.is_available()
    backend = choose_backend(cfg.train.generation_backend)
    source = families.model_source(cfg.model, cfg.model_path)
    t_start = time.time()

    # -- the untrained model's evaluation, shared by every cell of this model/prompt/protocol
    baselines: dict[str, str] = {}
    model, tok = families.load_model_and_tokenizer(source, dtype=None if cfg.train.bf16 is None else
                                                   ("bf16" if cfg.train.bf16 else "fp32"))
    protos = [evaluate.protocol_for(cfg.eval, b) for b in cfg.eval.benchmarks]
    if cfg.eval.baseline:
        from filelock import FileLock

        folder = results / artifacts.BASELINES
        folder.mkdir(parents=True, exist_ok=True)
        for proto in protos:
            eid = evaluate.baseline_eval_id(cfg.model, cfg.model_path, cfg.prompt or "", proto)
            with FileLock(str(folder / f"{eid}.lock")):  # concurrent cells of one model: evaluated once
                evaluate.run_eval(model=model, tokenizer=tok, model_source=source, prompt_template=cfg.prompt or "",
                                  proto=proto, seed=cfg.seed, folder=folder, eval_id=eid,
                                  meta={"model": cfg.model, "model_path": cfg.model_path, "cell_id": None,
                                        "step": 0, "is_baseline": True}, backend="transformers",
                                  batch_size=cfg.eval.batch_size)
            baselines[proto.benchmark] = eid

    def evaluate_at(mdl: Any, step: int) -> None:
        for proto in protos:
            eid = evaluate.checkpoint_eval_id(cell_id, step, cfg.prompt or "", proto)
            evaluate.run_eval(model=mdl, tokenizer=tok, model_source=source, prompt_template=cfg.prompt or "",
                              proto=proto, seed=cfg.seed, folder=cell.evals_dir, eval_id=eid,
                              meta={"model": cfg.model, "model_path": cfg.model_path, "cell_id": cell_id,
                                    "step": step, "is_baseline": False,
                                    "baseline_eval_id": baselines.get(proto.benchmark)},
                              backend="transformers", batch_size=cfg.eval.batch_size)

    # -- training data, rendered with the cell's prompt template (the same text evaluation uses)
    problems = training_problems(cfg, results)
    rendered = [families.render_prompt(tok, cfg.prompt or "", p.problem) for p in problems]
    keep = [i for i, r in enumerate(rendered) if len(tok(r, add_special_tokens=False)["input_ids"])
            <= cfg.train.max_prompt_length]
    if not keep:
        raise DataError(f"no training prompt fits max_prompt_length={cfg.train.max_prompt_length}")
    ds = Dataset.from_list([{"prompt": rendered[i], "answer": problems[i].answer, "problem_id": problems[i].id}
                            for i in keep])

    shape = batch_shape(cfg.train, cfg.clip)
    upr = shape["updates_per_rollout"]
    ckpt_dir = cell.checkpoints_dir
    resume = latest_complete_checkpoint(ckpt_dir) if ckpt_dir.exists() else None
    resumed_update = int(resume.name.split("-")[1]) if resume else 0
    metric_rows = [r for r in artifacts.read_jsonl(cell.metrics_path) if r.get("update", 0) <= resumed_update]

    class CellCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            if resume is not None and cfg.eval.checkpoints:  # killed between save and its evaluation
                evaluate_at(model, resumed_update // upr)

        def on_log(self, args, state, control, logs=None, **kw):
            if not logs or "train_runtime" in logs:
                return
            row = {"update": state.global_step, "step": math.ceil(state.global_step / upr), "time": time.time()}
            row.update({k: float(v) for k, v in logs.items() if isinstance(v, (int, float))})
            metric_rows.append(row)
            artifacts.atomic_write_jsonl(cell.metrics_path, metric_rows)

        def on_save(self, args, state, control, model=None, **kw):
            path = ckpt_dir / f"checkpoint-{state.global_step}"
            artifacts.atomic_write_text(path / "COMPLETE", str(time.time()))
            cell.set_status("running", checkpoint=path.name, step=state.global_step // upr)
            if cfg.eval.checkpoints:
                evaluate_at(model, state.global_step // upr)

    reward_fn = rewards.build(
        cfg.reward, cfg.reward_params,
        rewards.RewardContext(seed=cfg.seed, grading_workers=_grading_workers()),
    )
    kw = grpo_kwargs(cfg, str(ckpt_dir), cpu=cpu, sweep=sweep, backend=backend)
    kw["run_name"] = cell_id
    if "wandb" in (cfg.tracking.report_to or []):
        os.environ.setdefault("WANDB_RUN_GROUP", sweep)
        if cfg.tracking.project:
            os.environ.setdefault("WANDB_PROJECT", cfg.tracking.project)
    args = GRPOConfig(**kw)
    del model  # the trainer loads its own copy of the policy
    trainer = _trainer_class()(model=source, reward_funcs=[reward_fn], args=args, train_dataset=ds,
                           processing_class=tok, callbacks=[CellCallback()])
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # metrics go to metrics.jsonl, not as dicts to stdout
    cell.set_status("running", backend=backend, updates_per_rollout=upr, resumed_from=resume.name if resume else None)
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)

    final_step = cfg.train.steps
    evaluate_at(trainer.model, final_step)
    flags = health.flags(metric_rows)
    artifacts.atomic_write_json(cell.health_path, flags)
    summary = {
        "cell_id": cell_id, "sweep": sweep, "final_step": final_step, "updates": trainer.state.global_step,
        "backend": backend, "device": "cpu" if cpu else "cuda", "seconds": round(time.time() - t_start, 1),
        "baselines": baselines, "health": [f["flag"] for f in flags],
        "resumed_from": resume.name if resume else None,
    }
    cell.mark_done(summary)
    return summary


def _grading_workers() -> int | None:
    n = os.environ.get("SPURISWEEP_GRADING_WORKERS")
    return int(n) if n else None


def _trainer_class():
    from trl import GRPOTrainer

    class _SpuriTrainer(GRPOTrainer):
        """GRPOTrainer that also logs the mean probability of the sampled tokens under the policy that
        sampled them (the paper's evidence for prior amplification: ~0.85 -> >0.93 under clipping)."""

        def _generate_and_score_completions(self, inputs):
            import torch

            out = super()._generate_and_score_completions(inputs)
            logps = out.get("old_per_token_logps")
            if logps is None:
                logps = out.get("sampling_per_token_logps")
            if logps is None:  # on-policy: TRL skipped the extra forward pass; do it for the metric
                ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
                mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
                with torch.no_grad():
                    logps = self._get_per_token_logps_and_entropies(
                        self.model, ids, mask, out["completion_ids"].size(1)
                    )[0]
            m = out["completion_mask"].float()
            p = float((logps.exp() * m).sum() / m.sum().clamp(min=1.0))
            self._metrics["train" if self.model.training else "eval"]["token_prob/mean"].append(p)
            return out

    return _SpuriTrainer

