"""The toy commands behind `make demo`: `toy reading`'s sentence, computed from a report pivot, and the demo
itself end to end (slow: the Makefile's demo recipe, run through make, on the shipped toy-demo family).

The reading tests build report.Pivot values by hand: the sentence is a function of the pivot's numbers, and a
hand-made pivot reaches every verdict (learned, noise, lost, random gaining) that one real run cannot."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import stats
from spurisweep.analysis import report
from spurisweep.cli.toy import reading

ROOT = Path(__file__).resolve().parents[2]


def _cell(base: float, mean: float, low: float, high: float) -> dict:
    delta = stats.Delta(mean - base, low, high, 200, 1, 0.95, "bootstrap")
    return {
        "mean": mean,
        "std": None,
        "n": 1,
        "seeds": 1,
        "base": base,
        "delta": mean - base,
        "paired": delta,
    }


def _pivot(gt: dict | None, rnd: dict | None) -> report.Pivot:
    cells = {("toy-demo", r): c for r, c in (("ground_truth", gt), ("random", rnd)) if c}
    return report.Pivot("model", "reward", "pass@1", "toy", ["toy-demo"], ["ground_truth", "random"], cells)


def test_reading_says_the_loop_learns_only_when_ground_truths_interval_is_above_zero():
    line = reading(_pivot(_cell(33.0, 48.5, 11.2, 19.8), _cell(33.0, 27.0, -9.1, -2.9)))
    assert line.startswith("Reading: ground truth took toy-demo from 33.0% to 48.5% on toy (+15.5 points")
    assert "[+11.2, +19.8]; 200 problems, 1 seed)" in line and "random reward to 27.0% (-6.0 points" in line
    assert "the loop learns" in line and "carrying none, lost" in line
    assert "does not show whether spurious rewards help real models" in line
    assert "\n" not in line

    noise = reading(_pivot(_cell(33.0, 35.0, -1.0, 5.0), _cell(33.0, 33.5, -3.0, 4.0)))
    assert "the loop learns" not in noise and "did not raise accuracy beyond noise" in noise

    lost = reading(_pivot(_cell(33.0, 20.0, -16.0, -10.0), None))
    assert "lowered accuracy" in lost and "random reward" not in lost


def test_reading_flags_random_reward_gaining_as_much_and_a_missing_cell():
    both = reading(_pivot(_cell(30.0, 40.0, 5.0, 15.0), _cell(30.0, 41.0, 6.0, 16.0)))
    assert "random reward, which carries no answer, gained as much" in both
    less = reading(_pivot(_cell(30.0, 45.0, 10.0, 20.0), _cell(30.0, 35.0, 1.0, 9.0)))
    assert "carrying none, gained less" in less
    missing = reading(_pivot(None, _cell(30.0, 35.0, 1.0, 9.0)))
    assert "no finished ground-truth cell" in missing and "the loop learns" not in missing


def _demo_recipe() -> list[str]:
    """The Makefile's demo target, as its commands."""
    text = (ROOT / "Makefile").read_text()
    block = re.search(r"^demo:.*\n((?:\t.*\n)+)", text, re.M)
    assert block, "the Makefile has no demo target"
    return [line.strip() for line in block.group(1).splitlines()]


@pytest.mark.slow
def test_make_demo_prints_a_table_with_a_ground_truth_gain_and_its_reading(tmp_path):
    """`make demo` (its install prerequisite taken as done: this venv) into a fresh results folder and
    cache: the shipped toy-demo installs, the two cells train and are evaluated, the table shows ground
    truth's gain over the untrained model, and the reading under it says what that shows."""
    assert any("sweeps/demo.yaml" in c for c in _demo_recipe())
    env = {
        **os.environ,
        "SPURISWEEP_RESULTS": str(tmp_path / "results"),
        "SPURISWEEP_CACHE": str(tmp_path / "cache"),
        "COLUMNS": "200",
    }
    make = ["make", "-s", "-o", "install", "demo", f"BIN={Path(sys.executable).parent}"]
    proc = subprocess.run(make, capture_output=True, text=True, cwd=ROOT, env=env, timeout=1500)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "ground_truth" in out and "random" in out and "toy-demo" in out
    cli = [sys.executable, "-m", "spurisweep.cli", "report", "--sweep", "demo", "--format", "json"]
    table = subprocess.run(cli, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert table.returncode == 0, table.stderr
    records = {r["reward"]: r for r in json.loads(table.stdout)["cells"]}
    gt = records["ground_truth"]
    assert gt["delta"] > 0 and gt["delta_distinguishable"], gt
    line = next(x for x in out.splitlines() if x.startswith("Reading:"))
    assert f"({gt['delta']:+.1f} points" in out and "the loop learns" in out, line
