"""Every numeric option of every command has a range, and a value outside it is a usage error.

Issue 24: `run --max-parallel -1` hung, `eval --limit -1/0` and `status --watch --interval -1` ended in
tracebacks. Each numeric option now declares its range (cli/common.py: `number`, `count`); here:

- the app's own click commands are walked, and every int/float option must have a range and a row in RANGES
  (a numeric option added without one fails here);
- each row's bad values go through the console entry (main()): exit 2, the option named, one error line, no
  traceback; the issue's three examples also through `python -m spurisweep.cli`, under a timeout (a hang);
- each row's boundary values parse (click's own parsing, nothing runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import get_args, get_origin

import pytest
import typer.main

from spurisweep.cli import app, main

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Range:
    """One numeric option: the arguments its command needs besides it, values refused, values accepted."""

    command: str
    option: str
    needs: tuple[str, ...]
    bad: tuple[str, ...]
    good: tuple[str, ...]


NAN_INF = ("nan", "inf", "-inf", "1e999")
HUGE = "99999999999999999999999"
EVAL = ("--model", "tiny")
LABEL = ("--model", "tiny", "--dataset", "builtin:arith")
COUNT_BAD = ("0", "-1", HUGE, "1.5", "many")

RANGES = [
    Range("run", "--max-parallel", ("s.yaml",), COUNT_BAD, ("1", "64")),
    Range(
        "status",
        "--interval",
        ("s.yaml", "--watch"),
        ("-1", "0", "-0.0", "3601", *NAN_INF, "x"),
        ("0.01", "3600"),
    ),
    Range("diagnose", "--k", ("sweep",), COUNT_BAD, ("1", "64")),
    Range("report", "--smooth", ("--step", "5"), COUNT_BAD, ("1", "10")),
    Range("noise-floor", "--limit", ("--model", "tiny"), COUNT_BAD, ("1",)),
    Range("eval", "--limit", EVAL, COUNT_BAD, ("1",)),
    Range("eval", "--batch-size", EVAL, COUNT_BAD, ("1",)),
    Range("eval", "--engines", EVAL, COUNT_BAD, ("1", "8")),
    Range("eval", "--seed", EVAL, ("-1", "4294967296", "1.5", "x"), ("0", "4294967295")),
    Range("label", "--n", LABEL, COUNT_BAD, ("1", "64")),
    Range("label", "--engines", LABEL, COUNT_BAD, ("1", "8")),
    Range("label", "--temperature", LABEL, ("-0.1", "-1", *NAN_INF, "x"), ("0", "1.0", "2.5")),
    Range("label", "--top-p", LABEL, ("0", "-0.5", "1.01", *NAN_INF, "x"), ("0.001", "1")),
    Range("label", "--max-new-tokens", LABEL, COUNT_BAD, ("1", "3072")),
    Range("label", "--limit", LABEL, COUNT_BAD, ("1",)),
    Range("label", "--seed", LABEL, ("-1", "4294967296", "x"), ("0", "4294967295")),
    Range("label", "--holdout", LABEL, ("-1", HUGE, "0.5", "x"), ("0", "10")),
    Range("probe", "--limit", EVAL, COUNT_BAD, ("1",)),
    Range("probe", "--max-new-tokens", EVAL, COUNT_BAD, ("1",)),
    Range("probe", "--engines", EVAL, COUNT_BAD, ("1", "8")),
    Range("verify-rewards", "--floor", (), ("-0.1", *NAN_INF, "x"), ("0", "0.9", "1", "1.01")),
    Range("grade", "--timeout", ("f.jsonl",), ("0", "-1", "3601", *NAN_INF, "x"), ("0.05", "3600")),
    Range("grade", "--workers", ("f.jsonl",), ("-1", "1025", HUGE, "1.5", "x"), ("0", "1", "1024")),
]


def _commands(cmd, path=()):
    subs = getattr(cmd, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path), cmd


def _numeric(param) -> bool:
    desc = getattr(param, "type_descriptor", None)  # typer >= 0.22 (its own click)
    if desc is not None:
        ann = desc.annotation
        if get_origin(ann) in (list, tuple):
            return any(a in (int, float) for a in get_args(ann))
        return ann in (int, float)
    name = getattr(getattr(param, "type", None), "name", "")  # click: integer, float, integer range, ...
    return name.startswith(("integer", "float"))


def _bounds(param) -> tuple[object, object]:
    lo, hi = getattr(param, "min", None), getattr(param, "max", None)
    if lo is None and hi is None:  # click's IntRange / FloatRange
        kind = getattr(param, "type", None)
        lo, hi = getattr(kind, "min", None), getattr(kind, "max", None)
    return lo, hi


def _numeric_options() -> dict[tuple[str, str], object]:
    out = {}
    for name, cmd in _commands(typer.main.get_command(app)):
        for p in cmd.params:
            if _numeric(p):
                out[(name, max(p.opts, key=len))] = p
    return out


def test_every_numeric_option_has_a_range_and_a_row():
    found = _numeric_options()
    assert found, "no numeric option found: the walk over the app is broken"
    unranged = [k for k, p in found.items() if _bounds(p) == (None, None)]
    assert not unranged, f"numeric options without a range (give them min=/max=): {unranged}"
    rows = {(r.command, r.option) for r in RANGES}
    assert set(found) == rows, (
        f"numeric options without a row in RANGES: {sorted(set(found) - rows)}; "
        f"rows for no option: {sorted(rows - set(found))}"
    )


def _main(args: list[str], monkeypatch, capsys) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["spurisweep", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    return exc.value.code, out.out + out.err


BAD = [(r, v) for r in RANGES for v in r.bad]


@pytest.mark.parametrize("row,value", BAD, ids=[f"{r.command} {r.option} {v}" for r, v in BAD])
def test_a_bad_value_is_a_usage_error(row: Range, value: str, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    code, text = _main([row.command, *row.needs, f"{row.option}={value}"], monkeypatch, capsys)
    assert code == 2, text
    assert "Traceback" not in text, text
    assert f"Invalid value for '{row.option}'" in text, text
    assert len([x for x in text.splitlines() if x.startswith("Error:")]) == 1, text
    assert not list(tmp_path.iterdir()), "a refused option must leave nothing behind"


GOOD = [(r, v) for r in RANGES for v in r.good]


@pytest.mark.parametrize("row,value", GOOD, ids=[f"{r.command} {r.option} {v}" for r, v in GOOD])
def test_a_value_in_range_parses(row: Range, value: str):
    cmd = dict(_commands(typer.main.get_command(app)))[row.command]
    ctx = cmd.make_context(row.command, [*row.needs, row.option, value])
    name = next(p.name for p in cmd.params if row.option in p.opts)
    assert ctx.params[name] == pytest.approx(float(value))


def test_the_range_shows_in_help():
    proc = subprocess.run(
        [sys.executable, "-m", "spurisweep.cli", "grade", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "0<=x<=1024" in proc.stdout and "x<=3600" in proc.stdout, proc.stdout


# the issue's own examples, through the real console entry in a subprocess: a hang fails by the timeout
ISSUE = [
    ["run", "sweeps/smoke.yaml", "--max-parallel", "-1", "--results", "{tmp}/results"],
    ["eval", "--model", "tiny", "--limit", "-1", "--results", "{tmp}/results"],
    ["eval", "--model", "tiny", "--limit", "0", "--results", "{tmp}/results"],
    ["status", "sweeps/smoke.yaml", "--watch", "--interval", "-1", "--results", "{tmp}/results"],
]


@pytest.mark.parametrize("args", ISSUE, ids=[" ".join(a[:4]) for a in ISSUE])
def test_the_issue_examples_exit_2_at_once(args: list[str], tmp_path: Path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    option = next(a for a in args if a in ("--max-parallel", "--limit", "--interval"))
    proc = subprocess.run(
        [sys.executable, "-m", "spurisweep.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert f"Invalid value for '{option}'" in proc.stderr, proc.stderr
    assert not (tmp_path / "results").exists()
