"""Verifier coverage: every reward and the grader against the adversarial suite (spurisweep.rewards.verify_suite).

Each reward declares what it must score there, on its `register(..., expected=...)` line (rewards/registry.py):
GRADER (it runs the grader's check against the `answer` column: ground_truth, majority_vote, incorrect_label,
one_shot), SUITE (its own values under its name in the suite file's cases: format, python, no_repetition),
{case_id: value} inline, or UNSCORED (random: it draws, nothing to expect; not scored). A registered reward
that declares nothing stops the run with one line naming it (check_declared): a new reward cannot be silently
skipped. Compositions derive theirs from their parts (A_AND_B: both 1; inverse_A: 1 - A; a mixture: the
weighted sum). RESEARCH.md's bar: > 90% coverage, below 70% is exploitable.

The suite runs once per grader (GRADERS: math-verify and the paper's official grader): the grader itself
and every reward built for a cell with that `grader`, against the cases with that grader's expectations
(verify_suite.cases_for: the official rules differ on a few cases, each a documented rule).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import REGISTRY, Expr, RewardContext, build, parse, resolve_params
from .registry import GRADER, SUITE, UNSCORED, RewardDef

FLOOR = 0.9  # the practitioner's bar (RESEARCH.md, "Verifier coverage")
GRADERS = ("math_verify", "paper")  # the cell `grader` values (spec.CellConfig.grader)
DEFAULT_COMPOSITIONS = ("format_AND_inverse_python", "inverse_format", "ground_truth_AND_no_repetition")
_SKIP = "skip"  # no expectation on this case


def _source(d: RewardDef) -> str:
    """Where the reward is registered: the file its one `register(...)` line is in."""
    try:
        source = inspect.getsourcefile(d.factory)
    except TypeError:
        source = None
    if not source:
        return d.factory.__module__
    path = Path(source)
    return str(path.relative_to(Path.cwd())) if path.is_relative_to(Path.cwd()) else str(path)


def check_declared() -> None:
    """Every registered reward declares its expected verdicts, and SUITE / inline ones name real cases.
    Else a ConfigError naming the reward, its file and `expected` (verify-rewards exits 2 on it)."""
    from .verify_suite import CASES, SUITE_FILE

    ids = {c.id for c in CASES}
    for name, d in sorted(REGISTRY.items()):
        problem = None
        if d.expected is None:
            problem = (
                f"reward {name!r} declares no expected verdicts on the adversarial suite: register it with "
                f"expected={GRADER!r}, {SUITE!r} (values in rewards/{SUITE_FILE}), {{case_id: value}} or "
                f"{UNSCORED!r}"
            )
        elif d.expected == SUITE and not any(name in c.expected for c in CASES):
            problem = (
                f"reward {name!r} declares expected={SUITE!r} but no case in rewards/{SUITE_FILE} names it"
            )
        elif isinstance(d.expected, Mapping) and set(d.expected) - ids:
            unknown = sorted(set(d.expected) - ids)[0]
            problem = f"reward {name!r}: expected names no suite case {unknown!r} (rewards/{SUITE_FILE})"
        if problem:
            raise ConfigError(problem, file=_source(d), field="expected")


def _expected(expr: Expr, exp: Mapping[str, Any]) -> Any:
    """The expectation for an expression on one case, or _SKIP when a part has none."""
    if expr.op == "base":
        declared = REGISTRY[expr.name].expected
        return exp.get("grader" if declared == GRADER else expr.name, _SKIP)
    if expr.op not in ("and", "inverse", "mix"):
        return _SKIP  # an operator without a rule here: the composition is not scored
    parts = [_expected(a, exp) for a in expr.args]
    if any(p == _SKIP for p in parts):
        return _SKIP
    if any(p is None for p in parts):
        return None
    if expr.op == "inverse":
        return 1.0 - parts[0]
    if expr.op == "mix":  # a weighted sum, as rewards._mixture
        return math.fsum(w * p for w, p in zip(expr.weights, parts, strict=True))
    return float(all(p >= 0.5 for p in parts))


def _inline() -> dict[str, dict[str, float | None]]:
    """The inline `expected={case_id: value}` declarations as {case_id: {reward: value}}."""
    out: dict[str, dict[str, float | None]] = {}
    for name, d in REGISTRY.items():
        if isinstance(d.expected, Mapping):
            for case_id, value in d.expected.items():
                out.setdefault(case_id, {})[name] = value
    return out


def cases(names: Sequence[str], grader: str = "math_verify") -> list[Any]:
    """The grader's suite cases, each with its expectations for `names` (rewards and compositions)."""
    from .verify_suite import cases_for, with_expectations

    out = []
    for case in with_expectations(_inline(), cases_for(grader)):
        exp = dict(case.expected)
        for name in names:
            if name not in exp:
                v = _expected(parse(name), case.expected)
                if v != _SKIP:
                    exp[name] = v
        out.append(dataclasses.replace(case, expected=exp))
    return out


def checker(name: str, grader: str = "math_verify"):
    fn = build(name, resolve_params(parse(name), {}), RewardContext(seed=0, grader=grader))

    def check(responses: list[str], golds: list[str], stats: list[Any] | None = None) -> list[float | None]:
        # a case's per-token statistics reach the reward as the trainer passes them: one list per completion
        names = sorted({k for st in stats or () for k in st})
        columns = {k: [list(st.get(k, ())) for st in stats or ()] for k in names}
        return fn(responses, answer=golds, prompts=[""] * len(responses), **columns)

    return check


def default_names() -> list[str]:
    """Every registered reward with something to expect, plus a few compositions."""
    return [n for n in sorted(REGISTRY) if REGISTRY[n].expected != UNSCORED] + list(DEFAULT_COMPOSITIONS)


def verify(names: Sequence[str] | None = None, grader: str = "math_verify"):
    """Run ``grader`` (checker "grader") and the given rewards built for a cell with that grader
    (default: all but the unscored ones, plus a few compositions)."""
    from functools import partial

    from ..grading import grade_batch
    from .verify_suite import run_suite

    if grader not in GRADERS:
        raise ValueError(f"unknown grader {grader!r}; valid: {', '.join(GRADERS)}")
    check_declared()
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
