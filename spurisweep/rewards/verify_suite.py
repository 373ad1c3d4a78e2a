"""An adversarial verifier suite: known-good and known-bad model outputs, as data, and a runner.

Every :class:`SuiteCase` carries ``expected``: a mapping from a *checker name* to the value that checker
must return for the case (``1.0`` / ``0.0``, or ``None`` for "ungradable"). The answer grader is the
checker ``"grader"`` (its Verdict.correct True/False/None maps to 1.0/0.0/None); reward functions are
further checkers under their own names (``"format"``, ``"python"``, ...). A case without a key for a
checker says nothing about it, so coverage of each checker is computed only over the cases that name it.

    result = run_suite()                                   # the grader, via grade_batch
    result = run_suite(checkers={"format": format_reward})  # + a reward: f(responses, golds) -> floats
    print(result.summary()); assert result.coverage["grader"] == 1.0

To add expectations for a new checker without editing this file, use :func:`with_expectations`
(``{case_id: {name: value}}``) or :func:`extend_cases`, and pass the result as ``cases=``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from spurisweep.grading import Verdict, grade_batch

logger = logging.getLogger(__name__)

__all__ = [
    "CASES",
    "GRADER_EXPECTED",
    "PAPER_EXPECTED",
    "CaseOutcome",
    "Checker",
    "SuiteCase",
    "SuiteResult",
    "cases_for",
    "extend_cases",
    "grader_checker",
    "run_suite",
    "with_expectations",
]

#: a checker scores a batch: (responses, gold answers) -> one float (or None = ungradable) per response
Checker = Callable[[list[str], list[str]], list[float | None]]


@dataclass(frozen=True)
class SuiteCase:
    id: str
    response: str
    gold: str
    expected: Mapping[str, float | None]
    tags: tuple[str, ...] = ()
    note: str = ""

    @property
    def kind(self) -> str:
        """ "good" (the grader must accept it), "bad" (must reject it) or "ungradable"."""
        g = self.expected.get("grader", "n/a")
        return {1.0: "good", 0.0: "bad", None: "ungradable"}.get(g, "n/a")  # type: ignore[arg-type]


def _case(
    id: str,
    response: str,
    gold: str,
    grader: bool | None,
    *,
    format: float | None | str,
    python: float | None | str,
    tags: Sequence[str] = (),
    note: str = "",
) -> SuiteCase:
    """A case; ``format``/``python`` are hand-labelled with the paper's definitions ("skip" = no
    expectation for that checker on this case)."""
    expected: dict[str, float | None] = {"grader": None if grader is None else float(grader)}
    for name, value in (("format", format), ("python", python)):
        if value != "skip":
            expected[name] = value  # type: ignore[assignment]
    return SuiteCase(id, response, gold, expected, tuple(tags), note)


_REASONING = (
    "Let's think step by step. First we set up the equation $3x + 4 = 40$, so $3x = 36$. "
    "Dividing both sides by 3 gives the value we need.\n\n"
)

# format: 1.0 iff the response's LAST \boxed{...} is present and non-empty (the paper's format reward).
# python: 1.0 iff "python" occurs in the lower-cased response (the paper's code-reasoning reward).
CASES: list[SuiteCase] = [
    # ---- known-correct outputs in varied formats -------------------------------------------------
    _case("good/boxed_int", _REASONING + "Therefore $x = \\boxed{12}$.", "12", True, format=1.0, python=0.0),
    _case(
        "good/boxed_nested_braces",
        "The height is $\\boxed{\\frac{\\sqrt{3}}{2}}$.",
        "\\frac{\\sqrt3}{2}",
        True,
        format=1.0,
        python=0.0,
    ),
    _case("good/nested_boxed", "So the result is \\boxed{\\boxed{7}}.", "7", True, format=1.0, python=0.0),
    _case("good/dfrac", "We get \\boxed{\\dfrac{3}{4}}", "\\frac{3}{4}", True, format=1.0, python=0.0),
    _case(
        "good/decimal_vs_fraction", "This equals \\boxed{0.75}.", "\\frac{3}{4}", True, format=1.0, python=0.0
    ),
    _case("good/fraction_vs_decimal", "This equals \\boxed{3/4}.", "0.75", True, format=1.0, python=0.0),
    _case(
        "good/half_three_ways", "The probability is $\\boxed{\\frac12}$.", "0.5", True, format=1.0, python=0.0
    ),
    _case(
        "good/tuple_left_right",
        "In polar coordinates the point is \\boxed{(3, \\pi/2)}.",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        True,
        format=1.0,
        python=0.0,
    ),
    _case("good/degrees_pred", "The angle measures \\boxed{90^\\circ}.", "90", True, format=1.0, python=0.0),
    _case("good/degrees_gold", "The angle measures \\boxed{75}.", "75^\\circ", True, format=1.0, python=0.0),
    _case("good/answer_is", _REASONING + "So the answer is 12.", "12", True, format=0.0, python=0.0),
    _case(
        "good/answer_is_latex",
        "Putting it together, the answer is $\\frac{1}{2}$.",
        "0.5",
        True,
        format=0.0,
        python=0.0,
    ),
    _case("good/zero_padded_gold", "The remainder is \\boxed{70}.", "070", True, format=1.0, python=0.0),
    _case("good/zero_padded_pred", "The remainder is \\boxed{025}.", "25", True, format=1.0, python=0.0),
    _case("good/float_gold", "There are \\boxed{142} ways.", "142.0", True, format=1.0, python=0.0),
    _case("good/float_pred", "There are \\boxed{142.0} ways.", "142", True, format=1.0, python=0.0),
    _case(
        "good/text_around",
        "We have $x=5$ and $y=7$, so the final answer is $\\boxed{x = 5}$ and we are done; 9 checks passed.",
        "5",
        True,
        format=1.0,
        python=0.0,
    ),
    _case("good/fbox", "Result: \\fbox{42}", "42", True, format="skip", python=0.0),
    _case("good/last_number", "Adding the two parts gives 3 + 4 = 7", "7", True, format=0.0, python=0.0),
    _case(
        "good/thousands_separator", "The total is \\boxed{10,080}.", "10,\\!080", True, format=1.0, python=0.0
    ),
    _case(
        "good/text_answer",
        "So \\boxed{\\text{Evelyn}} has the highest speed.",
        "\\text{Evelyn}",
        True,
        format=1.0,
        python=0.0,
    ),
    _case(
        "good/text_answer_bare",
        "So \\boxed{Evelyn} has the highest speed.",
        "\\text{Evelyn}",
        True,
        format=1.0,
        python=0.0,
    ),
    _case(
        "good/choice_letter", "The correct option is \\boxed{C}.", "\\text{(C)}", True, format=1.0, python=0.0
    ),
    _case(
        "good/interval_union",
        "The domain is $\\boxed{(-\\infty,2)\\cup(3,\\infty)}$.",
        "(-\\infty, 2) \\cup (3, \\infty)",
        True,
        format=1.0,
        python=0.0,
    ),
    _case(
        "good/matrix",
        "Hence $\\mathbf{M} = \\boxed{\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}}$.",
        "\\begin{pmatrix} -1 & 0 \\\\ 0 & -1 \\end{pmatrix}",
        True,
        format=1.0,
        python=0.0,
    ),
    _case(
        "good/set_any_order", "The solutions are \\boxed{7, 5, 3}.", "3, 5, 7", True, format=1.0, python=0.0
    ),
    _case(
        "good/sqrt_forms",
        "So $\\cos 45^\\circ = \\boxed{\\sqrt{2}/2}$.",
        "\\frac{\\sqrt{2}}{2}",
        True,
        format=1.0,
        python=0.0,
    ),
    _case("good/dollars", "She pays \\boxed{\\$36}.", "36", True, format=1.0, python=0.0),
    _case(
        "good/unsimplified",
        "The sum is \\boxed{\\frac{1}{3}+\\frac{1}{3}}.",
        "\\frac{2}{3}",
        True,
        format=1.0,
        python=0.0,
    ),
    _case("good/period_in_box", "Thus \\boxed{5.}", "5", True, format=1.0, python=0.0),
    _case(
        "good/box_then_prose_number",
        "\\boxed{12}\n\nI hope it is correct; it took me 15 minutes.",
        "12",
        True,
        format=1.0,
        python=0.0,
    ),
    _case(
        "good/python_code_block",
        "Let me verify with Python.\n```python\nprint(2 + 3)\n```\n```output\n5\n```\nSo the sum is \\boxed{5}.",
        "5",
        True,
        format=1.0,
        python=1.0,
    ),
    _case("good/equation_form", "The line is \\boxed{y = 2x + 3}.", "y=2x+3", True, format=1.0, python=0.0),
    _case("good/percent", "The rate is \\boxed{15\\%}.", "15", True, format=1.0, python=0.0),
    _case("good/negative_last_number", "so the minimum value is -4", "-4.0", True, format=0.0, python=0.0),
    _case("good/one_shot_pi1", "The required value is \\boxed{12.8}", "12.8", True, format=1.0, python=0.0),
    _case(
        "good/fraction_of_pi1",
        "The required value is \\boxed{\\frac{64}{5}}",
        "12.8",
        True,
        format=1.0,
        python=0.0,
    ),
    # ---- known-wrong outputs that look right -----------------------------------------------------
    _case(
        "bad/wrong_number_boxed",
        _REASONING + "Therefore $x = \\boxed{13}$.",
        "12",
        False,
        format=1.0,
        python=0.0,
    ),
    _case(
        "bad/prose_other_last_number",
        "We find that x equals 12, and it is confirmed by checking 3 cases.",
        "12",
        False,
        format=0.0,
        python=0.0,
        note="no box, no 'answer is': the last number (3) is the answer",
    ),
    _case(
        "bad/two_boxes_last_wrong",
        "First I got \\boxed{12}. Wait, that is wrong; recomputing gives \\boxed{13}.",
        "12",
        False,
        format=1.0,
        python=0.0,
    ),
    _case(
        "bad/empty_box",
        "Let me compute 3 + 4 first.\n\n\\boxed{}",
        "12",
        False,
        format=0.0,
        python=0.0,
        note="an empty last box is no box; the fallback (last number, 4) is wrong",
    ),
    _case("bad/hedged_prose", "The answer is either 3 or 5.", "5", False, format=0.0, python=0.0),
    _case("bad/hedged_box", "So $x$ is \\boxed{3 \\text{ or } 5}.", "5", False, format=1.0, python=0.0),
    _case(
        "bad/correct_in_reasoning_wrong_box",
        "The first step gives 12, which we then double: \\boxed{24}.",
        "12",
        False,
        format=1.0,
        python=0.0,
    ),
    _case("bad/no_answer", "I am not sure how to solve this problem.", "12", False, format=0.0, python=0.0),
    _case("bad/sign_error", "So \\boxed{-12}.", "12", False, format=1.0, python=0.0),
    _case(
        "bad/tuple_order",
        "The point is \\boxed{\\left(\\frac{\\pi}{2}, 3\\right)}.",
        "\\left( 3, \\frac{\\pi}{2} \\right)",
        False,
        format=1.0,
        python=0.0,
    ),
    _case("bad/partial_set", "The solutions are \\boxed{3, 5}.", "3, 5, 7", False, format=1.0, python=0.0),
    _case("bad/rounded", "Approximately \\boxed{0.33}.", "\\frac{1}{3}", False, format=1.0, python=0.0),
    _case(
        "bad/prompt_echo_box",
        "Please reason step by step, and put your final answer within \\boxed{}.",
        "12",
        False,
        format=0.0,
        python=0.0,
    ),
    _case(
        "bad/truncated_box",
        _REASONING + "So the final value is \\boxed{1",
        "12",
        False,
        format=0.0,
        python=0.0,
        note="an unclosed last box is no box; the fallback (last number, 1) is wrong",
    ),
    _case(
        "bad/python_mention_wrong",
        "I would use Python for this, but by hand: \\boxed{11}",
        "12",
        False,
        format=1.0,
        python=1.0,
    ),
    _case(
        "bad/wrong_choice", "The correct option is \\boxed{D}.", "\\text{(C)}", False, format=1.0, python=0.0
    ),
    _case(
        "bad/wrong_text", "So \\boxed{\\text{Navin}} wins.", "\\text{Evelyn}", False, format=1.0, python=0.0
    ),
    _case(
        "bad/too_long_box",
        "\\boxed{" + " + ".join(["1"] * 300) + "}",
        "300",
        False,
        format=1.0,
        python=0.0,
        note="extracted answers over MAX_ANSWER_CHARS are rejected unparsed",
    ),
    _case(
        "bad/answer_in_code_only",
        "```python\nx = 12\nprint(x)\n```\nThe code prints the value; I computed 7 by hand.",
        "12",
        False,
        format=0.0,
        python=1.0,
    ),
    # ---- ungradable ------------------------------------------------------------------------------
    _case(
        "none/power_tower",
        "Clearly the value is \\boxed{9^{9^{9}}}",
        "5",
        None,
        format=1.0,
        python=0.0,
        tags=("slow",),
        note="cannot be decided within the timeout: graded None ('timeout'), never a hang",
    ),
    _case("none/empty_gold", "So \\boxed{5}.", "", None, format=1.0, python=0.0),
    _case("none/empty_gold_empty_box", "So \\boxed{}.", "", None, format=0.0, python=0.0),
    _case("none/gold_unparseable", "So \\boxed{5}.", "\\frac{^2}{}", None, format=1.0, python=0.0),
]


#: where the paper's official grader (grading/paper.py) must differ from the expectations above, each a
#: documented official rule (RESEARCH.md, "The official code's behaviour"); every other case holds for both
PAPER_EXPECTED: dict[str, dict[str, float | None]] = {
    "good/set_any_order": {"grader": 0.0},  # tuples compare element by element, in order
    "none/power_tower": {"grader": 0.0},  # an ungradable answer scores 0, never None
    "none/gold_unparseable": {"grader": 0.0},  # likewise
    "none/empty_gold": {"grader": 0.0},  # an empty gold is graded: another answer does not match it
    "none/empty_gold_empty_box": {"grader": 1.0},  # ... and an empty box does (the official rule)
    "bad/truncated_box": {"format": 1.0},  # an unclosed \boxed{ counts and runs to the end of the text
}
#: grader name -> its expectation overrides
GRADER_EXPECTED: dict[str, dict[str, dict[str, float | None]]] = {"math_verify": {}, "paper": PAPER_EXPECTED}


def cases_for(grader: str) -> list[SuiteCase]:
    """:data:`CASES` with the expectations of ``grader`` (a key of :data:`GRADER_EXPECTED`)."""
    if grader not in GRADER_EXPECTED:
        raise ValueError(f"no suite expectations for grader {grader!r}; valid: {', '.join(GRADER_EXPECTED)}")
    return with_expectations(GRADER_EXPECTED[grader])


def extend_cases(extra: Iterable[SuiteCase], base: Sequence[SuiteCase] | None = None) -> list[SuiteCase]:
    """A new case list: ``base`` (default :data:`CASES`) plus ``extra`` (ids must stay unique)."""
    out = list(CASES if base is None else base)
    ids = {c.id for c in out}
    for case in extra:
        if case.id in ids:
            raise ValueError(f"duplicate case id {case.id!r}")
        ids.add(case.id)
        out.append(case)
    return out


def with_expectations(
    extra: Mapping[str, Mapping[str, float | None]], base: Sequence[SuiteCase] | None = None
) -> list[SuiteCase]:
    """A new case list whose cases' ``expected`` maps are updated from ``{case_id: {checker: value}}``."""
    cases = list(CASES if base is None else base)
    known = {c.id for c in cases}
    unknown = set(extra) - known
    if unknown:
        raise KeyError(f"unknown case ids: {sorted(unknown)}")
    return [
        dataclasses.replace(c, expected={**c.expected, **extra[c.id]}) if c.id in extra else c for c in cases
    ]


def grader_checker(grader: Callable[[list[tuple[str, str]]], list[Verdict]] = grade_batch) -> Checker:
    """Turn a batch grader ((response, gold) pairs -> Verdicts) into a checker scoring 1.0/0.0/None."""

    def check(responses: list[str], golds: list[str]) -> list[float | None]:
        verdicts = grader(list(zip(responses, golds, strict=True)))
        return [None if v.correct is None else float(v.correct) for v in verdicts]

    return check


@dataclass(frozen=True)
class CaseOutcome:
    case_id: str
    checker: str
    expected: float | None
    got: float | None
    ok: bool
    error: str | None = None


@dataclass
class SuiteResult:
    outcomes: list[CaseOutcome]
    coverage: dict[str, float]  # checker -> share of its cases judged as expected
    counts: dict[str, tuple[int, int]]  # checker -> (as expected, cases with an expectation)
    failures: list[CaseOutcome] = field(default_factory=list)

    def passed(self, checker: str = "grader", threshold: float = 1.0) -> bool:
        return self.coverage.get(checker, 0.0) >= threshold

    def summary(self) -> str:
        lines = [
            f"{name}: {ok}/{n} as expected ({100 * self.coverage[name]:.1f}%)"
            for name, (ok, n) in self.counts.items()
        ]
        for f in self.failures:
            extra = f" [{f.error}]" if f.error else ""
            lines.append(f"  FAIL {f.checker} {f.case_id}: expected {f.expected}, got {f.got}{extra}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "coverage": dict(self.coverage),
            "counts": {k: list(v) for k, v in self.counts.items()},
            "failures": [dataclasses.asdict(f) for f in self.failures],
            "outcomes": [dataclasses.asdict(o) for o in self.outcomes],
        }


def _same(expected: float | None, got: Any) -> bool:
    if expected is None or got is None:
        return expected is None and got is None
    try:
        return math.isclose(float(got), float(expected), rel_tol=0.0, abs_tol=1e-9)
    except (TypeError, ValueError):
        return False


def run_suite(
    grader: Callable[[list[tuple[str, str]]], list[Verdict]] | None = grade_batch,
    checkers: Mapping[str, Checker] | None = None,
    cases: Sequence[SuiteCase] | None = None,
) -> SuiteResult:
    """Run every checker over the cases that name an expectation for it.

    ``grader`` (a batch grader returning Verdicts, default :func:`grade_batch`) is scored as the
    checker "grader"; ``checkers`` adds or overrides named checkers ``f(responses, golds) -> values``.
    A checker that raises, or returns the wrong number of values, fails all its cases (with the error).
    """
    cases = list(CASES if cases is None else cases)
    named: dict[str, Checker] = {}
    if grader is not None:
        named["grader"] = grader_checker(grader)
    named.update(checkers or {})

    outcomes: list[CaseOutcome] = []
    coverage: dict[str, float] = {}
    counts: dict[str, tuple[int, int]] = {}
    for name, check in named.items():
        mine = [c for c in cases if name in c.expected]
        if not mine:
            logger.info("no suite case has an expectation for checker %r", name)
            continue
        error = None
        try:
            got = list(check([c.response for c in mine], [c.gold for c in mine]))
            if len(got) != len(mine):
                raise ValueError(f"checker returned {len(got)} values for {len(mine)} cases")
        except Exception as exc:  # report, don't crash the suite
            logger.exception("checker %r failed", name)
            error = f"{type(exc).__name__}: {exc}"
            got = [float("nan")] * len(mine)
        n_ok = 0
        for case, value in zip(mine, got, strict=True):
            ok = error is None and _same(case.expected[name], value)
            n_ok += ok
            outcomes.append(CaseOutcome(case.id, name, case.expected[name], value, ok, error))
        counts[name] = (n_ok, len(mine))
        coverage[name] = n_ok / len(mine)
    failures = [o for o in outcomes if not o.ok]
    return SuiteResult(outcomes, coverage, counts, failures)
