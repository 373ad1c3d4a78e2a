"""Registries own their entries: one entry added in one place reaches every command that reads it.

A dummy reward registered here (with its `spurious` flag and expected verdicts) runs through `plan`,
`report` and `verify-rewards`; a reward that declares no expectations makes `verify-rewards` fail with one
line naming it. A dummy benchmark (a local file) runs through `plan`, and its display name is the one the
`report --plot` figures print. The commands run in this process (through `spurisweep.cli.main`, the console
script's own error handling), since a registry entry added by a test exists only here.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
import yaml

from spurisweep import rewards, store
from spurisweep.cli import main
from spurisweep.data import sets
from spurisweep.errors import DataError
from spurisweep.rewards import REGISTRY, completion_text, coverage
from tests.storebuilder import StoreBuilder, outcomes


def spurisweep(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """`spurisweep ARGS` in this process: (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["spurisweep", *args])
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as done:
        main()
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out, out.err


def sweep_file(tmp_path: Path, reward: str = "ground_truth", benchmarks: list[str] | None = None) -> Path:
    doc = {"name": "reg", "preset": "smoke", "grid": {"model": ["tiny"], "reward": [reward]}}
    if benchmarks:
        doc["settings"] = {"eval": {"benchmarks": benchmarks}}
    path = tmp_path / "reg.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# ---------------------------------------------------------------------------------------------- rewards
def _seven(params, ctx):
    def seven(completions, **kw):
        return [float("7" in completion_text(c)) for c in completions]

    return seven


#: what the dummy reward scores on three suite cases (their responses: a 7 in the box, a 12, no number)
SEVEN = {"good/nested_boxed": 1.0, "good/boxed_int": 0.0, "bad/no_answer": 0.0}


@pytest.fixture
def dummy_reward(monkeypatch):
    """`seven` (1 if the response holds a 7): spurious, with inline expectations; gone after the test."""
    monkeypatch.delitem(REGISTRY, "seven", raising=False)
    rewards.register("seven", spurious=True, expected=SEVEN, description="a 7 anywhere")(_seven)
    yield REGISTRY["seven"]
    del REGISTRY["seven"]


def test_a_registered_reward_runs_through_plan(dummy_reward, tmp_path, monkeypatch, capsys):
    code, out, err = spurisweep(
        monkeypatch,
        capsys,
        "plan",
        str(sweep_file(tmp_path, "seven")),
        "--results",
        str(tmp_path / "r"),
        "--json",
    )
    assert code == 0, err
    (cell,) = json.loads(out)["cells"]
    assert cell["config"]["reward"] == "seven"
    code, _, err = spurisweep(
        monkeypatch, capsys, "plan", str(sweep_file(tmp_path, "sevn")), "--results", str(tmp_path / "r")
    )
    assert code == 2 and "seven" in err  # unknown names are suggested from the registry, the dummy included


def test_a_registered_reward_runs_through_report(dummy_reward, tmp_path, monkeypatch, capsys):
    results = tmp_path / "res"
    with StoreBuilder(store.db_path(results), sweep="reg") as b:
        b.baseline("tiny", "arith", outcomes(0.2, 10))
        for reward, acc in (("seven", 0.5), ("ground_truth", 0.7)):
            b.evaluation(b.cell("tiny", reward), 4, "arith", outcomes(acc, 10))
    code, out, err = spurisweep(
        monkeypatch, capsys, "report", "--results", str(results), "--sweep", "reg", "--format", "json"
    )
    assert code == 0, err
    means = {c["reward"]: c["mean"] for c in json.loads(out)["cells"]}
    assert means["seven"] == pytest.approx(50.0) and means["ground_truth"] == pytest.approx(70.0)


def test_a_registered_reward_runs_through_verify_rewards(dummy_reward, monkeypatch, capsys):
    assert dummy_reward.spurious and dummy_reward.expected == SEVEN
    args = ("verify-rewards", "--reward", "seven", "--grader", "math_verify", "--floor", "1.0", "--json")
    code, out, err = spurisweep(monkeypatch, capsys, *args)
    assert code == 0, err
    result = json.loads(out)["math_verify"]
    assert result["counts"]["seven"] == [3, 3]
    got = {o["case_id"]: o["got"] for o in result["outcomes"] if o["checker"] == "seven"}
    assert got == SEVEN
    # the declaration is what is checked: a wrong expectation fails the floor
    wrong = {**SEVEN, "bad/no_answer": 1.0}
    monkeypatch.setitem(REGISTRY, "seven", dataclasses.replace(dummy_reward, expected=wrong))
    code, out, _ = spurisweep(monkeypatch, capsys, *args)
    assert code == 1 and json.loads(out)["math_verify"]["counts"]["seven"] == [2, 3]


@pytest.mark.parametrize(
    "expected, says",
    [
        (None, "reward 'silent' declares no expected verdicts"),
        (
            "suite",
            "reward 'silent' declares expected='suite' but no case in rewards/verify_suite.yaml names it",
        ),
        ({"no/such_case": 1.0}, "reward 'silent': expected names no suite case 'no/such_case'"),
    ],
)
def test_a_reward_without_expectations_fails_verify_rewards(monkeypatch, capsys, expected, says):
    monkeypatch.setitem(REGISTRY, "silent", rewards.RewardDef("silent", _seven, expected=expected))
    code, out, err = spurisweep(monkeypatch, capsys, "verify-rewards", "--reward", "format")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert says in lines[0] and "tests/test_registries.py: expected:" in lines[0]
    assert "silent" in coverage.default_names()  # not left out of the default list either


def test_register_refuses_a_malformed_expectation():
    with pytest.raises(ValueError, match="reward 'odd': expected must be"):
        rewards.register("odd", expected="sometimes")
    with pytest.raises(
        ValueError, match=r"reward 'odd': expected\['good/boxed_int'\] must be 1.0, 0.0 or None"
    ):
        rewards.register("odd", expected={"good/boxed_int": 0.5})
    assert "odd" not in REGISTRY


def test_every_shipped_reward_declares_both_facts():
    """The registry is the only list: each shipped reward says whether it is spurious and what it must score."""
    coverage.check_declared()
    spurious = {n for n, d in REGISTRY.items() if d.spurious}
    assert {"random", "format", "python", "incorrect_label", "no_repetition"} <= spurious
    assert not {"ground_truth", "majority_vote", "one_shot"} & spurious
    assert REGISTRY["random"].expected == rewards.UNSCORED and "random" not in coverage.default_names()


# ---------------------------------------------------------------------------------------------- benchmarks
@pytest.fixture
def dummy_benchmark(tmp_path, monkeypatch):
    """`regbench`: 4 problems in a local file under $SPURISWEEP_DATA_DIR, with its own display name."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [{"id": f"q{i}", "problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(4)]
    (data / "regbench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(data))
    entry = sets.Benchmark(
        "regbench",
        (sets.HubSource("nobody/regbench", "test"),),
        sets.Protocol(max_new_tokens=32),
        "regbench.jsonl",
        "a dummy benchmark",
        display="Reg-Bench Dummy",
        problems=4,
    )
    monkeypatch.setitem(sets.BENCHMARKS, "regbench", entry)
    return entry


def test_a_benchmark_entry_is_read_from_its_local_file(dummy_benchmark):
    problems = sets.load_benchmark("regbench")
    assert [p.answer for p in problems] == ["1", "2", "3", "4"]


def test_a_registered_benchmark_runs_through_plan(dummy_benchmark, tmp_path, monkeypatch, capsys):
    sweep = sweep_file(tmp_path, benchmarks=["regbench"])
    code, out, err = spurisweep(
        monkeypatch, capsys, "plan", str(sweep), "--results", str(tmp_path / "r"), "--json"
    )
    assert code == 0, err
    (cell,) = json.loads(out)["cells"]
    assert cell["config"]["eval"]["benchmarks"] == ["regbench"]
    sweep = sweep_file(tmp_path, benchmarks=["regbnch"])
    code, _, err = spurisweep(monkeypatch, capsys, "plan", str(sweep), "--results", str(tmp_path / "r"))
    assert code == 2 and "regbench" in err  # unknown names are suggested from the entries, the dummy included


def test_a_benchmarks_display_name_is_the_one_report_plots_print(
    dummy_benchmark, tmp_path, monkeypatch, capsys
):
    results = tmp_path / "res"
    with StoreBuilder(store.db_path(results), sweep="reg") as b:
        b.baseline("tiny", "regbench", outcomes(0.25, 4))
        b.evaluation(b.cell("tiny", "ground_truth"), 4, "regbench", outcomes(0.75, 4))
    out_dir = tmp_path / "figs"
    args = ("report", "--results", str(results), "--sweep", "reg", "--benchmark", "regbench")
    code, _, err = spurisweep(monkeypatch, capsys, *args, "--plot", "curves", "--out", str(out_dir))
    assert code == 0, err
    page = (out_dir / "curves.html").read_text()
    assert "Reg-Bench Dummy accuracy" in page
    monkeypatch.setitem(sets.BENCHMARKS, "regbench", dataclasses.replace(dummy_benchmark, display=""))
    code, _, err = spurisweep(
        monkeypatch, capsys, *args, "--plot", "curves", "--out", str(tmp_path / "plain")
    )
    assert code == 0, err
    assert "regbench accuracy" in (tmp_path / "plain" / "curves.html").read_text()  # no display: its name


def test_builtin_sets_come_from_their_entries(monkeypatch):
    """A BUILTINS entry is all a generated set needs: load_problems and the plan-time check find it."""
    entry = sets.BuiltinSet("tests.test_registries:three_problems", "three problems", aliases=("three-too",))
    monkeypatch.setitem(sets.BUILTINS, "three", entry)
    assert [p.answer for p in sets.load_problems("builtin:three-too")] == ["1", "2", "3"]
    sets.check_source("builtin:three", what="data.train")
    with pytest.raises(
        DataError, match=r"data.train: unknown built-in data set 'thre'; valid: .*builtin:three"
    ):
        sets.check_source("builtin:thre", what="data.train")


def three_problems(name: str) -> list[sets.Problem]:
    return [sets.Problem(f"t{i}", f"{i}?", str(i)) for i in (1, 2, 3)]
