"""A cell's checkpoint folders: which one is complete, which to prune, and RNG state kept across evaluation.

Checkpoints are saved on rollout boundaries (and, by transformers, at the last update); a `COMPLETE`
marker is written once TRL has finished writing one, and older checkpoints are pruned only after it (never
by TRL, whose rotation runs before our marker exists). A killed run restarts from its newest complete
checkpoint.

Every file and folder of a checkpoint follows the umask, like every other file spurisweep writes
(artifacts.follow_umask, before the COMPLETE marker): safetensors writes weights 0600 and tempfile.mkdtemp makes
0700 folders whatever the umask, while a results folder is shared with teammates.
"""

from __future__ import annotations

import contextlib
import logging
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def checkpoint_number(p: Path) -> int | None:
    try:
        return int(p.name.split("-")[1])
    except (IndexError, ValueError):
        return None


def latest_complete_checkpoint(ckpt_dir: Path, clean: bool = True) -> Path | None:
    """The newest checkpoint with our COMPLETE marker; half-written ones (killed mid-save) are removed
    (when `clean`: by one process only)."""
    best: tuple[int, Path] | None = None
    if not ckpt_dir.exists():
        return None
    for p in ckpt_dir.glob("checkpoint-*"):
        n = checkpoint_number(p)
        if n is None:
            continue
        if not (p / "COMPLETE").exists():
            if clean:
                log.info("removing incomplete checkpoint %s", p)
                shutil.rmtree(p, ignore_errors=True)
            continue
        if best is None or n > best[0]:
            best = (n, p)
    return best[1] if best else None


def prune_checkpoints(ckpt_dir: Path, keep: int | None) -> list[Path]:
    """Delete all but the `keep` newest complete checkpoints (None keeps all). Returns what was deleted."""
    if keep is None:
        return []
    done = sorted(
        (
            p
            for p in ckpt_dir.glob("checkpoint-*")
            if (p / "COMPLETE").exists() and checkpoint_number(p) is not None
        ),
        key=lambda p: checkpoint_number(p) or 0,
    )
    gone = done[:-keep] if keep > 0 else done
    for p in gone:
        (p / "COMPLETE").unlink(missing_ok=True)  # first, so a kill mid-delete leaves it "incomplete"
        shutil.rmtree(p, ignore_errors=True)
    return gone


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Evaluation seeds the global RNGs; training must continue as if it had not run (resume equivalence)."""
    import numpy as np
    import torch

    state = (
        random.getstate(),
        np.random.get_state(),
        torch.get_rng_state(),
        torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    )
    try:
        yield
    finally:
        random.setstate(state[0])
        np.random.set_state(state[1])
        torch.set_rng_state(state[2])
        if state[3] is not None:
            torch.cuda.set_rng_state_all(state[3])
