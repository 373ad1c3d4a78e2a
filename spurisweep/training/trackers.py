"""Experiment trackers (wandb, tensorboard, ...) for one training run: their environment and their install.

TRL/transformers own the tracker callbacks (GRPOConfig.report_to); this module only sets what they read
and checks, before training starts, that the chosen ones can be imported.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError
from ..plan.spec import CellConfig


@contextlib.contextmanager
def tracker_env(cfg: CellConfig, cell_dir: Path, cell_id: str, sweep: str) -> Iterator[None]:
    """Environment the tracker callbacks read, set only while this cell trains (the debug executor runs
    several cells in one process). wandb: the sweep is the group and the cell id the run id, so a resumed
    cell continues its run; tensorboard: events go to <cell>/tensorboard, so `tensorboard --logdir
    results/<sweep>` shows one run per cell."""
    env: dict[str, str] = {}
    if "wandb" in cfg.tracking.report_to:
        env.update(WANDB_RUN_GROUP=sweep or "spurisweep", WANDB_RUN_ID=cell_id, WANDB_RESUME="allow")
        if cfg.tracking.project:
            env["WANDB_PROJECT"] = cfg.tracking.project
    if "tensorboard" in cfg.tracking.report_to:
        env["TENSORBOARD_LOGGING_DIR"] = str(cell_dir / "tensorboard")
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_trackers_installed(cfg: CellConfig) -> None:
    import importlib.util

    need = {
        "wandb": "wandb",
        "tensorboard": "tensorboard or tensorboardX",
        "trackio": "trackio",
        "mlflow": "mlflow",
        "comet_ml": "comet_ml",
        "neptune": "neptune",
        "clearml": "clearml",
    }
    for i, name in enumerate(cfg.tracking.report_to):
        mods = {"tensorboard": ("tensorboard", "tensorboardX")}.get(name, (name,))
        if name in need and not any(importlib.util.find_spec(m) for m in mods):
            raise ConfigError(
                f"{name} is not installed here (pip install {need[name].split(' or ')[-1]})",
                field=f"tracking.report_to[{i}]",
            )
