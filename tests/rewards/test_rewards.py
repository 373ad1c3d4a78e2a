"""Every reward through its real function on literal completions (math-verify itself, no mocks),
compositions by name, and the errors for unknown or malformed names."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from spurisweep import rewards
from spurisweep.rewards import RewardContext


def run(
    name: str, completions: list[str], params: dict | None = None, seed: int = 0, **kw
) -> list[float | None]:
    expr = rewards.parse(name)
    fn = rewards.build(
        name, rewards.resolve_params(expr, params or {}), RewardContext(seed=seed, grading_workers=0)
    )
    out = fn(completions, **kw)
    assert len(out) == len(completions)
    return out


GOOD = "We add them: 2 + 3 = 5. The answer is \\boxed{5}."
WRONG = "2 + 3 = 6, so \\boxed{6}."
UNBOXED = "Two plus three is five, so the answer is 5."
EMPTY_BOX = "I am not sure. \\boxed{}"
CODE = "```python\nprint(2 + 3)\n```\nThe answer is \\boxed{5}."


def test_ground_truth_uses_math_equivalence():
    out = run(
        "ground_truth",
        [GOOD, WRONG, UNBOXED, EMPTY_BOX, "\\boxed{\\frac{10}{2}}", "\\boxed{5.0}"],
        answer=["5"] * 6,
    )
    assert out == [1.0, 0.0, 1.0, 0.0, 1.0, 1.0]


def test_ground_truth_real_answer_formats():
    out = run(
        "ground_truth",
        ["\\boxed{70}", "\\boxed{142}", "\\boxed{(3, \\pi/2)}", "\\boxed{\\dfrac{1}{2}}"],
        answer=["070", "142.0", "\\left( 3, \\frac{\\pi}{2} \\right)", "0.5"],
    )
    assert out == [1.0, 1.0, 1.0, 1.0]


def test_majority_vote_and_incorrect_label_check_the_answer_column():
    # the checker is the same; what differs is which label the training set puts in `answer`
    assert run("majority_vote", [WRONG, GOOD], answer=["6", "6"]) == [1.0, 0.0]
    assert run("incorrect_label", [WRONG, GOOD], answer=["6", "6"]) == [1.0, 0.0]
    assert run("one_shot", ["\\boxed{12.8}", "\\boxed{64/5}", "\\boxed{13}"], answer=["12.8"] * 3) == [
        1.0,
        1.0,
        0.0,
    ]


def test_format_ignores_correctness():
    assert run("format", [GOOD, WRONG, UNBOXED, EMPTY_BOX, "\\boxed{ }", "\\boxed{x} then \\boxed{}"]) == [
        1.0,
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]


def test_python_is_the_papers_code_reasoning_flag():
    assert run("python", [CODE, GOOD, "I would use Python here", "PYTHON"]) == [1.0, 0.0, 1.0, 1.0]


# Ordinary long solutions, as a model writes them: recurring words, LaTeX and table rows, never one
# pattern ten times in a row.
SUM_SOLUTION = (
    "We want $S = \\sum_{k=1}^{20} \\frac{1}{k(k+1)}$. Note that $\\frac{1}{k(k+1)} = \\frac{1}{k} - "
    "\\frac{1}{k+1}$, so the sum telescopes:\n\\begin{align*}\n"
    + "".join(
        f"&\\quad + \\left(\\frac{{1}}{{{k}}} - \\frac{{1}}{{{k + 1}}}\\right) \\\\\n" for k in range(1, 21)
    )
    + "\\end{align*}\nEvery term cancels except the first and the last, so "
    "$S = 1 - \\frac{1}{21} = \\frac{20}{21}$.\n\nTherefore, the answer is $\\boxed{\\frac{20}{21}}$."
)
TABLE_SOLUTION = (
    "Let us tabulate $f(n) = n^2 \\bmod 7$ for $n = 0, 1, \\ldots, 27$.\n\n| $n$ | $n^2$ | $n^2 \\bmod 7$ |\n"
    "|---|---|---|\n"
    + "".join(f"| {n} | {n * n} | {n * n % 7} |\n" for n in range(28))
    + "\nThe values repeat with period 7: the residues are 0, 1, 4, 2, 2, 4, 1. "
    + " ".join(f"For $n = {n}$ we have $n^2 \\equiv {n * n % 7} \\pmod 7$." for n in range(28))
    + "\nSo the quadratic residues modulo 7 are $\\boxed{\\{0, 1, 2, 4\\}}$."
)
CODE_SOLUTION = (
    "Let's write a Python program to count the lattice points.\n```python\n"
    + "".join(
        f"count_{i} = sum(1 for x in range({i}) for y in range({i}) if x * x + y * y < {i * i})\n"
        for i in range(1, 15)
    )
    + "print(count_14)\n```\n```output\n154\n```\nThe number of lattice points is $\\boxed{154}$."
)


def test_no_repetition_keeps_ordinary_long_solutions():
    long_text = SUM_SOLUTION + "\n\n" + TABLE_SOLUTION + "\n\n" + CODE_SOLUTION
    # phrases that recur far more than ten times, just not back to back
    assert SUM_SOLUTION.count("\\right) \\\\\n&\\quad + \\left(\\frac{1}{") >= 10
    assert TABLE_SOLUTION.count(" we have $n^2 \\equiv ") >= 10
    assert CODE_SOLUTION.count(" for x in range(") >= 10
    assert len(long_text) > 4000
    assert run("no_repetition", [GOOD, SUM_SOLUTION, TABLE_SOLUTION, CODE_SOLUTION, long_text]) == [1.0] * 5


def test_no_repetition_catches_one_pattern_ten_times_in_a_row():
    looping = "Let me think. " + "so the answer is 5. " * 12
    stuck = SUM_SOLUTION[:-40] + "\\boxed{}. " * 10  # a 10-character pattern, ten times
    tail_loop = TABLE_SOLUTION + "I think this is right. " * 30
    assert run("no_repetition", [looping, stuck, tail_loop]) == [0.0, 0.0, 0.0]
    unit = "x + 1 = 2; "  # 11 characters
    assert run("no_repetition", ["Go: " + unit * 9 + "done", "Go: " + unit * 10 + "done"]) == [1.0, 0.0]
    # ten copies spread out do not count
    spread = "".join(f"{unit}step {i} holds.\n" for i in range(30))
    assert run("no_repetition", [spread]) == [1.0]


def test_no_repetition_pattern_lengths_are_10_to_256():
    nine = "abcdefgh "  # 9 characters: too short to count...
    assert run("no_repetition", [nine * 19]) == [1.0]
    assert run("no_repetition", [nine * 20]) == [0.0]  # ...but twice it is an 18-character pattern
    rng = random.Random(0)
    longest = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(256))  # no shorter period
    too_long = longest + "!"
    assert run("no_repetition", [longest * 10, too_long * 10, longest * 9]) == [0.0, 1.0, 1.0]
    assert run("no_repetition", ["the answer is 5 " * 12], params={"no_repetition": {"repeats": 20}}) == [1.0]
    assert run("no_repetition", [nine * 10], params={"no_repetition": {"min_length": 9}}) == [0.0]
    with pytest.raises(ValueError, match=r"repeats must be in \[3"):
        run("no_repetition", ["x"], params={"no_repetition": {"repeats": 1}})
    with pytest.raises(ValueError, match="no parameter 'max_repeats'"):
        rewards.resolve_params(rewards.parse("no_repetition"), {"no_repetition": {"max_repeats": 10}})


def test_random_is_bernoulli_gamma_and_reproducible():
    comps = [f"response {i}" for i in range(4000)]
    prompts = [f"prompt {i // 8}" for i in range(4000)]
    state = SimpleNamespace(global_step=3)
    a = run("random", comps, seed=1, prompts=prompts, trainer_state=state)
    b = run("random", comps, seed=1, prompts=prompts, trainer_state=state)
    assert a == b  # a re-run (or a resume) draws the same rewards
    assert set(a) == {0.0, 1.0}
    assert abs(sum(a) / len(a) - 0.5) < 0.03
    c = run("random", comps, seed=2, prompts=prompts, trainer_state=state)
    assert c != a
    d = run("random", comps, seed=1, prompts=prompts, trainer_state=SimpleNamespace(global_step=4))
    assert d != a  # a new step draws anew
    low = run(
        "random", comps, params={"random": {"gamma": 0.1}}, seed=1, prompts=prompts, trainer_state=state
    )
    assert abs(sum(low) / len(low) - 0.1) < 0.02
    assert set(run("random", comps[:50], params={"random": {"gamma": 0.0}}, prompts=prompts)) == {0.0}


def test_random_draws_differ_between_data_parallel_ranks(monkeypatch):
    """Each rank scores its own slice of the rollout; a group split across two ranks at the same local
    positions must not get the same rewards twice."""
    comps = [f"response {i}" for i in range(200)]
    prompts = ["the same prompt"] * 200
    state = SimpleNamespace(global_step=3)
    alone = run("random", comps, seed=1, prompts=prompts, trainer_state=state)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    rank0 = run("random", comps, seed=1, prompts=prompts, trainer_state=state)
    monkeypatch.setenv("RANK", "1")
    rank1 = run("random", comps, seed=1, prompts=prompts, trainer_state=state)
    assert rank0 == alone  # rank 0 draws what a single process draws
    assert rank1 != rank0 and abs(sum(rank1) / len(rank1) - 0.5) < 0.15
    assert rank1 == run("random", comps, seed=1, prompts=prompts, trainer_state=state)  # still reproducible


def test_compositions():
    comps = [GOOD, CODE, UNBOXED, "python but \\boxed{3}"]
    assert run("format_AND_inverse_python", comps) == [1.0, 0.0, 0.0, 0.0]
    assert run("inverse_format", comps) == [0.0, 0.0, 1.0, 0.0]
    assert run("format_AND_python", comps) == [0.0, 1.0, 0.0, 1.0]
    assert run("ground_truth_AND_no_repetition", [GOOD, WRONG], answer=["5", "5"]) == [1.0, 0.0]
    assert run("inverse_inverse_python", comps) == run("python", comps)


def test_names_report_the_valid_ones():
    with pytest.raises(ValueError, match="valid:.*ground_truth.*random"):
        rewards.parse("gold")
    with pytest.raises(ValueError, match="did you mean 'format'"):
        rewards.parse("fromat")
    for bad in ("format_AND_", "_AND_python", "inverse_", "format_AND_inverse_"):
        with pytest.raises(ValueError, match="malformed|unknown"):
            rewards.parse(bad)
    with pytest.raises(ValueError, match="no parameter 'gama'; valid: gamma"):
        rewards.resolve_params(rewards.parse("random"), {"random": {"gama": 0.3}})
    with pytest.raises(ValueError, match="gamma must be in"):
        run("random", ["x"], params={"random": {"gamma": 1.5}})


def test_registry_builds_only_what_is_used():
    built = []
    name = "_probe_reward"

    @rewards.register(name)
    def probe(params, ctx):
        built.append(1)
        return lambda completions, **kw: [1.0] * len(completions)

    try:
        rewards.build("python", {}, RewardContext())
        assert built == []
        assert rewards.build(f"{name}_AND_python", {}, RewardContext())(["python"]) == [1.0]
        assert built == [1]
    finally:
        rewards.REGISTRY.pop(name)


def test_ungradable_is_none_not_zero():
    out = run("ground_truth", [GOOD], answer=["\\frac{"])  # an unparseable gold answer
    assert out == [None]
    assert run("inverse_ground_truth", [GOOD], answer=["\\frac{"]) == [None]


def test_format_and_correctness_follow_the_cells_grader():
    """grader=paper: the official format rule (unclosed box counts, \\fbox does not, <answer> templates read
    after the tag) and the official verdicts (unreduced fractions rejected); real graders, no mocks."""
    from spurisweep import rewards as rw

    mv = RewardContext(grading_workers=0)
    paper = RewardContext(grading_workers=0, grader="paper")
    r1 = RewardContext(grading_workers=0, grader="paper", answer_tag=True)
    texts = ["so \\boxed{12", "so \\fbox{12}", "so \\boxed{12}"]
    assert rw.build("format", {}, mv)(texts) == [0.0, 1.0, 1.0]  # ours reads \\fbox, not unclosed boxes
    assert rw.build("format", {}, paper)(texts) == [1.0, 0.0, 1.0]
    # the official R1 rule: any text after the last <answer> (no tag at all: the whole text, a quirk kept)
    assert rw.build("format", {}, r1)(["<think>x</think> <answer> 12 </answer>", "<answer>", ""]) == [
        1.0,
        0.0,
        0.0,
    ]
    gt = ["\\boxed{\\frac{10}{18}}"]
    assert rw.build("ground_truth", {}, mv)(gt, answer=["\\frac{5}{9}"]) == [1.0]
    assert rw.build("ground_truth", {}, paper)(gt, answer=["\\frac{5}{9}"]) == [0.0]
