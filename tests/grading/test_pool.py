"""Tests for spurisweep.grading (extract, verify, pool) and spurisweep.rewards.verify_suite (real math-verify, no mocks)."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from spurisweep import grading
from spurisweep.errors import ConfigError
from spurisweep.grading import GradingPool, Verdict, answers_equal, code_flags, extract_answer, grade_one
from spurisweep.grading import extract as extract_mod
from spurisweep.grading import pool as pool_mod
from spurisweep.rewards.verify_suite import CASES, SuiteCase, run_suite, with_expectations

REPO = Path(__file__).resolve().parents[2]
HANG_BOUND_S = 90.0  # generous: a hang means "never", not "slow on a busy 2-core machine"


def _shared_data() -> Path:
    env = os.environ.get("SPURISWEEP_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture(scope="module")
def pool():
    with GradingPool(workers=2, timeout=2.0) as p:
        yield p


# --------------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("so \\boxed{12}", "12"),
        ("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\frac{\\sqrt{3}}{2}"),
        (
            "\\boxed{\\begin{pmatrix} 1 & {2} \\\\ {{3}} & 4 \\end{pmatrix}}",
            "\\begin{pmatrix} 1 & {2} \\\\ {{3}} & 4 \\end{pmatrix}",
        ),
        ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}"),  # escaped braces do not count
        ("first \\boxed{3}, then \\boxed{4}.", "4"),  # last box wins
        ("\\boxed{\\boxed{7}}", "7"),
        ("\\fbox{9}", "9"),
        ("\\boxed {5}", "5"),
        ("$\\boxed 5$", "5"),
        ("x = 3. \\boxed{}", "3"),  # empty last box = no box: fall back to the last number
        ("\\boxed{5} and then \\boxed{  }", "5"),  # empty LAST box = no box, even after a good one
        ("The answer is 12.", "12"),
        ("the answer is $\\frac{1}{2}$.", "\\frac{1}{2}"),
        ("So the answer is: **42**", "42"),
        ("The answer is 3. Then 5 more.", "3"),
        ("answer is 1. Later, the final answer is 2.", "2"),  # last occurrence
        ("The answer is\n\n$$7$$\n", "7"),
        ("The answer is \\boxed{}.", None),
        ("we get 1, 2 and finally -3.5", "-3.5"),
        ("ratio 3/4", "3/4"),
        ("so it is \\frac{3}{4}", "3/4"),
        ("total 1,000 apples", "1000"),
        ("x-5", "5"),  # a minus after a letter is subtraction, not a sign
        ("no digits here", None),
        ("", None),
        ("\\boxed{1", "1"),  # unclosed last box = no box
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


def test_extract_answer_huge_inputs_are_fast():
    t0 = time.monotonic()
    assert extract_answer("\\boxed{" + "{" * 100_000 + "1") == "1"  # unclosed: last number
    assert extract_answer("x" * 1_000_000 + "\\boxed{5}") == "5"
    assert extract_answer("\\boxed{" * 200_000) is None
    assert extract_answer("1" * 1_000_000) is not None
    assert time.monotonic() - t0 < HANG_BOUND_S


def test_extract_boxed():
    assert grading.extract_boxed("a \\boxed{1} b \\boxed{ {2} }") == "{2}"
    assert grading.extract_boxed("\\boxed{1} then \\boxed{}") is None
    assert grading.extract_boxed("the answer is 3") is None
    assert grading.extract_boxed("\\boxed{3") is None


def test_code_flags():
    assert code_flags("Let me write PYTHON code") == (True, False)
    assert code_flags("```\nprint(1)\n```") == (False, True)
    assert code_flags("```python\nx=1\n```") == (True, True)
    assert code_flags("``` unclosed") == (False, False)
    assert code_flags("") == (False, False)


def test_verdict_fields_and_dict():
    v = grade_one("```python\nprint(1)\n```\nSo \\boxed{1}", "1")
    assert v == Verdict(correct=True, extracted="1", reason=None, has_python=True, has_code_block=True)
    assert v.to_dict() == {
        "correct": True,
        "extracted": "1",
        "reason": None,
        "has_python": True,
        "has_code_block": True,
    }
    w = grade_one("nothing", "1")
    assert (w.correct, w.extracted, w.reason) == (False, None, "no_answer")
    assert grade_one("\\boxed{2}", "1").reason == "mismatch"
    assert grade_one("\\boxed{2}", "").reason == "empty_gold"
    assert grade_one("\\boxed{" + "1" * 1000 + "}", "1").reason == "too_long"


@pytest.mark.parametrize(
    ("pred", "gold"),
    [
        ("70", "070"),
        ("142", "142.0"),
        ("(3, \\pi/2)", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("\\dfrac{1}{2}", "0.5"),
        ("0.5", "1/2"),
        ("1/2", "\\dfrac{1}{2}"),
        ("90", "90^\\circ"),
        ("90^\\circ", "90"),
        ("15", "15\\mbox{ cm}^2"),
        ("\\$36", "36"),
        ("10080", "10,\\!080"),
        ("C", "\\text{(C)}"),
        ("x=5", "5"),
    ],
)
def test_equivalent_formats(pred, gold):
    assert grade_one(f"Hence \\boxed{{{pred}}}.", gold).correct is True
    assert answers_equal(pred, gold) is True


def test_answers_equal():
    assert answers_equal("070", "70") is True
    assert answers_equal("\\frac{3}{4}", "0.75") is True
    assert answers_equal("3", "4") is False
    assert answers_equal("", "1") is None
    assert answers_equal("5", "5") is True


def test_never_raises_on_odd_input():
    assert grade_one(None, "1").reason == "no_answer"  # type: ignore[arg-type]
    assert grade_one("\\boxed{12.8}", 12.8).correct is True  # type: ignore[arg-type]
    assert grade_one("\\boxed{\\frac{}{}}", "1").correct is False
    assert grade_one("\\boxed{}}}{{{", "1").correct in (False, None)


def test_grade_one_off_main_thread_uses_the_pool():
    out = []
    t = threading.Thread(target=lambda: out.append(grade_one("\\boxed{\\frac12}", "0.5")))
    t.start()
    t.join(HANG_BOUND_S)
    assert out and out[0].correct is True


# --------------------------------------------------------------------------------------------------
# every gold answer in the shared data, against reformatted copies of itself
# --------------------------------------------------------------------------------------------------

# deepscaler labels that are themselves broken LaTeX: only verbatim copies can match them
MALFORMED_GOLDS = {"\\frac{1}{1+}", "\\frac{^2}{}", "^2+b^2"}


def _variants(gold: str) -> dict[str, str]:
    g = gold.strip()
    out = {
        "boxed": f"Working... so we get \\boxed{{{g}}}",
        "answer_is": f"After simplifying, the answer is {g}.",
        "answer_is_dollar": f"Thus the answer is ${g}$.",
    }
    if "\\frac" in g:
        out["dfrac"] = "\\boxed{" + g.replace("\\frac", "\\dfrac") + "}"
    m = re.fullmatch(r"(-?)(\d+)", g)
    if m:
        out["zero_padded"] = f"\\boxed{{{m.group(1)}0{m.group(2)}}}"
        out["float"] = f"\\boxed{{{g}.0}}"
        out["last_number"] = f"Counting them all gives {g}"
        if g.lstrip("-").startswith("0") and len(g.lstrip("-")) > 1:
            out["unpadded"] = f"\\boxed{{{m.group(1)}{int(m.group(2))}}}"
    m = re.fullmatch(r"(-?\d+)\.0+", g)
    if m:
        out["int"] = f"\\boxed{{{m.group(1)}}}"
    return out


def test_every_gold_answer_matches_reformatted_copies():
    """Correctness, not speed: a generous per-answer budget, so a loaded machine (one answer here costs
    ~0.3 s of CPU, which took 2 s of wall time at load 14) cannot turn a right verdict into a timeout."""
    data = _shared_data()
    files = sorted(data.glob("*.json")) if data.is_dir() else []
    if not files:
        pytest.skip(f"shared benchmark data not found at {data} (set SPURISWEEP_SHARED_DATA)")
    golds: set[str] = set()
    for f in files:
        rows = json.loads(f.read_text())
        golds.update(str(r["answer"]) for r in rows if isinstance(r, dict) and "answer" in r)
    golds.discard("")
    assert len(golds) > 100
    items = [(gold, kind, resp) for gold in sorted(golds) for kind, resp in _variants(gold).items()]
    with GradingPool(workers=2, timeout=30.0) as pool:
        verdicts = pool.grade([(resp, gold) for gold, _, resp in items])
    failures = []
    for (gold, kind, _resp), v in zip(items, verdicts, strict=True):
        if gold.strip() in MALFORMED_GOLDS and kind not in ("boxed", "answer_is", "answer_is_dollar"):
            ok = v.correct is None and v.reason == "gold_unparseable"
        else:
            ok = v.correct is True
        if not ok:
            failures.append((gold, kind, v.extracted, v.correct, v.reason))
    assert not failures, f"{len(failures)} of {len(items)} failed, e.g. {failures[:10]}"


# --------------------------------------------------------------------------------------------------
# the pool: pathological inputs, hung and killed workers
# --------------------------------------------------------------------------------------------------

PATHOLOGICAL = {
    "power_tower": "\\boxed{9^{9^{9^{9^{9}}}}}",
    "power_tower_prose": "The answer is $10^{10^{10^{10}}}$.",
    "factorial": "\\boxed{(10^{10})!}",
    "nested_braces_100k": "\\boxed{" + "{" * 50_000 + "1" + "}" * 50_000 + "}",
    "open_braces_100k": "\\boxed{" + "{" * 100_000,
    "deep_latex": "\\boxed{" + "{" * 180 + "1" + "}" * 180 + "}",
    "deep_frac": "\\boxed{" + "\\frac{1}{" * 30 + "2" + "}" * 30 + "}",
    "deep_parens": "\\boxed{" + "(" * 180 + "1" + ")" * 180 + "}",
    "response_1mb": "The answer is 7. " * 60_000 + "\\boxed{9^{9^{9}}}",
    "digits_1mb": "1" * 1_000_000,
    "huge_sum": "\\boxed{\\sum_{n=1}^{10^{12}} n^n}",
    "huge_matrix_power": "\\boxed{\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}^{10^{9}}}",
}


def test_pathological_inputs_finish_and_are_not_correct(pool):
    names = list(PATHOLOGICAL)
    t0 = time.monotonic()
    verdicts = pool.grade([(PATHOLOGICAL[n], "5") for n in names], timeout=1.0)
    elapsed = time.monotonic() - t0
    assert elapsed < HANG_BOUND_S
    for name, v in zip(names, verdicts, strict=True):
        assert isinstance(v, Verdict)
        assert v.correct in (False, None), (name, v)
        if v.correct is None:
            assert v.reason in ("timeout", "worker_crashed"), (name, v)
    by_name = dict(zip(names, verdicts, strict=True))
    assert by_name["power_tower"].reason == "timeout"
    assert by_name["nested_braces_100k"].correct is False
    # the pool is still healthy afterwards
    assert [v.correct for v in pool.grade([("\\boxed{5}", "5"), ("\\boxed{4}", "5")])] == [True, False]


def _wait_busy(p: GradingPool, deadline: float) -> None:
    while time.monotonic() < deadline and not any(w.state == "busy" for w in list(p._pool)):
        time.sleep(0.02)


def test_hung_worker_is_killed_and_replaced():
    slow = [(f"\\boxed{{9^{{9^{{9^{{{k}}}}}}}}}", "5") for k in range(2, 8)]
    quick = [(f"\\boxed{{{k}}}", str(k)) for k in range(20)]
    with GradingPool(workers=2, timeout=1.0, kill_margin=1.0) as p:
        assert p.wait_ready(HANG_BOUND_S)
        before = set(p.worker_pids())
        stopped: list[int] = []

        def freeze_one() -> None:  # SIGSTOP = a hang no signal handler can interrupt
            _wait_busy(p, time.monotonic() + 30)
            pid = p.worker_pids()[0]
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)

        t = threading.Thread(target=freeze_one)
        t.start()
        t0 = time.monotonic()
        verdicts = p.grade(slow + quick)
        t.join()
        assert time.monotonic() - t0 < HANG_BOUND_S
        assert stopped
        assert p.kills >= 1
        assert stopped[0] not in p.worker_pids()
        assert len(p.worker_pids()) == 2 and set(p.worker_pids()) != before
        assert all(v.correct is None and v.reason == "timeout" for v in verdicts[: len(slow)])
        assert all(v.correct is True for v in verdicts[len(slow) :])
        # later grading still works, on both workers
        again = p.grade([(f"\\boxed{{{k}/2}}", str(k / 2)) for k in range(40)])
        assert all(v.correct is True for v in again)


def test_killed_worker_is_replaced():
    slow = [(f"\\boxed{{10^{{10^{{{k}}}}}}}", "5") for k in range(10, 16)]
    quick = [(f"\\boxed{{{k}}}", str(k)) for k in range(20)]
    with GradingPool(workers=2, timeout=1.0) as p:
        assert p.wait_ready(HANG_BOUND_S)

        def kill_one() -> None:
            _wait_busy(p, time.monotonic() + 30)
            os.kill(p.worker_pids()[-1], signal.SIGKILL)

        t = threading.Thread(target=kill_one)
        t.start()
        verdicts = p.grade(slow + quick)
        t.join()
        assert p.crashes >= 1
        assert len(p.worker_pids()) == 2
        assert all(v.correct is None for v in verdicts[: len(slow)])
        assert all(v.correct is True for v in verdicts[len(slow) :])
        assert all(v.correct is True for v in p.grade([("\\boxed{0.25}", "\\frac14")] * 8))


def test_in_process_pool_and_order(pool):
    pairs = [(f"\\boxed{{{k}}}", str(k if k % 3 else k + 1)) for k in range(30)]
    expected = [bool(k % 3) for k in range(30)]
    with GradingPool(workers=0) as local:
        assert [v.correct for v in local.grade(pairs)] == expected
    assert [v.correct for v in pool.grade(pairs)] == expected
    assert [v.correct for v in grading.grade_batch(pairs, workers=2)] == expected
    assert pool.grade([]) == []
    assert pool.equal([("070", "70"), ("1", "2")]) == [True, False]


# --------------------------------------------------------------------------------------------------
# the grader registry
# --------------------------------------------------------------------------------------------------


def test_unknown_grader_is_a_config_error_listing_the_valid_ones(pool):
    for call in (
        lambda: grading.grade_batch([("\\boxed{1}", "1")], grader="math_verfy"),
        lambda: grade_one("\\boxed{1}", "1", grader="paperr"),
        lambda: pool.grade([("\\boxed{1}", "1")], grader="nope"),
        lambda: pool.equal([("1", "1")], grader="nope"),
        lambda: grading.grade_batch([], grader="nope"),
    ):
        with pytest.raises(ConfigError, match="valid: math_verify"):
            call()


def test_grader_is_chosen_by_name(monkeypatch):
    """A second grader registered by name is what grade_one/grade_batch/GradingPool run (in-process:
    the workers of a pool import the registry afresh, so a test-only entry cannot reach them)."""
    fake = types.ModuleType("spurisweep_test_fake_grader")

    def grade(response, answer, timeout):
        return Verdict(
            correct=None, extracted=response, reason="fake", has_python=False, has_code_block=False
        )

    fake.grade = grade  # type: ignore[attr-defined]
    fake.equal = lambda a, b, timeout: a == b[::-1]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(grading.GRADERS, "fake", pool_mod.GraderSpec(fake.__name__))
    monkeypatch.setattr(pool_mod, "_loaded", {})  # forget the imported graders afterwards
    assert grade_one("\\boxed{1}", "1", grader="fake").reason == "fake"
    assert grade_one("\\boxed{1}", "1").reason is None
    assert [v.extracted for v in grading.grade_batch([("a", "1"), ("b", "2")], workers=0, grader="fake")] == [
        "a",
        "b",
    ]
    with GradingPool(workers=0) as local:
        assert local.grade([("x", "1")], grader="fake")[0].reason == "fake"
        assert local.equal([("12", "21")], grader="fake") == [True]
        assert local.equal([("12", "21")]) == [False]


# --------------------------------------------------------------------------------------------------
# the adversarial suite
# --------------------------------------------------------------------------------------------------


def test_suite_grader_coverage_is_complete(pool):
    result = run_suite(grader=lambda pairs: pool.grade(pairs, timeout=1.0))
    assert result.coverage["grader"] == 1.0, result.summary()
    kinds = {c.kind for c in CASES}
    assert {"good", "bad", "ungradable"} <= kinds
    assert len({c.id for c in CASES}) == len(CASES)


def test_suite_is_extensible():
    def fmt(responses, golds):
        return [1.0 if extract_mod._last_boxed(r) and "\\boxed" in r else 0.0 for r in responses]

    def always_one(responses, golds):
        return [1.0] * len(responses)

    cases = with_expectations({"good/boxed_int": {"const": 1.0}, "bad/no_answer": {"const": 0.0}})
    result = run_suite(grader=None, checkers={"format": fmt, "const": always_one}, cases=cases)
    assert result.counts["format"][1] == sum("format" in c.expected for c in CASES)
    assert result.coverage["format"] == 1.0, result.summary()
    assert result.counts["const"] == (1, 2)
    assert [f.case_id for f in result.failures] == ["bad/no_answer"]

    def broken(responses, golds):
        raise RuntimeError("boom")

    extra = [SuiteCase("x/1", "\\boxed{1}", "1", {"broken": 1.0})]
    r2 = run_suite(grader=None, checkers={"broken": broken}, cases=extra)
    assert r2.coverage["broken"] == 0.0 and "boom" in (r2.failures[0].error or "")


def test_grading_workers_come_from_one_environment_variable(monkeypatch):
    """SPURISWEEP_GRADING_WORKERS (launch/local.py shares a machine's CPUs among cells with it) is read in
    one place, for evaluations and rewards alike; unset, every CPU."""
    from spurisweep.evaluation.run import OverlappedGrader
    from spurisweep.grading.pool import WORKERS_ENV, workers_from_env

    monkeypatch.setenv(WORKERS_ENV, "3")
    assert workers_from_env() == 3 and OverlappedGrader().workers == 3
    assert OverlappedGrader(workers=1).workers == 1
    monkeypatch.delenv(WORKERS_ENV)
    assert workers_from_env() is None and OverlappedGrader().workers is None
