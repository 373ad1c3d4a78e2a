"""Majority-vote labels: the vote itself (equivalent answers vote together, via math-verify), the
`label` command on the tiny model, and training cells that make the labels once and share them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import grid, labels, spec
from spurisweep.grading import answers_equal

ROOT = Path(__file__).resolve().parent.parent


def test_majority_groups_equivalent_answers():
    votes = ["1/2", "0.5", "\\frac{1}{2}", "0.50", "3", "3", "3", None, ""]
    label, share = labels.majority(votes, answers_equal)
    # four spellings of one half outvote three 3s, though "3" is the most common single string
    assert label in ("1/2", "0.5", "\\frac{1}{2}", "0.50") and share == pytest.approx(4 / 9)
    label, share = labels.majority(["7", "7", "8", None], answers_equal)
    assert (label, share) == ("7", 0.5)
    assert labels.majority([None, "", "  "], answers_equal) == (None, 0.0)


def test_label_command_on_the_tiny_model(tmp_path):
    res = tmp_path / "res"
    cmd = [
        sys.executable,
        "-m",
        "spurisweep.cli",
        "label",
        "--model",
        "tiny",
        "--dataset",
        "builtin:arith",
        "--n",
        "6",
        "--limit",
        "5",
        "--max-new-tokens",
        "12",
        "--results",
        str(res),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "5 prompts" in proc.stdout
    (path,) = (res / "_labels").glob("tiny-*.jsonl")
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == 5
    for r in rows:
        assert set(r) >= {"id", "problem", "answer", "gold", "vote_share", "matches_gold", "samples"}
        assert r["samples"] == 6 and 0.0 <= r["vote_share"] <= 1.0
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["samples"] == 6 and meta["temperature"] == 1.0 and meta["prompt"] == "plain"
    mtime = path.stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)  # already there: not redone
    assert again.returncode == 0 and path.stat().st_mtime_ns == mtime


SWEEP = """
name: mv
preset: smoke
grid:
  model: [tiny]
  reward: [majority_vote, incorrect_label]
  seed: [0]
settings:
  train: {steps: 2, save_every: 2}
  data: {limit: 16, label_samples: 4, label_max_new_tokens: 12}
  eval: {limit: 4}
"""


@pytest.mark.slow
def test_cells_make_labels_once_and_share_them(tmp_path):
    sweep = tmp_path / "mv.yaml"
    sweep.write_text(SWEEP)
    res = tmp_path / "res"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spurisweep.cli",
            "run",
            str(sweep),
            "--executor",
            "debug",
            "--results",
            str(res),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    cells = grid.expand(spec.load_sweep(sweep))
    files = list((res / "_labels").glob("*.jsonl"))
    assert len(files) == 1  # one labelling run, shared by both cells
    rows = [json.loads(x) for x in files[0].read_text().splitlines()]
    assert len(rows) == 16
    wrong = [r for r in rows if r["answer"] is not None and r["matches_gold"] is False]
    # the tiny random model is almost never right: incorrect_label trains on the wrong majority answers
    if wrong:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert all((res / "mv" / c.id / "DONE").exists() for c in cells)
    else:
        assert "no training prompt whose majority answer is wrong" in proc.stderr + proc.stdout


def test_a_ready_labels_file_is_the_training_set(shared_data, tmp_path):
    from spurisweep import training

    path = shared_data / "mv_incorrect_labels_qwen2.5_math_7b_sample.json"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"""
name: ready
grid: {{model: [tiny], reward: [incorrect_label]}}
settings: {{data: {{labels: "{path}"}}}}
""")
    (cell,) = grid.expand(spec.load_sweep(sweep))
    probs = training.training_problems(cell.config, tmp_path)
    src = json.loads(path.read_text())
    assert len(probs) == len(src) == 100
    assert [p.answer for p in probs[:5]] == [str(r["answer"]) for r in src[:5]]
