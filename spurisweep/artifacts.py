"""The per-cell folder: atomic writes, done markers, resume points.

    results/<sweep>/<cell_id>/
        config.json        the resolved CellConfig (+ id, sweep, axes), written before submission
        status.json        state, attempts, job id, last error; rewritten by the job as it goes
        metrics.jsonl      one row per logged TRL update (rewritten whole, atomically, at each log)
        health.json        training-health flags
        evals/<eval_id>.jsonl + .json   every generated sample of one evaluation, then its metadata;
                           the .json is written last, so its presence means the evaluation is complete
        checkpoints/       TRL checkpoints; `COMPLETE` inside one marks it as fully written
        DONE               written last: the cell finished
    results/_baselines/<eval_id>.jsonl + .json    untrained-model evaluations shared across cells/sweeps

Jobs never open the DuckDB file: they only write here, and the CLI ingests.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

BASELINES = "_baselines"
LABELS = "_labels"
SUBMITIT = "_submitit"


def atomic_write_text(path: Path, text: str, *, durable: bool = True) -> None:
    """Write to a temporary name, then rename: readers see the old file or the new one, never half.
    `durable` also fsyncs (survives a node crash, not just a killed process); bulk bookkeeping that the
    CLI can rewrite anyway (submission configs and states) skips it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj: Any, *, durable: bool = True) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n", durable=durable)


def atomic_write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return default


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    try:
        text = path.read_text()
    except OSError:
        return rows
    for line in text.splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # never expected (files are written atomically), but a report must not die on it
    return rows


class CellDir:
    def __init__(self, root: Path):
        self.root = Path(root)

    # paths
    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def status_path(self) -> Path:
        return self.root / "status.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def health_path(self) -> Path:
        return self.root / "health.json"

    @property
    def evals_dir(self) -> Path:
        return self.root / "evals"

    @property
    def checkpoints_dir(self) -> Path:
        return self.root / "checkpoints"

    @property
    def done_path(self) -> Path:
        return self.root / "DONE"

    @property
    def cell_id(self) -> str:
        return self.root.name

    # config / status
    def config(self) -> dict[str, Any]:
        cfg = read_json(self.config_path)
        if cfg is None:
            raise FileNotFoundError(f"{self.config_path}: missing or unreadable")
        return cfg

    def status(self) -> dict[str, Any]:
        return read_json(self.status_path, {}) or {}

    def set_status(self, state: str, *, durable: bool = True, **info: Any) -> dict[str, Any]:
        st = self.status()
        st.update(info)
        st["state"] = state
        st["updated"] = time.time()
        atomic_write_json(self.status_path, st, durable=durable)
        return st

    def is_done(self) -> bool:
        return self.done_path.exists()

    def mark_done(self, summary: dict[str, Any]) -> None:
        atomic_write_json(self.done_path, summary)

    # evaluations
    def eval_paths(self, eval_id: str) -> tuple[Path, Path]:
        return self.evals_dir / f"{eval_id}.jsonl", self.evals_dir / f"{eval_id}.json"

    def completed_evals(self) -> list[dict[str, Any]]:
        return [m for p in sorted(self.evals_dir.glob("*.json")) if (m := read_json(p)) is not None]


def eval_files(folder: Path, eval_id: str) -> tuple[Path, Path]:
    return folder / f"{eval_id}.jsonl", folder / f"{eval_id}.json"


def write_eval(folder: Path, eval_id: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Samples first, metadata last: a reader that sees the .json sees a complete evaluation."""
    samples, meta_path = eval_files(folder, eval_id)
    atomic_write_jsonl(samples, rows)
    atomic_write_json(meta_path, meta)


def eval_complete(folder: Path, eval_id: str) -> bool:
    samples, meta = eval_files(folder, eval_id)
    return meta.exists() and samples.exists()


def find_done(results: Path, cell_id: str) -> Path | None:
    """A finished copy of this cell in any sweep's folder (the same cell may belong to several sweeps)."""
    for p in results.glob(f"*/{cell_id}/DONE"):
        return p.parent
    return None
