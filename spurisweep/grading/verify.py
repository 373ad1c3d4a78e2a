"""Equivalence with math-verify under a per-answer time budget: the "math_verify" grader.

* input caps: over-long extracted answers are rejected ("too_long") and over-long gold answers are
  not parsed ("gold_too_long") before anything reaches the parser;
* a per-answer time budget: one ``SIGALRM`` interval timer (``setitimer``, float precision) around the
  whole parse + verify of an answer, in the main thread of the process that grades. math-verify's own
  per-call ``signal.alarm`` timeouts are switched off because they take whole seconds, would add up
  (gold parse + prediction parse + each comparison) and would clobber the single process-wide timer.

A hang that no signal can interrupt is the pool's business (``grading.pool``). This module also holds
what every grader shares: :class:`Verdict`, its reasons and :func:`with_budget`. A grader module (see
``pool.GRADERS``) defines ``grade(response, answer, timeout) -> Verdict``, ``equal(a, b, timeout)`` and
``warm_up()``, as this one does. Model output is only ever parsed, never executed.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .extract import as_text, code_flags, extract_answer

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_GOLD_CHARS",
    "Verdict",
    "clear_caches",
    "equal",
    "grade",
    "in_main_thread",
    "warm_up",
    "with_budget",
]

#: extracted answers longer than this are not parsed: the verdict is False with reason "too_long"
MAX_ANSWER_CHARS = 400
#: gold answers longer than this are not parsed: the verdict is None with reason "gold_too_long"
MAX_GOLD_CHARS = 2_000

# Reasons (Verdict.reason). correct=False: NO_ANSWER, TOO_LONG, MISMATCH, UNPARSEABLE.
# correct=None: TIMEOUT, GOLD_UNPARSEABLE, EMPTY_GOLD, GOLD_TOO_LONG, WORKER_CRASHED, POOL_UNAVAILABLE,
# INTERNAL_ERROR.
NO_ANSWER = "no_answer"
TOO_LONG = "too_long"
MISMATCH = "mismatch"
UNPARSEABLE = "unparseable"
TIMEOUT = "timeout"
GOLD_UNPARSEABLE = "gold_unparseable"
EMPTY_GOLD = "empty_gold"
GOLD_TOO_LONG = "gold_too_long"
WORKER_CRASHED = "worker_crashed"
POOL_UNAVAILABLE = "pool_unavailable"  # no worker processes could be started, and not in the main thread
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class Verdict:
    """The grade of one response against one gold answer."""

    correct: bool | None  # None = ungradable (timeout, parse failure of the gold answer, ...)
    extracted: str | None  # the extracted final answer (None if none found)
    reason: str | None  # machine-readable why for wrong/None; None when correct
    has_python: bool  # the paper's code-reasoning flag: "python" in response.lower()
    has_code_block: bool  # the response contains a fenced ``` code block

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _BudgetExceeded(BaseException):
    """Raised from the SIGALRM handler; a BaseException so that `except Exception` does not swallow it."""


_budget_armed = False
_REFIRE_S = 0.25  # if some library swallows the first exception, the timer fires again


def _alarm_handler(signum: int, frame: Any) -> None:
    if _budget_armed:
        raise _BudgetExceeded()


def in_main_thread() -> bool:
    """SIGALRM (the per-answer budget) is only delivered to the main thread."""
    return threading.current_thread() is threading.main_thread()


def with_budget(fn: Callable[[], Any], seconds: float) -> tuple[bool, Any]:
    """Run ``fn()`` with a wall-clock budget; returns (timed_out, value). Main thread only."""
    global _budget_armed
    old_handler = signal.getsignal(signal.SIGALRM)
    old_delay, old_interval = signal.getitimer(signal.ITIMER_REAL)
    t0 = time.monotonic()
    signal.signal(signal.SIGALRM, _alarm_handler)
    timed_out, value = False, None
    try:
        _budget_armed = True
        signal.setitimer(signal.ITIMER_REAL, max(float(seconds), 1e-3), _REFIRE_S)
        try:
            value = fn()
        finally:
            _budget_armed = False
    except _BudgetExceeded:
        timed_out, value = True, None
    finally:
        _budget_armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler if old_handler is not None else signal.SIG_DFL)
        if old_delay > 0:  # give the caller's own timer back, minus the time we spent
            left = max(old_delay - (time.monotonic() - t0), 1e-3)
            signal.setitimer(signal.ITIMER_REAL, left, old_interval)
    return timed_out, value


class _DropMathVerifyNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Timeout is disabled")


_mv: Any = None


def _math_verify() -> Any:
    """Import math-verify lazily (it pulls in sympy, ~1-2 s) and silence its 'timeout disabled' note."""
    global _mv
    if _mv is None:
        import math_verify

        for name in ("math_verify.parser", "math_verify.grader"):
            logging.getLogger(name).addFilter(_DropMathVerifyNoise())
        _mv = math_verify
    return _mv


def _has_expr(parsed: list) -> bool:
    return any(not isinstance(x, str) for x in parsed)


def _latex_source(answer: str) -> str:
    if "\\boxed" in answer or answer.startswith("$") or answer.startswith("\\("):
        return answer
    return "\\boxed{" + answer + "}"


# parsed golds/answers: a worker sees the same gold many times (16 samples per prompt)
_PARSE_CACHE: OrderedDict[tuple[str, bool], list] = OrderedDict()
_PARSE_CACHE_SIZE = 4096
# (gold, prediction) -> (correct, reason), timeouts included (re-grading them would cost the budget again)
_JUDGE_CACHE: OrderedDict[tuple[str, str, str], tuple[bool | None, str | None]] = OrderedDict()
_JUDGE_CACHE_SIZE = 16384


_FAST_PATH = True  # benchmarks switch the identical-string shortcut off to time math-verify's path


def _cache_get(cache: OrderedDict, key: Any) -> Any:
    value = cache.get(key)
    if value is not None:
        cache.move_to_end(key)
    return value


def _cache_put(cache: OrderedDict, key: Any, value: Any, size: int) -> None:
    if size <= 0:
        return
    cache[key] = value
    if len(cache) > size:
        cache.popitem(last=False)


def clear_caches() -> None:
    """Forget cached parses and judgements (benchmarks use this for a cold comparison)."""
    _PARSE_CACHE.clear()
    _JUDGE_CACHE.clear()


def _parse_answer(answer: str, search: bool = False) -> list:
    """math-verify's parse of an answer string (wrapped in \\boxed{} unless already delimited).

    With ``search``, an answer that does not parse as a whole is searched for an expression by
    math-verify's own extraction (predictions only: a malformed gold must not turn into a number).
    """
    key = (answer, search)
    cached = _cache_get(_PARSE_CACHE, key)
    if cached is not None:
        return cached
    mv = _math_verify()
    parsed = mv.parse(_latex_source(answer), parsing_timeout=None)
    if search and not _has_expr(parsed):
        found = mv.parse(answer, parsing_timeout=None)
        if _has_expr(found):
            parsed = found + [x for x in parsed if isinstance(x, str)]
    _cache_put(_PARSE_CACHE, key, parsed, _PARSE_CACHE_SIZE)
    return parsed


def _judge_core(gold: str, pred: str) -> tuple[bool | None, str | None]:
    mv = _math_verify()
    g = _parse_answer(gold)
    if not _has_expr(g):
        return None, GOLD_UNPARSEABLE
    p = _parse_answer(pred, search=True)
    if not p:
        return False, UNPARSEABLE
    if mv.verify(g, p, timeout_seconds=None):
        return True, None
    return False, (MISMATCH if _has_expr(p) else UNPARSEABLE)


def _equal_core(a: str, b: str) -> tuple[bool | None, str | None]:
    mv = _math_verify()
    pa, pb = _parse_answer(a), _parse_answer(b)
    if not pa or not pb:
        return None, UNPARSEABLE
    if mv.verify(pa, pb, timeout_seconds=None) or mv.verify(pb, pa, timeout_seconds=None):
        return True, None
    if not (_has_expr(pa) and _has_expr(pb)):
        return None, UNPARSEABLE
    return False, MISMATCH


def _judge(kind: str, gold: str, pred: str, timeout: float) -> tuple[bool | None, str | None]:
    """Cached, budgeted equivalence. kind "g": gold vs prediction; "e": symmetric equality."""
    key = (kind, gold, pred)
    cached = _cache_get(_JUDGE_CACHE, key)
    if cached is not None:
        return cached
    core = _judge_core if kind == "g" else _equal_core
    try:
        timed_out, value = with_budget(lambda: core(gold, pred), timeout)
    except Exception:  # never let a grader bug escape into the caller
        logger.exception("internal error while grading")
        return None, INTERNAL_ERROR
    result = (None, TIMEOUT) if timed_out else value
    if timed_out:
        logger.debug("grading timed out after %.1fs (answer %r...)", timeout, pred[:60])
    _cache_put(_JUDGE_CACHE, key, result, _JUDGE_CACHE_SIZE)
    return result


def _norm(answer: str) -> str:
    """Strip whitespace and a trailing period (math-verify fails to parse "5." and "x - 1.")."""
    answer = answer.strip()
    while answer.endswith(".") and not answer.endswith(".."):
        answer = answer[:-1].rstrip()
    return answer


def grade(response: Any, answer: Any, timeout: float) -> Verdict:
    """Extract the answer from ``response`` and judge it against ``answer``. Main thread only."""
    response, answer = as_text(response), as_text(answer)
    has_python, has_block = code_flags(response)
    gold = _norm(answer)
    extracted = extract_answer(response)
    if not gold:
        correct, reason = None, EMPTY_GOLD
    elif extracted is None:
        correct, reason = False, NO_ANSWER
    elif len(gold) > MAX_GOLD_CHARS:
        correct, reason = None, GOLD_TOO_LONG
    elif len(extracted) > MAX_ANSWER_CHARS:
        correct, reason = False, TOO_LONG
    elif _FAST_PATH and _norm(extracted) == gold:  # identical strings are equal whatever they mean
        correct, reason = True, None
    else:
        correct, reason = _judge("g", gold, _norm(extracted), timeout)
    return Verdict(
        correct=correct, extracted=extracted, reason=reason, has_python=has_python, has_code_block=has_block
    )


def equal(a: Any, b: Any, timeout: float) -> bool | None:
    """Whether two answers are math-equivalent (symmetric); None when undecidable. Main thread only."""
    a, b = _norm(as_text(a)), _norm(as_text(b))
    if not a or not b:
        return None
    if a == b:
        return True
    if len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
        return None
    return _judge("e", a, b, timeout)[0]


# answers that make sympy import its lazy parts and the parsers compile, before the first real answer
_WARMUP = [
    ("so \\boxed{\\frac{1}{2}}", "0.5"),
    ("so \\boxed{2\\sqrt{3}}", "\\sqrt{12}"),
    ("so \\boxed{(3, \\pi/2)}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
    ("so \\boxed{(-\\infty, 2) \\cup (3, \\infty)}", "(-\\infty,2)\\cup(3,\\infty)"),
    ("so \\boxed{\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}}", "\\begin{pmatrix} 1 \\\\ 3 \\end{pmatrix}"),
    ("so \\boxed{y = 2x + 3}", "y=2x+3"),
    ("so \\boxed{x^2 - 1}", "(x-1)(x+1)"),
    ("so \\boxed{90^\\circ}", "90"),
    ("so \\boxed{\\text{(C)}}", "C"),
    ("the answer is 1,000 dollars.", "1000"),
    ("so \\boxed{1+2i}", "1 + 2i"),
]


def warm_up() -> None:
    """Grade a few answers of every common shape, then forget them (a worker does this before work)."""
    for response, gold in _WARMUP:
        grade(response, gold, 30.0)
    clear_caches()
