"""The fresh-arithmetic generator (spurisweep.data.randcalc): deterministic per seed, every answer checked by
evaluating the rendered expression independently (Python's ast over Fractions), step counts within the
settings, the grader (real math-verify) accepting the answers, and `randcalc` loading through data.py."""

from __future__ import annotations

import ast
import re
from fractions import Fraction

import pytest

from spurisweep.data import randcalc
from spurisweep.data import sets as data
from spurisweep.errors import ConfigError, DataError
from spurisweep.grading import answers_equal, grade_one

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def _python(latex: str) -> str:
    """The rendered LaTeX as a Python expression; a \\frac{a}{b} operand becomes the call F(a, b)."""
    text = re.sub(r"\\frac\{(\d+)\}\{(\d+)\}", r"F(\1, \2)", latex)
    return text.replace("\\times", "*").replace("\\div", "/")


def _evaluate(node: ast.AST) -> tuple[Fraction, int]:
    """(exact value, number of binary operations) of a parsed expression; an F(a, b) leaf counts none."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return Fraction(node.value), 0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value, ops = _evaluate(node.operand)
        return -value, ops
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "F":
        a, b = (_evaluate(arg)[0] for arg in node.args)
        return Fraction(a, b), 0
    assert isinstance(node, ast.BinOp) and type(node.op) in _BINOPS, ast.dump(node)
    (a, na), (b, nb) = _evaluate(node.left), _evaluate(node.right)
    op = _BINOPS[type(node.op)]
    value = a + b if op == "+" else a - b if op == "-" else a * b if op == "*" else a / b
    return value, na + nb + 1


def _parse_answer(answer: str) -> Fraction:
    m = re.fullmatch(r"(-?)\\frac\{(\d+)\}\{(\d+)\}", answer)
    if m:
        value = Fraction(int(m.group(2)), int(m.group(3)))
        assert value.denominator == int(m.group(3)), f"{answer} is not in lowest terms"
        return -value if m.group(1) else value
    assert re.fullmatch(r"-?\d+", answer), answer
    return Fraction(int(answer))


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    return randcalc.generate(500, seed=7)


def test_every_answer_is_the_value_of_its_expression(sample):
    for row in sample:
        assert row["problem"].count(row["expression"]) == 1
        value, ops = _evaluate(ast.parse(_python(row["expression"]), mode="eval"))
        assert _parse_answer(row["answer"]) == value, row
        assert ops == row["steps"], row


def test_steps_cover_the_range_evenly_and_stay_within_bounds(sample):
    assert sorted({r["steps"] for r in sample}) == list(range(1, 21))
    assert all(sum(r["steps"] == k for r in sample) == 25 for k in range(1, 21))
    rows = randcalc.generate(60, seed=3, min_steps=4, max_steps=6)
    assert {r["steps"] for r in rows} == {4, 5, 6}
    assert {r["steps"] for r in randcalc.generate(10, seed=3, min_steps=5, max_steps=5)} == {5}


def test_magnitudes_are_bounded_and_fractions_appear(sample):
    answers = [_parse_answer(r["answer"]) for r in sample]
    assert all(abs(a) <= 10_000 and a.denominator <= 100 for a in answers)
    assert any(a.denominator > 1 for a in answers) and any(a.denominator == 1 for a in answers)
    assert any(a < 0 for a in answers) and any("\\frac" in r["expression"] for r in sample)
    small = randcalc.generate(200, seed=1, max_abs=100, max_denominator=12)
    assert all(abs(v) <= 100 and v.denominator <= 12 for v in (_parse_answer(r["answer"]) for r in small))


def test_integer_mode_has_integer_answers_and_operands():
    rows = randcalc.generate(200, seed=5, fractions=False)
    assert all(re.fullmatch(r"-?\d+", r["answer"]) for r in rows)
    assert not any("\\frac" in r["expression"] for r in rows)
    for r in rows:
        assert _evaluate(ast.parse(_python(r["expression"]), mode="eval"))[0] == int(r["answer"])


def test_deterministic_per_seed_and_prefix_stable():
    a, b = randcalc.generate(100, seed=11), randcalc.generate(100, seed=11)
    assert a == b
    other = randcalc.generate(100, seed=12)
    assert sum(x["problem"] != y["problem"] for x, y in zip(a, other, strict=True)) > 90
    assert randcalc.generate(30, seed=11) == a[:30]
    assert len({r["id"] for r in a}) == 100
    assert {r["id"] for r in a}.isdisjoint(r["id"] for r in other)


def test_the_grader_accepts_the_answers(sample):
    """Real math-verify: the rendered answer equals p/q and a boxed p/q response is graded correct."""
    for row in sample[:40]:
        value = _parse_answer(row["answer"])
        plain = str(value)  # "p/q" or "n"
        assert answers_equal(row["answer"], plain) is True, row["answer"]
        assert grade_one(f"So the value is \\boxed{{{plain}}}.", row["answer"]).correct is True, row
        wrong = str(value + 1)
        assert grade_one(f"\\boxed{{{wrong}}}", row["answer"]).correct is False, row


def test_bad_settings_raise_one_config_error_naming_each():
    with pytest.raises(ConfigError) as exc:
        randcalc.generate(5, seed=0, min_steps=0, max_steps=-1)
    assert "min_steps" in str(exc.value) and "max_steps" in str(exc.value)
    with pytest.raises(ConfigError) as exc:
        data.load_problems("builtin:randcalc?n=x&steps=3-a&colour=red")
    msg = str(exc.value)
    assert "builtin:randcalc" in msg and "n='x'" in msg and "steps=" in msg and "colour" in msg
    with pytest.raises(ConfigError, match="max_steps"):
        data.load_problems("builtin:randcalc?steps=5-2")
    with pytest.raises(ConfigError, match="fractions"):
        data.load_problems("builtin:randcalc?fractions=maybe")
    with pytest.raises(DataError, match="randcalc"):
        data.load_problems("builtin:randcalk")


# ---------------------------------------------------------------------------------------------- data.py
def test_randcalc_benchmark_loads_through_data():
    bench = data.get_benchmark("randcalc")
    assert (bench.protocol.samples, bench.protocol.temperature) == (1, 0.0)
    assert bench.protocol.max_new_tokens == 1024 and bench.protocol.headline == ("pass@1",)
    problems = data.load_benchmark("randcalc")
    assert len(problems) == randcalc.DEFAULT_N and len({p.id for p in problems}) == len(problems)
    rows = randcalc.generate(5, seed=randcalc.TEST_SEED)
    assert [(p.id, p.problem, p.answer) for p in problems[:5]] == [
        (r["id"], r["problem"], r["answer"]) for r in rows
    ]
    assert data.load_benchmark("randcalc", limit=7) == problems[:7]


def test_training_set_and_settings_through_data():
    train = data.load_problems("builtin:randcalc")
    test = data.load_benchmark("randcalc")
    # 1-step problems are few enough to repeat across seeds by chance; longer ones are not
    longer = [p.problem for i, p in enumerate(train) if i % 20 >= 2]
    assert len(train) == 500 and set(longer).isdisjoint(p.problem for p in test)
    small = data.load_problems("builtin:randcalc?n=40&steps=2-3&seed=9&fractions=0")
    assert len(small) == 40 and all(re.fullmatch(r"-?\d+", p.answer) for p in small)
    assert [
        r["answer"] for r in randcalc.generate(40, seed=9, min_steps=2, max_steps=3, fractions=False)
    ] == [p.answer for p in small]
    # a benchmark's settings come from its path, as eval.protocols.randcalc.path sets them
    via_path = data.load_benchmark("randcalc", path="builtin:randcalc-test?n=12&steps=7")
    assert len(via_path) == 12
    assert all(p.id.startswith(f"randcalc-s{randcalc.TEST_SEED}-7to7-") for p in via_path)
