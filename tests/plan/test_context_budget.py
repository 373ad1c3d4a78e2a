"""A cell whose prompt + completion budget cannot fit its model's context is a plan-time error.

families.context_length reads the context from config files alone (a model_path's config.json, a built
local family's folder or what its builder writes, the shipped configs of the hub families); grid.expand
checks training, labelling and every evaluated benchmark against it, and `spurisweep plan` turns a
violation into one line naming the cell, the field, the budget and the context, with exit code 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep.errors import ConfigError
from spurisweep.models import families
from spurisweep.plan import grid, spec

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]


def write_sweep(tmp_path: Path, settings: str = "", model: str = "tiny", extra: str = "") -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(
        f"name: ctx\npreset: smoke\ngrid: {{model: [{model}], reward: [random]}}\n"
        f"settings: {{{settings}}}\n{extra}"
    )
    return p


def expand(path: Path) -> list[grid.Cell]:
    return grid.expand(spec.load_sweep(path))


def model_folder(tmp_path: Path, config: dict) -> Path:
    d = tmp_path / "model"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(config))
    return d


def plan(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*EXE, "plan", str(path)], capture_output=True, text=True, cwd=path.parent, timeout=300
    )


# ---------------------------------------------------------------------------------------------- the context
def test_tiny_and_toy_contexts_are_known_without_building(tmp_path, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path / "empty-cache"))
    from spurisweep.models import toy as build

    assert families.context_length("tiny") == 1024  # build_llama's default max_pos, which build_tiny uses
    for name in ("toy-coder", "toy-prose", "toy-memo"):
        assert families.context_length(name) == build.MAX_POSITIONS == 256
    assert not (tmp_path / "empty-cache").exists()  # nothing was built to learn it


def test_context_is_read_without_torch_or_transformers(tmp_path):
    code = (
        "import sys\n"
        "from spurisweep.models import families\n"
        "print(families.context_length('tiny'), families.context_length('toy-coder'), "
        "families.context_length('qwen2.5-math-7b'))\n"
        "heavy = [m for m in ('torch', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    env = {**os.environ, "SPURISWEEP_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1024", "256", "4096"]


def test_a_built_local_family_is_read_from_its_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path))
    fam = families.get("tiny")
    folder = tmp_path / "models" / f"{fam.name}-v{fam.version}"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 2048}))
    assert families.context_length("tiny") == 2048


@pytest.mark.parametrize(
    ("name", "context"),
    [
        ("qwen2.5-math-7b", 4096),
        ("qwen2.5-math-1.5b", 4096),
        ("qwen2.5-7b", 131072),
        ("qwen2.5-1.5b", 131072),
        ("olmo2-7b", 4096),
        ("olmo2-7b-sft", 4096),
        ("llama3.1-8b", 131072),
        ("llama3.1-8b-instruct", 131072),
        ("llama3.2-3b-instruct", 131072),
    ],
)
def test_hub_families_read_the_shipped_configs(name, context):
    assert families.context_length(name) == context


def test_every_registered_family_has_a_known_context():
    missing = [name for name in families.FAMILIES if families.context_length(name) is None]
    assert not missing


@pytest.mark.parametrize(
    ("config", "context"),
    [
        ({"max_position_embeddings": 8192, "n_positions": 1}, 8192),
        ({"n_positions": 2048}, 2048),  # GPT-2 style
        ({"max_seq_len": 3000}, 3000),  # MPT style
        ({"text_config": {"max_position_embeddings": 32768}}, 32768),  # a nested language model
        ({"hidden_size": 64}, None),  # no context key: unknown, so no check
    ],
)
def test_a_model_path_folder_is_read_from_its_config(tmp_path, config, context):
    folder = model_folder(tmp_path, config)
    # the path replaces the model: tiny's own 1024 is not used
    assert families.context_length("tiny", str(folder)) == context


def test_a_model_path_hub_id_reads_its_shipped_config_or_is_unknown():
    assert families.context_length("tiny", "Qwen/Qwen2.5-Math-1.5B") == 4096
    assert families.context_length("qwen2.5-math-7b", "someone/unknown-model") is None


# ---------------------------------------------------------------------------------------------- the plan check
def test_training_budget_above_the_context_is_one_line_exit_2(tmp_path):
    path = write_sweep(tmp_path, "train: {max_prompt_length: 256, max_completion_length: 1000}")
    proc = plan(path)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert str(path) in line and "model=tiny" in line
    assert (
        "train.max_prompt_length + train.max_completion_length = 256 + 1000 = 1256 tokens exceeds "
        "model tiny's context of 1024"
    ) in line


def test_a_budget_that_fits_exactly_plans(tmp_path):
    path = write_sweep(
        tmp_path,
        "train: {max_prompt_length: 128, max_completion_length: 896}, "
        "eval: {benchmarks: [arith], protocols: {arith: {max_new_tokens: 896}}}",
    )
    proc = plan(path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "context" not in proc.stderr


def test_the_shipped_sweeps_fit_their_models():
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        for cell in expand(path):  # raises on a budget above the context
            context = families.context_length(cell.config.model, cell.config.model_path)
            assert context is not None
            assert all(p + n <= context for _, _, p, n in grid.token_budgets(cell.config)), path


def test_an_evaluation_protocol_default_above_the_context_is_named(tmp_path):
    # math500's default protocol generates 3072 tokens: more than tiny has positions
    path = write_sweep(tmp_path, "eval: {benchmarks: [arith, math500]}")
    with pytest.raises(ConfigError) as e:
        expand(path)
    msg = str(e.value)
    assert e.value.field == "eval.protocols.math500.max_new_tokens"
    assert (
        "train.max_prompt_length + eval.protocols.math500.max_new_tokens (math500's default) "
        "= 128 + 3072 = 3200 tokens exceeds model tiny's context of 1024"
    ) in msg
    assert msg.startswith(f"{path}: cell ") and "\n" not in msg
    # the protocol's own max_new_tokens is what counts
    fixed = write_sweep(
        tmp_path, "eval: {benchmarks: [arith, math500], protocols: {math500: {max_new_tokens: 512}}}"
    )
    assert len(expand(fixed)) == 1


def test_an_evaluation_protocol_override_above_the_context_is_named(tmp_path):
    path = write_sweep(tmp_path, "eval: {protocols: {arith: {max_new_tokens: 1000}}}")
    with pytest.raises(ConfigError, match=r"eval.protocols.arith.max_new_tokens = 128 \+ 1000 = 1128 tokens"):
        expand(path)


def test_a_labelling_budget_above_the_context_is_named(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text(
        "name: ctx\npreset: smoke\ngrid: {model: [tiny], reward: [majority_vote]}\n"
        "settings: {data: {label_max_new_tokens: 1000}}\n"
    )
    with pytest.raises(ConfigError, match=r"data.label_max_new_tokens = 128 \+ 1000 = 1128 tokens") as e:
        expand(p)
    assert e.value.field == "data.label_max_new_tokens"
    # a reward that makes no labels never generates them
    q = write_sweep(tmp_path, "data: {label_max_new_tokens: 1000}")
    assert len(expand(q)) == 1


def test_a_toy_family_is_checked_against_its_own_context(tmp_path, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path / "cache"))
    ok = write_sweep(tmp_path, "train: {max_completion_length: 128}", model="toy-coder")
    assert len(expand(ok)) == 1  # 128 + 128 = 256: exactly toy-coder's context
    bad = write_sweep(tmp_path, "train: {max_completion_length: 129}", model="toy-coder")
    with pytest.raises(
        ConfigError, match=r"= 128 \+ 129 = 257 tokens exceeds model toy-coder's context of 256"
    ):
        expand(bad)


def test_a_model_path_context_replaces_the_family_one(tmp_path):
    folder = model_folder(tmp_path, {"max_position_embeddings": 512})
    path = write_sweep(tmp_path, f"model_path: {folder}, train: {{max_completion_length: 500}}")
    with pytest.raises(ConfigError, match=rf"model_path {folder}'s context of 512"):
        expand(path)  # 628 tokens: within tiny's 1024, not within this folder's 512


def test_an_unknown_context_is_not_checked(tmp_path):
    folder = model_folder(tmp_path, {"hidden_size": 64})
    path = write_sweep(tmp_path, f"model_path: {folder}, train: {{max_completion_length: 100000}}")
    assert len(expand(path)) == 1
