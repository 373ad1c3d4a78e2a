"""The DuckDB store: schema, idempotent ingest of finished cells, and connections under a lock.

Only the CLI process opens the database file (DuckDB allows one process per file, even read-only), and
always through `connect()`, which takes an inter-process file lock first, so concurrent `status`,
`report` and `ingest` calls queue instead of failing. The lock file records its holder (pid, host,
command); a command kept waiting says so on stderr within seconds, naming the holder, and gives up with
one line after SPURISWEEP_LOCK_TIMEOUT seconds (default 120). Ingest is idempotent: a cell is (re)loaded
only when its DONE marker is new or changed, inside one transaction that first deletes the cell's old rows.

Every value read from a cell's files (config, DONE, health, metrics, evaluation metadata; baselines,
probes, sweep manifests) is checked against its column's type and range before it reaches the database
(`schema.check_value`): a bad one is one warning line naming the file and the field, and only that cell
(or baseline, probe, manifest) is skipped. Sample files are typed by DuckDB as they are read; a bad one is
named the same way and its evaluation has no sample rows. Whatever still fails at insert is retried cell by
cell, so one cell never blocks the others. An I/O error of the database itself, at open or in any later
query (a truncated file, a full disk at commit), is one line naming the file and the remedy (exit 1).

A results folder this process cannot write is still read: no ingest, a one-line note that the database
may be stale, a read-only connection (`reading`).

Tables
  cells(cell_id, model, reward, clip, seed, preset, prompt, config, summary, health, done_mtime, ingested_at)
  sweep_cells(sweep, cell_id, axes)             a sweep's current cells (its manifest's, replaced whole at each
                                                ingest), with their axis values; its earlier cells are
                                                read from its folder (`history`, report --history)
  cell_settings(cell_id, key, value)            every resolved setting, flattened (any swept setting pivots)
  evals(eval_id, cell_id, model, step, benchmark, prompt, is_baseline, baseline_eval_id, samples, ...)
  samples(eval_id, problem_id, sample_idx, prompt, answer, response, extracted, correct, reason,
          n_tokens, truncated, has_python, has_code_block)
  metrics(cell_id, update_idx, step, key, value)
  probes(probe_id, model, lineage, model_path, checkpoint, benchmark, fraction, prompt, ...)
  probe_samples(probe_id, problem_id, skipped, prefix, remainder, answer, response, exact_match, rouge_l,
          extracted, correct, reason, n_tokens, truncated)   the memorisation probes of results/_probes
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
import re
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import artifacts, schema
from .errors import EXIT_FAILED, ResourceError, StoreError

log = logging.getLogger(__name__)

DB_NAME = artifacts.DB_NAME
SCHEMA = schema.ddl()
SAMPLE_COLUMNS = schema.SAMPLE_COLUMNS
EVAL_COLUMNS = schema.column_names("evals")
CELL_COLUMNS = schema.column_names("cells")
PROBE_COLUMNS = schema.column_names("probes")
REBUILD_HINT = "it is a cache of the cell folders: rebuild it with `spurisweep ingest --rebuild`"

#: seconds a command waits for the database lock before giving up (env SPURISWEEP_LOCK_TIMEOUT)
LOCK_TIMEOUT_ENV = "SPURISWEEP_LOCK_TIMEOUT"
DEFAULT_LOCK_TIMEOUT = 120.0
#: after this long waiting, a command says who holds the lock
LOCK_NOTICE_S = 2.0


class LockTimeout(StoreError):
    """Another process held the database lock for longer than the command would wait (not the input's
    fault: exit code 1)."""

    exit_code = EXIT_FAILED


def db_path(results: Path) -> Path:
    return artifacts.db_file(results)


def lock_timeout() -> float:
    """Seconds to wait for the database lock: SPURISWEEP_LOCK_TIMEOUT, else DEFAULT_LOCK_TIMEOUT."""
    raw = os.environ.get(LOCK_TIMEOUT_ENV, "").strip()
    if not raw:
        return DEFAULT_LOCK_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not math.isfinite(value) or value < 0:
        raise StoreError(f"{LOCK_TIMEOUT_ENV}={raw!r}: not a number of seconds (e.g. 120)")
    return value


@contextlib.contextmanager
def connect(path: Path, *, timeout: float | None = None, read_only: bool = False) -> Iterator[Any]:
    """A DuckDB connection held under an inter-process lock (one process at a time, as DuckDB needs).

    A missing database is created whole (schema written under a temporary name, then renamed), so a full
    disk can never leave a 0-byte file behind; a damaged or out-of-date one is one StoreError line that
    says how to rebuild it. An I/O error in any query made through the connection (a file truncated past
    its header opens, then fails on the first page it lacks; a full disk at commit) is one ResourceError
    line naming the file and the remedy. A database this process cannot write is opened read-only."""
    import duckdb

    path = Path(path)
    _check_folder(path.parent)
    if not writable(path):
        read_only = True
    with _db_lock(path, lock_timeout() if timeout is None else timeout):
        if not path.exists():
            if read_only:
                raise StoreError(f"{path}: no database yet, and this folder cannot be written to create one")
            _create(path)
        con = _open(path, read_only)
        try:
            _check_version(con, path)
            try:
                yield con
            except duckdb.Error as exc:
                fault = _io_fault(path, exc)
                if fault is None:
                    raise
                raise fault from None
        finally:
            with contextlib.suppress(duckdb.Error):
                con.close()


@contextlib.contextmanager
def reading(results: Path) -> Iterator[Any]:
    """A connection for a reading command (report, diagnose): what is new is ingested first. On a results
    folder this process cannot write, nothing is ingested: one note on stderr says the database may be
    stale, and it is opened read-only (with no database there yet, the files are loaded into a temporary
    one for this command)."""
    results = Path(results)
    _require_results(results)
    db = db_path(results)
    if writable(db):
        ingest(results)
        with connect(db) as con:
            yield con
        return
    note_read_only(results, fresh=not db.exists())
    if db.exists():
        with connect(db, read_only=True) as con:
            yield con
        return
    with tempfile.TemporaryDirectory(prefix="spurisweep-") as tmp:
        temp_db = Path(tmp) / DB_NAME
        ingest(results, db=temp_db)
        with connect(temp_db) as con:
            yield con


def writable(db: Path) -> bool:
    """Can this process write the database `db` (and its folder, where DuckDB writes its WAL)?"""
    folder = Path(db).parent
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if not os.access(probe, os.W_OK | os.X_OK):
        return False
    return all(not p.exists() or os.access(p, os.W_OK) for p in (Path(db), Path(str(db) + ".wal")))


_NOTED: set[str] = set()


def note_read_only(results: Path, *, fresh: bool = False) -> None:
    """Once per process and folder: this command reads the database as last ingested, without ingesting
    (`fresh`: there is none, so the files are loaded into a temporary one)."""
    key = str(Path(results).resolve())
    if key in _NOTED:
        return
    _NOTED.add(key)
    if fresh:
        log.warning(
            "note: %s is not writable by this user and has no database: its files are loaded into a "
            "temporary one for this command",
            results,
        )
        return
    log.warning(
        "note: %s is not writable by this user: nothing is ingested, so the database may be stale "
        "(whoever can write the folder can run `spurisweep ingest`)",
        results,
    )


def _check_folder(folder: Path) -> None:
    if folder.is_dir():
        return
    if folder.exists():
        raise StoreError(f"{folder}: is a file, not a results folder (--results / SPURISWEEP_RESULTS)")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"{folder}: cannot create the results folder ({exc.strerror})") from None


def _create(path: Path) -> None:
    import duckdb

    tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
    tmp.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            init_schema(con)
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, path)
    except (OSError, duckdb.Error) as exc:
        raise StoreError(f"{path}: cannot create the database ({_first_line(exc)})") from None
    finally:
        tmp.unlink(missing_ok=True)
        Path(str(tmp) + ".wal").unlink(missing_ok=True)


def init_schema(con: Any) -> None:
    """Every table, and the schema version, in an empty database."""
    con.execute(SCHEMA)
    con.execute("INSERT INTO schema_info VALUES (?)", [schema.SCHEMA_VERSION])


def _open(path: Path, read_only: bool) -> Any:
    import duckdb

    for attempt in range(50):  # a process outside our lock (e.g. the duckdb CLI) may hold the file
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower() and attempt < 49:
                time.sleep(0.2)
                continue
            raise StoreError(
                f"{path}: cannot open the database ({_first_line(exc)}); {REBUILD_HINT}"
            ) from None
        except duckdb.Error as exc:
            raise StoreError(
                f"{path}: the database is unreadable ({_first_line(exc)}); {REBUILD_HINT}"
            ) from None
    raise AssertionError("unreachable")


def _check_version(con: Any, path: Path) -> None:
    import duckdb

    try:
        row = con.execute("SELECT max(version) FROM schema_info").fetchone()
    except duckdb.Error as exc:
        fault = _io_fault(path, exc)
        if fault is not None:
            raise fault from None
        row = None
    found = row[0] if row else None
    if found != schema.SCHEMA_VERSION:
        was = f"schema {found}" if found is not None else "an older schema"
        raise StoreError(
            f"{path}: the database was written with {was}; this spurisweep reads schema "
            f"{schema.SCHEMA_VERSION}. {REBUILD_HINT[0].upper() + REBUILD_HINT[1:]}"
        )


_FULL = ("no space left", "disk quota exceeded", "disk full", "file too large")


def _io_fault(path: Path, exc: BaseException) -> ResourceError | None:
    """One line for an error of the database file itself (a full disk, a truncated or damaged file), or
    None for any other error (a bug in a query: its traceback is worth seeing)."""
    import duckdb

    text = str(exc).lower()
    if any(s in text for s in _FULL) or (
        isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    ):
        return ResourceError(
            f"{path}: the disk is full ({_first_line(exc)}); the database is unchanged: free space, "
            "then run the command again"
        )
    damaged = ("io error", "fatal", "corrupt database", "checksum", "database has been invalidated")
    if isinstance(exc, (duckdb.IOException, duckdb.FatalException)) or any(s in text for s in damaged):
        return ResourceError(f"{path}: the database file cannot be read ({_first_line(exc)}); {REBUILD_HINT}")
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


# ---------------------------------------------------------------------------------------------- the lock
_HELD: dict[str, list[int]] = {}  # lock file -> [fd, depth]: nested connects in one process share the lock
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def _db_lock(db: Path, timeout: float) -> Iterator[None]:
    """The database's inter-process lock (flock on `<db>.lock`), recording its holder in the file. A
    folder where the lock file cannot be made (read-only, for a reading command) is read without it.

    Why not filelock (used for every other lock here): a waiting command must say who holds the lock
    (pid, host, command, whether that process is stopped), so the holder writes itself into the lock file,
    which filelock neither does nor lets a waiter read; and a reading command on a read-only folder takes
    the lock through a read-only descriptor, which filelock does not open. Same flock, so the two agree."""
    lock_path = str(db) + ".lock"
    with _HELD_GUARD:
        held = _HELD.get(lock_path)
        if held is not None:
            held[1] += 1
    if held is not None:
        try:
            yield
        finally:
            with _HELD_GUARD:
                held[1] -= 1
        return
    fd, can_write = _open_lock(lock_path)
    if fd is None:
        yield
        return
    try:
        if not _acquire(fd, lock_path, db, timeout):
            yield  # the file system has no locks: DuckDB's own file lock still guards the database
            return
        if can_write:
            _record_holder(fd)
        with _HELD_GUARD:
            _HELD[lock_path] = [fd, 1]
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD.pop(lock_path, None)
            if can_write:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, 0)
            import fcntl

            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _open_lock(lock_path: str) -> tuple[int | None, bool]:
    mode = 0o666  # the umask applies: shared results folders stay shared
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode), True
    except OSError:
        pass
    try:  # a lock file this user cannot write: flock works on a read-only descriptor too
        return os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC), False
    except OSError:
        return None, False  # a read-only folder with no lock file: nobody can write there either


def _acquire(fd: int, lock_path: str, db: Path, timeout: float) -> bool:
    """Take the lock, saying within LOCK_NOTICE_S who holds it and giving up after `timeout` seconds.
    False: this file system cannot lock at all."""
    import fcntl

    start = time.monotonic()
    noticed = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                log.warning("%s: cannot lock (%s); going on without the lock", lock_path, exc.strerror)
                return False
        waited = time.monotonic() - start
        if waited >= timeout:
            raise LockTimeout(
                f"{db}: gave up after {timeout:g} s waiting for the database lock, held by "
                f"{describe_holder(lock_path)} (to wait longer: {LOCK_TIMEOUT_ENV}=SECONDS)"
            )
        if not noticed and waited >= min(LOCK_NOTICE_S, timeout / 2):
            noticed = True
            log.warning(
                "%s: waiting for the database lock, held by %s; giving up after %g s (%s)",
                db,
                describe_holder(lock_path),
                timeout,
                LOCK_TIMEOUT_ENV,
            )
        time.sleep(0.1)


def _record_holder(fd: int) -> None:
    argv = [Path(sys.argv[0]).name if sys.argv else "python", *sys.argv[1:]]
    if argv[0] in ("__main__.py", "-m", "-c"):
        argv[0] = "spurisweep"
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(argv)[:160],
        "since": time.time(),
    }
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def describe_holder(lock_path: str) -> str:
    """Who holds the lock, as its lock file records it: pid, host, command, since when, and on this host
    whether that process is stopped (Ctrl-Z) or gone."""
    try:
        with open(lock_path, "rb") as f:
            info = json.loads(f.read(4096).decode("utf-8"))
        pid, host = int(info["pid"]), str(info["host"])
    except (OSError, ValueError, KeyError, TypeError):
        return "another process (it recorded no pid: another tool, or an older spurisweep)"
    since = info.get("since")
    when = time.strftime(" since %H:%M:%S", time.localtime(since)) if isinstance(since, (int, float)) else ""
    what = f"pid {pid} on {host} (`{info.get('command', '?')}`{when})"
    if host != socket.gethostname():
        return what
    state = _process_state(pid)
    if state is None:
        return what + ", which has ended (a process it started may hold the lock still)"
    if state in ("T", "t"):
        return what + f", which is stopped (Ctrl-Z?): resume it with `fg` or `kill -CONT {pid}`, or end it"
    return what


def _process_state(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except OSError:
            pass
        return "?"


# ---------------------------------------------------------------------------------------------- rebuild
def rebuild(results: Path) -> dict[str, int]:
    """Build a new database from the cell folders and swap it in whole: the old file (damaged, out of date or
    fine) is replaced only once the new one is complete."""
    results = Path(results)
    _require_results(results)
    db = db_path(results)
    tmp = db.with_name(f".{db.name}.rebuild-{os.getpid()}")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    try:
        counts = ingest(results, db=tmp)
        with _db_lock(db, lock_timeout()):
            Path(str(db) + ".wal").unlink(missing_ok=True)
            os.replace(tmp, db)
    finally:
        for p in (tmp, Path(str(tmp) + ".wal"), Path(str(tmp) + ".lock")):
            p.unlink(missing_ok=True)
    return counts


def _require_results(results: Path) -> None:
    if not results.exists():
        raise StoreError(f"{results}: no such results folder (nothing has run there yet?)")
    if not results.is_dir():
        raise StoreError(f"{results}: is a file, not a results folder (--results / SPURISWEEP_RESULTS)")


def flatten(d: Any, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = json.dumps(d) if isinstance(d, (list, dict)) else str(d)
    return out


# ---------------------------------------------------------------------------------------------- reading
class _Bad(Exception):
    """A value in a cell's files that the database cannot hold: the file, the field, and why."""

    def __init__(self, file: Path, field: str, reason: str):
        self.file, self.field, self.reason = file, field, reason
        super().__init__(f"{file}: {field}: {reason}" if field else f"{file}: {reason}")


#: per column, the range a value must lie in beyond its SQL type (inclusive; None: open)
_RANGES: dict[str, tuple[float | None, float | None]] = {
    "step": (0, None),
    "update_idx": (0, None),
    "samples": (0, None),
    "max_new_tokens": (0, None),
    "n_problems": (0, None),
    "n_skipped": (0, None),
    "temperature": (0, None),
    "top_p": (0, 1),
    "fraction": (0, 1),
}


def _row(
    table: str,
    values: dict[str, Any],
    file: Path,
    fields: dict[str, str],
    required: tuple[str, ...] = (),
) -> tuple:
    """`values` as a row of `table`, each checked against its column (`schema.check_value`, `_RANGES`);
    a bad one raises _Bad naming `file` and the field it came from (`fields`, else the column)."""
    out = []
    for col, sql in schema.TABLES[table].items():
        value = values.get(col)
        where = fields.get(col, col)
        if value is None and (col in required or "PRIMARY KEY" in sql):
            raise _Bad(file, where, "missing")
        try:
            value = schema.check_value(sql, value)
        except ValueError as exc:
            raise _Bad(file, where, str(exc)) from None
        lo, hi = _RANGES.get(col, (None, None))
        if value is not None and ((lo is not None and value < lo) or (hi is not None and value > hi)):
            span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise _Bad(file, where, f"{value!r} is out of range ({span})")
        out.append(value)
    return tuple(out)


def _obj(value: Any, file: Path, where: str, *, empty: Any = None) -> Any:
    """`value` must be a JSON object (a dict); None gives `empty`."""
    if value is None and empty is not None:
        return empty
    if not isinstance(value, dict):
        raise _Bad(file, where, f"{schema._show(value)} is not an object")
    return value


@dataclass(eq=False)
class _Unit:
    """What one cell (or one shared baseline or probe) adds to the database: written whole or not at all."""

    label: str
    cell_ids: list[str] = field(default_factory=list)
    cells: list[tuple] = field(default_factory=list)
    settings: list[tuple] = field(default_factory=list)
    metrics: list[tuple] = field(default_factory=list)
    evals: dict[str, tuple] = field(default_factory=dict)
    probes: dict[str, tuple] = field(default_factory=dict)
    sample_files: list[Path] = field(default_factory=list)
    probe_files: list[Path] = field(default_factory=list)
    memberships: dict[tuple[str, str], tuple] = field(default_factory=dict)
    #: sweeps whose memberships are replaced whole by `memberships` (their manifests were read)
    sweeps: list[str] = field(default_factory=list)


def lineage(model: str) -> str:
    """A model's pretraining lineage as stored in `cells.lineage` and `probes.lineage`: the registered
    family's (qwen2.5-math, llama3, ...: so Llama-3.1-8B-Instruct and Llama-3.2-3B-Instruct are one family);
    a model the registry does not know falls back to its name without the size and variant
    (foo-7b-sft -> foo). `diagnose` reads the stored value and never derives its own."""
    from .models import families

    fam = families.FAMILIES.get(model)
    if fam is not None and fam.lineage:
        return fam.lineage
    return re.split(r"-\d+(?:\.\d+)?[bm](?:-|$)", model, maxsplit=1)[0] or model


def _read_cell(d: Path, mtime: float) -> _Unit:
    """A finished cell's rows, every value checked (raises _Bad)."""
    cell = artifacts.CellDir(d)
    cid = cell.cell_id
    path = cell.config_path
    raw = _obj(artifacts.read_json(path), path, "")
    cfg = _obj(raw.get("config"), path, "config")
    summary = _obj(artifacts.read_json(cell.done_path, {}), cell.done_path, "")
    health = artifacts.read_json(cell.health_path, [])
    if not isinstance(health, list):
        raise _Bad(cell.health_path, "", f"{schema._show(health)} is not a list")
    model = cfg.get("model")
    values = {
        "cell_id": cid,
        "model": model,
        "lineage": lineage(model) if isinstance(model, str) else None,
        "reward": raw.get("reward_label", cfg.get("reward")),
        "reward_name": cfg.get("reward"),
        "reward_params": _obj(cfg.get("reward_params"), path, "config.reward_params", empty={}),
        "clip": raw.get("clip_label", cfg.get("clip")),
        "seed": cfg.get("seed"),
        "preset": cfg.get("preset"),
        "prompt": cfg.get("prompt"),
        "config": cfg,
        "summary": summary,
        "health": health,
        "done_mtime": mtime,
        "ingested_at": time.time(),
    }
    fields = {c: f"config.{c}" for c in ("model", "clip", "seed", "preset", "prompt", "reward_params")}
    fields |= {"reward": "reward_label", "reward_name": "config.reward", "config": "config"}
    required = ("model", "reward", "reward_name", "clip", "seed", "preset")
    unit = _Unit(label=str(d), cell_ids=[cid])
    try:
        unit.cells.append(_row("cells", values, path, fields, required))
    except _Bad as bad:
        if bad.field in ("summary", "health"):  # the other files' own checks name them
            bad = _Bad(cell.done_path if bad.field == "summary" else cell.health_path, "", bad.reason)
        raise bad from None
    unit.settings = [(cid, k, v) for k, v in flatten(cfg).items()]
    unit.metrics = _read_metrics(cell.metrics_path, cid)
    for meta_path in sorted(cell.evals_dir.glob("*.json")):
        meta = artifacts.read_json(meta_path)
        if meta is None:  # unreadable: warned by read_json; `incomplete` reports it
            continue
        row = _eval_row(meta_path, meta)
        unit.evals[row[0]] = row
        unit.sample_files.append(meta_path.with_suffix(".jsonl"))
    return unit


def _read_metrics(path: Path, cid: str) -> list[tuple]:
    """metrics.jsonl as rows (cell, update, step, key, value): update and step are checked integers, each
    numeric value a number (NaN and infinity are a diverged run's data, kept)."""
    out = []
    keys_ok: set[str] = set()
    line = 0
    for line, r in enumerate(artifacts.read_jsonl(path), 1):
        ids = []
        for name in ("update", "step"):
            value = r.get(name, 0)
            try:
                value = schema.check_value("INTEGER", value)
            except ValueError as exc:
                raise _Bad(path, f"row {line}: {name}", str(exc)) from None
            if value is None or value < 0:
                raise _Bad(path, f"row {line}: {name}", f"{schema._show(value)} is not a count (0 or more)")
            ids.append(value)
        for k, v in r.items():
            if k in ("update", "step", "time") or not isinstance(v, (int, float)):
                continue
            if k not in keys_ok:
                try:
                    schema.check_value("VARCHAR", k)
                except ValueError as exc:
                    raise _Bad(path, f"row {line}: a key", str(exc)) from None
                keys_ok.add(k)
            if isinstance(v, bool):  # a flag logged as a metric: 0 or 1
                v = float(v)
            elif type(v) is not float:
                try:
                    v = schema.check_value("DOUBLE", v, finite=False)
                except ValueError as exc:
                    raise _Bad(path, f"row {line}: {k}", str(exc)) from None
            out.append((cid, ids[0], ids[1], k, v))
    return out


def _eval_row(path: Path, meta: Any) -> tuple:
    """An evaluation's metadata file as an `evals` row (raises _Bad)."""
    meta = _obj(meta, path, "")
    proto = _obj(meta.get("protocol"), path, "protocol", empty={})
    is_baseline = meta.get("is_baseline")
    values = {
        **{c: meta.get(c) for c in EVAL_COLUMNS if c not in ("meta",)},
        "step": meta.get("step", 0),
        "is_baseline": False if is_baseline is None else is_baseline,
        **{c: proto.get(c) for c in ("samples", "temperature", "top_p", "max_new_tokens")},
        "meta": meta,
    }
    fields = {c: f"protocol.{c}" for c in ("samples", "temperature", "top_p", "max_new_tokens")}
    fields["meta"] = ""
    return _row("evals", values, path, fields)


def _probe_row(path: Path, meta: Any) -> tuple:
    """A probe's metadata file as a `probes` row (raises _Bad)."""
    meta = _obj(meta, path, "")
    proto = _obj(meta.get("protocol"), path, "protocol", empty={})
    model = meta.get("model")
    values = {
        **{c: meta.get(c) for c in PROBE_COLUMNS if c not in ("meta", "lineage", "max_new_tokens")},
        "lineage": lineage(model) if isinstance(model, str) else None,
        "max_new_tokens": proto.get("max_new_tokens"),
        "meta": meta,
    }
    return _row("probes", values, path, {"max_new_tokens": "protocol.max_new_tokens", "meta": ""})


def _memberships(results: Path) -> _Unit:
    """Every sweep manifest's (sweep, cell, axes): a sweep's members are the cells its manifest lists now
    (`run` rewrites it from the sweep file), and ingest replaces the sweep's rows whole, so a cell that left
    the sweep (a setting edited since) is no member of it, before a rebuild as after. A manifest that is not
    one is named and left out (its sweep's rows stay as they were); one in a folder of another name (a copy
    of a sweep's folder) is no sweep's."""
    unit = _Unit(label="sweep manifests")
    for m in sorted(results.glob("*/sweep.json")):
        man = artifacts.read_json(m)
        if man is None:
            continue
        try:
            man = _obj(man, m, "")
            cells = _obj(man.get("cells"), m, "cells", empty={})
            sweep = man.get("sweep", m.parent.name)
            rows = {
                (sweep, cid): _row(
                    "sweep_cells",
                    {"sweep": sweep, "cell_id": cid, "axes": axes},
                    m,
                    {"sweep": "sweep", "cell_id": "cells (a key)", "axes": f"cells.{cid}"},
                    ("sweep", "cell_id"),
                )
                for cid, axes in cells.items()
            }
        except (_Bad, RecursionError) as exc:
            _warn_bad(exc, m, "its sweep's memberships are not updated")
            continue
        if sweep != m.parent.name:  # a copy of another sweep's folder (cp -r results/A results/A-old)
            continue
        unit.memberships.update(rows)
        unit.sweeps.append(sweep)
    return unit


def _manifest_cells(results: Path, sweep: str) -> set[str] | None:
    """The cells a sweep's manifest lists (results/<sweep>/sweep.json), None without a readable one."""
    man = artifacts.read_json(Path(results) / sweep / "sweep.json")
    cells = man.get("cells") if isinstance(man, dict) else None
    return set(cells) if isinstance(cells, dict) else None


def history(results: Path, sweep: str, *, axes: bool = True) -> dict[str, dict[str, Any]]:
    """A sweep's earlier cells: finished cells in its folder that its manifest no longer lists (they ran
    with settings its file has since changed), each with its axes (from its config.json; empty without
    `axes`). Kept on disk and in the store; `report --sweep NAME` leaves them out, `--history` shows them."""
    folder = Path(results) / sweep
    current = _manifest_cells(results, sweep)
    if current is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for done in sorted(folder.glob("*/DONE")):
        cid = done.parent.name
        if cid in current or cid.startswith((".", "_")):
            continue
        raw = artifacts.read_json(done.parent / "config.json") if axes else None
        axes = raw.get("axes") if isinstance(raw, dict) else None
        out[cid] = axes if isinstance(axes, dict) else {}
    return out


def _warn_bad(exc: BaseException, file: Path, consequence: str) -> None:
    if isinstance(exc, RecursionError):
        exc = _Bad(file, "", "nested too deeply")
    log.warning("%s; %s", exc, consequence)


# ---------------------------------------------------------------------------------------------- ingest
def ingest(results: Path, *, db: Path | None = None) -> dict[str, int]:
    """Load every finished cell (and shared baseline and probe) not yet in the database. Idempotent. On a
    results folder this process cannot write, nothing: a note says the database may be stale."""
    results = Path(results)
    _require_results(results)
    db = Path(db or db_path(results))
    if not writable(db):
        note_read_only(results)
        return {"cells": 0, "baselines": 0, "probes": 0}
    with connect(db) as con:
        units: list[_Unit] = []
        counted = {"cells": [], "baselines": [], "probes": []}
        members = _memberships(results)
        for d, mtime in _new_cells(con, results, members):
            try:
                unit = _read_cell(d, mtime)
            except (_Bad, RecursionError) as exc:
                _warn_bad(exc, d / "config.json", f"cell {d} is skipped (the others are loaded)")
                continue
            units.append(unit)
            counted["cells"].append(unit)
        for kind, folder, sql, reader in (
            ("baselines", artifacts.baselines_dir(results), "SELECT eval_id FROM evals", _eval_row),
            ("probes", artifacts.probes_dir(results), "SELECT probe_id FROM probes", _probe_row),
        ):
            for p, meta in _new_metas(folder, sql, con):
                try:
                    row = reader(p, meta)
                except (_Bad, RecursionError) as exc:
                    _warn_bad(exc, p, "this evaluation is skipped (the others are loaded)")
                    continue
                unit = _Unit(label=str(p))
                if kind == "probes":
                    unit.probes[row[0]] = row
                    unit.probe_files.append(p.with_suffix(".jsonl"))
                else:
                    unit.evals[row[0]] = row
                    unit.sample_files.append(p.with_suffix(".jsonl"))
                units.append(unit)
                counted[kind].append(unit)
        written = _commit(con, db, [*units, members] if members.sweeps else units)
    done = {id(u) for u in written}
    return {k: sum(id(u) in done for u in us) for k, us in counted.items()}


def _new_cells(con: Any, results: Path, members: _Unit) -> list[tuple[Path, float]]:
    """Finished cell folders whose DONE is new or changed since their last ingest. A cell is read once
    whatever the number of folders it is finished in: a link to a cell's folder (a sweep sharing the cell)
    is that folder; two folders of one cell (a copy of a sweep's folder, or a cell two sweeps trained
    before cells were linked) are read from the one `_choose` picks, and one warning line per set of
    folders names them."""
    known = dict(con.execute("SELECT cell_id, done_mtime FROM cells").fetchall())
    listed = {(sweep, cid) for sweep, cid in members.memberships}
    todo = []
    dups: dict[tuple[tuple[str, ...], str], list[str]] = {}
    for cid, found in _finished_folders(results).items():
        ranked = sorted(found, key=lambda f: _choose(f, cid, listed))
        if len(ranked) > 1:
            folders = tuple(sorted(str(d.parent) for d, _ in ranked))
            dups.setdefault((folders, str(ranked[0][0].parent)), []).append(cid)
        for d, mtime in ranked:
            if known.get(cid) == mtime:
                break
            if artifacts.read_json(d / "config.json") is None:  # a folder someone tampered with
                log.warning("skipping %s: DONE but no readable config.json", d)
                continue
            todo.append((d, mtime))
            break
    for (folders, chosen), ids in sorted(dups.items()):
        _warn_copies(folders, chosen, ids)
    return todo


def _finished_folders(results: Path) -> dict[str, list[tuple[Path, float]]]:
    """cell id -> its finished folders, each with its DONE's mtime; a link to a folder found already (or
    found later) is that folder, named by its real place."""
    by_real: dict[str, tuple[Path, float]] = {}
    sweeps: dict[Path, str] = {}  # each sweep folder's real path, resolved once
    for p in sorted(results.glob("*/*/DONE")):
        d = p.parent
        if d.parent.name.startswith("_"):
            continue
        linked = os.path.islink(d)
        if d.parent not in sweeps:
            sweeps[d.parent] = os.path.realpath(d.parent)
        real = os.path.realpath(d) if linked else os.path.join(sweeps[d.parent], d.name)
        if real in by_real and (linked or not os.path.islink(by_real[real][0])):
            continue
        try:
            mtime = p.stat().st_mtime
        except OSError:  # removed meanwhile
            continue
        by_real[real] = (d, mtime)
    out: dict[str, list[tuple[Path, float]]] = {}
    for d, mtime in by_real.values():
        out.setdefault(d.name, []).append((d, mtime))
    return out


def _choose(found: tuple[Path, float], cid: str, listed: set[tuple[str, str]]) -> tuple[int, float, str]:
    """The rule among a cell's finished folders: one in a folder of a sweep whose manifest lists the cell
    (not a copy), then the first finished (the oldest DONE), then the folder's name."""
    d, mtime = found
    return (0 if (d.parent.name, cid) in listed else 1, mtime, str(d))


def _warn_copies(folders: tuple[str, ...], chosen: str, ids: list[str]) -> None:
    shown = ", ".join(ids[:3]) + (f" and {len(ids) - 3} more" if len(ids) > 3 else "")
    log.warning(
        "%d cell(s) (%s) are finished in several folders: %s; each is read once, from %s (a folder of a "
        "sweep that lists the cell before a copy, then the first finished)",
        len(ids),
        shown,
        ", ".join(folders),
        chosen,
    )


def _new_metas(folder: Path, known_sql: str, con: Any) -> list[tuple[Path, Any]]:
    """Complete shared evaluations (or probes) in `folder` whose id the database does not hold yet."""
    known = {r[0] for r in con.execute(known_sql).fetchall()}
    return [
        (p, m)
        for p in sorted(folder.glob("*.json"))
        if p.stem not in known
        and p.with_suffix(".jsonl").exists()
        and (m := artifacts.read_json(p)) is not None
    ]


def _commit(con: Any, db: Path, units: list[_Unit]) -> list[_Unit]:
    """Everything of one ingest in one transaction: the database is either updated whole or unchanged. If
    the database refuses some row all the same, each unit is written on its own, so the one that fails is
    named and skipped and the others are loaded. Returns the units written."""
    import duckdb

    if not units:
        return []
    staged = _stage_samples(con, [f for u in units for f in u.sample_files])
    probes_staged = _stage_samples(
        con, [f for u in units for f in u.probe_files], schema.PROBE_SAMPLE_COLUMNS, "_pstaged"
    )
    try:
        _write(con, units, staged, probes_staged, every_file=True)
        return units
    except duckdb.Error as exc:
        fault = _io_fault(db, exc)
        if fault is not None:
            raise fault from None
        if len(units) == 1:
            _warn_refused(units[0], exc)
            return []
    written = []
    for u in units:
        try:
            _write(con, [u], staged, probes_staged, every_file=False)
            written.append(u)
        except duckdb.Error as exc:
            fault = _io_fault(db, exc)
            if fault is not None:
                raise fault from None
            _warn_refused(u, exc)
    return written


def _warn_refused(unit: _Unit, exc: BaseException) -> None:
    log.warning(
        "%s: the database refused its rows (%s); skipped (the others are loaded)",
        unit.label,
        _first_line(exc),
    )


def _write(con: Any, units: list[_Unit], staged: bool, probes_staged: bool, *, every_file: bool) -> None:
    """One transaction: the units' rows, and their staged sample rows (all of them, or those of the units'
    own files). A failure rolls back and re-raises the error itself (never the rollback's)."""
    import duckdb

    batch = _Batch(units)
    con.execute("BEGIN TRANSACTION")
    try:
        batch.write(con)
        for table, target, files, ok in (
            ("_staged", "samples", [f for u in units for f in u.sample_files], staged),
            ("_pstaged", "probe_samples", [f for u in units for f in u.probe_files], probes_staged),
        ):
            if not ok or not files:
                continue
            cols = ", ".join(schema.TABLES[target])
            if every_file:
                con.execute(f"INSERT INTO {target} SELECT {cols} FROM {table}")
            else:
                _insert_frame(con, "_files", [(str(f),) for f in files], ["filename"], temp=True)
                con.execute(
                    f"INSERT INTO {target} SELECT {cols} FROM {table} WHERE filename IN (SELECT filename FROM _files)"
                )
                con.execute("DROP TABLE _files")
        con.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(duckdb.Error):  # after a failed COMMIT there is no transaction left
            con.execute("ROLLBACK")
        raise


class _Batch:
    """Rows of many units, written with one statement per table (per-row statements cost ~ms each)."""

    def __init__(self, units: list[_Unit]) -> None:
        self.cell_ids = [c for u in units for c in u.cell_ids]
        self.cells = [r for u in units for r in u.cells]
        self.settings = [r for u in units for r in u.settings]
        self.metrics = [r for u in units for r in u.metrics]
        self.evals = {k: v for u in units for k, v in u.evals.items()}
        self.probes = {k: v for u in units for k, v in u.probes.items()}
        self.memberships = {k: v for u in units for k, v in u.memberships.items()}
        self.sweeps = [w for u in units for w in u.sweeps]

    def write(self, con: Any) -> None:
        if self.sweeps:  # a sweep's members are its manifest's cells now: its rows are replaced whole
            _insert_frame(con, "_sweeps", [(w,) for w in self.sweeps], ["sweep"], temp=True)
            con.execute("DELETE FROM sweep_cells WHERE sweep IN (SELECT sweep FROM _sweeps)")
            con.execute("DROP TABLE _sweeps")
        if self.cell_ids:  # a re-ingested cell replaces all of its rows
            _insert_frame(con, "_ids", [(c,) for c in self.cell_ids], ["cell_id"], temp=True)
            con.execute(
                "DELETE FROM samples WHERE eval_id IN (SELECT eval_id FROM evals WHERE cell_id IN "
                "(SELECT cell_id FROM _ids))"
            )
            for table in ("evals", "metrics", "cell_settings", "cells"):
                con.execute(f"DELETE FROM {table} WHERE cell_id IN (SELECT cell_id FROM _ids)")
            con.execute("DROP TABLE _ids")
        if self.evals:
            ids = list(self.evals)
            _insert_frame(con, "_eids", [(e,) for e in ids], ["eval_id"], temp=True)
            con.execute("DELETE FROM samples WHERE eval_id IN (SELECT eval_id FROM _eids)")
            con.execute("DROP TABLE _eids")
        _insert_frame(con, "cells", self.cells, CELL_COLUMNS)
        _insert_frame(con, "cell_settings", self.settings, ["cell_id", "key", "value"])
        _insert_frame(con, "metrics", self.metrics, ["cell_id", "update_idx", "step", "key", "value"])
        _insert_frame(con, "evals", list(self.evals.values()), EVAL_COLUMNS, replace=True)
        if self.probes:  # a probe's rows are replaced whole (only new probes reach here; this keeps it safe)
            _insert_frame(con, "_pids", [(p,) for p in self.probes], ["probe_id"], temp=True)
            con.execute("DELETE FROM probe_samples WHERE probe_id IN (SELECT probe_id FROM _pids)")
            con.execute("DROP TABLE _pids")
        _insert_frame(con, "probes", list(self.probes.values()), PROBE_COLUMNS, replace=True)
        _insert_frame(
            con, "sweep_cells", list(self.memberships.values()), ["sweep", "cell_id", "axes"], replace=True
        )


def _insert_frame(
    con: Any, table: str, rows: list[tuple], columns: list[str], *, replace: bool = False, temp: bool = False
) -> None:
    import pandas as pd

    if not rows:
        return
    import duckdb

    df = pd.DataFrame(rows, columns=columns)
    con.register("_frame", df)
    try:
        if temp:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _frame")
        else:
            verb = "INSERT OR REPLACE INTO" if replace else "INSERT INTO"
            con.execute(f"{verb} {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM _frame")
    except BaseException:
        # in a failed transaction the cleanup fails too ("Current transaction is aborted"): the error
        # worth reading is the insert's own
        with contextlib.suppress(duckdb.Error):
            con.unregister("_frame")
        raise
    con.unregister("_frame")


def _stage_samples(
    con: Any, files: list[Path], columns: dict[str, str] = SAMPLE_COLUMNS, table: str = "_staged"
) -> bool:
    """Parse the new sample files (evaluation samples, or probe rows with their columns) into a temp table
    (with each row's file name), outside the ingest transaction (a parse error inside it would abort the
    whole ingest). One statement for every file is the fast path; if some file is damaged (stray bytes, a
    cut-off line, a value of the wrong type), the others still load and each bad one is named, with the
    line and field when they can be found."""
    import duckdb

    for f in files:
        if not f.exists():
            log.warning("%s: missing; its evaluation has no sample rows (the cell is incomplete)", f)
    files = [f for f in files if f.exists() and f.stat().st_size > 0]
    if not files:
        return False
    cols = ", ".join(f"'{k}': '{v}'" for k, v in columns.items())
    select = (
        f"SELECT {', '.join(columns)}, filename FROM "
        f"read_json(?, format='newline_delimited', columns={{{cols}}}, filename=true)"
    )
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {select}", [[str(f) for f in files]])
        return True
    except duckdb.Error as exc:
        if any(s in str(exc).lower() for s in _FULL):
            raise
    body = ", ".join(f"{k} {v}" for k, v in columns.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table}({body}, filename VARCHAR)")
    for f in files:
        try:
            con.execute(f"INSERT INTO {table} {select}", [[str(f)]])
        except duckdb.Error as exc:
            if any(s in str(exc).lower() for s in _FULL):
                raise
            log.warning(
                "%s: damaged sample file, its evaluation has no sample rows (%s)",
                f,
                _explain_rows(f, columns) or _first_line(exc),
            )
    return True


def _explain_rows(path: Path, columns: dict[str, str]) -> str | None:
    """The first line and field of a sample file that its column cannot hold, in words (None: not found)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return exc.strerror
    for i, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw.decode("utf-8"))
        except (ValueError, RecursionError):
            return f"line {i} is not JSON"
        if not isinstance(row, dict):
            return f"line {i} is not a JSON object"
        for col, sql in columns.items():
            try:
                schema.check_value(sql, row.get(col), finite=False)
            except (ValueError, RecursionError) as exc:
                return f"line {i}: field {col!r}: {exc}"
    return None
