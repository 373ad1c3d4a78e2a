"""spurisweep/evaluation/reach.py: offline, a command that needs the hub fails at once with one line naming
what is missing; whatever is here (a local folder, a built-in family, a builtin or local benchmark, a
hub cache entry) passes. The hub caches are empty folders of this test; HF_HUB_OFFLINE decides offline
(conftest sets it), except where the connection test is checked on its own."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from spurisweep import cli
from spurisweep.errors import DataError
from spurisweep.evaluation import reach
from spurisweep.models import families

HUB_MODEL = "Qwen/Qwen2.5-Math-7B"


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty hub and datasets caches, offline."""
    from huggingface_hub import constants

    hub, prepared = tmp_path / "hub", tmp_path / "datasets"
    hub.mkdir()
    prepared.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(prepared))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("SPURISWEEP_DATA_DIR", raising=False)
    return hub, prepared


def _cache_model(hub: Path, repo: str) -> None:
    """The hub cache's layout of one downloaded file: refs/main names a snapshot holding config.json."""
    root = hub / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text("abc123")
    (root / "snapshots" / "abc123").mkdir(parents=True)
    (root / "snapshots" / "abc123" / "config.json").write_text("{}")


def test_offline_a_missing_hub_model_and_benchmark_are_one_line(caches):
    with pytest.raises(DataError) as exc:
        reach.check(models=[HUB_MODEL], benchmarks=[("math500", None), ("math500", None), ("arith", None)])
    line = str(exc.value)
    assert "\n" not in line and line.startswith("offline (HF_HUB_OFFLINE is set)")
    assert f"model {HUB_MODEL}" in line and "--model-path" in line
    assert line.count("benchmark math500 (HuggingFaceH4/MATH-500") == 1 and "SPURISWEEP_DATA_DIR" in line
    assert "arith" not in line  # built in


def test_what_is_here_passes_offline(caches, tmp_path, shared_data, monkeypatch):
    hub, prepared = caches
    _cache_model(hub, HUB_MODEL)
    local = tmp_path / "weights"
    local.mkdir()
    reach.check(
        models=[HUB_MODEL, str(local), families.model_source("tiny")], benchmarks=[("randcalc", None)]
    )
    (prepared / "HuggingFaceH4___MATH-500").mkdir()
    (prepared / "HuggingFaceH4___MATH-500" / "default").mkdir()
    reach.check(benchmarks=[("math500", None)])  # datasets' prepared copy
    reach.check(datasets=["builtin:arith", str(shared_data / "math500.json")])
    with pytest.raises(DataError, match="data set org/train"):
        reach.check(datasets=["org/train"])
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    reach.check(benchmarks=[("aime24", None)])  # the data folder's file


def test_online_nothing_is_refused(caches, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(reach, "_connects", lambda host, port: True)
    reach.check(models=[HUB_MODEL], benchmarks=[("math500", None)])
    monkeypatch.setattr(reach, "_connects", lambda host, port: False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.org")
    with pytest.raises(DataError, match=r"offline \(hub.example.org cannot be reached\)"):
        reach.check(models=[HUB_MODEL])


def test_a_closed_port_is_no_connection():
    import socket

    with socket.socket() as s:  # a port nobody listens on: bound, never listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        assert not reach._connects("127.0.0.1", port)
        s.listen()
        assert reach._connects("127.0.0.1", port)


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "--model", "qwen2.5-math-7b", "--benchmarks", "math500,randcalc"],
        ["eval", "--model", "qwen2.5-math-7b", "--benchmarks", "math500"],
        ["noise-floor", "--model", "qwen2.5-math-7b"],
        ["label", "--model", "qwen2.5-math-7b", "--dataset", "org/train"],
    ],
)
def test_the_commands_fail_offline_before_loading_anything(caches, tmp_path, monkeypatch, capsys, args):
    def never(*a, **kw):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(families, "load_model_and_tokenizer", never)
    monkeypatch.setattr(sys, "argv", ["spurisweep", *args, "--results", str(tmp_path / "res")])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    err = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert exc.value.code == 2 and len(err) == 1, err
    assert "offline (HF_HUB_OFFLINE is set)" in err[0] and f"model {HUB_MODEL}" in err[0]
    assert not list((tmp_path / "res").rglob("*.json*"))  # nothing computed or written
