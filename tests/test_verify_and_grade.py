"""`spurisweep verify-rewards` (coverage of every reward on the adversarial suite) and
`spurisweep grade FILE.jsonl` (grading another framework's outputs), through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import rewards
from spurisweep.rewards import RewardDef, coverage

ROOT = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "spurisweep.cli"]


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)


def test_every_reward_meets_the_suite():
    result = coverage.verify()
    assert result.failures == []
    names = set(result.coverage)
    assert {
        "grader",
        "ground_truth",
        "format",
        "python",
        "majority_vote",
        "incorrect_label",
        "one_shot",
        "no_repetition",
        "format_AND_inverse_python",
    } <= names
    assert all(c == 1.0 for c in result.coverage.values())
    assert result.counts["grader"][1] >= 40  # the suite is not trivially small


def test_a_broken_reward_is_caught(monkeypatch):
    """A format reward that ignores empty boxes must lose coverage (the suite can fail)."""
    good = rewards.REGISTRY["format"]

    def lax(params, ctx):
        return lambda completions, **kw: [float("boxed" in c) for c in completions]

    monkeypatch.setitem(rewards.REGISTRY, "format", RewardDef("format", lax, {}, good.data, good.description))
    result = coverage.verify(["format"])
    assert result.coverage["format"] < 1.0
    assert any(f.checker == "format" and "empty" in f.case_id for f in result.failures)


def test_verify_rewards_cli():
    proc = cli("verify-rewards", "--reward", "format", "--reward", "python")
    assert proc.returncode == 0, proc.stderr
    assert "format" in proc.stdout and "100.0%" in proc.stdout
    proc = cli("verify-rewards", "--reward", "gold")
    assert proc.returncode == 2 and "valid:" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("verify-rewards", "--reward", "ground_truth", "--json")
    assert json.loads(proc.stdout)["coverage"]["ground_truth"] == 1.0


def test_grade_cli(tmp_path):
    rows = [
        {"id": 1, "response": "so \\boxed{070}", "answer": "70"},
        {"id": 2, "response": "```python\nprint(1)\n```\n\\boxed{3}", "answer": "4"},
        {"id": 3, "response": "so \\boxed{5}", "answer": "\\frac{"},  # unparseable reference: ungradable
    ]
    f = tmp_path / "outs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = cli("grade", str(f))
    assert proc.returncode == 0, proc.stderr
    assert "graded 3 responses: 1 correct" in proc.stdout and "1 with code reasoning" in proc.stdout
    out = [json.loads(x) for x in (tmp_path / "outs.graded.jsonl").read_text().splitlines()]
    assert [r["id"] for r in out] == [1, 2, 3]  # the input fields are kept
    assert [r["correct"] for r in out] == [True, False, None]
    assert out[0]["extracted"] == "070" and out[1]["has_python"] and out[1]["has_code_block"]
    assert out[2]["reason"]


@pytest.mark.parametrize(
    "text, fragment",
    [
        ('{"response": "x", "answer": "1"}\nnot json\n', "line 2: not JSON"),
        ('{"response": "x"}\n', "line 1: expected an object with 'response' and 'answer'"),
    ],
)
def test_grade_malformed_file_exits_2_with_the_line(tmp_path, text, fragment):
    f = tmp_path / "bad.jsonl"
    f.write_text(text)
    proc = cli("grade", str(f))
    assert proc.returncode == 2 and fragment in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "bad.graded.jsonl").exists()
