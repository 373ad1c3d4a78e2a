"""Checkpoint files follow the umask like every other file spurisweep writes (issue 24, item 11).

safetensors writes weights 0600 and tempfile.mkdtemp makes 0700 folders whatever the umask; a checkpoint's
files and folders (TRL's save and the HF export) get the umask's modes before the COMPLETE marker
(artifacts.follow_umask). Checked on a real one-step training run of the tiny model under
umask 022 and 077 (each in its own process: the umask is process-wide), and on the HF export
(sharding.export_hf, the same save calls) under both.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import artifacts
from spurisweep.models import families
from spurisweep.training import sharding

ROOT = Path(__file__).resolve().parents[2]
MASKS = [0o022, 0o077, 0o002]


def modes(folder: Path) -> dict[str, int]:
    """Every file and folder under `folder` (itself included; not symbolic links) -> its permission bits."""
    out = {".": stat.S_IMODE(folder.stat().st_mode)}
    for p in folder.rglob("*"):
        if not p.is_symlink():
            out[str(p.relative_to(folder))] = stat.S_IMODE(p.stat().st_mode)
    return out


def wrong_modes(folder: Path, mask: int) -> dict[str, str]:
    want_file, want_dir = 0o666 & ~mask, 0o777 & ~mask
    return {
        name: oct(mode)
        for name, mode in modes(folder).items()
        if mode != (want_dir if (folder / name).is_dir() else want_file)
    }


@pytest.fixture
def umask():
    """Set this process's umask for the test; restored after."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize("mask", MASKS, ids=oct)
def test_umask_is_read_without_setting_it(mask, umask):
    umask(mask)
    assert artifacts._umask() == mask


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=oct)
def test_follow_umask_gives_files_and_folders_the_umasks_modes(tmp_path, mask, umask):
    umask(mask)
    ck = tmp_path / "checkpoint-4"
    (ck / "sub").mkdir(parents=True)
    for name, mode in (("model.safetensors", 0o600), ("optimizer.pt", 0o644), ("sub/x.bin", 0o666)):
        (ck / name).write_bytes(b"w")
        os.chmod(ck / name, mode)
    os.chmod(ck / "sub", 0o700)
    (ck / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("not ours")
    os.chmod(tmp_path / "outside", 0o600)
    artifacts.follow_umask(ck)
    assert wrong_modes(ck, mask) == {}
    assert stat.S_IMODE((tmp_path / "outside").stat().st_mode) == 0o600  # a link's target is left alone


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=oct)
def test_the_hf_export_follows_the_umask(tmp_path, mask, umask):
    """sharding.export_hf (mkdtemp, save_pretrained with safetensors, swapped in): the umask's modes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tiny = str(families.ensure_built(families.get("tiny")))
    model, tok = AutoModelForCausalLM.from_pretrained(tiny), AutoTokenizer.from_pretrained(tiny)
    umask(mask)
    out = tmp_path / "checkpoint-4" / "hf"
    assert sharding.export_hf(model, tok, out) == out
    assert any(p.suffix == ".safetensors" for p in out.iterdir())
    assert wrong_modes(out, mask) == {}


CHILD = """
import json, sys
from pathlib import Path
from spurisweep import training
from tests.helpers_train import run_cell, make_cell

results = Path(sys.argv[1])
settings = {"train": {"steps": 1, "save_every": 1},
            "eval": {"baseline": False, "checkpoints": False, "benchmarks": []}}
d = make_cell(results, settings)
run_cell(d, results)
print(json.dumps(str(d)))
"""


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=oct)
def test_a_trained_checkpoint_follows_the_umask(tmp_path, mask):
    """A real one-step run of the tiny model (TRL's save: safetensors weights, optimizer, RNG, tokenizer):
    every file and folder of the checkpoint has the umask's modes, the weights included."""
    results = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(results)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        umask=mask,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    cell = Path(proc.stdout.strip().splitlines()[-1].strip('"'))
    (ckpt,) = (cell / "checkpoints").glob("checkpoint-*")
    assert (ckpt / "COMPLETE").exists()
    weights = [p for p in ckpt.rglob("*") if p.suffix in (".safetensors", ".bin", ".pt", ".pth")]
    assert any(p.suffix == ".safetensors" for p in weights), sorted(p.name for p in ckpt.iterdir())
    assert wrong_modes(ckpt, mask) == {}


@pytest.mark.parametrize("mask", [0o022, 0o077], ids=oct)
def test_a_built_model_family_follows_the_umask(tmp_path, mask, umask, monkeypatch):
    """The model cache (families.ensure_built: a temporary folder, then moved into place) is shared by a
    group's jobs as checkpoints are: the same rule."""
    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path / "cache"))
    umask(mask)
    folder = families.ensure_built(families.get("tiny"))
    assert wrong_modes(folder, mask) == {}
