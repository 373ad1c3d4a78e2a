"""The one definition of what a stored row holds: per-sample rows, and every table of the DuckDB store.

Evaluation writes per-sample rows with exactly `SAMPLE_COLUMNS`; the store creates its tables from
`TABLES` and ingests those rows by the same list, so a new per-sample field is one entry here (and a
`SCHEMA_VERSION` bump). A leaf module: it imports nothing from spurisweep.

`SCHEMA_VERSION` is stored in the database. The database is a cache of the cell folders under
results/, so an out-of-date one is never migrated in place: `spurisweep ingest --rebuild` rebuilds it.
"""

from __future__ import annotations

#: bump whenever a table or column below changes
SCHEMA_VERSION = 4

#: per-sample rows (evaluation writes them as JSONL; the store's `samples` table reads exactly these)
SAMPLE_COLUMNS: dict[str, str] = {
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
    "correct_paper": "BOOLEAN",  # the verdict of the paper's official grader (grading/paper.py) ...
    "extracted_paper": "VARCHAR",  # ... and what its extraction read; `correct` is math-verify's
}

CELL_COLUMNS: dict[str, str] = {
    "cell_id": "VARCHAR PRIMARY KEY",
    "model": "VARCHAR",
    "lineage": "VARCHAR",  # the family's pretraining lineage (families.Family.lineage)
    "reward": "VARCHAR",  # the display label, e.g. random(gamma=0.3): for tables only
    "reward_name": "VARCHAR",  # structured: the reward (or composition) name ...
    "reward_params": "JSON",  # ... and its resolved parameters; never parsed back from the label
    "clip": "VARCHAR",
    "seed": "INTEGER",
    "preset": "VARCHAR",
    "prompt": "VARCHAR",
    "config": "JSON",
    "summary": "JSON",
    "health": "JSON",
    "done_mtime": "DOUBLE",
    "ingested_at": "DOUBLE",
}

EVAL_COLUMNS: dict[str, str] = {
    "eval_id": "VARCHAR PRIMARY KEY",
    "cell_id": "VARCHAR",
    "model": "VARCHAR",
    "model_path": "VARCHAR",
    "checkpoint": "VARCHAR",
    "step": "INTEGER",
    "benchmark": "VARCHAR",
    "prompt": "VARCHAR",
    "is_baseline": "BOOLEAN",
    "baseline_eval_id": "VARCHAR",
    "samples": "INTEGER",
    "temperature": "DOUBLE",
    "top_p": "DOUBLE",
    "max_new_tokens": "INTEGER",
    "backend": "VARCHAR",
    "seed": "INTEGER",
    "n_problems": "INTEGER",
    "created": "DOUBLE",
    "meta": "JSON",
}

#: one memorisation probe (spurisweep.evaluation.probe_run): a model (or checkpoint) on one benchmark at one fraction
PROBE_COLUMNS: dict[str, str] = {
    "probe_id": "VARCHAR PRIMARY KEY",
    "model": "VARCHAR",
    "lineage": "VARCHAR",
    "model_path": "VARCHAR",
    "checkpoint": "VARCHAR",
    "benchmark": "VARCHAR",
    "fraction": "DOUBLE",
    "prompt": "VARCHAR",  # the template whose head precedes the cut problem
    "max_new_tokens": "INTEGER",
    "backend": "VARCHAR",
    "n_problems": "INTEGER",  # problems read, the skipped ones included
    "n_skipped": "INTEGER",  # too short to cut at this fraction
    "created": "DOUBLE",
    "meta": "JSON",
}

#: per-problem probe rows (the probe writes them as JSONL; `probe_samples` reads exactly these). A problem
#: too short to cut is a row with skipped true and no generation (its metric fields are null).
PROBE_SAMPLE_COLUMNS: dict[str, str] = {
    "probe_id": "VARCHAR",
    "problem_id": "VARCHAR",
    "skipped": "BOOLEAN",
    "prefix": "VARCHAR",
    "remainder": "VARCHAR",
    "answer": "VARCHAR",
    "response": "VARCHAR",  # the greedy continuation of the prefix
    "exact_match": "BOOLEAN",
    "rouge_l": "DOUBLE",
    "extracted": "VARCHAR",
    "correct": "BOOLEAN",  # the answer reached from the cut problem (None: ungradable)
    "reason": "VARCHAR",
    "n_tokens": "INTEGER",
    "truncated": "BOOLEAN",
}

TABLES: dict[str, dict[str, str]] = {
    "cells": CELL_COLUMNS,
    "sweep_cells": {"sweep": "VARCHAR", "cell_id": "VARCHAR", "axes": "JSON"},
    "cell_settings": {"cell_id": "VARCHAR", "key": "VARCHAR", "value": "VARCHAR"},
    "evals": EVAL_COLUMNS,
    "samples": SAMPLE_COLUMNS,
    "metrics": {
        "cell_id": "VARCHAR",
        "update_idx": "INTEGER",
        "step": "INTEGER",
        "key": "VARCHAR",
        "value": "DOUBLE",
    },
    "probes": PROBE_COLUMNS,
    "probe_samples": PROBE_SAMPLE_COLUMNS,
}
_EXTRA = {"sweep_cells": ", PRIMARY KEY(sweep, cell_id)"}


def ddl() -> str:
    """CREATE TABLE statements for every table, plus the version table."""
    out = ["CREATE TABLE IF NOT EXISTS schema_info(version INTEGER);"]
    for name, cols in TABLES.items():
        body = ", ".join(f"{c} {t}" for c, t in cols.items()) + _EXTRA.get(name, "")
        out.append(f"CREATE TABLE IF NOT EXISTS {name}({body});")
    return "\n".join(out)


def column_names(table: str) -> list[str]:
    return list(TABLES[table])


# ---------------------------------------------------------------------------------------------- checking
#: the range of an INTEGER column (DuckDB's INT32)
INTEGER_RANGE = (-(2**31), 2**31 - 1)


def check_value(sql_type: str, value: object, *, finite: bool = True) -> object:
    """`value` (read from a JSON file) as a column of `sql_type` stores it, or ValueError saying why it
    cannot be (a wrong type, out of range, a string that is not text). None is NULL. An integral float
    (5.0, 1e3) is an integer; `finite` refuses NaN and infinity in a DOUBLE. A JSON column gets the value's
    JSON text. Every value read from a cell's files passes here before it reaches the database, so a bad
    one is named with its file and field instead of failing the insert of every cell."""
    import json
    import math

    kind = sql_type.split()[0]
    if value is None:
        return None
    if kind == "VARCHAR":
        if not isinstance(value, str):
            raise ValueError(f"{_show(value)} is not a string")
        _check_text(value, "")
        return value
    if kind == "BOOLEAN":
        if not isinstance(value, bool):
            raise ValueError(f"{_show(value)} is not true or false")
        return value
    if kind == "INTEGER":
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{_show(value)} is not an integer")
        lo, hi = INTEGER_RANGE
        if not lo <= value <= hi:
            raise ValueError(f"{_show(value)} is out of range (an integer from {lo} to {hi})")
        return value
    if kind == "DOUBLE":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{_show(value)} is not a number")
        try:
            value = float(value)
        except OverflowError:
            raise ValueError(f"{_show(value)} is out of range for a number") from None
        if finite and not math.isfinite(value):
            raise ValueError(f"{_show(value)} is not a finite number")
        return value
    if kind == "JSON":
        _check_text(value, "")
        return json.dumps(value)
    raise AssertionError(f"no check for SQL type {sql_type}")


def _check_text(value: object, where: str) -> None:
    """Every string in `value` (keys too) can be stored: UTF-8 text (JSON's \\ud800 escapes are not)."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(
                f"{where + ': ' if where else ''}{_show(value)} is not text (a lone surrogate)"
            ) from None
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_text(k, where)
            _check_text(v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_text(v, f"{where}[{i}]")


def _show(value: object) -> str:
    if isinstance(value, float) and value != value:
        return "NaN"
    if isinstance(value, float) and value in (float("inf"), float("-inf")):
        return f"{'-' if value < 0 else ''}infinity (a number past a double's range, e.g. 1e999)"
    text = ascii(value) if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
