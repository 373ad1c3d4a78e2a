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
        attempts.jsonl     one line per start of training (job id, pid, host, time), by the job holding
        .running.lock      the cell's running lock, held by the job that trains it (launch/claim.py)
    results/_baselines/<eval_id>.jsonl + .json    untrained-model evaluations shared across cells/sweeps
    results/_probes/<probe_id>.jsonl + .json      memorisation probes (per problem), shared the same way

Jobs never open the DuckDB file: they only write here, and the CLI ingests.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import DataError, SpurisweepError

log = logging.getLogger(__name__)

BASELINES = "_baselines"
PROBES = "_probes"
LABELS = "_labels"
SUBMITIT = "_submitit"
DB_NAME = "spurisweep.duckdb"
#: names inside a results folder that are not sweeps: a sweep may not be called any of these
RESERVED_NAMES = frozenset(
    {BASELINES, PROBES, LABELS, SUBMITIT, DB_NAME, DB_NAME + ".lock", DB_NAME + ".wal", "README.md"}
)


# ---------------------------------------------------------------------------------------------- the layout
# The one owner of where things live under a results folder; every other module asks here.
def cell_path(results: Path, sweep: str, cell_id: str) -> Path:
    return Path(results) / sweep / cell_id


def baselines_dir(results: Path) -> Path:
    return Path(results) / BASELINES


def probes_dir(results: Path) -> Path:
    return Path(results) / PROBES


def labels_dir(results: Path) -> Path:
    return Path(results) / LABELS


def submitit_dir(results: Path, sweep: str) -> Path:
    """submitit's job folders of one sweep (its logs and pickles)."""
    return Path(results) / sweep / SUBMITIT


def db_file(results: Path) -> Path:
    return Path(results) / DB_NAME


def check_results(results: Path, *, write: bool = True) -> None:
    """The results folder is usable before a command starts: not a file, not under a file, and (`write`)
    writable where it is or will be created. PathError names it and the option it came from."""
    check_folder(results, write=write, option="--results / SPURISWEEP_RESULTS", what="results folder")


def check_folder(folder: Path, *, write: bool = True, option: str = "", what: str = "folder") -> None:
    """`folder` is a folder or can be made one, and (`write`) can be written; else one PathError line."""
    from .errors import PathError

    folder = Path(folder)
    where = f"{folder} ({option})" if option else str(folder)
    probe = folder
    while not probe.exists() and probe.parent != probe:  # mkdir would create it under the nearest folder
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        if probe == folder:
            raise PathError(f"{where}: is a file, not a {what}")
        raise PathError(f"{where}: {probe} is a file, so no {what} can be made under it")
    if write and not os.access(probe, os.W_OK | os.X_OK):
        raise PathError(f"{where}: {probe} is not writable")


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files 0600 whatever the umask; results are shared with teammates (and _baselines/ across
# sweeps), so an atomically written file gets the mode a plain open() would have given it. Read once: the
# umask is process-wide and reading it means setting it.
_FILE_MODE = 0o666 & ~_read_umask()


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
            os.fchmod(f.fileno(), _FILE_MODE)
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
    """The parsed file, or `default` when it is missing; a damaged file (not UTF-8, not JSON) also gives
    `default`, with a warning naming it, so one bad file never stops a command over many cells."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError: ValueErrors
        log.warning("%s: unreadable, skipped (%s)", path, (str(exc).splitlines() or [""])[0][:120])
        return default


def read_input_text(
    path: Path, *, what: str = "file", error: type[SpurisweepError] = DataError, max_bytes: int | None = None
) -> str:
    """A file the user names (a sweep, a file to grade), as text; anything else is one `error` line naming
    it: missing, a folder, unreadable, larger than `max_bytes`, or not UTF-8 text (a binary file)."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: file not found (expected a {what})")
    if not path.is_file():
        raise error(f"{path}: is a folder, not a {what}" if path.is_dir() else f"{path}: not a regular file")
    try:
        size = path.stat().st_size
        if max_bytes is not None and size > max_bytes:
            raise error(f"{path}: {size:,} bytes is too large for a {what} (limit {max_bytes:,})")
        raw = path.read_bytes()
    except OSError as exc:
        raise error(f"{path}: cannot read the {what} ({exc.strerror})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{path}: not a text file (byte {raw[exc.start]:#04x} at offset {exc.start} is not UTF-8); "
            f"expected a {what}"
        ) from None


def read_jsonl(path: Path, *, damaged: list[str] | None = None) -> list[dict[str, Any]]:
    """The rows of a JSONL file. Lines that are not JSON objects (a cut-off line, stray bytes) are skipped
    with a warning naming the file and line, and counted into `damaged` when given."""
    rows = []
    try:
        data = path.read_bytes()
    except OSError:
        return rows
    for i, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):  # not UTF-8, not JSON, nested past the parser's depth
            row = None
        if isinstance(row, dict):
            rows.append(row)
            continue
        log.warning("%s: line %d is damaged and was skipped", path, i)
        if damaged is not None:
            damaged.append(f"{path}:{i}")
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
    def attempts_path(self) -> Path:
        return self.root / "attempts.jsonl"

    @property
    def running_lock_path(self) -> Path:
        return self.root / ".running.lock"

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
        st = read_json(self.status_path, {})
        if not isinstance(st, dict):  # valid JSON but not a status (hand-edited, overwritten)
            log.warning("%s: not a status object, ignored", self.status_path)
            return {}
        return st

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


def incomplete(cell_dir: Path) -> list[str]:
    """What is missing or damaged in a finished cell's files, one short phrase each (empty: complete).
    Each damaged file is also warned about by the reader, naming it. The store loads such a cell partly
    or not at all, so `status` and `report` show it as incomplete."""
    cell = CellDir(cell_dir)
    out = []
    for path in (cell.done_path, cell.config_path):
        if path.exists() and not isinstance(read_json(path), dict):
            out.append(f"{path.name} damaged")
    damaged: list[str] = []
    read_jsonl(cell.metrics_path, damaged=damaged)
    if damaged:
        out.append(f"{cell.metrics_path.name}: {len(damaged)} damaged line(s)")
    for meta in sorted(cell.evals_dir.glob("*.json")):
        samples = meta.with_suffix(".jsonl")
        if not samples.exists():
            log.warning("%s: missing; its evaluation has no sample rows (the cell is incomplete)", samples)
            out.append(f"evals/{samples.name} missing")
        elif not isinstance(read_json(meta), dict):
            out.append(f"evals/{meta.name} damaged")
    return out


def incomplete_cells(results: Path, *, sweep: str | None = None) -> dict[Path, list[str]]:
    """Finished cells (of one sweep, or all) whose files are incomplete: cell folder -> what (see
    `incomplete`)."""
    pattern = f"{sweep}/*/DONE" if sweep else "*/*/DONE"
    out = {}
    for done in sorted(Path(results).glob(pattern)):
        if done.parent.parent.name.startswith("_"):
            continue
        if what := incomplete(done.parent):
            out[done.parent] = what
    return out


def find_done(results: Path, cell_id: str) -> Path | None:
    """A finished copy of this cell in any sweep's folder (the same cell may belong to several sweeps)."""
    for p in results.glob(f"*/{cell_id}/DONE"):
        return p.parent
    return None


# ---------------------------------------------------------------------------------------------- modes
def _umask() -> int:
    """This process's umask, read from /proc where it can be: os.umask reads it only by setting it, for a
    moment, for every thread of the process (a file another thread creates then would get mode 0666)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def follow_umask(folder: Path) -> None:
    """Give `folder` and everything under it the modes open() and mkdir() give under this process's umask
    (files 0666, folders 0777, less the umask): safetensors writes weights 0600 and tempfile.mkdtemp makes
    folders 0700, whatever the umask. Symbolic links are left alone; a mode that cannot be set is logged,
    not raised (a checkpoint is worth more than its modes)."""
    mask = _umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    failed: list[str] = []

    def chmod(path: str, mode: int) -> None:
        try:
            if not os.path.islink(path):
                os.chmod(path, mode)
        except OSError as exc:
            failed.append(f"{path}: {exc.strerror or exc}")

    for root, dirs, files in os.walk(folder):
        chmod(root, dir_mode)
        for name in files:
            chmod(os.path.join(root, name), file_mode)
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
    if failed:
        log.warning("could not set the modes of %d file(s), e.g. %s", len(failed), failed[0])
