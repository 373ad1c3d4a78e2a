"""Faults of the store, by class (issue 24, items 6-9), each checked against a real DuckDB file.

6. A value of the wrong type or range in any file ingest reads (cell config, DONE, health, metrics,
   evaluation metadata and samples; baselines; probes and their rows; sweep manifests): the file and field
   are named on one warning line, only that cell (baseline, probe, manifest) is skipped, the rest loads.
   One case per table of schema.TABLES at least (a test keeps that true when a table is added).
7. An I/O error of the database after it opened (a file truncated past its header; a full disk at the
   ingest commit) is one line naming the file and the remedy, exit 1, the database unchanged.
8. A results folder this user cannot write is still read by status, report and diagnose (no ingest, one
   note line); ingest refuses it.
9. A command waiting for the database lock says who holds it within seconds and gives up after
   SPURISWEEP_LOCK_TIMEOUT seconds with one line.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from spurisweep import schema, store
from spurisweep.errors import EXIT_FAILED, ResourceError, StoreError
from tests.storebuilder import ROOT, run_cli

SMOKE = str(ROOT / "sweeps" / "smoke.yaml")
REPORT = ("report", "--sweep", "smoke", "--pivot", "model,reward", "--format", "csv")


# ---------------------------------------------------------------------------------------------- a results folder
def _sample(eval_id: str, i: int) -> dict[str, Any]:
    return {
        "eval_id": eval_id, "problem_id": f"p{i}", "sample_idx": 0, "prompt": "q", "answer": "1",
        "response": "1", "extracted": "1", "correct": True, "reason": "ok", "n_tokens": 3, "truncated": False,
        "has_python": False, "has_code_block": False, "correct_paper": True, "extracted_paper": "1",
    }  # fmt: skip


def _probe_sample(probe_id: str, i: int) -> dict[str, Any]:
    return {
        "probe_id": probe_id, "problem_id": f"p{i}", "skipped": False, "prefix": "a", "remainder": "b",
        "answer": "1", "response": "b", "exact_match": True, "rouge_l": 1.0, "extracted": "1", "correct": True,
        "reason": "ok", "n_tokens": 2, "truncated": False,
    }  # fmt: skip


def _write(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _jsonl(path: Path, rows: list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def make_results(root: Path) -> Path:
    """Two finished cells (`bad` is the one each case damages, `good` must always load), a baseline, two
    probes and a sweep manifest, in the shapes the jobs write."""
    results = root / "results"
    for cid, seed in (("bad000000000", 0), ("good00000000", 1)):
        d = results / "t" / cid
        cfg = {"model": "tiny", "reward": "random", "reward_params": {}, "clip": "standard", "seed": seed,
               "preset": "smoke", "prompt": "chat", "train": {"lr": 1e-6}}  # fmt: skip
        _write(d / "config.json", {"cell_id": cid, "config": cfg, "reward_label": "random"})
        _write(d / "DONE", {"final_step": 2, "health": []})
        _write(d / "health.json", [])
        _jsonl(d / "metrics.jsonl", [{"update": u, "step": u, "time": 1.0, "loss": 0.5} for u in (1, 2)])
        eid = f"{cid}-s2"
        meta = {"eval_id": eid, "cell_id": cid, "model": "tiny", "step": 2, "benchmark": "arith",
                "prompt": "chat", "is_baseline": False, "baseline_eval_id": "base-1",
                "protocol": {"samples": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 8},
                "backend": "transformers", "seed": 0, "n_problems": 2, "created": 1.0}  # fmt: skip
        _jsonl(d / "evals" / f"{eid}.jsonl", [_sample(eid, i) for i in range(2)])
        _write(d / "evals" / f"{eid}.json", meta)
    base = {"eval_id": "base-1", "cell_id": None, "model": "tiny", "step": 0, "benchmark": "arith",
            "is_baseline": True, "protocol": {"samples": 1}, "n_problems": 2, "created": 1.0}  # fmt: skip
    _jsonl(results / "_baselines" / "base-1.jsonl", [_sample("base-1", i) for i in range(2)])
    _write(results / "_baselines" / "base-1.json", base)
    for pid in ("probe-bad", "probe-good"):
        pmeta = {"probe_id": pid, "model": "tiny", "benchmark": "arith", "fraction": 0.4, "prompt": "qa",
                 "protocol": {"max_new_tokens": 8}, "backend": "transformers", "n_problems": 2,
                 "n_skipped": 0, "created": 1.0}  # fmt: skip
        _jsonl(results / "_probes" / f"{pid}.jsonl", [_probe_sample(pid, i) for i in range(2)])
        _write(results / "_probes" / f"{pid}.json", pmeta)
    axes = {"model": "tiny", "seed": 0}
    _write(
        results / "t" / "sweep.json", {"sweep": "t", "cells": {"bad000000000": axes, "good00000000": axes}}
    )
    _write(results / "u" / "sweep.json", {"sweep": "u", "cells": {"good00000000": axes}})
    return results


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


def _edit_line(path: Path, n: int, edit) -> None:
    lines = path.read_text().splitlines()
    row = json.loads(lines[n])
    edit(row)
    lines[n] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


def _set(*keys: str, value: Any):
    def edit(obj: dict) -> None:
        for k in keys[:-1]:
            obj = obj[k]
        obj[keys[-1]] = value

    return edit


CELL = "t/bad000000000"
EVAL = f"{CELL}/evals/bad000000000-s2.json"
# (id, table the value is bound for, file under results/, how it is damaged, the field the warning names,
#  the unit that must be missing afterwards)
CASES = [
    ("config-seed-string", "cells", f"{CELL}/config.json", _set("config", "seed", value="zero"), "config.seed"),
    ("config-seed-1e10", "cells", f"{CELL}/config.json", _set("config", "seed", value=1e10), "config.seed"),
    ("config-seed-bool", "cells", f"{CELL}/config.json", _set("config", "seed", value=True), "config.seed"),
    ("config-model-number", "cells", f"{CELL}/config.json", _set("config", "model", value=5), "config.model"),
    ("config-clip-missing", "cells", f"{CELL}/config.json", lambda o: o["config"].pop("clip"), "config.clip"),
    ("config-params-list", "cells", f"{CELL}/config.json", _set("config", "reward_params", value=[1]),
     "config.reward_params"),
    ("config-not-object", "cells", f"{CELL}/config.json", _set("config", value=[]), "config"),
    ("config-file-list", "cells", f"{CELL}/config.json", ("text", lambda o: "[]"), ""),
    ("config-lone-surrogate",
        "cell_settings",
        f"{CELL}/config.json",
        ("text", lambda o: json.dumps(o).replace('"seed": 0', '"seed": 0, "x": "\\ud800"')),
        "config",
    ),
    ("done-list", "cells", f"{CELL}/DONE", ("text", lambda o: "[]"), ""),
    ("health-object", "cells", f"{CELL}/health.json", ("text", lambda o: "{}"), ""),
    ("metrics-update-1e10", "metrics", f"{CELL}/metrics.jsonl", ("line", 1, _set("update", value=1e10)), "update"),
    ("metrics-step-final", "metrics", f"{CELL}/metrics.jsonl", ("line", 0, _set("step", value="final")), "step"),
    ("metrics-step-1e999", "metrics", f"{CELL}/metrics.jsonl", ("raw", '"step": 1', '"step": 1e999'), "step"),
    ("metrics-value-huge-int", "metrics", f"{CELL}/metrics.jsonl", ("line", 0, _set("loss", value=10**400)),
     "loss"),
    ("eval-step-final", "evals", EVAL, _set("step", value="final"), "step"),
    ("eval-samples-1e999", "evals", EVAL, ("raw", '"samples": 1', '"samples": 1e999'), "protocol.samples"),
    ("eval-baseline-yes", "evals", EVAL, _set("is_baseline", value="yes"), "is_baseline"),
    ("eval-temperature-negative", "evals", EVAL, _set("protocol", "temperature", value=-1), "protocol.temperature"),
    ("eval-protocol-list", "evals", EVAL, _set("protocol", value=[]), "protocol"),
    ("eval-id-missing", "evals", EVAL, lambda o: o.pop("eval_id"), "eval_id"),
    ("baseline-list", "evals", "_baselines/base-1.json", ("text", lambda o: "[]"), ""),
    ("baseline-step-final", "evals", "_baselines/base-1.json", _set("step", value="final"), "step"),
    ("baseline-problems-negative", "evals", "_baselines/base-1.json", _set("n_problems", value=-1), "n_problems"),
    ("probe-fraction-2", "probes", "_probes/probe-bad.json", _set("fraction", value=2.0), "fraction"),
    ("probe-fraction-string", "probes", "_probes/probe-bad.json", _set("fraction", value="half"), "fraction"),
    ("probe-skipped-1e10", "probes", "_probes/probe-bad.json", _set("n_skipped", value=1e10), "n_skipped"),
    ("probe-list", "probes", "_probes/probe-bad.json", ("text", lambda o: "[]"), ""),
    ("manifest-list", "sweep_cells", "t/sweep.json", ("text", lambda o: "[]"), ""),
    ("manifest-cells-list", "sweep_cells", "t/sweep.json", _set("cells", value=[1, 2]), "cells"),
    ("manifest-sweep-number", "sweep_cells", "t/sweep.json", _set("sweep", value=5), "sweep"),
    ("samples-idx-string", "samples", f"{CELL}/evals/bad000000000-s2.jsonl",
     ("line", 0, _set("sample_idx", value="zero")), "sample_idx"),
    ("samples-idx-1e10", "samples", f"{CELL}/evals/bad000000000-s2.jsonl",
     ("line", 1, _set("sample_idx", value=1e10)), "sample_idx"),
    ("probe-samples-tokens-string", "probe_samples", "_probes/probe-bad.jsonl",
     ("line", 0, _set("n_tokens", value="many")), "n_tokens"),
]  # fmt: skip


def _damage(results: Path, file: str, how) -> Path:
    path = results / file
    if isinstance(how, tuple) and how[0] == "line":
        _edit_line(path, how[1], how[2])
    elif isinstance(how, tuple) and how[0] == "text":  # the file's new text, from its parsed content
        path.write_text(how[1](json.loads(path.read_text())))
    elif isinstance(how, tuple) and how[0] == "raw":
        path.write_text(path.read_text().replace(how[1], how[2], 1))
    else:
        _edit_json(path, how)
    return path


def _db_state(db: Path) -> dict[str, Any]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        q = {
            "cells": "SELECT cell_id FROM cells",
            "evals": "SELECT eval_id FROM evals",
            "probes": "SELECT probe_id FROM probes",
            "samples": "SELECT DISTINCT eval_id FROM samples",
            "probe_samples": "SELECT DISTINCT probe_id FROM probe_samples",
            "sweep_cells": "SELECT sweep || '/' || cell_id FROM sweep_cells",
            "metrics": "SELECT DISTINCT cell_id FROM metrics",
            "cell_settings": "SELECT DISTINCT cell_id FROM cell_settings",
            "mtimes": "SELECT cell_id || ' ' || done_mtime FROM cells",
        }
        return {k: {r[0] for r in con.execute(sql).fetchall()} for k, sql in q.items()}
    finally:
        con.close()


def test_every_table_has_a_bad_value_case():
    """The cases below reach every table ingest writes: a new table needs a new case."""
    assert {c[1] for c in CASES} == set(schema.TABLES)


@pytest.mark.parametrize(("table", "file", "how", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_value_skips_only_its_unit_naming_file_and_field(tmp_path, caplog, table, file, how, field):
    results = make_results(tmp_path)
    original = (results / file).read_bytes()
    path = _damage(results, file, how)
    caplog.set_level(logging.WARNING)
    counts = store.ingest(results)  # never raises
    state = _db_state(store.db_path(results))
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    named = [w for w in warnings if str(path) in w]
    assert len(named) == 1, warnings
    assert field in named[0], named[0]
    assert not any("rollback" in w or "aborted" in w for w in warnings), warnings
    # everything else is there
    assert "good00000000" in state["cells"] and "good00000000-s2" in state["samples"]
    assert "probe-good" in state["probe_samples"] and "u/good00000000" in state["sweep_cells"]
    if file.startswith(CELL) and table not in ("samples",):  # the whole cell is left out
        assert "bad000000000" not in state["cells"] | state["metrics"] | state["cell_settings"]
        assert "bad000000000-s2" not in state["evals"] and counts["cells"] == 1
    elif table == "samples":  # the cell loads; that evaluation has no sample rows
        assert "bad000000000" in state["cells"] and "bad000000000-s2" not in state["samples"]
    elif file.startswith("_baselines"):
        assert "base-1" not in state["evals"] and counts == {"cells": 2, "baselines": 0, "probes": 2}
    elif file == "_probes/probe-bad.json":
        assert "probe-bad" not in state["probes"] and counts["probes"] == 1
    elif table == "probe_samples":
        assert "probe-bad" in state["probes"] and "probe-bad" not in state["probe_samples"]
    elif table == "sweep_cells":
        assert not any(m.startswith("t/") for m in state["sweep_cells"]) and counts["cells"] == 2
    # fixed, it loads (a probe or an evaluation already loaded is read again by a rebuild)
    path.write_bytes(original)
    store.rebuild(results)
    after = _db_state(store.db_path(results))
    assert {"bad000000000", "good00000000"} <= after["cells"] and "base-1" in after["evals"]
    assert {"probe-bad", "probe-good"} <= after["probe_samples"]


def test_a_row_the_database_refuses_anyway_skips_that_cell_only(tmp_path, caplog, monkeypatch):
    """Beyond the checks: whatever the database still refuses is retried cell by cell, the cell named, and
    the error is the database's own (never 'cannot rollback' / 'transaction is aborted')."""
    results = make_results(tmp_path)
    real = store._read_cell

    def sneak(d: Path, mtime: float):
        unit = real(d, mtime)
        if d.name == "bad000000000":
            row = list(unit.cells[0])
            row[schema.column_names("cells").index("seed")] = "zero"  # past the checks
            unit.cells[0] = tuple(row)
        return unit

    monkeypatch.setattr(store, "_read_cell", sneak)
    caplog.set_level(logging.WARNING)
    counts = store.ingest(results)
    warnings = [r.getMessage() for r in caplog.records]
    state = _db_state(store.db_path(results))
    assert counts == {"cells": 1, "baselines": 1, "probes": 2}
    assert state["cells"] == {"good00000000"} and "base-1" in state["evals"]
    refused = [w for w in warnings if "refused" in w]
    assert len(refused) == 1 and "bad000000000" in refused[0] and "zero" in refused[0], warnings
    assert not any("rollback" in w or "aborted" in w for w in warnings), warnings


def test_bad_cells_never_block_status_or_report(smoke_results, tmp_path):
    """The issue's own examples through the real CLI: every bad file named once, exit 0, the good cells'
    rows reported."""
    res = tmp_path / "results"
    shutil.copytree(smoke_results, res, ignore=shutil.ignore_patterns("checkpoints", "spurisweep.duckdb*"))
    cells = sorted(p for p in (res / "smoke").iterdir() if (p / "DONE").exists())
    _edit_json(cells[0] / "config.json", _set("config", "seed", value="zero"))
    _edit_line(cells[1] / "metrics.jsonl", 0, _set("update", value=1e10))
    meta = sorted((cells[2] / "evals").glob("*.json"))[0]
    _edit_json(meta, _set("step", value="final"))
    base = next((res / "_baselines").glob("*.json"))
    base.write_text("[]")
    for cmd in (("status", SMOKE), REPORT):
        proc = run_cli(*cmd, "--results", str(res))
        assert "Traceback" not in proc.stderr
        for f in (cells[0] / "config.json", cells[1] / "metrics.jsonl", meta, base):
            assert str(f) in proc.stderr, (f, proc.stderr)
    assert "random" in proc.stdout or "ground_truth" in proc.stdout


# ---------------------------------------------------------------------------------------------- 7: I/O errors
def _copy(smoke_results: Path, tmp_path: Path) -> Path:
    res = tmp_path / "results"
    shutil.copytree(smoke_results, res, ignore=shutil.ignore_patterns("checkpoints", "spurisweep.duckdb*"))
    run_cli("ingest", "--results", str(res))
    return res


def _one_line(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> str:
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def _damage_that_opens(db: Path, scratch: Path, how: str) -> int:
    """An offset at which to cut the database (`truncated`) or overwrite 64 KiB of it (`corrupted`) so that
    DuckDB still opens it and reads its schema version, and then fails on the first query of every
    command (ingest's)."""
    size = db.stat().st_size
    for at in range(64 * 1024, size, 32 * 1024):
        shutil.copy(db, scratch)
        _spoil(scratch, at, how)
        try:
            con = duckdb.connect(str(scratch))
        except duckdb.Error:
            continue
        try:
            con.execute("SELECT max(version) FROM schema_info").fetchall()
            con.execute("SELECT cell_id, done_mtime FROM cells").fetchall()
        except duckdb.Error as exc:
            if "schema_info" not in str(exc) and store._io_fault(db, exc) is not None:
                return at
        finally:
            con.close()
    pytest.fail(f"no {how} database opens and then fails")


def _spoil(db: Path, at: int, how: str) -> None:
    with open(db, "r+b") as f:
        if how == "truncated":
            f.truncate(at)
        else:
            f.seek(at)
            f.write(b"\xab" * 64 * 1024)


@pytest.mark.parametrize("how", ["truncated", "corrupted"])
def test_a_damaged_database_that_opens_is_one_line_for_every_command(smoke_results, tmp_path, how):
    """DuckDB opens a file truncated past its header (or with garbage in its blocks) and fails at the first
    query that needs a missing (or bad) page: status, report, diagnose and ingest say so in one line
    (exit 1) with the remedy; the cell folders are untouched, and `ingest --rebuild` brings back the same
    report."""
    res = _copy(smoke_results, tmp_path)
    db = res / "spurisweep.duckdb"
    before = run_cli(*REPORT, "--results", str(res)).stdout
    _spoil(db, _damage_that_opens(db, tmp_path / "probe.duckdb", how), how)
    files = sorted(str(p) for p in (res / "smoke").rglob("*") if p.is_file())
    for cmd in (("status", SMOKE), REPORT, ("diagnose", "smoke"), ("ingest",)):
        proc = run_cli(*cmd, "--results", str(res), check=False)
        _one_line(proc, EXIT_FAILED, str(db), "spurisweep ingest --rebuild")
    assert sorted(str(p) for p in (res / "smoke").rglob("*") if p.is_file()) == files
    assert "ingested 4 cell(s)" in run_cli("ingest", "--rebuild", "--results", str(res)).stdout
    assert run_cli(*REPORT, "--results", str(res)).stdout == before


class _FullDiskAtCommit:
    """A DuckDB connection whose COMMIT fails as DuckDB's does on a full disk: the transaction is gone
    (rolled back) and the error names the WAL and ENOSPC."""

    def __init__(self, con: Any, wal: str):
        self._con, self._wal = con, wal

    def execute(self, sql: str, *args: Any):
        if sql.strip().upper() == "COMMIT":
            self._con.execute("ROLLBACK")
            raise duckdb.TransactionException(
                f'TransactionContext Error: Failed to commit: Could not write file "{self._wal}": '
                "No space left on device"
            )
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """The console script in this process (main(): errors become one line and an exit code)."""
    from spurisweep.cli import main

    monkeypatch.setattr(sys, "argv", ["spurisweep", *args])
    with pytest.raises(SystemExit) as exit_:
        main()
    out = capsys.readouterr()
    return int(exit_.value.code or 0), out.out, out.err


def test_a_full_disk_at_the_ingest_commit_is_one_line_and_the_database_unchanged(
    smoke_results, tmp_path, monkeypatch, capsys
):
    res = _copy(smoke_results, tmp_path)
    db = res / "spurisweep.duckdb"
    before = _db_state(db)
    for done in res.glob("smoke/*/DONE"):
        done.touch()  # every cell is re-ingested
    real_open = store._open
    monkeypatch.setattr(store, "_open", lambda p, ro: _FullDiskAtCommit(real_open(p, ro), f"{p}.wal"))
    code, _, err = _main(monkeypatch, capsys, "ingest", "--results", str(res))
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == EXIT_FAILED and len(lines) == 1, err
    assert str(db) in lines[0] and "No space left on device" in lines[0] and "free space" in lines[0]
    assert "rollback" not in err and "Traceback" not in err
    monkeypatch.setattr(store, "_open", real_open)
    assert _db_state(db) == before


def _tmpfs(path: Path, options: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()}")


@pytest.fixture
def mounts():
    made: list[Path] = []
    yield made
    for m in reversed(made):
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


def test_a_real_full_disk_during_ingest_is_one_line(smoke_results, tmp_path, mounts):
    """The same on a real full disk (a tmpfs filled to its last block; root only)."""
    disk = tmp_path / "disk"
    _tmpfs(disk, "size=32m")
    mounts.append(disk)
    res = disk / "results"
    shutil.copytree(smoke_results, res, ignore=shutil.ignore_patterns("checkpoints", "spurisweep.duckdb*"))
    run_cli("ingest", "--results", str(res))
    db = res / "spurisweep.duckdb"
    before = _db_state(db)
    for done in res.glob("smoke/*/DONE"):
        done.touch()
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    proc = run_cli("ingest", "--results", str(res), check=False)
    _one_line(proc, EXIT_FAILED, str(db), "free space")
    assert "rollback" not in proc.stderr
    (disk / "filler").unlink()
    assert _db_state(db) == before
    assert "ingested 4 cell(s)" in run_cli("ingest", "--results", str(res)).stdout


# ---------------------------------------------------------------------------------------------- 8: read-only
def test_reading_commands_read_a_read_only_results_folder(smoke_results, tmp_path, mounts):
    """A real read-only file system (a tmpfs remounted ro; root only): root ignores permission bits, so a
    chmod would not stop it writing, but EROFS does. status, report and diagnose read it as it stands
    with one note line; ingest refuses it; with no database there, report loads the files into a temporary
    one."""
    ro = tmp_path / "ro"
    _tmpfs(ro, "size=32m")
    mounts.append(ro)
    res = ro / "results"
    shutil.copytree(smoke_results, res, ignore=shutil.ignore_patterns("checkpoints", "spurisweep.duckdb*"))
    bare = ro / "bare"
    shutil.copytree(res, bare)
    run_cli("ingest", "--results", str(res))
    expected = run_cli(*REPORT, "--results", str(res)).stdout
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    for cmd in (("status", SMOKE), REPORT, ("diagnose", "smoke", "--format", "json")):
        proc = run_cli(*cmd, "--results", str(res))
        line = _one_line(proc, 0, str(res), "not writable", "stale")
        assert line.startswith("note:")
        if cmd == REPORT:
            assert proc.stdout == expected
    _one_line(run_cli("ingest", "--results", str(res), check=False), 2, "not writable")
    proc = run_cli(*REPORT, "--results", str(bare))
    _one_line(proc, 0, str(bare), "temporary")
    assert proc.stdout == expected


def test_read_only_is_decided_by_os_access(smoke_results, tmp_path, monkeypatch, capsys, caplog):
    """The same decision without a mount: the tests run as root, which writes through any chmod, so what
    a command asks (os.access) is patched to say what a user without write permission hears. Nothing is
    ingested (a changed cell stays as it was in the database, whose file is not touched), one note."""
    res = _copy(smoke_results, tmp_path)
    db = res / "spurisweep.duckdb"
    stamp = db.stat().st_mtime_ns, db.read_bytes()
    done = next(res.glob("smoke/*/DONE"))
    os.utime(done, (1.0, 1.0))  # would be re-ingested by a writer
    real = os.access

    def access(path, mode, *a, **kw):
        if mode & os.W_OK and str(path).startswith(str(res)):
            return False
        return real(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)
    caplog.set_level(logging.WARNING)
    for cmd in (("status", SMOKE), REPORT, ("diagnose", "smoke")):
        store._NOTED.clear()
        caplog.clear()
        code, out, err = _main(monkeypatch, capsys, *cmd, "--results", str(res))
        notes = [r.getMessage() for r in caplog.records]
        assert code == 0 and out and not err.strip(), err
        assert len(notes) == 1 and str(res) in notes[0] and "stale" in notes[0], notes
    code, _, err = _main(monkeypatch, capsys, "ingest", "--results", str(res))
    assert code == 2 and "not writable" in err
    assert (db.stat().st_mtime_ns, db.read_bytes()) == stamp


# ---------------------------------------------------------------------------------------------- 9: the lock
HOLD = """
import os, signal, sys
from pathlib import Path
from spurisweep import store
with store._db_lock(Path(sys.argv[1]), 5):
    print("held", flush=True)
    os.kill(os.getpid(), signal.SIGSTOP)  # Ctrl-Z while holding the lock
"""


def test_a_stopped_lock_holder_is_named_and_the_command_gives_up(smoke_results, tmp_path):
    res = _copy(smoke_results, tmp_path)
    db = res / "spurisweep.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        timeout = 8
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-m", "spurisweep.cli", *REPORT, "--results", str(res)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, store.LOCK_TIMEOUT_ENV: str(timeout), "COLUMNS": "400"},
        )
        seen: list[tuple[float, str]] = []
        reader = threading.Thread(
            target=lambda: [seen.append((time.monotonic() - start, ln)) for ln in proc.stderr], daemon=True
        )
        reader.start()
        proc.wait(timeout=120)
        reader.join(10)
        total = time.monotonic() - start
        lines = [(t, ln.strip()) for t, ln in seen if ln.strip()]
        assert proc.returncode == EXIT_FAILED and len(lines) == 2, lines
        (t_wait, waiting), (_, gave_up) = lines
        for line in lines:
            assert (
                f"pid {holder.pid}" in line[1]
                and "stopped" in line[1]
                and f"kill -CONT {holder.pid}" in line[1]
            )
        assert "waiting for the database lock" in waiting and f"giving up after {timeout} s" in waiting
        assert t_wait <= total - timeout + store.LOCK_NOTICE_S + 1.5  # said early, well before giving up
        assert gave_up.startswith("error:") and f"gave up after {timeout} s" in gave_up
        assert store.LOCK_TIMEOUT_ENV in gave_up and total < timeout + 60
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert run_cli(*REPORT, "--results", str(res)).returncode == 0  # the lock is free again


def test_a_holder_that_records_nothing_and_a_bad_timeout(tmp_path, monkeypatch):
    db = tmp_path / "x.duckdb"
    with store.connect(db):
        pass
    fd = os.open(str(db) + ".lock", os.O_RDWR)
    os.ftruncate(fd, 0)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another tool: holds the lock, says nothing
        with pytest.raises(store.LockTimeout, match="another process") as exc, store.connect(db, timeout=0.3):
            pass
        assert exc.value.exit_code == EXIT_FAILED
    finally:
        os.close(fd)
    monkeypatch.setenv(store.LOCK_TIMEOUT_ENV, "soon")
    with pytest.raises(StoreError, match=store.LOCK_TIMEOUT_ENV), store.connect(db):
        pass
    monkeypatch.setenv(store.LOCK_TIMEOUT_ENV, "5")
    with store.connect(db) as con:  # nested in one process: the same lock, no wait
        with store.connect(db) as again:
            assert again.execute("SELECT 1").fetchone() == (1,)
        assert json.loads(Path(str(db) + ".lock").read_text())["pid"] == os.getpid()
        con.execute("SELECT 1")
    assert Path(str(db) + ".lock").read_text() == ""  # released: no holder recorded


def test_io_faults_are_recognised():
    db = Path("/r/spurisweep.duckdb")
    full = store._io_fault(db, duckdb.TransactionException("Failed to commit: No space left on device"))
    assert isinstance(full, ResourceError) and "free space" in str(full)
    damaged = store._io_fault(db, duckdb.IOException("IO Error: Could not read enough bytes"))
    assert isinstance(damaged, ResourceError) and "ingest --rebuild" in str(damaged)
    corrupt = store._io_fault(db, duckdb.Error("Corrupt database file: computed checksum 1 does not match"))
    assert isinstance(corrupt, ResourceError) and "ingest --rebuild" in str(corrupt)
    assert store._io_fault(db, duckdb.BinderException("Binder Error: no column x")) is None
