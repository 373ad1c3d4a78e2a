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
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import artifacts
from .errors import StoreError

log = logging.getLogger(__name__)

DB_NAME = "spurisweep.duckdb"

SCHEMA = """
CREATE TABLE IF NOT EXISTS cells(
  cell_id VARCHAR PRIMARY KEY, model VARCHAR, reward VARCHAR, clip VARCHAR, seed INTEGER, preset VARCHAR,
  prompt VARCHAR, config JSON, summary JSON, health JSON, done_mtime DOUBLE, ingested_at DOUBLE);
CREATE TABLE IF NOT EXISTS sweep_cells(sweep VARCHAR, cell_id VARCHAR, axes JSON, PRIMARY KEY(sweep, cell_id));
CREATE TABLE IF NOT EXISTS cell_settings(cell_id VARCHAR, key VARCHAR, value VARCHAR);
CREATE TABLE IF NOT EXISTS evals(
  eval_id VARCHAR PRIMARY KEY, cell_id VARCHAR, model VARCHAR, model_path VARCHAR, checkpoint VARCHAR,
  step INTEGER, benchmark VARCHAR, prompt VARCHAR, is_baseline BOOLEAN, baseline_eval_id VARCHAR,
  samples INTEGER, temperature DOUBLE, top_p DOUBLE, max_new_tokens INTEGER, backend VARCHAR, seed INTEGER,
  n_problems INTEGER, created DOUBLE, meta JSON);
CREATE TABLE IF NOT EXISTS samples(
  eval_id VARCHAR, problem_id VARCHAR, sample_idx INTEGER, prompt VARCHAR, answer VARCHAR, response VARCHAR,
  extracted VARCHAR, correct BOOLEAN, reason VARCHAR, n_tokens INTEGER, truncated BOOLEAN,
  has_python BOOLEAN, has_code_block BOOLEAN);
CREATE TABLE IF NOT EXISTS metrics(cell_id VARCHAR, update_idx INTEGER, step INTEGER, key VARCHAR, value DOUBLE);
"""

SAMPLE_COLUMNS = {
    "eval_id": "VARCHAR",
    "problem_id": "VARCHAR",
    "sample_idx": "INTEGER",
    "prompt": "VARCHAR",
    "answer": "VARCHAR",
    "response": "VARCHAR",
    "extracted": "VARCHAR",
    "correct": "BOOLEAN",
    "reason": "VARCHAR",
    "n_tokens": "INTEGER",
    "truncated": "BOOLEAN",
    "has_python": "BOOLEAN",
    "has_code_block": "BOOLEAN",
}


def db_path(results: Path) -> Path:
    return Path(results) / DB_NAME


@contextlib.contextmanager
def connect(path: Path, *, timeout: float = 600.0, read_only: bool = False) -> Iterator[Any]:
    """A DuckDB connection held under an inter-process lock (one process at a time, as DuckDB needs)."""
    import duckdb
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path) + ".lock")
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        raise StoreError(
            f"{path}: another spurisweep process holds the database lock for over {timeout:.0f} s"
        ) from None
    try:
        con = None
        for attempt in range(50):  # a process outside our lock (e.g. the duckdb CLI) may hold the file
            try:
                con = duckdb.connect(str(path), read_only=read_only and path.exists())
                break
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or attempt == 49:
                    raise StoreError(
                        f"{path}: cannot open the database ({str(exc).splitlines()[0]})"
                    ) from None
                time.sleep(0.2)
        assert con is not None
        if not read_only:
            con.execute(SCHEMA)
        try:
            yield con
        finally:
            con.close()
    finally:
        lock.release()


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
    """Load every finished cell (and shared baseline) not yet in the database. Idempotent."""
    results = Path(results)
    db = db or db_path(results)
    done_dirs = [p.parent for p in results.glob("*/*/DONE") if not p.parent.parent.name.startswith("_")]
    manifests = [p for p in results.glob("*/sweep.json")]
    with connect(db) as con:
        known = dict(con.execute("SELECT cell_id, done_mtime FROM cells").fetchall())
        known_evals = {r[0] for r in con.execute("SELECT eval_id FROM evals").fetchall()}
        todo = []
        for d in done_dirs:
            mtime = (d / "DONE").stat().st_mtime
            if known.get(d.name) == mtime:
                continue
            if artifacts.read_json(d / "config.json") is None:  # a folder someone tampered with
                log.warning("skipping %s: DONE but no readable config.json", d)
                continue
            todo.append((d, mtime))
        baseline_metas = [
            (p, m)
            for p in sorted((results / artifacts.BASELINES).glob("*.json"))
            if p.stem not in known_evals
            and (m := artifacts.read_json(p)) is not None
            and p.with_suffix(".jsonl").exists()
        ]
        batch = _Batch()
        for d, mtime in todo:
            batch.add_cell(artifacts.CellDir(d), mtime)
        for _, meta in baseline_metas:
            batch.add_eval(meta)
        eval_files = [p.with_suffix(".jsonl") for p, _ in baseline_metas]
        for d, _ in todo:
            eval_files += [p.with_suffix(".jsonl") for p in sorted((d / "evals").glob("*.json"))]
        memberships = []
        for m in manifests:
            man = artifacts.read_json(m) or {}
            memberships += [
                (man.get("sweep", m.parent.name), cid, json.dumps(axes))
                for cid, axes in (man.get("cells") or {}).items()
            ]
        con.execute("BEGIN TRANSACTION")
        try:
            batch.write(con)
            _insert_samples(con, eval_files)
            if memberships:
                _insert_frame(con, "sweep_cells", memberships, ["sweep", "cell_id", "axes"], replace=True)
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return {"cells": len(todo), "baselines": len(baseline_metas)}


EVAL_COLUMNS = [
    "eval_id",
    "cell_id",
    "model",
    "model_path",
    "checkpoint",
    "step",
    "benchmark",
    "prompt",
    "is_baseline",
    "baseline_eval_id",
    "samples",
    "temperature",
    "top_p",
    "max_new_tokens",
    "backend",
    "seed",
    "n_problems",
    "created",
    "meta",
]
CELL_COLUMNS = [
    "cell_id",
    "model",
    "reward",
    "clip",
    "seed",
    "preset",
    "prompt",
    "config",
    "summary",
    "health",
    "done_mtime",
    "ingested_at",
]


class _Batch:
    """Rows of many cells, written with one statement per table (per-row statements cost ~ms each)."""

    def __init__(self) -> None:
        self.cell_ids: list[str] = []
        self.cells: list[tuple] = []
        self.settings: list[tuple] = []
        self.metrics: list[tuple] = []
        self.evals: dict[str, tuple] = {}

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
                raw.get("reward_label", cfg["reward"]),
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


def _insert_samples(con: Any, files: list[Path]) -> None:
    files = [f for f in files if f.exists() and f.stat().st_size > 0]
    if not files:
        return
    cols = ", ".join(f"'{k}': '{v}'" for k, v in SAMPLE_COLUMNS.items())
    names = ", ".join(SAMPLE_COLUMNS)
    con.execute(
        f"INSERT INTO samples SELECT {names} FROM read_json(?, format='newline_delimited', columns={{{cols}}})",
        [[str(f) for f in files]],
    )
