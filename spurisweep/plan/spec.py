"""The sweep YAML and the resolved per-cell configuration, as pydantic models (extra="forbid").

A sweep file has a `name`, a `grid` of axes, shared `settings`, `exclude` rules, `overrides` and the cost
model's assumptions (`cost`):

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
    overrides: [{when: {model: qwen2.5-math-7b}, set: {resources.gpus_per_node: 8}}]
    cost: {decode_tokens_per_s: 2500, train_tflops: 400}   # plan's cost model (spurisweep.plan.cost)

`CellConfig` is what one grid cell resolves to; its canonical JSON (minus launch resources and trackers)
hashes to the cell id (see grid.py).

`resources:` (what a cell's job asks for, for every executor) was called `slurm:`; the old name is still
read, in a sweep file (with a one-line note on stderr, load_sweep) and in a stored config.json (silently).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import artifacts
from ..errors import ConfigError

#: a sweep file is a few KB; anything near this is a mistake (a data file passed as a sweep)
MAX_SWEEP_BYTES = 1 << 20
#: YAML nodes after aliases are expanded: far above any real sweep, far below what eats memory
MAX_SWEEP_NODES = 200_000
#: the launch resources' key, and its old name (still read, with a note)
RESOURCES, OLD_RESOURCES = "resources", "slurm"


class Strict(BaseModel):
    # inf and nan are never a meaningful setting (a learning rate, an epsilon, a probability)
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class TrainSettings(Strict):
    """GRPO hyperparameters in the paper's vocabulary; training/config.py maps them onto TRL's GRPOConfig.

    A "step" is one rollout step as in the paper: `prompts_per_step` x `samples_per_prompt` responses,
    consumed in gradient updates of `mini_batch` responses each, `epochs_per_rollout` times.
    """

    steps: int = Field(300, ge=1, description="rollout steps (the paper's training steps)")
    learning_rate: float = Field(5e-7, gt=0)
    lr_scheduler: str = "constant"
    warmup_steps: int = Field(0, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.95, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
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
    algorithm: str = Field(
        "grpo",
        description="the policy-gradient estimator (spurisweep.plan.algorithms): 'grpo' (loss_type, "
        "scale_rewards and token_whitening as set), 'dr_grpo', 'rloo' or 'reinforce', which set those three "
        "themselves (an explicit contradicting value is a plan-time error)",
    )
    loss_type: str = Field(
        "grpo",
        description="TRL loss_type, i.e. how token losses are aggregated: 'grpo' = token mean within each "
        "response, then the mean over responses; 'bnpo' = token mean over each process's micro-batch, which "
        "with micro_batch 4 is the official code's token mean over packs of four responses",
    )
    scale_rewards: str = Field("group", description="advantage = (r - mean) / (std + eps) within the group")
    is_correction: bool | None = Field(
        None,
        description="TRL vllm_importance_sampling_correction: reweight by the trainer/vLLM probability ratio "
        "(None: TRL's default, on whenever vLLM generates; true needs vLLM). The official code applies none",
    )
    token_whitening: bool = Field(
        False,
        description="the official second advantage whitening: after the group normalisation, subtract the "
        "token mean and divide by the token std over every response token of the whole rollout, across all "
        "ranks (a group whose responses all scored the same then no longer has advantage 0). It only "
        "rescales advantages, so every clip mode and loss type stays meaningful with it",
    )
    bf16: bool | None = Field(None, description="None: bf16 on GPU, fp32 on CPU")
    gradient_checkpointing: bool = False
    save_every: int = Field(
        50,
        ge=1,
        description="rollout steps between evaluated checkpoints (the evaluation cadence unless eval.eval_every "
        "is set; resume points in between: train.resume_every)",
    )
    keep_checkpoints: int | None = Field(1, ge=1, description="newest checkpoints kept; None keeps all")
    resume_every: int | None = Field(
        None,
        ge=1,
        description="rollout steps between resume points (checkpoints a killed or preempted run restarts "
        "from; None: = save_every). Resume points are saved more often than evaluations run; each counts "
        "against keep_checkpoints. Not part of the cell id: it changes where a run can restart, not its result",
    )
    sharding: Literal["none", "fsdp"] = Field(
        "none",
        description="'fsdp': FSDP2 full sharding of weights, gradients and optimizer states across the "
        "cell's processes (resources.tasks_per_node x nodes, at least 2), fp32 master weights, one unit per "
        "decoder layer (spurisweep.training.sharding); 'none': every process holds a full replica (DDP)",
    )
    generation_backend: Literal["auto", "vllm", "transformers"] = "auto"
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1)
    vllm_sleep: bool = Field(False, description="colocated vLLM sleeps during updates (frees its memory)")
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="GPUs per colocated vLLM engine")
    template_stop: bool = Field(
        False,
        description="end training rollouts at the prompt template's stop strings (r1_paper: </answer>), the "
        "stop text kept in the response, as the official code's --stop (evaluation always stops there)",
    )
    reward_text: Literal["plain", "raw"] = Field(
        "plain",
        description="the response text rewards read: 'plain' (TRL's decode, special tokens skipped) or "
        "'raw' (special tokens kept, as the official reward reads the decoded rollout)",
    )


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
        "plain",
        description="prompt template for labelling (the official code: `raw`, the problem alone, no template)",
    )
    labelling: Literal["equivalence", "paper"] = Field(
        "equivalence",
        description="how majority labels are made: 'equivalence' groups the extracted answers by math-verify "
        "equivalence; 'paper' is the official construction (the official extraction and normalisation, the "
        "most frequent exact normalised string, ties to the first seen, the first `label_holdout` prompts "
        "held out, the incorrect-label set filtered by the paper grader)",
    )
    label_holdout: int | None = Field(
        None,
        ge=0,
        description="the first N labelled prompts are held out and never trained on (None: 100 under "
        "labelling 'paper', as the official code, else 0)",
    )
    test_set_training: bool = Field(
        False,
        description="allow `train: benchmark:NAME`, training on a benchmark's own prompts (the test-time "
        "setting of TTRL, e.g. with the online_majority reward); `diagnose` and `fidelity` flag such cells",
    )

    @model_validator(mode="after")
    def _benchmark_prompts_need_consent(self) -> DataSettings:
        if self.train.startswith("benchmark:") and not self.test_set_training:
            raise ValueError(
                f"train: {self.train} trains on a benchmark's own prompts; set data.test_set_training: true "
                "to allow it"
            )
        return self


class ProtocolOverride(Strict):
    samples: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)
    max_new_tokens: int | None = Field(None, ge=1)
    prompt: str | None = None
    path: str | None = Field(None, description="a local JSON/JSONL/parquet file instead of the hub id")
    limit: int | None = Field(None, ge=1)
    subsample_seed: int | None = Field(
        None,
        description="with a limit of N: a seeded random N problems (the same set for every cell, variant and "
        "baseline) instead of the first N (None)",
    )


class EvalVariant(Strict):
    """One more evaluation of the same checkpoints (eval.variants): the cell's protocols with these decoding
    settings. A setting left out keeps the protocol's value (seed: the cell's seed). A temperature on a greedy
    protocol makes that protocol sampled for this variant."""

    seed: int | None = Field(None, description="the evaluation's sampling seed (None: the cell's seed)")
    temperature: float | None = Field(None, ge=0)
    top_p: float | None = Field(None, gt=0, le=1)

    @model_validator(mode="after")
    def _sets_something(self) -> EvalVariant:
        if self.seed is None and self.temperature is None and self.top_p is None:
            raise ValueError("a variant sets at least one of seed, temperature, top_p")
        return self

    def label(self) -> str:
        """What the variant sets, e.g. `seed=3,temperature=0.6` (recorded in each evaluation's metadata)."""
        return ",".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.set_fields())

    def set_fields(self) -> list[tuple[str, Any]]:
        return [(k, v) for k, v in self.model_dump().items() if v is not None]


class EvalSettings(Strict):
    benchmarks: list[str] = Field(default_factory=lambda: ["math500"])
    limit: int | None = Field(None, ge=1, description="evaluate only the first N problems of each benchmark")
    protocols: dict[str, ProtocolOverride] = Field(default_factory=dict)
    baseline: bool = Field(True, description="evaluate the untrained model too (shared across cells)")
    checkpoints: bool = Field(True, description="evaluate every saved checkpoint, not only the final model")
    double_bos: bool = Field(
        False,
        description="a prompt whose chat template already wrote the BOS token gets a second one, as the "
        "official evaluation sent them to vLLM (Llama-3.1-8B-Instruct's published numbers)",
    )
    batch_size: int | None = Field(None, ge=1, description="transformers generation batch (None: auto)")
    eval_every: int | None = Field(
        None,
        ge=1,
        description="rollout steps between evaluations during training, separate from train.save_every "
        "(None: at each checkpoint). The official code evaluates every step (1)",
    )
    variants: list[EvalVariant] = Field(
        default_factory=list,
        description="more evaluations of the same checkpoints and baseline, each with its own evaluation seed "
        "and/or decoding settings (A Sober Look: results move with them); each its own eval id, not part of "
        "the cell id, read by report only when asked (eval_seed, temperature, top_p)",
    )
    # the memorisation probe of the untrained model (spurisweep.evaluation.probe_run): shared like a baseline, and not
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
    """The ratio is clipped to [1 - eps_low, 1 + eps_high]; the ratio is positive, so eps_low above 1 would
    mean nothing more than 1 (no lower clip)."""

    eps_low: float | None = Field(None, gt=0, le=1)
    eps_high: float | None = Field(None, gt=0)


class NodeShape(Strict):
    """What one node of the cluster has: a request above it is a plan-time error, and the memory planner
    checks each cell against `gpu_mem_gb`."""

    gpus: int | None = Field(None, ge=0)
    gpu_mem_gb: float = Field(80.0, gt=0, description="memory of one GPU (the planner's budget)")
    cpus: int | None = Field(None, ge=1)
    mem_gb: float | None = Field(None, gt=0)


class ResourceSettings(Strict):
    """Resources for a cell's job (`resources:`, formerly `slurm:`), read by every executor. Not part of the
    cell id. SLURM reads all of them; the local executor reads `tasks_per_node`/`gpus_per_node` (processes,
    each with its own GPU) and `timeout_min`."""

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int | None = Field(None, ge=0)
    tasks_per_node: int | None = Field(
        None,
        ge=1,
        description="processes per cell (data-parallel ranks, one per GPU); default gpus_per_node or 1",
    )
    cpus_per_task: int | None = Field(None, ge=1, description="CPUs of EACH task (SLURM's meaning)")
    mem_gb: float | None = Field(None, gt=0, description="memory per node")
    nodes: int = Field(1, ge=1, description="nodes per cell: world size = nodes x tasks per node")
    node: NodeShape = Field(default_factory=NodeShape, description="the cluster's node shape (checked)")
    timeout_min: int = Field(24 * 60, ge=1)
    constraint: str | None = None
    array_parallelism: int = Field(64, ge=1)
    additional: dict[str, Any] = Field(default_factory=dict, description="extra slurm_* parameters")

    @property
    def processes(self) -> int:
        """Training processes of one cell: data-parallel ranks, one per GPU."""
        return self.tasks_per_node or self.gpus_per_node or 1

    @property
    def world_size(self) -> int:
        """Training processes of one cell over all its nodes."""
        return self.processes * self.nodes


class TrackingSettings(Strict):
    report_to: list[str] = Field(default_factory=list, description="TRL report_to: wandb, tensorboard, ...")
    project: str | None = None


class CellConfig(Strict):
    """Everything one grid cell needs to run; the id hashes all of it but `resources` and `tracking`."""

    model: str
    model_path: str | None = Field(None, description="local weights or another hub id for this family")
    reward: str = "ground_truth"
    reward_params: dict[str, dict[str, Any]] = Field(default_factory=dict)
    grader: Literal["math_verify", "paper"] = Field(
        "math_verify",
        description="the grader behind the cell's rewards: math-verify, or the paper's official grader "
        "(spurisweep.paper_grader). Under a template with answer_tag both read the text after <answer>",
    )
    clip: str = "standard"
    clip_params: ClipParams = Field(default_factory=ClipParams)
    seed: int = 0
    preset: str = "paper"
    prompt: str | None = Field(None, description="prompt template (None: the family's default)")
    train: TrainSettings = Field(default_factory=TrainSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    trl: dict[str, Any] = Field(default_factory=dict, description="raw GRPOConfig overrides")
    resources: ResourceSettings = Field(default_factory=ResourceSettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)

    @model_validator(mode="before")
    @classmethod
    def _old_resources_name(cls, data: Any) -> Any:
        """A config.json written before `slurm` became `resources` still loads (a resumed or ingested cell)."""
        if isinstance(data, dict) and OLD_RESOURCES in data:
            if RESOURCES in data:
                raise ValueError(f"both {RESOURCES!r} and its old name {OLD_RESOURCES!r} are given")
            data = {(RESOURCES if k == OLD_RESOURCES else k): v for k, v in data.items()}
        return data


#: top-level keys that describe where/how a cell runs, not what it computes: excluded from the id
NON_IDENTITY_KEYS = (RESOURCES, "tracking")
#: settings added after cell ids were first written, each with the value that does what the code did before
#: it existed: grid.identity leaves a setting out of the id while it holds that value, so adding it changed
#: no existing cell's id (resolved values, after grid.fill_defaults)
LATE_DEFAULTS: dict[str, Any] = {
    "grader": "math_verify",
    "train.is_correction": None,
    "train.token_whitening": False,
    "eval.eval_every": None,
    "data.labelling": "equivalence",
    "data.label_holdout": 0,
    "train.vllm_sleep": False,
    "train.sharding": "none",
    "train.vllm_tensor_parallel_size": 1,
    "train.template_stop": False,
    "train.reward_text": "plain",
    "eval.double_bos": False,
    "train.algorithm": "grpo",
    "data.test_set_training": False,
}
#: dotted settings that never enter the cell id: they change how a run is kept, not what it computes
NON_IDENTITY_SETTINGS = ("train.resume_every",)
#: the named axes; any other axis is a dotted path into CellConfig
NAMED_AXES = ("model", "reward", "clip", "seed", "preset", "prompt", "model_path")


class Override(Strict):
    when: dict[str, Any] = Field(..., description="axis (or dotted setting) -> value or list of values")
    set: dict[str, Any] = Field(..., description="dotted setting -> value")


class CostAssumptions(Strict):
    """What `plan`'s cost model assumes about the site's GPUs and the responses (spurisweep.plan.cost holds the
    arithmetic and each default's reasoning). Set under `cost:` in a sweep file, or `plan --assume KEY=VALUE`
    for one look; part of no cell. The defaults are H100 figures from arithmetic, not yet measured."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    decode_tokens_per_s: float = Field(
        2500.0,
        gt=0,
        description="vLLM decode tokens/s per GPU, bf16, for a 7B model of Qwen2.5-7B's shape at 128 sequences "
        "of ~1k tokens per GPU, averaged over a whole rollout (its drain tail included); other models, "
        "batches and KV caches are scaled from it by a memory/compute roofline",
    )
    decode_batch: float = Field(
        128.0,
        gt=0,
        description="sequences per GPU at which batched decode turns compute-bound (the GPU's FLOPs per byte "
        "of memory bandwidth: ~400 achieved TFLOPs / 3.35 TB/s on an H100)",
    )
    train_tflops: float = Field(
        400.0, gt=0, description="achieved training TFLOPs per GPU, bf16, sharded (~40% of an H100's 989)"
    )
    pad_factor: float = Field(
        1.5,
        ge=1,
        description="spurisweep's training tokens over the real ones: micro-batches of 4 trimmed to their "
        "longest response (the official code packs responses: 1)",
    )
    prompt_tokens: float = Field(200.0, gt=0, description="mean prompt length, template included")
    response_tokens: float = Field(700.0, gt=0, description="mean training response length")
    eval_response_tokens: float = Field(750.0, gt=0, description="mean evaluation response length")
    label_response_tokens: float = Field(700.0, gt=0, description="mean length of a labelling sample")


class SweepFile(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    preset: str | None = None
    grid: dict[str, list[Any]]
    settings: dict[str, Any] = Field(default_factory=dict)
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    overrides: list[Override] = Field(default_factory=list)
    cost: CostAssumptions = Field(
        default_factory=CostAssumptions, description="the cost model's assumptions (`plan`; no cell's id)"
    )

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
    """A pydantic location as a person writes it: `eval.variants[1].seed`."""
    out = ""
    for p in loc:
        if p == "__root__":
            continue
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


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
    text = artifacts.read_input_text(
        p, what="sweep file (YAML)", error=ConfigError, max_bytes=MAX_SWEEP_BYTES
    )
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "yaml"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"malformed YAML: {problem}", file=str(p), field=where) from None
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise ConfigError("the YAML is nested too deeply", file=str(p), field="yaml") from None
    try:
        _check_expansion(raw, str(p))
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply", file=str(p), field="yaml") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            "expected a mapping with name, grid, settings, ...", file=str(p), field="(top level)"
        )
    raw = _rename_old_resources(raw, str(p))
    try:
        spec = SweepFile.model_validate(raw)
    except ValidationError as exc:
        field, msg = first_error(exc)
        if field.startswith("grid") and "allowed" not in msg:
            msg = msg.removeprefix("Value error, ")
        raise ConfigError(msg.removeprefix("Value error, "), file=str(p), field=field) from None
    if spec.name in artifacts.RESERVED_NAMES:
        raise ConfigError(
            f"{spec.name!r} is the name of one of the results folder's own files; choose another sweep name",
            file=str(p),
            field="name",
        )
    return Sweep(spec, p)


def _renamed(key: Any) -> Any:
    """`slurm` / `slurm.<setting>` under its new name; any other key as it is."""
    if isinstance(key, str) and (key == OLD_RESOURCES or key.startswith(OLD_RESOURCES + ".")):
        return RESOURCES + key[len(OLD_RESOURCES) :]
    return key


def _rename_old_resources(raw: dict[str, Any], file: str) -> dict[str, Any]:
    """A sweep file that still says `slurm` (settings, grid axes, exclude rules, overrides) read as
    `resources`, with one note on stderr; one that uses both names is refused (which one would win?)."""
    places: list[tuple[str, dict[str, Any]]] = []  # (where, mapping whose keys may name the resources)
    for section in ("settings", "grid"):
        if isinstance(raw.get(section), dict):
            places.append((section, raw[section]))
    for key in ("exclude", "overrides"):
        rules = raw.get(key)
        for i, rule in enumerate(rules if isinstance(rules, list) else []):
            if key == "exclude" and isinstance(rule, dict):
                places.append((f"exclude[{i}]", rule))
            elif isinstance(rule, dict):
                places += [
                    (f"overrides[{i}].{k}", rule[k]) for k in ("when", "set") if isinstance(rule.get(k), dict)
                ]
    old = [f"{where}.{k}" for where, m in places for k in m if _renamed(k) != k]
    if not old:
        return raw
    new = [
        f"{where}.{k}"
        for where, m in places
        for k in m
        if k == RESOURCES or str(k).startswith(RESOURCES + ".")
    ]
    if new:
        raise ConfigError(
            f"uses both {RESOURCES!r} ({new[0]}) and its old name {OLD_RESOURCES!r}: use {RESOURCES!r} throughout",
            file=file,
            field=old[0],
        )
    print(
        f"{file}: note: {OLD_RESOURCES!r} is now called {RESOURCES!r} ({old[0]}); the old name still works",
        file=sys.stderr,
    )
    for _, mapping in places:
        renamed = {_renamed(k): v for k, v in mapping.items()}
        mapping.clear()
        mapping.update(renamed)
    return raw


def _check_expansion(raw: Any, file: str) -> None:
    """Refuse YAML whose aliases expand without bound (a "billion laughs") or refer to themselves.

    PyYAML shares an aliased node instead of copying it, so loading such a file is cheap; every later step
    (validation, deep copies, the canonical JSON of a cell) would expand it. Count the expanded nodes with
    each shared node's size computed once, and stop at MAX_SWEEP_NODES.
    """
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise ConfigError("an alias refers to the node that contains it", file=file, field="yaml")
        open_.add(key)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_SWEEP_NODES:
                raise ConfigError(
                    f"the YAML expands to over {MAX_SWEEP_NODES:,} values (aliases repeated without bound?)",
                    file=file,
                    field="yaml",
                )
        open_.discard(key)
        sizes[key] = total
        return total

    size(raw)
