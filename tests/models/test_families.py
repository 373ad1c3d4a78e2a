"""spurisweep/models/families.py: resolving what a family loads."""

from __future__ import annotations

from pathlib import Path

from spurisweep.models import families


def test_model_source_without_building_says_what_would_be_loaded(tmp_path, monkeypatch):
    """build=False: a family built here needs nothing from outside (None) and nothing is built; a hub family
    is its hub id; an explicit model path wins. With build=True the local family is built into the cache."""
    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path / "cache"))
    assert families.model_source("tiny", build=False) is None
    assert not (tmp_path / "cache").exists()
    assert families.model_source("qwen2.5-math-1.5b", build=False) == "Qwen/Qwen2.5-Math-1.5B"
    assert families.model_source("tiny", "some/folder", build=False) == "some/folder"
    built = families.model_source("tiny")
    assert Path(built).is_relative_to(tmp_path / "cache") and (Path(built) / "config.json").exists()
