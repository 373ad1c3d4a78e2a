"""Grid expansion: a sweep file -> a deterministic list of cells, each with a stable id.

Resolution order for one cell: CellConfig defaults -> preset -> `settings` -> the cell's axis values ->
every override whose `when` matches. Defaults that depend on other values (the family's prompt, the
clip mode's epsilons, the reward's parameters) are then filled in, so the resolved config is complete
and the id (a hash of its canonical JSON, minus launch resources and trackers) changes exactly when
something that affects the results changes.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from . import clipping, data, families, presets, rewards
from .errors import ConfigError, suggest
from .ids import CELL_ID_LENGTH, short_hash
from .spec import NAMED_AXES, NON_IDENTITY_KEYS, CellConfig, Sweep, first_error

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


#: eval settings that change nothing a cell computes (the probe is stored apart, shared per model): left out
#: of the id, so turning the probe on keeps every cell id (and its finished results)
NON_IDENTITY_EVAL_KEYS = ("probe", "probe_fractions")


def identity(config: CellConfig) -> dict[str, Any]:
    d = config.model_dump(mode="json")
    for key in NON_IDENTITY_KEYS:
        d.pop(key, None)
    for key in NON_IDENTITY_EVAL_KEYS:
        d["eval"].pop(key, None)
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
    node[keys[-1]] = copy.deepcopy(value)


def get_dotted(source: Any, path: str) -> Any:
    node = source
    for k in path.split("."):
        if isinstance(node, dict):
            node = node.get(k)
        else:
            node = getattr(node, k, None)
    return node


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if "." in k:
            set_dotted(out, k, v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
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
            return True  # trl.*, reward_params.*, eval.protocols.*, slurm.additional.*
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


def _display(value: Any) -> Any:
    if isinstance(value, dict):
        name = value.get("name", "?")
        params = ",".join(f"{k}={v}" for k, v in value.items() if k != "name")
        return f"{name}({params})" if params else name
    return value


# ---------------------------------------------------------------------------------------------- expansion
def expand(sweep: Sweep) -> list[Cell]:
    """All cells of a sweep, in grid order. Raises ConfigError (file + field) on any invalid input."""
    spec = sweep.spec
    file = str(sweep.path)
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
    for combo in itertools.product(*(spec.grid[a] for a in axes)):
        values = dict(zip(axes, combo, strict=True))
        display = {a: _display(v) for a, v in values.items()}
        if any(_matches(rule, display) or _matches(rule, values) for rule in spec.exclude):
            continue
        cfg = resolve(sweep, values)
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
        cells.append(cell)
    if not cells:
        raise ConfigError("the grid is empty (every combination is excluded)", file=file, field="grid")
    return cells


def resolve(sweep: Sweep, values: dict[str, Any]) -> CellConfig:
    spec = sweep.spec
    file = str(sweep.path)
    preset_name = str(values.get("preset", spec.preset or "paper"))
    if preset_name not in presets.PRESETS:
        raise ConfigError(suggest(preset_name, list(presets.PRESETS)), file=file, field="grid.preset")
    raw: dict[str, Any] = deep_merge(presets.PRESETS[preset_name], {"preset": preset_name})
    raw = deep_merge(raw, spec.settings)
    for axis, value in values.items():
        if axis == "reward" and isinstance(value, dict):
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
    for ov in spec.overrides:
        probe = {**{k: get_dotted(raw, k) for k in ov.when}, **{a: _display(v) for a, v in values.items()}}
        if _matches(ov.when, probe):
            for key, v in ov.set.items():
                set_dotted(raw, key, v)
    try:
        cfg = CellConfig.model_validate(raw)
    except ValidationError as exc:
        fld, msg = first_error(exc)
        top = fld.split(".")[0]
        origin = next((f"grid.{a}" for a in values if a == fld or a.split(".")[0] == top and a == fld), None)
        raise ConfigError(msg, file=file, field=origin or f"settings.{fld}") from None
    return fill_defaults(cfg, file)


def fill_defaults(cfg: CellConfig, file: str) -> CellConfig:
    """Check the names that registries define and make every implicit default explicit."""
    if cfg.model not in families.FAMILIES:
        raise ConfigError(suggest(cfg.model, list(families.FAMILIES)), file=file, field="model")
    fam = families.FAMILIES[cfg.model]
    if cfg.prompt is None:
        cfg.prompt = fam.prompt
    elif cfg.prompt not in families.PROMPTS:
        raise ConfigError(suggest(cfg.prompt, list(families.PROMPTS)), file=file, field="prompt")

    try:
        expr = rewards.parse(cfg.reward)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, field="reward") from None
    try:
        cfg.reward_params = rewards.resolve_params(expr, cfg.reward_params)
    except ValueError as exc:
        raise ConfigError(str(exc), file=file, field="reward_params") from None

    if cfg.clip not in clipping.CLIP_MODES:
        raise ConfigError(suggest(cfg.clip, list(clipping.CLIP_MODES)), file=file, field="clip")
    cfg.clip_params = clipping.resolve_params(cfg.clip, cfg.clip_params)

    for i, bench in enumerate(cfg.eval.benchmarks):
        if bench not in data.BENCHMARKS:
            raise ConfigError(suggest(bench, list(data.BENCHMARKS)), file=file, field=f"eval.benchmarks[{i}]")
    for bench in cfg.eval.protocols:
        if bench not in data.BENCHMARKS:
            raise ConfigError(
                suggest(bench, list(data.BENCHMARKS)), file=file, field=f"eval.protocols.{bench}"
            )
    return cfg
