"""The sweep YAML and the resolved per-cell configuration, as pydantic models (extra="forbid").

A sweep file has a `name`, a `grid` of axes, shared `settings`, `exclude` rules and `overrides`:

    name: smoke
    preset: smoke                   # training preset: smoke | paper
    grid:
      model: [tiny]
      reward: [ground_truth, random]
      clip: [standard, no_clip]
      seed: [0, 1]
      train.learning_rate: [1e-4, 5e-4]      # any setting by its dotted path
      reward_params.random.gamma: [0.5]      # a reward's own parameters
    settings: {train: {steps: 4}, eval: {benchmarks: [arith]}}
    exclude: [{model: tiny, reward: random, clip: no_clip}]
    overrides: [{when: {model: qwen2.5-math-7b}, set: {slurm.gpus_per_node: 8}}]

`CellConfig` is what one grid cell resolves to; its canonical JSON (minus launch resources and trackers)
hashes to the cell id (see grid.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TrainSettings(Strict):
    """GRPO hyperparameters in the paper's vocabulary; train.py maps them onto TRL's GRPOConfig.

    A "step" is one rollout step as in the paper: `prompts_per_step` x `samples_per_prompt` responses,
    consumed in gradient updates of `mini_batch` responses each, `epochs_per_rollout` times.
    """

    steps: int = Field(300, ge=1, description="rollout steps (the paper's training steps)")
    learning_rate: float = Field(5e-7, gt=0)
    lr_scheduler: str = "constant"
    warmup_steps: int = Field(0, ge=0)
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    prompts_per_step: int = Field(64, ge=1)
    samples_per_prompt: int = Field(16, ge=2, description="GRPO group size (TRL num_generations)")
    mini_batch: int = Field(128, ge=1, description="responses per gradient update")
    micro_batch: int | None = Field(None, ge=1, description="responses per forward pass (None: = mini_batch)")
    epochs_per_rollout: int = Field(1, ge=1, description="TRL num_iterations")
    max_prompt_length: int = Field(1024, ge=1)
    max_completion_length: int = Field(3072, ge=1)
    temperature: float = Field(1.0, ge=0)
    top_p: float = Field(1.0, gt=0, le=1)
    beta: float = Field(0.0, ge=0, description="KL coefficient")
    loss_type: str = Field("grpo", description="TRL loss_type; 'grpo' = token mean within each sequence")
    scale_rewards: str = Field("group", description="advantage = (r - mean) / (std + eps) within the group")
    bf16: bool | None = Field(None, description="None: bf16 on GPU, fp32 on CPU")
    gradient_checkpointing: bool = False
    save_every: int = Field(50, ge=1, description="rollout steps between checkpoints (each one evaluated)")
    keep_checkpoints: int | None = Field(1, ge=1, description="newest checkpoints kept; None keeps all")
    generation_backend: Literal["auto", "vllm", "transformers"] = "auto"
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)


class DataSettings(Strict):
    """Training data: a hub id, a local JSON/JSONL/parquet file, or `builtin:arith` (offline synthetic)."""

    train: str = "agentica-org/DeepScaleR-Preview-Dataset"
    split: str = "train"
    limit: int | None = Field(None, ge=1, description="use only the first N problems")
    problem_field: str | None = None
    answer_field: str | None = None
    one_shot_id: str | None = Field(
        None, description="one_shot reward: the problem id (default: the pi1 example)"
    )
    one_shot_repeat: int = Field(128, ge=1)
    labels: str | None = Field(
        None, description="majority_vote / incorrect_label: a ready labelled file (problem + label as answer)"
    )
    label_samples: int = Field(64, ge=1, description="samples per prompt to take the majority vote over")
    label_temperature: float = Field(1.0, ge=0)
    label_top_p: float = Field(1.0, gt=0, le=1)
    label_max_new_tokens: int | None = Field(None, ge=1, description="None: train.max_completion_length")
    label_prompt: str = Field(
        "plain", description="prompt template for labelling (the paper: no chat template)"
    )


class ProtocolOverride(Strict):
    samples: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, ge=1)
    prompt: str | None = None
    path: str | None = Field(None, description="a local JSON/JSONL/parquet file instead of the hub id")
    limit: int | None = Field(None, ge=1)


class EvalSettings(Strict):
    benchmarks: list[str] = Field(default_factory=lambda: ["math500"])
    limit: int | None = Field(None, ge=1, description="evaluate only the first N problems of each benchmark")
    protocols: dict[str, ProtocolOverride] = Field(default_factory=dict)
    baseline: bool = Field(True, description="evaluate the untrained model too (shared across cells)")
    checkpoints: bool = Field(True, description="evaluate every saved checkpoint, not only the final model")
    batch_size: int | None = Field(None, ge=1, description="transformers generation batch (None: auto)")
    # the memorisation probe of the untrained model (spurisweep.probe_run): shared like a baseline, and not
    # part of the cell id (grid.identity drops both), since it changes nothing the cell computes
    probe: bool = Field(False, description="probe the untrained model for memorisation of the benchmarks")
    probe_fractions: list[float] = Field(
        default_factory=lambda: [0.4, 0.6, 0.8], description="shares of each problem the probe shows"
    )

    @field_validator("probe_fractions")
    @classmethod
    def _fractions_inside(cls, value: list[float]) -> list[float]:
        if not value or any(not 0.0 < f < 1.0 for f in value):
            raise ValueError(f"each fraction must be strictly between 0 and 1, got {value}")
        return value


class ClipParams(Strict):
    eps_low: float | None = Field(None, gt=0)
    eps_high: float | None = Field(None, gt=0)


class SlurmSettings(Strict):
    """Resources for a cell's job. Not part of the cell id. SLURM reads all of them; the local executor
    reads `tasks_per_node`/`gpus_per_node` (processes, each with its own GPU) and `timeout_min`."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int | None = Field(None, ge=0)
    tasks_per_node: int | None = Field(
        None,
        ge=1,
        description="processes per cell (data-parallel ranks, one per GPU); default gpus_per_node or 1",
    )
    cpus_per_task: int | None = Field(None, ge=1)
    mem_gb: float | None = Field(None, gt=0)
    timeout_min: int = Field(24 * 60, ge=1)
    constraint: str | None = None
    array_parallelism: int = Field(64, ge=1)
    additional: dict[str, Any] = Field(default_factory=dict, description="extra slurm_* parameters")

    @property
    def processes(self) -> int:
        """Training processes of one cell: data-parallel ranks, one per GPU."""
        return self.tasks_per_node or self.gpus_per_node or 1


class TrackingSettings(Strict):
    report_to: list[str] = Field(default_factory=list, description="TRL report_to: wandb, tensorboard, ...")
    project: str | None = None


class CellConfig(Strict):
    """Everything one grid cell needs to run; the id hashes all of it but `slurm` and `tracking`."""

    model: str
    model_path: str | None = Field(None, description="local weights or another hub id for this family")
    reward: str = "ground_truth"
    reward_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    clip: str = "standard"
    clip_params: ClipParams = Field(default_factory=ClipParams)
    seed: int = 0
    preset: str = "paper"
    prompt: str | None = Field(None, description="prompt template (None: the family's default)")
    train: TrainSettings = Field(default_factory=TrainSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    trl: dict[str, Any] = Field(default_factory=dict, description="raw GRPOConfig overrides")
    slurm: SlurmSettings = Field(default_factory=SlurmSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)


#: top-level keys that describe where/how a cell runs, not what it computes: excluded from the id
NON_IDENTITY_KEYS = ("slurm", "tracking")
#: the named axes; any other axis is a dotted path into CellConfig
NAMED_AXES = ("model", "reward", "clip", "seed", "preset", "prompt", "model_path")


class Override(Strict):
    when: dict[str, Any] = Field(..., description="axis (or dotted setting) -> value or list of values")
    set: dict[str, Any] = Field(..., description="dotted setting -> value")


class SweepFile(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    preset: str | None = None
    grid: dict[str, list[Any]]
    settings: dict[str, Any] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)

    @field_validator("grid")
    @classmethod
    def _grid_not_empty(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if "model" not in grid:
            raise ValueError("the grid needs a 'model' axis")
        for axis, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"axis {axis!r} needs a non-empty list of values")
        return grid


class Sweep:
    """A validated sweep file plus where it came from."""

    def __init__(self, spec: SweepFile, path: Path):
        self.spec = spec
        self.path = path

    @property
    def name(self) -> str:
        return self.spec.name


def format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p not in ("__root__",))


def first_error(exc: ValidationError, prefix: str = "") -> tuple[str, str]:
    """(dotted field, message) of a pydantic error, phrased for a person."""
    err = exc.errors()[0]
    field = format_loc(err["loc"])
    if prefix:
        field = f"{prefix}.{field}" if field else prefix
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown setting"
    elif err["type"] == "missing":
        msg = "required field is missing"
    return field, msg


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate a sweep file (structure only; grid.expand resolves and validates each cell)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("file not found", file=str(p))
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"malformed YAML: {problem}", file=str(p), field=where) from None
    if not isinstance(raw, dict):
        raise ConfigError(
            "expected a mapping with name, grid, settings, ...", file=str(p), field="(top level)"
        )
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as exc:
        field, msg = first_error(exc)
        if field.startswith("grid") and "allowed" not in msg:
            msg = msg.removeprefix("Value error, ")
        raise ConfigError(msg.removeprefix("Value error, "), file=str(p), field=field) from None
    return Sweep(spec, p)
