"""An adversarial verifier suite: known-good and known-bad model outputs, as data, and a runner.

The cases are package data, `verify_suite.yaml` beside this module (loaded once, into :data:`CASES`), with
the per-grader overrides (:data:`GRADER_EXPECTED`); adding a case or a reward's expectations edits that file.

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
from importlib import resources
from typing import Any

import yaml

from spurisweep.errors import ConfigError
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
    "load_suite",
    "run_suite",
    "with_expectations",
]

#: a checker scores a batch: (responses, gold answers) -> one float (or None = ungradable) per response; a
#: checker of per-token statistics (an intrinsic reward) also takes `stats=`, one mapping per case
Checker = Callable[..., list[float | None]]


@dataclass(frozen=True)
class SuiteCase:
    id: str
    response: str
    gold: str
    expected: Mapping[str, float | None]
    tags: tuple[str, ...] = ()
    note: str = ""
    #: the policy's per-token statistics on the response, for rewards that read them (intrinsic rewards:
    #: token_logp, token_entropy, token_self_certainty, one value per response token); empty otherwise
    stats: Mapping[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)

    @property
    def kind(self) -> str:
        """ "good" (the grader must accept it), "bad" (must reject it) or "ungradable"."""
        g = self.expected.get("grader", "n/a")
        return {1.0: "good", 0.0: "bad", None: "ungradable"}.get(g, "n/a")  # type: ignore[arg-type]


SUITE_FILE = "verify_suite.yaml"  # package data beside this module
_WHERE = f"spurisweep/rewards/{SUITE_FILE}"  # how errors name it


def _value(where: str, value: Any, scores: bool = False) -> float | None:
    """1.0, 0.0 or null; with `scores` (a case with per-token statistics: an intrinsic reward's value) any
    finite number or null."""
    if value is None or (not isinstance(value, bool) and value in (0, 1)):
        return None if value is None else float(value)
    if scores and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    what = "a finite number or null" if scores else "1.0, 0.0 or null"
    raise ConfigError(f"must be {what}, got {value!r}", file=_WHERE, field=where)


def _expectations(where: str, raw: Any, scores: bool = False) -> dict[str, float | None]:
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ConfigError("must map checker names to 1.0, 0.0 or null", file=_WHERE, field=where)
    return {k: _value(f"{where}.{k}", v, scores) for k, v in raw.items()}


def _stats(where: str, raw: Any) -> dict[str, tuple[float, ...]]:
    """A case's per-token statistics: known names, lists of finite numbers, one length (the tokens)."""
    from .intrinsic import TOKEN_STATS

    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"must map {', '.join(TOKEN_STATS)} to lists of numbers", file=_WHERE, field=where)
    out = {}
    for name, values in raw.items():
        if name not in TOKEN_STATS:
            raise ConfigError(
                f"unknown statistic {name!r}; known: {', '.join(TOKEN_STATS)}", file=_WHERE, field=where
            )
        ok = isinstance(values, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
        )
        if not ok:
            raise ConfigError("must be a list of finite numbers", file=_WHERE, field=f"{where}.{name}")
        out[name] = tuple(float(v) for v in values)
    if len({len(v) for v in out.values()}) > 1:
        raise ConfigError("every statistic needs one value per response token", file=_WHERE, field=where)
    return out


def _suite_case(i: int, raw: Any) -> SuiteCase:
    where = f"cases[{i}]"
    if not isinstance(raw, dict):
        raise ConfigError("must be a mapping with id, response, gold, expected", file=_WHERE, field=where)
    for key in ("id", "response", "gold"):
        if not isinstance(raw.get(key), str):
            raise ConfigError("missing, or not text", file=_WHERE, field=f"{where}.{key}")
    unknown = set(raw) - {"id", "response", "gold", "expected", "tags", "note", "stats"}
    if unknown:
        raise ConfigError(f"unknown key {sorted(unknown)[0]!r}", file=_WHERE, field=where)
    stats = _stats(f"{where}.stats", raw["stats"]) if "stats" in raw else {}
    expected = _expectations(f"{where}.expected", raw.get("expected"), scores=bool(stats))
    return SuiteCase(
        raw["id"],
        raw["response"],
        raw["gold"],
        expected,
        tuple(raw.get("tags") or ()),
        raw.get("note", ""),
        stats,
    )


def load_suite(
    text: str | None = None,
) -> tuple[list[SuiteCase], dict[str, dict[str, dict[str, float | None]]]]:
    """The suite file's cases and per-grader overrides (`text`: the file's text, default the shipped one).
    A malformed file is a ConfigError naming the file and the field."""
    if text is None:
        text = resources.files(__package__).joinpath(SUITE_FILE).read_text(encoding="utf-8")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({str(exc).splitlines()[0]})", file=_WHERE) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        raise ConfigError("expected a mapping with a `cases` list", file=_WHERE)
    cases = [_suite_case(i, c) for i, c in enumerate(doc["cases"])]
    ids: set[str] = set()
    for i, case in enumerate(cases):
        if case.id in ids:
            raise ConfigError(f"duplicate case id {case.id!r}", file=_WHERE, field=f"cases[{i}].id")
        ids.add(case.id)
    graders: dict[str, dict[str, dict[str, float | None]]] = {}
    for grader, overrides in (doc.get("graders") or {}).items():
        if not isinstance(overrides, dict):
            raise ConfigError("must map case ids to expectations", file=_WHERE, field=f"graders.{grader}")
        for case_id in overrides:
            if case_id not in ids:
                raise ConfigError(f"no case {case_id!r}", file=_WHERE, field=f"graders.{grader}")
        graders[str(grader)] = {
            cid: _expectations(f"graders.{grader}.{cid}", exp) for cid, exp in overrides.items()
        }
    return cases, graders


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


CASES, GRADER_EXPECTED = load_suite()
#: where the paper's official grader (grading/paper.py) must differ from the cases' expectations
PAPER_EXPECTED = GRADER_EXPECTED["paper"]


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
            extra = {"stats": [c.stats for c in mine]} if any(c.stats for c in mine) else {}
            got = list(check([c.response for c in mine], [c.gold for c in mine], **extra))
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
