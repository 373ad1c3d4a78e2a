"""Grid expansion: a sweep file -> a deterministic list of cells, each with a stable id.

Resolution order for one cell: CellConfig defaults -> preset -> `settings` -> the cell's axis values ->
every override whose `when` matches. Defaults that depend on other values (the family's prompt, the
clip mode's epsilons, the reward's parameters) are then filled in, so the resolved config is complete
and the id (a hash of its canonical JSON, minus launch resources and trackers) changes exactly when
something that affects the results changes.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from .. import rewards
from ..data import sets as data
from ..errors import ConfigError, DataError, suggest
from ..ids import CELL_ID_LENGTH, short_hash
from ..models import families
from . import algorithms, clipping, presets
from .spec import (
    LATE_DEFAULTS,
    NAMED_AXES,
    NON_IDENTITY_KEYS,
    NON_IDENTITY_SETTINGS,
    RESOURCES,
    CellConfig,
    Sweep,
    first_error,
)

ID_LENGTH = CELL_ID_LENGTH


@dataclass
class Cell:
    id: str
    config: CellConfig
    axes: dict[str, Any] = field(default_factory=dict)  # axis name -> display value, in grid order
    sweep: str = ""

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.axes.items())


#: eval settings that change nothing a cell computes (the probe is stored apart, shared per model; each
#: variant is an evaluation of its own, with its own eval id): left out of the id, so turning the probe on or
#: adding a variant keeps every cell id (and its finished results)
NON_IDENTITY_EVAL_KEYS = ("probe", "probe_fractions", "variants")
#: eval.protocols.<bench> settings added later, each with the value that does what the code did before it
#: existed (as LATE_DEFAULTS, per benchmark): left out of the id while they hold it
LATE_PROTOCOL_DEFAULTS: dict[str, Any] = {"subsample_seed": None}


def identity(config: CellConfig) -> dict[str, Any]:
    d = config.model_dump(mode="json")
    for key in NON_IDENTITY_KEYS:
        d.pop(key, None)
    for path, default in LATE_DEFAULTS.items():
        *parents, last = path.split(".")
        node = d
        for k in parents:
            node = node.get(k, {})
        if last in node and node[last] == default:
            del node[last]
    for path in NON_IDENTITY_SETTINGS:
        *parents, last = path.split(".")
        node = d
        for k in parents:
            node = node.get(k, {})
        node.pop(last, None)
    for key in NON_IDENTITY_EVAL_KEYS:
        d["eval"].pop(key, None)
    for proto in d["eval"].get("protocols", {}).values():
        for key, default in LATE_PROTOCOL_DEFAULTS.items():
            if key in proto and proto[key] == default:
                del proto[key]
    return d


def cell_id(config: CellConfig) -> str:
    return short_hash(identity(config), ID_LENGTH)


# ---------------------------------------------------------------------------------------------- dotted paths
def set_dotted(target: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = target
    for k in keys[:-1]:
        nxt = node.get(k)
        if not isinstance(nxt, dict):
            nxt = {}
            node[k] = nxt
        node = nxt
    node[keys[-1]] = _copy(value)


def get_dotted(source: Any, path: str) -> Any:
    node = source
    for k in path.split("."):
        if isinstance(node, dict):
            node = node.get(k)
        else:
            node = getattr(node, k, None)
    return node


def _copy(value: Any) -> Any:
    """A copy of YAML-shaped data (dicts and lists of scalars): what copy.deepcopy gives for it, several
    times faster (resolving a 20,000-cell grid copies the preset for every cell). Anything else is copied
    with deepcopy."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return copy.deepcopy(value)


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = _copy(base)
    for k, v in extra.items():
        if "." in k:
            set_dotted(out, k, v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = _copy(v)
    return out


def known_path(path: str) -> bool:
    """Whether a dotted path names a CellConfig setting (free-form dicts accept any key below them)."""
    from pydantic import BaseModel

    model: Any = CellConfig
    keys = path.split(".")
    for i, k in enumerate(keys):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return False
        fields = model.model_fields
        if k not in fields:
            return False
        ann = fields[k].annotation
        origin = getattr(ann, "__origin__", None)
        if origin is dict or ann is dict:
            return True  # trl.*, reward_params.*, eval.protocols.*, resources.additional.*
        inner = [a for a in getattr(ann, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[0] if inner else ann
        if i == len(keys) - 1:
            return True
    return True


# ---------------------------------------------------------------------------------------------- matching
def _matches(rule: dict[str, Any], values: dict[str, Any]) -> bool:
    for key, want in rule.items():
        have = values.get(key)
        options = want if isinstance(want, list) else [want]
        if not any(_same(have, o) for o in options):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return float(a) == float(b)
        except (TypeError, ValueError):
            return False
    return a == b or str(a) == str(b)


def _display(value: Any, axis: str = "") -> Any:
    if axis == "clip" and isinstance(value, dict):
        with contextlib.suppress(ConfigError):  # resolve() names the bad value
            return clipping.label(*clipping.normalise(value))
    if axis == "reward" and isinstance(value, dict) and "mix" in value:
        with contextlib.suppress(ConfigError):  # resolve() names the bad value
            return _mix_name(value, "")
    if isinstance(value, dict):
        name = value.get("name", "?")
        params = ",".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{name}({params})" if params else name
    return value


def _mix_name(value: dict[str, Any], file: str) -> str:
    """A grid reward `{mix: [[random, 0.5], [ground_truth, 0.5]]}` as its name, 0.5*random+0.5*ground_truth."""
    if set(value) != {"mix"}:
        raise ConfigError(
            "a reward mixture is a mapping with the one key 'mix'", file=file, field="grid.reward"
        )
    try:
        return rewards.mix_name(value["mix"])
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, field="grid.reward") from None


# ---------------------------------------------------------------------------------------------- expansion
@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a grid is built. Every cell allocates hundreds of container
    objects (dicts, pydantic models) that live on, so the collector's full passes over the growing heap
    took 45% of expanding 20,000 cells (7.7 s against 4.2 s, bench/submit.py). Nothing built here forms a
    cycle; reference counting still frees every temporary, and the collector runs again afterwards."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def expand(sweep: Sweep, *, check_inputs: bool = True) -> list[Cell]:
    """All cells of a sweep, in grid order. Raises ConfigError (file + field) on any invalid input.
    `check_inputs=False`: the local files and folders the cells read (data sets, model_path,
    SPURISWEEP_DATA_DIR) are not checked, for commands that only look at or stop what was submitted
    (status, cancel): an input moved since must not stop them. The cells and their ids are the same."""
    with _gc_paused():
        return _expand(sweep, check_inputs)


def _expand(sweep: Sweep, check_inputs: bool = True) -> list[Cell]:
    spec = sweep.spec
    file = str(sweep.path)
    if check_inputs:
        data.data_dir()  # a SPURISWEEP_DATA_DIR that is no folder fails here, before any cell is planned
    axes = list(spec.grid)
    for axis in axes:
        if axis not in NAMED_AXES and not known_path(axis):
            raise ConfigError(
                suggest(axis, list(NAMED_AXES) + ["<section>.<setting>, e.g. train.learning_rate"]),
                file=file,
                field=f"grid.{axis}",
            )
    for i, rule in enumerate(spec.exclude):
        for key in rule:
            if key not in axes:
                raise ConfigError(
                    f"{suggest(key, axes)} (exclude rules name grid axes)",
                    file=file,
                    field=f"exclude[{i}].{key}",
                )
    for i, ov in enumerate(spec.overrides):
        for key in ov.set:
            if not known_path(key):
                raise ConfigError("unknown setting", file=file, field=f"overrides[{i}].set.{key}")
        for key in ov.when:
            if key not in axes and key not in NAMED_AXES and not known_path(key):
                raise ConfigError(suggest(key, axes), file=file, field=f"overrides[{i}].when.{key}")

    preset_name = spec.preset or "paper"
    if "preset" not in spec.grid and preset_name not in presets.PRESETS:
        raise ConfigError(suggest(preset_name, list(presets.PRESETS)), file=file, field="preset")
    for key in spec.settings:
        if not known_path(key):
            raise ConfigError("unknown setting", file=file, field=f"settings.{key}")

    cells: list[Cell] = []
    seen: dict[str, Cell] = {}
    bases: dict[str, Any] = {}
    for combo in itertools.product(*(spec.grid[a] for a in axes)):
        values = dict(zip(axes, combo, strict=True))
        display = {a: _display(v, a) for a, v in values.items()}
        if any(_matches(rule, display) or _matches(rule, values) for rule in spec.exclude):
            continue
        cfg = resolve(sweep, values, bases=bases, check_inputs=check_inputs)
        cid = cell_id(cfg)
        cell = Cell(id=cid, config=cfg, axes=display, sweep=spec.name)
        if cid in seen:
            raise ConfigError(
                f"two cells resolve to the same config ({seen[cid].label} and {cell.label}); a swept value "
                "has no effect on them: restrict it with an exclude rule or an override",
                file=file,
                field="grid",
            )
        seen[cid] = cell
        check_sharding(cell, file)
        cells.append(cell)
    if not cells:
        raise ConfigError("the grid is empty (every combination is excluded)", file=file, field="grid")
    contexts: dict[tuple[str, str | None], int | None] = {}
    # after the grid's own errors (a duplicate cell names the swept value that has no effect, which is the
    # clearer thing to fix first)
    for cell in cells:
        check_context(cell, file, contexts)
    return cells


def resolve(
    sweep: Sweep, values: dict[str, Any], *, bases: dict[str, Any] | None = None, check_inputs: bool = True
) -> CellConfig:
    """One cell's config. `bases`: preset name -> the preset merged with the sweep's settings, the same for
    every cell of that preset; `expand` passes one dict for all its cells so each is merged once."""
    spec = sweep.spec
    file = str(sweep.path)
    preset_name = str(values.get("preset", spec.preset or "paper"))
    if preset_name not in presets.PRESETS:
        raise ConfigError(suggest(preset_name, list(presets.PRESETS)), file=file, field="grid.preset")
    bases = {} if bases is None else bases
    if preset_name not in bases:
        bases[preset_name] = deep_merge(
            deep_merge(presets.PRESETS[preset_name], {"preset": preset_name}), spec.settings
        )
    # a copy of its own: validation keeps references to the values of free-form settings (trl.*, ...)
    raw: dict[str, Any] = _copy(bases[preset_name])
    explicit = _stated(spec.settings, "settings.")  # what the sweep states (not the preset), and where
    for axis, value in values.items():
        explicit.update(_stated({axis: value}, "grid."))
        if axis == "clip" and isinstance(value, dict):
            mode, params = clipping.normalise(value, file=file, field="grid.clip")
            set_dotted(raw, "clip", mode)
            for k, v in params.model_dump(exclude_none=True).items():
                set_dotted(raw, f"clip_params.{k}", v)
        elif axis == "reward" and isinstance(value, dict) and "mix" in value:  # {mix: [[random, 0.5], ...]}
            set_dotted(raw, "reward", _mix_name(value, file))
        elif axis == "reward" and isinstance(value, dict):
            params = {k: v for k, v in value.items() if k != "name"}
            if "name" not in value:
                raise ConfigError(
                    "a reward given as a mapping needs a 'name'", file=file, field="grid.reward"
                )
            set_dotted(raw, "reward", value["name"])
            for k, v in params.items():
                set_dotted(raw, f"reward_params.{value['name']}.{k}", v)
        else:
            set_dotted(raw, axis, value)
    # overrides see the axis values and the settings resolved so far
    for i, ov in enumerate(spec.overrides):
        probe = {**{k: get_dotted(raw, k) for k in ov.when}, **{a: _display(v, a) for a, v in values.items()}}
        if _matches(ov.when, probe):
            explicit.update(_stated(ov.set, f"overrides[{i}].set."))
            for key, v in ov.set.items():
                set_dotted(raw, key, v)
    try:
        cfg = CellConfig.model_validate(raw)
    except ValidationError as exc:
        fld, msg = first_error(exc)
        top = fld.split(".")[0]
        origin = next((f"grid.{a}" for a in values if a == fld or a.split(".")[0] == top and a == fld), None)
        raise ConfigError(msg, file=file, field=origin or f"settings.{fld}") from None
    return fill_defaults(cfg, file, check_inputs=check_inputs, explicit=explicit)


def _stated(settings: dict[str, Any], where: str, prefix: str = "") -> dict[str, str]:
    """Dotted setting -> where the sweep states it, for every leaf of a settings mapping (nested sections
    and dotted keys alike): `{train: {loss_type: x}}` under "settings." -> {"train.loss_type":
    "settings.train.loss_type"}."""
    out: dict[str, str] = {}
    for key, value in settings.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_stated(value, where, f"{path}."))
        else:
            out[path] = f"{where}{path}"
    return out


def fill_defaults(
    cfg: CellConfig, file: str, *, check_inputs: bool = True, explicit: dict[str, str] | None = None
) -> CellConfig:
    """Check the names that registries define and make every implicit default explicit. `explicit`: the
    settings the sweep states, and where (a setting the train.algorithm fixes may only agree with it)."""
    if cfg.model not in families.FAMILIES:
        raise ConfigError(suggest(cfg.model, list(families.FAMILIES)), file=file, field="model")
    fam = families.FAMILIES[cfg.model]
    if cfg.prompt is None:
        cfg.prompt = presets.family_prompt(cfg.preset, fam.prompt)
    elif cfg.prompt not in families.PROMPTS:
        raise ConfigError(suggest(cfg.prompt, list(families.PROMPTS)), file=file, field="prompt")
    if cfg.data.label_prompt not in families.PROMPTS:
        raise ConfigError(
            suggest(cfg.data.label_prompt, list(families.PROMPTS)), file=file, field="data.label_prompt"
        )
    if cfg.data.label_holdout is None:
        cfg.data.label_holdout = 100 if cfg.data.labelling == "paper" else 0

    try:
        expr = rewards.parse(cfg.reward)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, field="reward") from None
    cfg.reward = str(expr)  # one spelling per reward: a mixture's spacing and weights normalised (only those)
    try:
        cfg.reward_params = rewards.resolve_params(expr, cfg.reward_params)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, field="reward_params") from None

    if cfg.clip not in clipping.CLIP_MODES:
        raise ConfigError(suggest(cfg.clip, list(clipping.CLIP_MODES)), file=file, field="clip")
    cfg.clip_params = clipping.resolve_params(cfg.clip, cfg.clip_params)
    algorithms.apply(cfg, explicit or {}, file=file)
    check_switches(cfg, expr, file)

    for i, bench in enumerate(cfg.eval.benchmarks):
        if bench not in data.BENCHMARKS:
            raise ConfigError(suggest(bench, list(data.BENCHMARKS)), file=file, field=f"eval.benchmarks[{i}]")
    for bench in cfg.eval.protocols:
        if bench not in data.BENCHMARKS:
            raise ConfigError(
                suggest(bench, list(data.BENCHMARKS)), file=file, field=f"eval.protocols.{bench}"
            )
    check_subsamples(cfg, file)
    if check_inputs:
        check_paths(cfg, file)
    return cfg


def check_subsamples(cfg: CellConfig, file: str) -> None:
    """A subsample_seed draws `limit` problems at random: without a limit there is nothing to draw."""
    for bench, ov in cfg.eval.protocols.items():
        if ov.subsample_seed is not None and (ov.limit or cfg.eval.limit) is None:
            raise ConfigError(
                "a subsample_seed draws `limit` problems at random: set eval.protocols."
                f"{bench}.limit (or eval.limit) too",
                file=file,
                field=f"eval.protocols.{bench}.subsample_seed",
            )


def world_size(cfg: CellConfig) -> int:
    """The processes a cell trains on: tasks per node (default gpus_per_node) x nodes."""
    return cfg.resources.world_size


def check_sharding(cell: Cell, file: str) -> None:
    """train.sharding fsdp shards across the cell's processes: one process has nothing to shard across
    (sharding.assert_sharded would fail the job at start; say so before anything is submitted)."""
    world = world_size(cell.config)
    if cell.config.train.sharding == "fsdp" and world < 2:
        raise ConfigError(
            f"cell {cell.id} ({cell.label}) shards across {world} process: fsdp needs 2 or more "
            f"({RESOURCES}.tasks_per_node or {RESOURCES}.gpus_per_node x nodes), or set train.sharding: none",
            file=file,
            field="train.sharding",
        )


def token_budgets(cfg: CellConfig) -> list[tuple[str, str, int, int]]:
    """Every generation a cell runs, as (field, what, prompt budget, new tokens): training, the labelling
    of majority/incorrect labels when its length is set apart from training, and each benchmark it
    evaluates (its protocol's max_new_tokens, the sweep's eval.protocols override or the benchmark's
    default). The prompt budget is train.max_prompt_length throughout (no protocol has its own)."""
    t = cfg.train
    prompt = t.max_prompt_length
    out = [
        (
            "train.max_completion_length",
            "train.max_prompt_length + train.max_completion_length",
            prompt,
            t.max_completion_length,
        )
    ]
    d = cfg.data
    if d.label_max_new_tokens is not None and not d.labels:
        if rewards.data_kind(rewards.parse(cfg.reward)) in ("majority", "incorrect"):
            out.append(
                (
                    "data.label_max_new_tokens",
                    "train.max_prompt_length + data.label_max_new_tokens",
                    prompt,
                    d.label_max_new_tokens,
                )
            )
    for bench in cfg.eval.benchmarks:
        ov = cfg.eval.protocols.get(bench)
        own = ov.max_new_tokens if ov is not None else None
        new = own if own is not None else data.BENCHMARKS[bench].protocol.max_new_tokens
        fld = f"eval.protocols.{bench}.max_new_tokens"
        what = f"train.max_prompt_length + {fld}" + ("" if own is not None else f" ({bench}'s default)")
        out.append((fld, what, prompt, new))
    return out


def check_context(
    cell: Cell, file: str, contexts: dict[tuple[str, str | None], int | None] | None = None
) -> None:
    """Every prompt + completion budget of a cell (token_budgets) fits its model's context
    (families.context_length; no check when that is unknown). `contexts` caches the context per (model,
    model_path) across the cells of one expansion. ConfigError names the cell, the field, the budget and
    the context, in one line."""
    cfg = cell.config
    key = (cfg.model, cfg.model_path)
    if contexts is not None and key in contexts:
        context = contexts[key]
    else:
        context = families.context_length(cfg.model, cfg.model_path)
        if contexts is not None:
            contexts[key] = context
    if context is None:
        return
    for fld, what, prompt, new in token_budgets(cfg):
        if prompt + new > context:
            model = f"model_path {cfg.model_path}" if cfg.model_path else f"model {cfg.model}"
            exc = ConfigError(
                f"cell {cell.id} ({cell.label}): {what} = {prompt} + {new} = {prompt + new} tokens exceeds "
                f"{model}'s context of {context}",
                file=file,
            )
            exc.field = fld
            raise exc


def check_switches(cfg: CellConfig, expr: rewards.Expr, file: str) -> None:
    """Reject the combinations of the paper-faithful switches that contradict each other.

    What does not contradict, on purpose: `grader: paper` reads every template (the box, "the answer is",
    the last number; after `<answer>` under an answer-tag template); `data.labelling: paper` with
    `grader: math_verify` is well defined (the labels are made and filtered the official way, the rewards
    then compare with them by math-verify); `train.token_whitening` only rescales advantages, which every
    clip mode and loss type uses. `spurisweep fidelity` lists those mixes as differences from the paper.
    """
    t = cfg.train
    trl_is = cfg.trl.get("vllm_importance_sampling_correction")
    if t.is_correction is not None and trl_is is not None and bool(trl_is) != t.is_correction:
        raise ConfigError(
            f"contradicts train.is_correction ({str(t.is_correction).lower()}): set the switch only there",
            file=file,
            field="trl.vllm_importance_sampling_correction",
        )
    if t.is_correction and t.generation_backend == "transformers":
        raise ConfigError(
            "true needs vLLM generation (the correction reweights by the trainer/vLLM probability ratio), but "
            "train.generation_backend is 'transformers'",
            file=file,
            field="train.is_correction",
        )
    if cfg.eval.eval_every is not None and not cfg.eval.checkpoints:
        raise ConfigError(
            "contradicts eval.checkpoints: false (which evaluates the final model only); drop one of the two",
            file=file,
            field="eval.eval_every",
        )
    holdout = cfg.data.label_holdout or 0
    labelled = any(rewards.REGISTRY[b].data in ("majority", "incorrect") for b in expr.bases())
    if labelled and cfg.data.limit is not None and holdout >= cfg.data.limit:
        raise ConfigError(
            f"holds out {holdout} labelled prompts but data.limit keeps only {cfg.data.limit}: nothing is "
            "left to train on",
            file=file,
            field="data.label_holdout",
        )


def check_paths(cfg: CellConfig, file: str) -> None:
    """Local files and folders a cell will read exist and are what they should be, so that a typo fails at
    plan time, not in a job hours later. Hub ids are left to the job (planning needs no network)."""
    try:
        if cfg.model_path:
            families.check_model_path(cfg.model_path, what="model_path")
        d = cfg.data
        data.check_source(
            d.train, what="data.train", problem_field=d.problem_field, answer_field=d.answer_field
        )
        if d.labels:
            data.check_source(d.labels, what="data.labels")
        for bench, proto in cfg.eval.protocols.items():
            if proto.path:
                data.check_source(proto.path, what=f"eval.protocols.{bench}.path")
    except DataError as exc:
        raise ConfigError(str(exc), file=file) from None
