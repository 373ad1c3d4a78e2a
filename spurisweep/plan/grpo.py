"""Plan-time mapping of a cell's settings onto TRL's GRPOConfig, and its validation.

Imports nothing heavy at module level (trl and transformers only inside validate, grpo_fields,
known_trackers and plan_model_config), so `spurisweep plan` can use it without loading TRL.

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
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path
from typing import Any

from .. import artifacts
from ..errors import ConfigError, ShardingError, suggest
from ..models import families
from ..training import sharding as sharding_module
from ..training.sharding import fsdp_training_args
from . import algorithms, clipping
from .spec import CellConfig, TrainSettings

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
    "vllm_importance_sampling_correction": "train.is_correction",
}
#: transformer_layer_cls_to_wrap when validating a sharded cell whose model config is not at hand without
#: downloading or building (an unbuilt local family, an uncached hub id): GRPOConfig only joins the names,
#: accelerate resolves them on the real model when the cell trains
UNKNOWN_LAYERS = ("<decoder layer>",)


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
    if t.is_correction is not None:  # None leaves TRL's default (on whenever vLLM generates)
        kw["vllm_importance_sampling_correction"] = t.is_correction
    if cfg.tracking.project:
        kw["project"] = cfg.tracking.project
    if backend == "vllm":
        kw.update(
            vllm_mode="colocate",
            vllm_gpu_memory_utilization=t.vllm_gpu_memory_utilization,
            vllm_enable_sleep_mode=t.vllm_sleep,
            vllm_tensor_parallel_size=t.vllm_tensor_parallel_size,
            vllm_max_model_length=t.max_prompt_length + t.max_completion_length,
        )
    stops = training_stops(cfg)
    if stops and backend == "vllm":  # vLLM stops there itself; the transformers backend: SpuriTrainer cuts
        kw["generation_kwargs"] = {"stop": list(stops), "include_stop_str_in_output": True}
    kw.update(cfg.trl)
    if "steps_per_generation" in cfg.trl and "generation_batch_size" not in cfg.trl:
        kw.pop("generation_batch_size")  # TRL takes one of the two; the user's choice wins
    try:
        upr = updates_per_rollout(kw, world, file)
    except ConfigError as exc:  # with batch-shape overrides, name the override rather than our setting
        who = next((f"trl.{k}" for k in SHAPE_FIELDS if k in cfg.trl), exc.field)
        raise ConfigError(exc.detail, file=file, field=who) from None
    check_on_policy(cfg, kw, upr, file)
    if world > 1 and "ddp_timeout" not in cfg.trl:
        # rank 0 evaluates (baseline, checkpoints) while the other ranks wait at their next collective
        kw["ddp_timeout"] = DDP_TIMEOUT_S
    if world > 1 and "ddp_find_unused_parameters" not in cfg.trl:
        kw["ddp_find_unused_parameters"] = False  # every parameter of a causal LM takes part in the loss
    if "max_steps" not in cfg.trl:
        kw["max_steps"] = t.steps * upr
    if "save_steps" not in cfg.trl:  # every resume point is a checkpoint; evaluations: eval_interval
        kw["save_steps"] = (t.resume_every or t.save_every) * upr
    return kw


def check_on_policy(cfg: CellConfig, kw: dict[str, Any], upr: int, file: str | None = None) -> None:
    """An on-policy train.algorithm (reinforce) makes one update per rollout with the arguments TRL gets,
    `trl:` batch-shape overrides included (its on-policy clip mode alone guarantees it without them)."""
    alg = algorithms.get(cfg.train.algorithm, file=file)
    iterations = int(kw.get("num_iterations", 1))
    if alg.on_policy and (upr != 1 or iterations != 1):
        raise ConfigError(
            f"train.algorithm {alg.name} needs one update per rollout, but these settings make {upr} "
            f"(num_iterations {iterations}): the ratio would leave 1",
            file=file,
            field=next((f"trl.{k}" for k in SHAPE_FIELDS if k in cfg.trl), "clip"),
        )


def training_stops(cfg: CellConfig) -> tuple[str, ...]:
    """The strings that end a training rollout besides EOS: the prompt template's stops under
    train.template_stop (the official OLMo script's `--stop </answer>`), none otherwise."""
    if not cfg.train.template_stop:
        return ()
    name = cfg.prompt or (families.FAMILIES[cfg.model].prompt if cfg.model in families.FAMILIES else "")
    return families.template(name).stop if name else ()


def sharded_grpo_kwargs(kw: dict[str, Any], cfg: CellConfig, model: Any) -> dict[str, Any]:
    """A copy of `kw` (grpo_kwargs) with a sharded cell's FSDP arguments applied over it, exactly as the cell
    trains with them; `kw` itself for an unsharded cell. `model`: the model's config, folder or hub id (its
    decoder-layer class is the FSDP unit), or None for a model not at hand (UNKNOWN_LAYERS)."""
    if cfg.train.sharding != "fsdp":
        return kw
    out = dict(kw)
    out.update(
        fsdp_training_args(
            model,
            activation_checkpointing=cfg.train.gradient_checkpointing,  # FSDP's own replaces transformers'
            bf16=bool(kw.get("bf16")),
            layers=UNKNOWN_LAYERS if model is None else None,
        )
    )
    return out


def plan_model_config(cfg: CellConfig) -> Any | None:
    """The transformers config of a cell's model, read without downloading or building anything: a local
    `model_path` folder's config.json, a local family's built folder, a hub family's (or hub `model_path`'s)
    shipped config (resources/model_configs.json), else a hub id's config already in the HF cache; None
    when none of these is at hand (an unbuilt local family, an uncached hub id) or it cannot be read."""
    from transformers import AutoConfig

    from . import memory

    try:
        path = Path(cfg.model_path).expanduser() if cfg.model_path else None
        if path is not None and path.is_dir():
            return AutoConfig.from_pretrained(str(path), local_files_only=True)
        fam = families.get(cfg.model)
        if fam.builder is not None and path is None:
            folder = families.cache_dir() / "models" / f"{fam.name}-v{fam.version}"  # as ensure_built
            if not (folder / "config.json").is_file():
                return None
            return AutoConfig.from_pretrained(str(folder), local_files_only=True)
        hub_id = cfg.model_path or fam.hub_id
        shipped = memory.shipped_configs().get(hub_id)
        if shipped is not None:
            fields = dict(shipped)
            return AutoConfig.for_model(fields.pop("model_type"), **fields)
        return AutoConfig.from_pretrained(hub_id, local_files_only=True)
    except (OSError, ValueError, KeyError):
        return None


def eval_interval(cfg: CellConfig) -> int:
    """Rollout steps between evaluations during training: eval.eval_every, else at every save_every."""
    return cfg.eval.eval_every or cfg.train.save_every


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
    mid-training (loss type, reward scaling), by building the GRPOConfig the cell would train with: for a
    sharded cell (train.sharding: fsdp) with its FSDP arguments (sharded_grpo_kwargs), so that arguments the
    installed transformers does not accept fail here, not on every rank after the baselines. Needs no GPU
    and builds no model (the model's config only: plan_model_config)."""
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
    algorithms.check_trl(cfg, algorithms.get(cfg.train.algorithm, file=file), file=file)
    trackers = known_trackers()
    for i, name in enumerate(cfg.tracking.report_to):
        if name not in trackers:
            raise ConfigError(suggest(name, trackers), file=file, field=f"tracking.report_to[{i}]")
    sharded = cfg.train.sharding == "fsdp"
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings(), _environ_kept():
        warnings.simplefilter("ignore")
        kw = grpo_kwargs(cfg, tmp, cpu=True, world=cfg.resources.world_size, file=file)
        kw["report_to"] = "none"  # trackers need not be installed to plan
        fsdp_set: set[str] = set()  # the arguments the sharding adds or changes: an error naming one is its
        if sharded:
            try:
                full = sharded_grpo_kwargs(kw, cfg, plan_model_config(cfg))
            except ShardingError as exc:  # e.g. a model type with no known decoder-layer class
                raise ConfigError(str(exc), file=file, field="train.sharding") from None
            fsdp_set = {k for k, v in full.items() if k not in kw or kw[k] != v} | {"fsdp"}
            kw = full
        try:
            GRPOConfig(**kw)
        except (ValueError, TypeError) as exc:
            msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ConfigError(
                f"TRL rejects this configuration: {msg}", file=file, field=_blame(msg, cfg, fsdp_set)
            ) from None


@contextlib.contextmanager
def _environ_kept():
    """Undo what building a GRPOConfig writes into os.environ (e.g. FSDP_CPU_RAM_EFFICIENT_LOADING under
    FSDP), so that validating in the CLI leaves nothing behind for the jobs it starts."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        os.environ.update(saved)


def validation_key(cfg: CellConfig) -> str:
    """What validate() looks at: cells that agree on it need to be validated once (seeds, rewards and
    evaluation settings do not matter; the model does for a sharded cell, whose FSDP unit is its
    decoder layer)."""
    key = cfg.model_dump_json(include={"train", "trl", "clip", "clip_params", "tracking"}) + str(
        cfg.resources.world_size
    )
    if cfg.train.sharding == "fsdp":
        key += f"\0{cfg.model}\0{cfg.model_path or ''}"
    return key


def validate_all(cells: Iterable[Any], file: str | None = None, *, cached: bool = True) -> None:
    """validate() once per distinct training setup (validation_key), before anything is queued.

    `cells`: CellConfigs, or grid cells (with `config`, `id` and `label`). An error names the first cell of
    the setup that failed: `cell <id> (<axes>)` for a grid cell, `cell <id>` for a bare config.

    With `cached`, a key that passed before under the same TRL, transformers and validation code is not
    validated again, so `spurisweep plan` of a sweep it has seen answers without importing TRL (seconds).
    `spurisweep run` and `plan --check` pass cached=False: every key is validated afresh. Only passes are
    recorded (one empty marker file per key), so a bad setup fails every time. The markers live under
    families.cache_dir()/validated ($SPURISWEEP_CACHE or ~/.cache/spurisweep), next to the models, not
    under results/: they describe this installation rather than an experiment, and `plan` only reads the
    results folder."""
    seen: set[str] = set()
    stamp: str | None = None
    for item in cells:
        cfg = item if isinstance(item, CellConfig) else item.config
        key = validation_key(cfg)
        if key in seen:
            continue
        seen.add(key)
        stamp = stamp or _code_stamp()
        marker = families.cache_dir() / "validated" / hashlib.sha256((stamp + key).encode()).hexdigest()[:32]
        if cached and marker.exists():
            continue
        try:
            validate(cfg, file=file)
        except ConfigError as exc:
            raise ConfigError(f"{_cell_name(item)}: {exc.detail}", file=exc.file, field=exc.field) from None
        with contextlib.suppress(OSError):  # an unwritable cache only means validating again next time
            artifacts.atomic_write_text(marker, "", durable=False)


def _cell_name(item: Any) -> str:
    """`cell <id> (<axes>)` for a grid cell; `cell <id>` for a bare CellConfig."""
    if isinstance(item, CellConfig):
        from .grid import cell_id  # plan side only: validate_all runs before anything is queued

        return f"cell {cell_id(item)}"
    label = getattr(item, "label", "")
    return f"cell {item.id}" + (f" ({label})" if label else "")


def _code_stamp() -> str:
    """What else validate() depends on: the TRL and transformers versions and the code that checks."""
    parts = [metadata.version("trl"), metadata.version("transformers")]
    # the sharding module's file, not the function's: a test may swap the function for one without a file
    files = (__file__, clipping.__file__, algorithms.__file__, sharding_module.__file__)
    parts += [Path(f).read_text() for f in files]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _blame(message: str, cfg: CellConfig, fsdp_set: Iterable[str] = ()) -> str:
    """The setting a TRL error message is most likely about: an override it names, else train.sharding
    when it names an argument the sharding set (`fsdp_set`), else its source."""
    for key in sorted(cfg.trl, key=len, reverse=True):
        if key in message:
            return f"trl.{key}"
    if any(key in message for key in fsdp_set):
        return "train.sharding"
    for key, setting in SOURCE.items():
        if key in message:
            return setting
    return "trl"
