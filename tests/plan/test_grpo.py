"""`plan --check` builds the GRPOConfig each training setup trains with, a sharded cell's FSDP arguments
included (grpo.validate -> sharded_grpo_kwargs -> sharding.fsdp_training_args), so that arguments the
installed transformers does not accept are a plan-time error (exit 2, one line naming the file, the cell
and TRL's message) rather than a TypeError on every rank after the baselines and the probe. No GPU, no
model built or downloaded: the model's config comes from a local folder, the shipped configs or nowhere."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from spurisweep.errors import ConfigError
from spurisweep.models import families
from spurisweep.plan import grid, grpo, spec
from spurisweep.training import sharding

ROOT = Path(__file__).resolve().parents[2]
SHARDED: dict[str, Any] = {
    "name": "shc",
    "preset": "smoke",
    "grid": {"model": ["tiny"], "seed": [0, 1]},
    "settings": {
        "train": {"sharding": "fsdp", "gradient_checkpointing": True},
        "resources": {"tasks_per_node": 2},
    },
}
#: run the real CLI entry point after applying `patch` (Python source) in the same process
WRAPPER = (
    "import sys\n{patch}\nfrom spurisweep.cli import main\nsys.argv = ['spurisweep', *sys.argv[1:]]\nmain()\n"
)
#: a transformers whose TrainingArguments lacks a field the FSDP arguments name (as 5.17 lacked
#: `activation_checkpointing`)
BREAK = """
import spurisweep.training.sharding as s
_real = s.fsdp_training_args
s.fsdp_training_args = lambda *a, **k: {**_real(*a, **k), "no_such_training_argument": False}
"""

#: record, one line per GRPOConfig built, whether it carried FSDP arguments (fsdp_config)
RECORD = """
import trl
_Real = trl.GRPOConfig
class _Recorded(_Real):
    def __init__(self, **kw):
        with open({out!r}, "a") as f:
            f.write(("fsdp" if kw.get("fsdp") and kw.get("fsdp_config") else "plain") + "\\n")
        super().__init__(**kw)
trl.GRPOConfig = _Recorded
"""


def write(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def cells_of(path: Path) -> list[grid.Cell]:
    return grid.expand(spec.load_sweep(path))


def plan_check(sweep: Path, results: Path, *, patch: str = "", cache: Path | None = None):
    env = dict(os.environ)
    if cache is not None:
        env["SPURISWEEP_CACHE"] = str(cache)
    cmd = [sys.executable, "-c", WRAPPER.format(patch=patch), "plan", str(sweep), "--check"]
    return subprocess.run(
        [*cmd, "--results", str(results)], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )


class Spy:
    """What trl.GRPOConfig was built with (the fixture swaps in a subclass that records, then builds)."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []


@pytest.fixture
def spy(monkeypatch) -> Spy:
    import trl

    out = Spy()

    class Recorded(trl.GRPOConfig):  # still a GRPOConfig: dataclasses.fields (grpo_fields) works on it
        def __init__(self, **kw: Any) -> None:
            out.calls.append(copy.deepcopy(kw))  # GRPOConfig fills fsdp_config in place
            super().__init__(**kw)

    monkeypatch.setattr(trl, "GRPOConfig", Recorded)
    return out


# ---------------------------------------------------------------------------------------------- the CLI
def test_plan_check_of_a_sharded_sweep_builds_its_fsdp_config_and_no_model(tmp_path):
    sweep = write(tmp_path / "shc.yaml", SHARDED)
    cache = tmp_path / "cache"  # empty: tiny is not built, and plan --check must not build it
    built = tmp_path / "built.txt"
    proc = plan_check(sweep, tmp_path / "r", cache=cache, patch=RECORD.format(out=str(built)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr
    # one setup (two seeds), built with the FSDP arguments the cells train with
    assert built.read_text().splitlines() == ["fsdp"]
    assert not (cache / "models").exists()  # the config was validated without building the model


def test_a_break_in_the_sharded_arguments_is_one_line_naming_the_cell_and_exit_2(tmp_path):
    sweep = write(tmp_path / "shc.yaml", SHARDED)
    first = cells_of(sweep)[0]
    proc = plan_check(sweep, tmp_path / "r", patch=BREAK)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    line = lines[0]
    assert str(sweep) in line and "train.sharding" in line, line
    assert f"cell {first.id}" in line, line
    assert "TRL rejects this configuration" in line and "no_such_training_argument" in line, line


# ---------------------------------------------------------------------------------------------- in process
def test_validate_builds_the_grpo_config_a_sharded_cell_trains_with(tmp_path, spy, monkeypatch):
    families.ensure_built(families.get("tiny"))  # built (by the test): its own decoder layer is the unit
    monkeypatch.delenv("FSDP_CPU_RAM_EFFICIENT_LOADING", raising=False)
    (cell, _) = cells_of(write(tmp_path / "shc.yaml", SHARDED))
    grpo.validate(cell.config)
    (kw,) = spy.calls
    assert kw["fsdp"] is True and kw["model_init_kwargs"] == {"dtype": sharding.MASTER_DTYPE}
    fsdp = kw["fsdp_config"]
    assert fsdp["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert fsdp["activation_checkpointing"] is True  # train.gradient_checkpointing, done by FSDP
    for name in sharding.checkpointing_fields():  # ... and transformers' own turned off
        assert kw[name] is False, name
    assert "FSDP_CPU_RAM_EFFICIENT_LOADING" not in os.environ  # GRPOConfig's write was undone
    # the cell's own arguments, as training builds them (grpo_kwargs, then the FSDP arguments over them)
    base = grpo.grpo_kwargs(cell.config, kw["output_dir"], cpu=True, world=2)
    expect = grpo.sharded_grpo_kwargs(base, cell.config, families.model_source("tiny"))
    assert {k: v for k, v in kw.items() if k != "report_to"} == {
        k: v for k, v in expect.items() if k != "report_to"
    }


def test_an_unsharded_cell_gets_no_fsdp_arguments(tmp_path, spy, monkeypatch):
    monkeypatch.setattr(sharding, "fsdp_training_args", lambda *a, **k: pytest.fail("called"))
    doc = {**SHARDED, "settings": {"train": {"sharding": "none"}}}
    (cell, _) = cells_of(write(tmp_path / "plain.yaml", doc))
    grpo.validate(cell.config)
    (kw,) = spy.calls
    assert "fsdp" not in kw and "fsdp_config" not in kw


def test_a_hub_familys_layer_comes_from_its_shipped_config_without_downloading(tmp_path, spy, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    doc = {**SHARDED, "preset": "paper", "grid": {"model": ["qwen2.5-math-7b", "olmo2-7b"]}}
    qwen, olmo = cells_of(write(tmp_path / "hub.yaml", doc))
    assert type(grpo.plan_model_config(qwen.config)).__name__ == "Qwen2Config"
    grpo.validate_all([qwen, olmo], cached=False)  # the model matters to a sharded setup: both built
    layers = [kw["fsdp_config"]["transformer_layer_cls_to_wrap"] for kw in spy.calls]
    assert layers == [["Qwen2DecoderLayer"], ["Olmo2DecoderLayer"]]


def test_an_unbuilt_local_family_is_validated_with_a_placeholder_layer(tmp_path, spy, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path / "empty"))
    (cell, _) = cells_of(write(tmp_path / "shc.yaml", SHARDED))
    assert grpo.plan_model_config(cell.config) is None
    grpo.validate(cell.config)
    (kw,) = spy.calls
    assert kw["fsdp_config"]["transformer_layer_cls_to_wrap"] == list(grpo.UNKNOWN_LAYERS)
    assert not (tmp_path / "empty" / "models").exists()


def test_one_grpo_config_per_sharded_setup_not_per_seed(tmp_path, spy):
    doc = {**SHARDED, "grid": {"model": ["tiny"], "seed": [0, 1, 2], "train.learning_rate": [1e-6, 2e-6]}}
    cells = cells_of(write(tmp_path / "shc.yaml", doc))
    assert len(cells) == 6
    grpo.validate_all(cells, cached=False)
    assert len(spy.calls) == 2


def test_a_rejected_sharded_setup_names_the_first_cell_and_the_sharding(tmp_path, monkeypatch):
    real = sharding.fsdp_training_args
    monkeypatch.setattr(  # where the plan-time mapping reads it
        grpo, "fsdp_training_args", lambda *a, **k: {**real(*a, **k), "no_such_training_argument": 1}
    )
    cells = cells_of(write(tmp_path / "shc.yaml", SHARDED))
    with pytest.raises(ConfigError) as exc:
        grpo.validate_all(cells, file="shc.yaml", cached=False)
    assert exc.value.file == "shc.yaml" and exc.value.field == "train.sharding"
    assert str(exc.value).startswith(f"shc.yaml: train.sharding: cell {cells[0].id} ({cells[0].label}): ")
    assert "no_such_training_argument" in str(exc.value)
    with pytest.raises(ConfigError, match=f"cell {cells[0].id}: TRL rejects"):  # a bare config: its id
        grpo.validate_all([c.config for c in cells], file="shc.yaml", cached=False)


def test_a_model_type_with_no_decoder_layer_class_is_a_plan_time_error(tmp_path, monkeypatch):
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    monkeypatch.setattr(
        sharding, "decoder_layer_classes", lambda _: (_ for _ in ()).throw(sharding.ShardingError("no unit"))
    )
    doc = {**SHARDED, "grid": {"model": ["tiny"], "model_path": [str(folder)]}}
    (cell,) = cells_of(write(tmp_path / "odd.yaml", doc))
    assert grpo.plan_model_config(cell.config) is not None
    with pytest.raises(ConfigError, match="no unit") as exc:
        grpo.validate(cell.config, file="odd.yaml")
    assert exc.value.field == "train.sharding"


def test_the_installed_grpo_config_accepts_every_sharded_argument():
    """The issue itself: every keyword fsdp_training_args returns is a field of this GRPOConfig (transformers
    5.17 has no `activation_checkpointing`, 5.25 has it besides `gradient_checkpointing`)."""
    kw = sharding.fsdp_training_args(None, activation_checkpointing=True, layers=["X"])
    assert set(kw) <= grpo.grpo_fields(), set(kw) - grpo.grpo_fields()
