"""Helpers shared by the tests that train a cell (test_train, test_health, test_clipping): write one
cell's folder the way `spurisweep run` does, and read back what its training logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from spurisweep import artifacts, launch
from spurisweep.plan import grid, grpo, spec


def make_cell(
    results: Path,
    settings: dict[str, Any] | None = None,
    *,
    name: str = "t",
    preset: str = "smoke",
    **axes: Any,
) -> Path:
    """Write one cell's folder the way `spurisweep run` does (sweep file -> grid -> config.json)."""
    grid_axes = {"model": ["tiny"], "reward": ["random"], "clip": ["standard"], "seed": [0]}
    grid_axes.update({k: [v] for k, v in axes.items()})
    path = results.parent / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump({"name": name, "preset": preset, "grid": grid_axes, "settings": settings or {}})
    )
    (cell,) = grid.expand(spec.load_sweep(path))
    grpo.validate(cell.config, str(path))
    return launch.write_cell_config(cell, results)


def metrics(cell_dir: Path) -> list[dict[str, Any]]:
    return artifacts.read_jsonl(cell_dir / "metrics.jsonl")


def run_cell(cell_dir: Path, results: Path) -> dict:
    """training.cell.run_cell, imported when called (it loads torch and TRL)."""
    from spurisweep.training.cell import run_cell as run

    return run(cell_dir, results)
