"""One cell's GRPO run with TRL (the only module that imports trl).

Reads top to bottom: resolve the model and data, evaluate the untrained model (shared baseline), train
with GRPOTrainer while a callback writes every logged update, checkpoints and evaluates every `save_every`
rollout steps, then evaluate the final model, flag training health and write DONE.

Step vocabulary: a *rollout step* (the paper's "step") generates prompts_per_step x samples_per_prompt
responses; TRL's global_step counts gradient *updates*, `updates_per_rollout` of them per rollout step.
How spurisweep's batch settings map onto TRL 1.16 (GRPOConfig.__post_init__ and GRPOTrainer):

    generation_batch_size       = prompts_per_step x samples_per_prompt          (the rollout)
    per_device_train_batch_size = micro_batch (responses per forward pass)
    gradient_accumulation_steps = mini_batch / (micro_batch x processes)          (one optimizer update)
    steps_per_generation        = rollout / (micro_batch x processes)             (derived by TRL)
    num_iterations              = epochs_per_rollout
    updates_per_rollout         = steps_per_generation x num_iterations / gradient_accumulation_steps
    max_steps                   = steps x updates_per_rollout

TRL generates once every steps_per_generation x num_iterations micro-batches and computes the "old"
log-probabilities (so the ratio can leave 1 and clipping can act) only when that is not a multiple of
gradient_accumulation_steps, i.e. only when a rollout is reused for more than one update. Anything under
`trl:` overrides these values; the schedule (updates per rollout, max_steps, save_steps) is then derived
from the overridden values, so rollout steps and checkpoints stay aligned.

Resume: checkpoints are saved on rollout boundaries (and, by transformers, at the last update); a `COMPLETE` marker is
written once TRL has finished writing one, and older checkpoints are pruned only after it (never by TRL,
whose rotation runs before our marker exists). A killed run restarts from its newest complete
checkpoint: TRL restores the weights, optimizer, scheduler, RNG states and data position; metric rows
after that update are dropped and logged again; evaluations already on disk are not repeated, and
evaluation saves and restores the RNG so the resumed trajectory equals the uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import artifacts, clipping, data, evaluate, families, health, rewards
from .distributed import rank, world_size
from .errors import ConfigError, DataError, suggest
from .generate import choose_backend
from .spec import CellConfig, TrainSettings

log = logging.getLogger(__name__)

#: TRL 1.16 loss types (GRPOConfig.loss_type; TRL itself only rejects an unknown one mid-training)
LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo", "cispo", "sapo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")
#: GRPOConfig fields that define how a rollout is cut into updates
SHAPE_FIELDS = (
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "generation_batch_size",
    "steps_per_generation",
    "num_iterations",
)
#: how long data-parallel ranks wait for each other (TRL's default is 30 min): rank 0 alone evaluates the
#: untrained model and every checkpoint, and a 7B model on MATH-500 with transformers can take hours
DDP_TIMEOUT_S = 8 * 3600
#: GRPOConfig fields spurisweep owns: overriding them under `trl:` would break the cell's folder layout,
#: its identity or its resume logic; the value says where to set the same thing instead
RESERVED = {
    "output_dir": "the cell folder is fixed by the results layout",
    "run_name": "the run name is the cell id",
    "report_to": "use tracking.report_to",
    "project": "use tracking.project",
    "seed": "use the seed axis",
    "data_seed": "use the seed axis",
    "logging_steps": "every update is logged to metrics.jsonl",
    "save_strategy": "use train.save_every",
    "resume_from_checkpoint": "resume is automatic",
}
#: where each GRPOConfig field comes from, to name the setting behind a TRL error
SOURCE = {
    "num_generations": "train.samples_per_prompt",
    "generation_batch_size": "train.prompts_per_step",
    "per_device_train_batch_size": "train.micro_batch",
    "gradient_accumulation_steps": "train.mini_batch",
    "num_iterations": "train.epochs_per_rollout",
    "loss_type": "train.loss_type",
    "scale_rewards": "train.scale_rewards",
    "epsilon": "clip_params.eps_low",
    "epsilon_high": "clip_params.eps_high",
    "max_completion_length": "train.max_completion_length",
    "learning_rate": "train.learning_rate",
    "beta": "train.beta",
}


# ---------------------------------------------------------------------------------------------- config
@dataclasses.dataclass(frozen=True)
class BatchShape:
    """Responses per rollout / update / forward pass, and how many processes share them."""

    rollout: int
    mini: int
    micro: int
    iterations: int
    world: int = 1

    @property
    def grad_accum(self) -> int:
        return self.mini // (self.micro * self.world)

    @property
    def steps_per_generation(self) -> int:
        return self.rollout // (self.micro * self.world)

    @property
    def updates_per_rollout(self) -> int:
        return (self.rollout // self.mini) * self.iterations


def batch_shape(t: TrainSettings, clip: str, world: int = 1) -> BatchShape:
    """The paper's batch vocabulary for this clip mode; `on_policy` makes the mini-batch the whole rollout."""
    rollout = t.prompts_per_step * t.samples_per_prompt
    on_policy = clipping.CLIP_MODES[clip].on_policy
    mini = rollout if on_policy else t.mini_batch
    micro = min(t.micro_batch or mini, mini)
    if world > 1 and t.micro_batch is None:
        micro = max(1, mini // world)
    return BatchShape(
        rollout=rollout,
        mini=mini,
        micro=micro,
        iterations=1 if on_policy else t.epochs_per_rollout,
        world=world,
    )


def check_shape(cfg: CellConfig, world: int = 1, file: str | None = None) -> BatchShape:
    s = batch_shape(cfg.train, cfg.clip, world)
    if s.rollout % s.mini:
        raise ConfigError(
            f"prompts_per_step x samples_per_prompt ({s.rollout}) must be divisible by mini_batch ({s.mini})",
            file=file,
            field="train.mini_batch",
        )
    if s.mini % (s.micro * s.world):
        extra = f" x {s.world} processes" if s.world > 1 else ""
        raise ConfigError(
            f"mini_batch ({s.mini}) must be divisible by micro_batch ({s.micro}){extra}",
            file=file,
            field="train.micro_batch",
        )
    return s


def grpo_kwargs(
    cfg: CellConfig,
    output_dir: str,
    *,
    cpu: bool,
    world: int = 1,
    backend: str = "transformers",
    file: str | None = None,
) -> dict[str, Any]:
    """GRPOConfig keyword arguments for a cell (pure: imports nothing heavy)."""
    s = check_shape(cfg, world, file)
    t = cfg.train
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
        per_device_train_batch_size=s.micro,
        gradient_accumulation_steps=s.grad_accum,
        generation_batch_size=s.rollout,
        num_generations=t.samples_per_prompt,
        num_iterations=s.iterations,
        max_completion_length=t.max_completion_length,
        temperature=t.temperature,
        top_p=t.top_p,
        beta=t.beta,
        loss_type=t.loss_type,
        scale_rewards=t.scale_rewards,
        logging_steps=1,
        save_strategy="steps",
        save_total_limit=None,  # pruned by us after the COMPLETE marker (see module docstring)
        report_to=list(cfg.tracking.report_to) or "none",
        use_cpu=cpu,
        bf16=bf16,
        gradient_checkpointing=t.gradient_checkpointing,
        use_vllm=backend == "vllm",
        disable_tqdm=True,
        **clipping.grpo_args(cfg.clip, cfg.clip_params),
    )
    if cfg.tracking.project:
        kw["project"] = cfg.tracking.project
    if backend == "vllm":
        kw.update(
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=t.vllm_gpu_memory_utilization,
            vllm_max_model_length=t.max_prompt_length + t.max_completion_length,
        )
    kw.update(cfg.trl)
    if "steps_per_generation" in cfg.trl and "generation_batch_size" not in cfg.trl:
        kw.pop("generation_batch_size")  # TRL takes one of the two; the user's choice wins
    try:
        upr = updates_per_rollout(kw, world, file)
    except ConfigError as exc:  # with batch-shape overrides, name the override rather than our setting
        who = next((f"trl.{k}" for k in SHAPE_FIELDS if k in cfg.trl), exc.field)
        raise ConfigError(exc.detail, file=file, field=who) from None
    if world > 1 and "ddp_timeout" not in cfg.trl:
        # rank 0 evaluates (baseline, checkpoints) while the other ranks wait at their next collective
        kw["ddp_timeout"] = DDP_TIMEOUT_S
    if world > 1 and "ddp_find_unused_parameters" not in cfg.trl:
        kw["ddp_find_unused_parameters"] = False  # every parameter of a causal LM takes part in the loss
    if "max_steps" not in cfg.trl:
        kw["max_steps"] = t.steps * upr
    if "save_steps" not in cfg.trl:
        kw["save_steps"] = t.save_every * upr
    return kw


def updates_per_rollout(kw: dict[str, Any], world: int = 1, file: str | None = None) -> int:
    """Optimizer updates per generation, from GRPOConfig keyword arguments (TRL's own arithmetic)."""
    per_step = int(kw.get("per_device_train_batch_size", 8)) * world
    spg = kw.get("steps_per_generation")
    if spg is None:
        gen = int(kw["generation_batch_size"])
        if gen % per_step:
            raise ConfigError(
                f"the rollout ({gen} responses) must be divisible by the responses per forward pass "
                f"({per_step})",
                file=file,
                field="trl.per_device_train_batch_size",
            )
        spg = gen // per_step
    micro_steps = int(spg) * int(kw.get("num_iterations", 1))
    accum = int(kw.get("gradient_accumulation_steps", 1))
    if micro_steps % accum:
        raise ConfigError(
            f"a rollout is {micro_steps} forward passes (steps_per_generation x num_iterations), which is not a "
            f"whole number of updates of {accum} (gradient_accumulation_steps); rollout steps would straddle updates",
            file=file,
            field="trl.gradient_accumulation_steps",
        )
    return micro_steps // accum


def grpo_fields() -> set[str]:
    from trl import GRPOConfig

    return {f.name for f in dataclasses.fields(GRPOConfig)}


def known_trackers() -> list[str]:
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    return sorted(INTEGRATION_TO_CALLBACK)


def validate(cfg: CellConfig, file: str | None = None) -> None:
    """Plan-time check of `trl:` overrides, TRL's own cross-field rules and the settings TRL only checks
    mid-training (loss type, reward scaling), by building the GRPOConfig the cell would train with."""
    import tempfile
    import warnings

    from trl import GRPOConfig

    valid = grpo_fields()
    for key in cfg.trl:
        if key in RESERVED:
            raise ConfigError(f"set by spurisweep: {RESERVED[key]}", file=file, field=f"trl.{key}")
        if key not in valid:
            raise ConfigError(
                suggest(key, sorted(valid)) + " (GRPOConfig fields)", file=file, field=f"trl.{key}"
            )
    loss_field = "trl.loss_type" if "loss_type" in cfg.trl else "train.loss_type"
    loss_type = cfg.trl.get("loss_type", cfg.train.loss_type)
    if loss_type not in LOSS_TYPES:
        raise ConfigError(suggest(str(loss_type), LOSS_TYPES), file=file, field=loss_field)
    scale = cfg.trl.get("scale_rewards", cfg.train.scale_rewards)
    if scale not in SCALE_REWARDS and not isinstance(scale, bool):
        field = "trl.scale_rewards" if "scale_rewards" in cfg.trl else "train.scale_rewards"
        raise ConfigError(suggest(str(scale), SCALE_REWARDS), file=file, field=field)
    clipping.check_params(cfg.clip, cfg.clip_params, file=file)
    clipping.check_loss_type(cfg.clip, str(loss_type), cfg.trl, file=file)
    trackers = known_trackers()
    for i, name in enumerate(cfg.tracking.report_to):
        if name not in trackers:
            raise ConfigError(suggest(name, trackers), file=file, field=f"tracking.report_to[{i}]")
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kw = grpo_kwargs(cfg, tmp, cpu=True, world=cfg.slurm.processes, file=file)
        kw["report_to"] = "none"  # trackers need not be installed to plan
        try:
            GRPOConfig(**kw)
        except (ValueError, TypeError) as exc:
            msg = str(exc).strip().splitlines()[0]
            raise ConfigError(
                f"TRL rejects this configuration: {msg}", file=file, field=_blame(msg, cfg)
            ) from None


def validation_key(cfg: CellConfig) -> str:
    """What validate() looks at: cells that agree on it need to be validated once."""
    return cfg.model_dump_json(include={"train", "trl", "clip", "clip_params", "tracking"}) + str(
        cfg.slurm.processes
    )


def _blame(message: str, cfg: CellConfig) -> str:
    """The setting a TRL error message is most likely about: an override it names, else its source."""
    for key in sorted(cfg.trl, key=len, reverse=True):
        if key in message:
            return f"trl.{key}"
    for key, setting in SOURCE.items():
        if key in message:
            return setting
    return "trl"


# ---------------------------------------------------------------------------------------------- data
def training_problems(cfg: CellConfig, results: Path) -> list[data.Problem]:
    kind = rewards.data_kind(rewards.parse(cfg.reward))
    d = cfg.data
    if kind == "one_shot":
        if d.one_shot_id is None:
            one = data.PI1
        else:
            pool = data.load_problems(
                d.train, split=d.split, problem_field=d.problem_field, answer_field=d.answer_field
            )
            match = [p for p in pool if p.id == d.one_shot_id]
            if not match:
                raise DataError(f"one_shot_id {d.one_shot_id!r} is not an id in {d.train}")
            one = match[0]
        return [one] * d.one_shot_repeat
    if kind in ("majority", "incorrect"):
        from . import labels

        return labels.labelled_problems(cfg, results, incorrect=kind == "incorrect")
    return data.load_problems(
        d.train, split=d.split, limit=d.limit, problem_field=d.problem_field, answer_field=d.answer_field
    )


def for_trl(tokenizer: Any, text: str) -> str:
    """The prompt text to hand TRL so that it tokenizes to exactly the ids evaluation uses.

    TRL tokenizes string prompts with the tokenizer's special tokens; a chat template that already wrote
    the BOS (Llama 3) would then start with two. Evaluation (generate.encode_prompts) adds no second BOS,
    so here the written one is dropped whenever that makes the two token sequences identical."""
    from .generate import encode_prompts

    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not text.startswith(bos):
        return text
    want = encode_prompts(tokenizer, [text])[0]
    if list(tokenizer(text)["input_ids"]) == want:
        return text
    stripped = text[len(bos) :]
    return stripped if list(tokenizer(stripped)["input_ids"]) == want else text


def training_rows(cfg: CellConfig, tokenizer: Any, problems: list[data.Problem]) -> list[dict[str, str]]:
    """Dataset rows for TRL: the prompt rendered with the cell's template (the exact text evaluation uses,
    families.render_prompt), so TRL does not apply a chat template again; over-long prompts are dropped."""
    rows = []
    for p in problems:
        text = for_trl(tokenizer, families.render_prompt(tokenizer, cfg.prompt or "", p.problem))
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= cfg.train.max_prompt_length:
            rows.append({"prompt": text, "answer": p.answer, "problem_id": p.id})
    if not rows:
        raise DataError(f"no training prompt fits max_prompt_length={cfg.train.max_prompt_length}")
    if len(rows) < len(problems):
        log.info(
            "dropped %d of %d training prompts longer than %d tokens",
            len(problems) - len(rows),
            len(problems),
            cfg.train.max_prompt_length,
        )
    return rows


# ---------------------------------------------------------------------------------------------- checkpoints
def checkpoint_number(p: Path) -> int | None:
    try:
        return int(p.name.split("-")[1])
    except (IndexError, ValueError):
        return None


def latest_complete_checkpoint(ckpt_dir: Path, clean: bool = True) -> Path | None:
    """The newest checkpoint with our COMPLETE marker; half-written ones (killed mid-save) are removed
    (when `clean`: by one process only)."""
    best: tuple[int, Path] | None = None
    if not ckpt_dir.exists():
        return None
    for p in ckpt_dir.glob("checkpoint-*"):
        n = checkpoint_number(p)
        if n is None:
            continue
        if not (p / "COMPLETE").exists():
            if clean:
                log.info("removing incomplete checkpoint %s", p)
                shutil.rmtree(p, ignore_errors=True)
            continue
        if best is None or n > best[0]:
            best = (n, p)
    return best[1] if best else None


def prune_checkpoints(ckpt_dir: Path, keep: int | None) -> list[Path]:
    """Delete all but the `keep` newest complete checkpoints (None keeps all). Returns what was deleted."""
    if keep is None:
        return []
    done = sorted(
        (
            p
            for p in ckpt_dir.glob("checkpoint-*")
            if (p / "COMPLETE").exists() and checkpoint_number(p) is not None
        ),
        key=lambda p: checkpoint_number(p) or 0,
    )
    gone = done[:-keep] if keep > 0 else done
    for p in gone:
        (p / "COMPLETE").unlink(missing_ok=True)  # first, so a kill mid-delete leaves it "incomplete"
        shutil.rmtree(p, ignore_errors=True)
    return gone


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Evaluation seeds the global RNGs; training must continue as if it had not run (resume equivalence)."""
    import numpy as np
    import torch

    state = (
        random.getstate(),
        np.random.get_state(),
        torch.get_rng_state(),
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    )
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        if state[3] is not None:
            torch.cuda.set_rng_state_all(state[3])


# ---------------------------------------------------------------------------------------------- trackers
@contextlib.contextmanager
def tracker_env(cfg: CellConfig, cell_dir: Path, cell_id: str, sweep: str) -> Iterator[None]:
    """Environment the tracker callbacks read, set only while this cell trains (the debug executor runs
    several cells in one process). wandb: the sweep is the group and the cell id the run id, so a resumed
    cell continues its run; tensorboard: events go to <cell>/tensorboard, so `tensorboard --logdir
    results/<sweep>` shows one run per cell."""
    env: dict[str, str] = {}
    if "wandb" in cfg.tracking.report_to:
        env.update(WANDB_RUN_GROUP=sweep or "spurisweep", WANDB_RUN_ID=cell_id, WANDB_RESUME="allow")
        if cfg.tracking.project:
            env["WANDB_PROJECT"] = cfg.tracking.project
    if "tensorboard" in cfg.tracking.report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(cell_dir / "tensorboard")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_trackers_installed(cfg: CellConfig) -> None:
    import importlib.util

    need = {
        "wandb": "wandb",
        "tensorboard": "tensorboard or tensorboardX",
        "trackio": "trackio",
        "mlflow": "mlflow",
        "comet_ml": "comet_ml",
        "neptune": "neptune",
        "clearml": "clearml",
    }
    for i, name in enumerate(cfg.tracking.report_to):
        mods = {"tensorboard": ("tensorboard", "tensorboardX")}.get(name, (name,))
        if name in need and not any(importlib.util.find_spec(m) for m in mods):
            raise ConfigError(
                f"{name} is not installed here (pip install {need[name].split(' or ')[-1]})",
                field=f"tracking.report_to[{i}]",
            )


# ---------------------------------------------------------------------------------------------- running
def threads() -> None:
    import torch

    n = os.environ.get("SPURISWEEP_THREADS")
    if n:
        torch.set_num_threads(int(n))


def run_cell(cell_dir: Path, results: Path) -> dict[str, Any]:
    """Train, checkpoint, evaluate and resume one cell in its folder; returns the DONE summary."""
    import torch
    from datasets import Dataset
    from transformers import AutoTokenizer, TrainerCallback
    from trl import GRPOConfig

    threads()
    cell = artifacts.CellDir(cell_dir)
    raw = cell.config()
    cfg = CellConfig.model_validate(raw["config"])
    sweep = raw.get("sweep", "")
    cell_id = cell.cell_id
    cpu = not torch.cuda.is_available()
    world = world_size()
    writer = rank() == 0  # data-parallel ranks: rank 0 evaluates and writes; all ranks train
    backend = choose_backend(cfg.train.generation_backend)
    check_trackers_installed(cfg)
    source = families.model_source(cfg.model, cfg.model_path)
    t_start = time.time()

    # -- the untrained model's evaluation, shared by every cell of this model/prompt/protocol
    dtype = None if cfg.train.bf16 is None else ("bf16" if cfg.train.bf16 else "fp32")
    tok = AutoTokenizer.from_pretrained(source)
    protos = [evaluate.protocol_for(cfg.eval, b) for b in cfg.eval.benchmarks]
    baselines: dict[str, str] = {}

    def run_eval(mdl: Any, proto: Any, folder: Path, eid: str, step: int, baseline: bool = False) -> None:
        meta = {"model": cfg.model, "model_path": cfg.model_path, "step": step, "is_baseline": baseline}
        if baseline:
            meta["cell_id"] = None
        else:
            meta.update(cell_id=cell_id, baseline_eval_id=baselines.get(proto.benchmark))
        evaluate.run_eval(
            model=mdl,
            tokenizer=tok,
            model_source=source,
            prompt_template=cfg.prompt or "",
            proto=proto,
            seed=cfg.seed,
            folder=folder,
            eval_id=eid,
            meta=meta,
            backend="transformers",
            batch_size=cfg.eval.batch_size,
        )

    model = None  # the untrained model, loaded only if a baseline evaluation is missing
    if cfg.eval.baseline:
        from filelock import FileLock

        folder = results / artifacts.BASELINES
        folder.mkdir(parents=True, exist_ok=True)
        for proto in protos:
            eid = evaluate.baseline_eval_id(cfg.model, cfg.model_path, cfg.prompt or "", proto)
            baselines[proto.benchmark] = eid
            if not writer:
                continue
            with FileLock(str(folder / f"{eid}.lock")):  # concurrent cells of one model: evaluated once
                if model is None and not artifacts.eval_complete(folder, eid):
                    model, tok = families.load_model_and_tokenizer(source, dtype=dtype)
                run_eval(model, proto, folder, eid, step=0, baseline=True)

    def eval_ids(step: int) -> list[str]:
        return [evaluate.checkpoint_eval_id(cell_id, step, cfg.prompt or "", p) for p in protos]

    def evaluate_at(mdl: Any, step: int) -> None:
        if not writer:
            return
        with preserved_rng():
            for proto, eid in zip(protos, eval_ids(step), strict=True):
                run_eval(mdl, proto, cell.evals_dir, eid, step)

    # -- training data, rendered with the cell's prompt template (the same text evaluation uses)
    ds = Dataset.from_list(training_rows(cfg, tok, training_problems(cfg, results)))

    ckpt_dir = cell.checkpoints_dir
    kw = grpo_kwargs(cfg, str(ckpt_dir), cpu=cpu, world=world, backend=backend)
    kw["run_name"] = cell_id
    upr = updates_per_rollout(kw, world)
    max_updates = int(kw["max_steps"])
    final_step = max_updates // upr
    resume = latest_complete_checkpoint(ckpt_dir, clean=writer)
    if writer:
        prune_checkpoints(ckpt_dir, cfg.train.keep_checkpoints)  # a kill between a save and its pruning
    resumed_update = (checkpoint_number(resume) or 0) if resume else 0
    by_update = {
        int(r["update"]): r
        for r in artifacts.read_jsonl(cell.metrics_path)
        if 0 < int(r.get("update", 0)) <= resumed_update
    }
    metric_rows = [by_update[u] for u in sorted(by_update)]
    resumes = list(cell.status().get("resumed_from") or []) if resume else []
    if resume:
        resumes.append(resume.name)
        log.info(
            "cell %s resumes from %s (update %d of %d)", cell_id, resume.name, resumed_update, max_updates
        )

    class CellCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            if state.global_step != resumed_update:  # TRL restored another step than the one we chose
                raise RuntimeError(f"resumed at update {state.global_step}, expected {resumed_update}")
            if resume is not None and cfg.eval.checkpoints:  # killed between a save and its evaluation
                evaluate_at(model, resumed_update // upr)

        def on_log(self, args, state, control, logs=None, **kw):
            if not state.is_world_process_zero or not logs or "train_runtime" in logs:  # not an update row
                return
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
            artifacts.atomic_write_jsonl(cell.metrics_path, metric_rows)
            if (state.global_step - 1) % upr == 0:  # first update of a rollout: progress and health so far
                found = health.names(health.flags(metric_rows))
                cell.set_status("running", step=row["step"], update=state.global_step, health=found)

        def on_save(self, args, state, control, model=None, **kw):
            if not state.is_world_process_zero:  # data-parallel ranks: one writer
                return
            path = ckpt_dir / f"checkpoint-{state.global_step}"
            artifacts.atomic_write_text(path / "COMPLETE", str(time.time()))
            pruned = prune_checkpoints(ckpt_dir, cfg.train.keep_checkpoints)
            cell.set_status(
                "running",
                checkpoint=path.name,
                step=state.global_step // upr,
                pruned=[p.name for p in pruned] or None,
            )
            if cfg.eval.checkpoints:
                evaluate_at(model, state.global_step // upr)

    reward_fn = rewards.build(
        cfg.reward,
        cfg.reward_params,
        rewards.RewardContext(seed=cfg.seed, grading_workers=_grading_workers()),
    )
    del model  # the trainer loads its own copy of the policy
    if writer:
        cell.set_status(
            "running",
            backend=backend,
            updates_per_rollout=upr,
            resumed_from=resumes or None,
            world_size=world,
        )
    updates = resumed_update
    if resumed_update >= max_updates:  # killed after the last save: only its evaluation may be missing
        if writer and not all(artifacts.eval_complete(cell.evals_dir, e) for e in eval_ids(final_step)):
            final_model, _ = families.load_model_and_tokenizer(str(resume), dtype=dtype)
            evaluate_at(final_model, final_step)
    else:
        with tracker_env(cfg, cell.root, cell_id, sweep):
            args = GRPOConfig(**kw)
            if not cpu and world == 1 and args.n_gpu > 1:
                # TRL's batch arithmetic counts processes, not DataParallel replicas: use one GPU per process
                # (slurm.tasks_per_node / gpus_per_node start one process per GPU: data-parallel)
                log.warning(
                    "%d GPUs visible to one process; training on one (set slurm.gpus_per_node or "
                    "slurm.tasks_per_node to train data-parallel on all of them)",
                    args.n_gpu,
                )
                args._n_gpu = 1
            trainer = _trainer_class()(
                model=source,
                reward_funcs=[reward_fn],
                args=args,
                train_dataset=ds,
                processing_class=tok,
                callbacks=[CellCallback()],
            )
            from transformers.trainer_callback import PrinterCallback

            trainer.remove_callback(PrinterCallback)  # metrics go to metrics.jsonl, not as dicts to stdout
            trainer.train(resume_from_checkpoint=str(resume) if resume else None)
        updates = trainer.state.global_step
        evaluate_at(trainer.model, final_step)  # a no-op when the final checkpoint was evaluated in on_save
    if not writer:
        return {"cell_id": cell_id, "rank": rank(), "world_size": world, "updates": updates}

    flags = health.flags(metric_rows)
    artifacts.atomic_write_json(cell.health_path, flags)
    summary = {
        "cell_id": cell_id,
        "sweep": sweep,
        "final_step": final_step,
        "updates": updates,
        "updates_per_rollout": upr,
        "backend": backend,
        "device": "cpu" if cpu else "cuda",
        "world_size": world,
        "seconds": round(time.time() - t_start, 1),
        "baselines": baselines,
        "health": health.names(flags),
        "resumed_from": resumes or None,
    }
    cell.set_status("running", health=summary["health"], step=final_step, update=updates)
    cell.mark_done(summary)
    return summary


def _grading_workers() -> int | None:
    n = os.environ.get("SPURISWEEP_GRADING_WORKERS")
    return int(n) if n else None


def _trainer_class():
    import torch
    from trl import GRPOTrainer

    class _SpuriTrainer(GRPOTrainer):
        """GRPOTrainer that also logs
        - token_prob/mean: the mean probability of the sampled tokens under the policy that sampled them
          (the paper's evidence for prior amplification: ~0.85 -> >0.93 under clipping);
        - timing/generate_s and timing/generated_tokens: wall time and completion tokens of each rollout's
          generation (throughput in metrics.jsonl and bench/train_step.py)."""

        def _generate(self, prompts):
            t0 = time.perf_counter()
            out = super()._generate(prompts)
            mode = "train" if self.model.training else "eval"
            completion_ids = out[1]
            self._metrics[mode]["timing/generate_s"].append(time.perf_counter() - t0)
            self._metrics[mode]["timing/generated_tokens"].append(float(sum(len(c) for c in completion_ids)))
            return out

        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            logps = out.get("old_per_token_logps")
            if logps is None:
                logps = out.get("sampling_per_token_logps")
            if logps is None:  # one update per rollout: TRL skipped this forward pass; do it for the metric
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
