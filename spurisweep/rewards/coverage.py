"""Verifier coverage: every reward and the grader against the adversarial suite (spurisweep.rewards.verify_suite).

The suite's cases carry hand-labelled expectations for the grader and the `format` / `python` rewards.
The rewards that run the grader's check against the `answer` column (ground_truth, majority_vote,
incorrect_label, one_shot) inherit the grader's expectation; compositions derive theirs from their
parts (A_AND_B: both 1; inverse_A: 1 - A); `no_repetition` gets its own cases here. `random` has no
expectation to meet and is not scored. RESEARCH.md's bar: > 90% coverage, below 70% is exploitable.

The suite runs once per grader (GRADERS: math-verify and the paper's official grader): the grader itself
and every reward built for a cell with that `grader`, against the cases with that grader's expectations
(verify_suite.cases_for: the official rules differ on a few cases, each a documented rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import REGISTRY, Expr, RewardContext, build, parse, resolve_params

FLOOR = 0.9  # the practitioner's bar (RESEARCH.md, "Verifier coverage")
GRADERS = ("math_verify", "paper")  # the cell `grader` values (spec.CellConfig.grader)
GRADER_LIKE = ("ground_truth", "majority_vote", "incorrect_label", "one_shot")
DEFAULT_COMPOSITIONS = ("format_AND_inverse_python", "inverse_format", "ground_truth_AND_no_repetition")


def _expected(expr: Expr, exp: dict[str, Any]) -> Any:
    """The expectation for an expression on one case, or the string 'skip' when a part has none."""
    if expr.op == "base":
        key = "grader" if expr.name in GRADER_LIKE else expr.name
        return exp.get(key, "skip")
    parts = [_expected(a, exp) for a in expr.args]
    if any(p == "skip" for p in parts):
        return "skip"
    if any(p is None for p in parts):
        return None
    if expr.op == "inverse":
        return 1.0 - parts[0]
    return float(all(p >= 0.5 for p in parts))


def cases(names: Sequence[str], grader: str = "math_verify") -> list[Any]:
    from .verify_suite import SuiteCase, cases_for, extend_cases

    loop = "Let me compute. " + "so the answer is 5, " * 12 + "\\boxed{5}"
    extra = [
        SuiteCase(
            "norep/looping", loop, "5", {"grader": 1.0, "format": 1.0, "python": 0.0, "no_repetition": 0.0}
        ),
        SuiteCase(
            "norep/plain",
            "2 + 3 = 5, so \\boxed{5}.",
            "5",
            {"grader": 1.0, "format": 1.0, "python": 0.0, "no_repetition": 1.0},
        ),
    ]
    out = []
    for case in extend_cases(extra, cases_for(grader)):
        exp = dict(case.expected)
        for name in names:
            if name not in exp:
                v = _expected(parse(name), case.expected)
                if v != "skip":
                    exp[name] = v
        out.append(SuiteCase(case.id, case.response, case.gold, exp, case.tags, case.note))
    return out


def checker(name: str, grader: str = "math_verify"):
    fn = build(name, resolve_params(parse(name), {}), RewardContext(seed=0, grader=grader))

    def check(responses: list[str], golds: list[str]) -> list[float | None]:
        return fn(responses, answer=golds, prompts=[""] * len(responses))

    return check


def default_names() -> list[str]:
    return [n for n in sorted(REGISTRY) if n != "random"] + list(DEFAULT_COMPOSITIONS)


def verify(names: Sequence[str] | None = None, grader: str = "math_verify"):
    """Run ``grader`` (checker "grader") and the given rewards built for a cell with that grader
    (default: all but random, plus a few compositions)."""
    from functools import partial

    from ..grading import grade_batch
    from .verify_suite import run_suite

    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; valid: {', '.join(GRADERS)}")
    names = list(names or default_names())
    for n in names:
        parse(n)  # unknown names fail before anything runs
    return run_suite(
        grader=partial(grade_batch, grader=grader),
        checkers={n: checker(n, grader) for n in names},
        cases=cases(names, grader),
    )


def verify_graders(names: Sequence[str] | None = None, graders: Sequence[str] = GRADERS) -> dict[str, Any]:
    """:func:`verify` once per grader: grader name -> its SuiteResult."""
    return {g: verify(names, g) for g in graders}
