"""What only a GPU can check: vLLM evaluation, a bf16 GRPO step, a 2-rank sharded cell. Real CLI on the
built-in tiny model (no network); each test skips with its reason where its extra need is missing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.storebuilder import run_cli

SWEEP = """
name: gpu_{name}
preset: smoke
grid:
  model: [tiny]
  reward: [ground_truth]
  clip: [standard]
  seed: [0]
settings:
  train: {{steps: 1, bf16: true, generation_backend: {backend}, sharding: {sharding}}}
  eval: {{benchmarks: [arith], limit: 8}}
  resources: {{gpus_per_node: {gpus}}}
"""


def _sweep(tmp_path: Path, name: str, *, backend="transformers", sharding="none", gpus=1) -> Path:
    f = tmp_path / f"{name}.yaml"
    f.write_text(SWEEP.format(name=name, backend=backend, sharding=sharding, gpus=gpus))
    return f


def _done(results: Path, name: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in (results / f"gpu_{name}").glob("*/DONE")]


def test_vllm_evaluates_a_few_problems(tmp_path: Path):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed here")
    res = tmp_path / "results"
    proc = run_cli(
        "eval",
        "--model",
        "tiny",
        "--benchmarks",
        "arith",
        "--limit",
        "8",
        "--backend",
        "vllm",
        "--results",
        str(res),
    )
    assert "arith: 8 problems" in proc.stdout


def test_one_bf16_grpo_step_on_one_gpu(tmp_path: Path):
    res = tmp_path / "results"
    run_cli("run", str(_sweep(tmp_path, "bf16")), "--executor", "local", "--results", str(res))
    (done,) = _done(res, "bf16")
    assert done  # the cell finished and wrote its summary


def test_a_two_rank_sharded_cell(tmp_path: Path):
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs")
    res = tmp_path / "results"
    run_cli(
        "run",
        str(_sweep(tmp_path, "fsdp", sharding="fsdp", gpus=2)),
        "--executor",
        "local",
        "--results",
        str(res),
    )
    assert len(_done(res, "fsdp")) == 1
