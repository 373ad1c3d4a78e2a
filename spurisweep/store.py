"""The DuckDB store: schema, idempotent ingest of finished cells, and connections under a lock.

Only the CLI process opens the database file (DuckDB allows one process per file, even read-only), and
always through `connect()`, which takes an inter-process file lock first, so concurrent `status`,
`report` and `ingest` calls queue instead of failing. Ingest is idempotent: a cell is (re)loaded only
when its DONE marker is new or changed, inside one transaction that first deletes the cell's old rows.

Tables
  cells(cell_id, model, reward, clip, seed, preset, prompt, config, summary, health, done_mtime, ingested_at)
  sweep_cells(sweep, cell_id, axes)             which sweeps a cell belongs to, with its axis values
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
import json
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import artifacts, schema
from .errors import StoreError

log = logging.getLogger(__name__)

DB_NAME = artifacts.DB_NAME
SCHEMA = schema.ddl()
SAMPLE_COLUMNS = schema.SAMPLE_COLUMNS
EVAL_COLUMNS = schema.column_names("evals")
CELL_COLUMNS = schema.column_names("cells")
PROBE_COLUMNS = schema.column_names("probes")
REBUILD_HINT = "it is a cache of the cell folders: rebuild it with `spurisweep ingest --rebuild`"


def db_path(results: Path) -> Path:
    return artifacts.db_file(results)


@contextlib.contextmanager
def connect(path: Path, *, timeout: float = 600.0, read_only: bool = False) -> Iterator[Any]:
    """A DuckDB connection held under an inter-process lock (one process at a time, as DuckDB needs).

    A missing database is created whole (schema written under a temporary name, then renamed), so a full
    disk can never leave a 0-byte file behind; a damaged or out-of-date one is one StoreError line that
    says how to rebuild it."""
    from filelock import FileLock, Timeout

    path = Path(path)
    _check_folder(path.parent)
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise StoreError(
            f"{path}: another spurisweep process holds the database lock for over {timeout:.0f} s"
        ) from None
    try:
        if not path.exists():
            _create(path)
        con = _open(path, read_only)
        try:
            _check_version(con, path)
            yield con
        finally:
            con.close()
    finally:
        lock.release()


def _check_folder(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
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
    except duckdb.Error:
        row = None
    found = row[0] if row else None
    if found != schema.SCHEMA_VERSION:
        was = f"schema {found}" if found is not None else "an older schema"
        raise StoreError(
            f"{path}: the database was written with {was}; this spurisweep reads schema "
            f"{schema.SCHEMA_VERSION}. {REBUILD_HINT[0].upper() + REBUILD_HINT[1:]}"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def rebuild(results: Path) -> dict[str, int]:
    """Build a new database from the cell folders and swap it in whole: the old file (damaged, out of date or
    fine) is replaced only once the new one is complete."""
    from filelock import FileLock

    results = Path(results)
    _require_results(results)
    db = db_path(results)
    tmp = db.with_name(f".{db.name}.rebuild-{os.getpid()}")
    for p in (tmp, Path(str(tmp) + ".wal")):
        p.unlink(missing_ok=True)
    try:
        counts = ingest(results, db=tmp)
        with FileLock(str(db) + ".lock"):
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


# ---------------------------------------------------------------------------------------------- ingest
def ingest(results: Path, *, db: Path | None = None) -> dict[str, int]:
    """Load every finished cell (and shared baseline and probe) not yet in the database. Idempotent."""
    results = Path(results)
    _require_results(results)
    db = db or db_path(results)
    with connect(db) as con:
        todo = _new_cells(con, results)
        baseline_metas = _new_metas(artifacts.baselines_dir(results), "SELECT eval_id FROM evals", con)
        probe_metas = _new_metas(artifacts.probes_dir(results), "SELECT probe_id FROM probes", con)
        batch = _Batch()
        for _, meta in probe_metas:
            batch.add_probe(meta)
        for d, mtime in list(todo):
            try:
                batch.add_cell(artifacts.CellDir(d), mtime)
            except (
                KeyError,
                TypeError,
                ValueError,
                AttributeError,
            ) as exc:  # a hand-edited or damaged config
                log.warning("skipping %s: its config.json is not a cell config (%s)", d, exc)
                todo.remove((d, mtime))
        for _, meta in baseline_metas:
            batch.add_eval(meta)
        eval_files = [p.with_suffix(".jsonl") for p, _ in baseline_metas]
        for d, _ in todo:
            eval_files += [p.with_suffix(".jsonl") for p in sorted((d / "evals").glob("*.json"))]
        staged = _stage_samples(con, eval_files)
        probes_staged = _stage_samples(
            con, [p.with_suffix(".jsonl") for p, _ in probe_metas], schema.PROBE_SAMPLE_COLUMNS, "_pstaged"
        )
        _commit(con, db, batch, staged, probes_staged, _memberships(results))
    return {"cells": len(todo), "baselines": len(baseline_metas), "probes": len(probe_metas)}


def _new_cells(con: Any, results: Path) -> list[tuple[Path, float]]:
    """Finished cell folders whose DONE is new or changed since their last ingest."""
    known = dict(con.execute("SELECT cell_id, done_mtime FROM cells").fetchall())
    todo = []
    for p in results.glob("*/*/DONE"):
        d = p.parent
        if d.parent.name.startswith("_"):
            continue
        mtime = p.stat().st_mtime
        if known.get(d.name) == mtime:
            continue
        if artifacts.read_json(d / "config.json") is None:  # a folder someone tampered with
            log.warning("skipping %s: DONE but no readable config.json", d)
            continue
        todo.append((d, mtime))
    return todo


def _new_metas(folder: Path, known_sql: str, con: Any) -> list[tuple[Path, dict[str, Any]]]:
    """Complete shared evaluations (or probes) in `folder` whose id the database does not hold yet."""
    known = {r[0] for r in con.execute(known_sql).fetchall()}
    return [
        (p, m)
        for p in sorted(folder.glob("*.json"))
        if p.stem not in known
        and (m := artifacts.read_json(p)) is not None
        and p.with_suffix(".jsonl").exists()
    ]


def _memberships(results: Path) -> list[tuple[str, str, str]]:
    out = []
    for m in results.glob("*/sweep.json"):
        man = artifacts.read_json(m) or {}
        out += [
            (man.get("sweep", m.parent.name), cid, json.dumps(axes))
            for cid, axes in (man.get("cells") or {}).items()
        ]
    return out


def _commit(con: Any, db: Path, batch: _Batch, staged: bool, probes_staged: bool, memberships: list) -> None:
    """Everything of one ingest in one transaction: the database is either updated whole or unchanged."""
    import duckdb

    con.execute("BEGIN TRANSACTION")
    try:
        batch.write(con)
        if staged:
            con.execute("INSERT INTO samples SELECT * FROM _staged")
        if probes_staged:
            con.execute("INSERT INTO probe_samples SELECT * FROM _pstaged")
        if memberships:
            _insert_frame(con, "sweep_cells", memberships, ["sweep", "cell_id", "axes"], replace=True)
        con.execute("COMMIT")
    except Exception as exc:
        con.execute("ROLLBACK")
        if isinstance(exc, (duckdb.Error, OSError)):
            raise StoreError(f"{db}: ingest failed ({_first_line(exc)}); the database is unchanged") from None
        raise


def _lineage(model: str) -> str:
    from . import families

    fam = families.FAMILIES.get(model)
    return (fam.lineage if fam else "") or model


class _Batch:
    """Rows of many cells, written with one statement per table (per-row statements cost ~ms each)."""

    def __init__(self) -> None:
        self.cell_ids: list[str] = []
        self.cells: list[tuple] = []
        self.settings: list[tuple] = []
        self.metrics: list[tuple] = []
        self.evals: dict[str, tuple] = {}
        self.probes: dict[str, tuple] = {}

    def add_cell(self, cell: artifacts.CellDir, mtime: float) -> None:
        raw = cell.config()
        cfg = raw["config"]
        cid = cell.cell_id
        self.cell_ids.append(cid)
        summary = artifacts.read_json(cell.done_path, {})
        health = artifacts.read_json(cell.health_path, [])
        self.cells.append(
            (
                cid,
                cfg["model"],
                _lineage(cfg["model"]),
                raw.get("reward_label", cfg["reward"]),
                cfg["reward"],
                json.dumps(cfg.get("reward_params") or {}),
                cfg["clip"],
                cfg["seed"],
                cfg["preset"],
                cfg.get("prompt"),
                json.dumps(cfg),
                json.dumps(summary),
                json.dumps(health),
                mtime,
                time.time(),
            )
        )
        self.settings += [(cid, k, v) for k, v in flatten(cfg).items()]
        for r in artifacts.read_jsonl(cell.metrics_path):
            for k, v in r.items():
                if k not in ("update", "step", "time") and isinstance(v, (int, float)):
                    self.metrics.append((cid, int(r.get("update", 0)), int(r.get("step", 0)), k, float(v)))
        for meta in cell.completed_evals():
            self.add_eval(meta)

    def add_eval(self, meta: dict[str, Any]) -> None:
        proto = meta.get("protocol", {})
        self.evals[meta["eval_id"]] = (
            meta["eval_id"],
            meta.get("cell_id"),
            meta.get("model"),
            meta.get("model_path"),
            meta.get("checkpoint"),
            meta.get("step", 0),
            meta.get("benchmark"),
            meta.get("prompt"),
            bool(meta.get("is_baseline")),
            meta.get("baseline_eval_id"),
            proto.get("samples"),
            proto.get("temperature"),
            proto.get("top_p"),
            proto.get("max_new_tokens"),
            meta.get("backend"),
            meta.get("seed"),
            meta.get("n_problems"),
            meta.get("created"),
            json.dumps(meta),
        )

    def add_probe(self, meta: dict[str, Any]) -> None:
        proto = meta.get("protocol", {})
        self.probes[meta["probe_id"]] = (
            meta["probe_id"],
            meta.get("model"),
            _lineage(str(meta.get("model"))),
            meta.get("model_path"),
            meta.get("checkpoint"),
            meta.get("benchmark"),
            meta.get("fraction"),
            meta.get("prompt"),
            proto.get("max_new_tokens"),
            meta.get("backend"),
            meta.get("n_problems"),
            meta.get("n_skipped"),
            meta.get("created"),
            json.dumps(meta),
        )

    def write(self, con: Any) -> None:
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


def _insert_frame(
    con: Any, table: str, rows: list[tuple], columns: list[str], *, replace: bool = False, temp: bool = False
) -> None:
    import pandas as pd

    if not rows:
        return
    df = pd.DataFrame(rows, columns=columns)
    con.register("_frame", df)
    try:
        if temp:
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _frame")
        else:
            verb = "INSERT OR REPLACE INTO" if replace else "INSERT INTO"
            con.execute(f"{verb} {table} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM _frame")
    finally:
        con.unregister("_frame")


def _stage_samples(
    con: Any, files: list[Path], columns: dict[str, str] = SAMPLE_COLUMNS, table: str = "_staged"
) -> bool:
    """Parse the new sample files (evaluation samples, or probe rows with their columns) into a temp table,
    outside the ingest transaction (a parse error inside it would abort the whole ingest). One statement
    for every file is the fast path; if some file is damaged (stray bytes, a cut-off line), the others
    still load and each bad one is named."""
    import duckdb

    for f in files:
        if not f.exists():
            log.warning("%s: missing; its evaluation has no sample rows (the cell is incomplete)", f)
    files = [f for f in files if f.exists() and f.stat().st_size > 0]
    if not files:
        return False
    cols = ", ".join(f"'{k}': '{v}'" for k, v in columns.items())
    select = f"SELECT {', '.join(columns)} FROM read_json(?, format='newline_delimited', columns={{{cols}}})"
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {select}", [[str(f) for f in files]])
        return True
    except duckdb.InvalidInputException:
        pass
    body = ", ".join(f"{k} {v}" for k, v in columns.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table}({body})")
    for f in files:
        try:
            con.execute(f"INSERT INTO {table} {select}", [[str(f)]])
        except duckdb.InvalidInputException as exc:
            log.warning(
                "%s: damaged sample file, its evaluation has no sample rows (%s)", f, _first_line(exc)
            )
    return True
