"""`spurisweep verify-rewards` (coverage of every reward on the adversarial suite) and
`spurisweep grade FILE.jsonl` (grading another framework's outputs), through the real CLI."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep import rewards
from spurisweep.rewards import coverage

ROOT = Path(__file__).resolve().parents[2]
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


def test_every_reward_meets_the_suite_under_the_paper_grader():
    """The same suite for cells with `grader: paper`: the official rules, where they differ from
    math-verify's expectations on a case, are the documented ones (verify_suite.PAPER_EXPECTED)."""
    from spurisweep.rewards.verify_suite import PAPER_EXPECTED

    result = coverage.verify(grader="paper")
    assert result.failures == []
    assert all(c == 1.0 for c in result.coverage.values()) and result.counts["grader"][1] >= 40
    got = {(o.case_id, o.checker): o.got for o in result.outcomes}
    for case_id, expected in PAPER_EXPECTED.items():
        for name, value in expected.items():
            assert got[(case_id, name)] == value, (case_id, name)
    assert got[("good/set_any_order", "ground_truth")] == 0.0  # the rewards follow the grader
    # and the math-verify suite would not pass the paper grader: the expectations really differ
    mv = coverage.verify(["format"], grader="math_verify")
    assert mv.coverage["format"] == 1.0 and result.coverage["format"] == 1.0
    assert {o.case_id for o in mv.outcomes if o.checker == "grader" and o.got == 0.0} != {
        o.case_id for o in result.outcomes if o.checker == "grader" and o.got == 0.0
    }


def test_the_suite_is_the_data_file():
    """The cases are package data (rewards/verify_suite.yaml); no_repetition's own cases are there too."""
    from spurisweep.rewards.verify_suite import CASES, GRADER_EXPECTED, load_suite

    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) >= 60 and {"norep/looping", "norep/plain"} <= set(ids)
    stats = next(c for c in CASES if c.id == "intrinsic/wrong_answer_sure").stats
    assert stats["token_self_certainty"] == (9.0, 11.0) and all(
        not c.stats for c in CASES if c.id < "intrinsic"
    )
    assert set(GRADER_EXPECTED) == set(coverage.GRADERS)
    long_box = next(c for c in CASES if c.id == "bad/too_long_box")
    assert (
        long_box.response == "\\boxed{" + " + ".join(["1"] * 300) + "}"
    )  # folded YAML lines read back whole
    assert next(c for c in CASES if c.id == "none/power_tower").tags == ("slow",)
    assert load_suite()[0] == CASES


@pytest.mark.parametrize(
    "text, message",
    [
        ("cases: 3\n", "spurisweep/rewards/verify_suite.yaml: expected a mapping with a `cases` list"),
        (
            "cases:\n- {id: a, response: r, gold: '1', expected: {grader: 0.5}}\n",
            "spurisweep/rewards/verify_suite.yaml: cases[0].expected.grader: must be 1.0, 0.0 or null, got 0.5",
        ),
        (
            "cases:\n- {id: a, gold: '1', expected: {}}\n",
            "spurisweep/rewards/verify_suite.yaml: cases[0].response: missing",
        ),
        (
            "cases:\n- {id: a, response: r, gold: '1', expected: {}}\ngraders: {paper: {b: {grader: 1.0}}}\n",
            "spurisweep/rewards/verify_suite.yaml: graders.paper: no case 'b'",
        ),
        (
            "cases:\n- {id: a, response: r, gold: '1', expected: {}}\n- {id: a, response: r, gold: '1', expected: {}}\n",
            "spurisweep/rewards/verify_suite.yaml: cases[1].id: duplicate case id 'a'",
        ),
        ("cases: [\n", "spurisweep/rewards/verify_suite.yaml: not valid YAML"),
        (
            "cases:\n- {id: a, response: r, gold: '1', stats: {token_entropy: [0.1, nan]}, expected: {}}\n",
            "spurisweep/rewards/verify_suite.yaml: cases[0].stats.token_entropy: must be a list of finite numbers",
        ),
        (
            "cases:\n- {id: a, response: r, gold: '1', stats: {token_heat: [0.1]}, expected: {}}\n",
            "spurisweep/rewards/verify_suite.yaml: cases[0].stats: unknown statistic 'token_heat'",
        ),
        (
            "cases:\n- {id: a, response: r, gold: '1', stats: {token_entropy: [1], token_logp: []}, expected: {}}\n",
            "spurisweep/rewards/verify_suite.yaml: cases[0].stats: every statistic needs one value per response token",
        ),
        (
            "cases:\n- {id: a, response: r, gold: '1', stats: {token_entropy: [1]}, expected: {entropy: inf}}\n",
            "spurisweep/rewards/verify_suite.yaml: cases[0].expected.entropy: must be a finite number or null",
        ),
    ],
)
def test_a_malformed_suite_file_names_the_field(text, message):
    from spurisweep.errors import ConfigError
    from spurisweep.rewards.verify_suite import load_suite

    with pytest.raises(ConfigError) as bad:
        load_suite(text)
    assert str(bad.value).startswith(message), str(bad.value)


def test_compositions_and_mixtures_derive_their_expectations():
    """A_AND_B, inverse_A and a weighted mixture are scored against what their parts declare."""
    mix = "0.5*format+0.5*python"
    result = coverage.verify(["format_AND_inverse_python", mix])
    assert (
        result.failures == [] and result.counts[mix][1] == result.counts["format_AND_inverse_python"][1] >= 60
    )
    exp = {c.id: c.expected for c in coverage.cases([mix])}
    assert exp["good/boxed_int"][mix] == 0.5 and exp["good/python_code_block"][mix] == 1.0
    assert mix not in exp["good/fbox"]  # format has no expectation there, so neither has the mixture


def test_intrinsic_rewards_are_graded_on_the_suites_per_token_cases(monkeypatch):
    """entropy and self_certainty are scored by verify-rewards on cases carrying hand-written per-token
    statistics (passed as the trainer passes them); a reward that reads the wrong statistic fails there."""
    result = coverage.verify(["entropy", "self_certainty"])
    assert result.failures == []
    assert result.counts["entropy"] == result.counts["self_certainty"] == (3, 3)
    good = rewards.REGISTRY["entropy"]

    def wrong(params, ctx):  # RENT with the sampled token's log-probability instead of the entropy
        inner = good.factory({**params, "level": "sequence"}, ctx)
        return lambda completions, **kw: [None if v is None else -v for v in inner(completions, **kw)]

    monkeypatch.setitem(rewards.REGISTRY, "entropy", dataclasses.replace(good, factory=wrong))
    result = coverage.verify(["entropy"])
    assert {f.case_id for f in result.failures} == {
        "intrinsic/right_answer_unsure",
        "intrinsic/wrong_answer_sure",
    }


def test_a_broken_reward_is_caught(monkeypatch):
    """A format reward that ignores empty boxes must lose coverage (the suite can fail)."""
    good = rewards.REGISTRY["format"]

    def lax(params, ctx):
        return lambda completions, **kw: [float("boxed" in c) for c in completions]

    monkeypatch.setitem(rewards.REGISTRY, "format", dataclasses.replace(good, factory=lax))
    result = coverage.verify(["format"])
    assert result.coverage["format"] < 1.0
    assert any(f.checker == "format" and "empty" in f.case_id for f in result.failures)


def test_verify_rewards_cli():
    proc = cli("verify-rewards", "--reward", "format", "--reward", "python")
    assert proc.returncode == 0, proc.stderr
    assert "format" in proc.stdout and "100.0%" in proc.stdout
    assert "grader math_verify" in proc.stdout and "grader paper" in proc.stdout  # both graders' suites
    proc = cli("verify-rewards", "--reward", "gold")
    assert proc.returncode == 2 and "valid:" in proc.stderr and "Traceback" not in proc.stderr
    proc = cli("verify-rewards", "--reward", "format", "--grader", "papr")
    assert proc.returncode == 2 and "--grader" in proc.stderr and "paper" in proc.stderr
    proc = cli("verify-rewards", "--reward", "ground_truth", "--json")
    out = json.loads(proc.stdout)
    assert set(out) == {"math_verify", "paper"}
    assert out["math_verify"]["coverage"]["ground_truth"] == out["paper"]["coverage"]["ground_truth"] == 1.0
    proc = cli("verify-rewards", "--reward", "format", "--grader", "paper", "--json")
    assert set(json.loads(proc.stdout)) == {"paper"}


def test_the_floor_applies_to_each_grader(monkeypatch):
    """A checker that meets the math-verify suite but not the paper one must fail the command."""
    from typer.testing import CliRunner

    from spurisweep.cli import app
    from spurisweep.rewards.verify_suite import GRADER_EXPECTED

    # a paper expectation no grader meets: the paper grader's coverage falls below a floor of 1.0
    monkeypatch.setitem(GRADER_EXPECTED, "paper", {"good/boxed_int": {"format": 0.0}})
    res = CliRunner().invoke(app, ["verify-rewards", "--reward", "format", "--floor", "1.0"])
    assert res.exit_code == 1 and "FAIL paper: format good/boxed_int" in res.stdout
    res = CliRunner().invoke(
        app, ["verify-rewards", "--reward", "format", "--floor", "1.0", "--grader", "math_verify"]
    )
    assert res.exit_code == 0, res.stdout


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


def test_grade_cli_with_the_paper_grader(tmp_path):
    """The same verdict fields; the official rules decide (an unclosed box counts, an ungradable reference
    scores 0 rather than None, and tuples compare in order)."""
    rows = [
        {"id": 1, "response": "so \\boxed{070", "answer": "70"},
        {"id": 2, "response": "so \\boxed{5}", "answer": "\\frac{^2}{}"},
        {"id": 3, "response": "so \\boxed{7, 5}", "answer": "5, 7"},
    ]
    f = tmp_path / "outs.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = cli("grade", str(f), "--grader", "paper", "--out", str(tmp_path / "p.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert "graded 3 responses: 1 correct" in proc.stdout
    paper = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [r["correct"] for r in paper] == [True, False, False]
    assert cli("grade", str(f), "--out", str(tmp_path / "m.jsonl")).returncode == 0
    mv = [json.loads(x) for x in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert [set(r) for r in paper] == [set(r) for r in mv]  # the same verdict fields
    assert [r["correct"] for r in mv] != [r["correct"] for r in paper]
    proc = cli("grade", str(f), "--grader", "papers")
    assert proc.returncode == 2 and "--grader" in proc.stderr and "Traceback" not in proc.stderr


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
