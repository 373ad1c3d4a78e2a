"""The tested library set: the locks, pyproject and spurisweep.versions agree, and a release outside it is
refused before anything is submitted, trained or generated (one line, exit 2)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spurisweep import versions
from spurisweep.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
LOCKS = ROOT / "locks"


def pins(lock: Path) -> dict[str, str]:
    out = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            out[m.group(1).lower()] = m.group(2)
    return out


@pytest.mark.parametrize("lock", ["cpu.txt", "gpu.txt", "vllm-cpu.txt"])
def test_every_lock_pins_the_driven_libraries_inside_the_supported_ranges(lock):
    from packaging.specifiers import SpecifierSet

    p = pins(LOCKS / lock)
    for pkg, rng in versions.SUPPORTED.items():
        found = next((p[d] for d in versions.PROVIDERS.get(pkg, (pkg,)) if d in p), None)
        if pkg == "vllm" and lock == "cpu.txt":
            assert found is None  # the CPU set has no vLLM
            continue
        assert found is not None, f"{lock} does not pin {pkg}"
        assert SpecifierSet(rng).contains(found), f"{lock}: {pkg}=={found} outside {rng}"


def test_the_cpu_test_set_is_the_gpu_set_with_vllms_cpu_build():
    gpu, cpu = pins(LOCKS / "gpu.txt"), pins(LOCKS / "vllm-cpu.txt")
    assert cpu["vllm-cpu"] == gpu["vllm"]  # the same vLLM release, built for CPUs
    for pkg in ("trl", "transformers", "accelerate"):
        assert cpu[pkg] == gpu[pkg], pkg
    assert cpu["torch"].split("+")[0] == gpu["torch"]  # the same torch release, its CPU build
    assert not any(k.startswith("nvidia-") for k in cpu)  # no CUDA wheels
    assert "torchvision" not in cpu  # PyPI's build does not import beside torch's CPU build


def test_pyproject_declares_the_supported_ranges():
    text = (ROOT / "pyproject.toml").read_text()
    for pkg, rng in versions.SUPPORTED.items():
        assert f'"{pkg}{rng}"' in text, f"pyproject.toml does not declare {pkg}{rng}"


def test_the_running_environment_is_a_locked_one():
    """Whichever venv runs the suite (make test: locks/cpu.txt; make test-vllm: locks/vllm-cpu.txt), its
    driven libraries are exactly that lock's."""
    lock = "vllm-cpu.txt" if versions.installed("vllm") else "cpu.txt"
    p = pins(LOCKS / lock)
    for pkg in ("torch", "transformers", "trl", "accelerate"):
        assert versions.installed(pkg) == p[pkg], (lock, pkg)
    if lock == "vllm-cpu.txt":
        assert versions.installed("vllm") == p["vllm-cpu"]
    assert versions.problems() == []


@pytest.fixture
def old_transformers(monkeypatch):
    real = versions.installed
    monkeypatch.setattr(versions, "installed", lambda pkg: "4.56.0" if pkg == "transformers" else real(pkg))
    monkeypatch.delenv(versions.ALLOW_ENV, raising=False)


def test_a_release_outside_the_range_is_one_line_naming_it(old_transformers):
    (line,) = versions.problems()
    assert "transformers 4.56.0" in line and "transformers>=5.17,<5.26" in line and "\n" not in line
    with pytest.raises(ConfigError, match="transformers 4.56.0 is installed") as info:
        versions.check()
    assert info.value.field == "versions"


def test_the_refusal_can_be_lifted_on_purpose(old_transformers, monkeypatch, caplog):
    monkeypatch.setenv(versions.ALLOW_ENV, "1")
    versions.check()
    assert "untested: transformers 4.56.0" in caplog.text


def test_an_unparsable_version_is_refused(monkeypatch):
    monkeypatch.setattr(versions, "installed", lambda pkg: "not-a-version" if pkg == "trl" else None)
    monkeypatch.delenv(versions.ALLOW_ENV, raising=False)
    assert [line.split(" is ")[0] for line in versions.problems()] == ["trl not-a-version"]


def test_run_refuses_before_anything_is_submitted(old_transformers, tmp_path):
    from spurisweep.cli import app

    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: v\npreset: smoke\ngrid: {model: [tiny], reward: [random]}\n")
    results = tmp_path / "results"
    res = CliRunner().invoke(app, ["run", str(sweep), "--executor", "local", "--results", str(results)])
    assert isinstance(res.exception, ConfigError), res.output  # main() prints it as one line, exit 2
    assert "transformers 4.56.0" in str(res.exception)
    assert not list(results.rglob("*.json")) if results.exists() else True  # nothing planned to disk


def test_generation_refuses_before_a_model_loads(old_transformers):
    from spurisweep.evaluation import generate

    with pytest.raises(ConfigError, match="transformers 4.56.0"):
        generate.choose_backend("transformers")


def test_the_console_script_prints_one_line_and_exits_2(tmp_path):
    """The real console script in a child process, with transformers' metadata faked (a site-customising
    module ahead on the path): one line on stderr, exit 2."""
    import subprocess

    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import importlib.metadata as m\n_real = m.version\n"
        "m.version = lambda d: '4.56.0' if d == 'transformers' else _real(d)\n"
    )
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: v\npreset: smoke\ngrid: {model: [tiny], reward: [random]}\n")
    env = {"PYTHONPATH": f"{shim}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "spurisweep.cli", "run", str(sweep), "--results", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "transformers 4.56.0" in lines[0], proc.stderr
