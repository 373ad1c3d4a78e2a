"""Answer extraction and math-verify equivalence, in worker processes, with hard timeouts.

Layers of protection against pathological model output (huge power towers, 100 kB of nested braces,
deeply nested LaTeX, megabyte responses):

* input caps: only the tail of a long response is searched, over-long extracted answers are rejected
  ("too_long") before anything is parsed; extraction itself is a linear scan (no backtracking regex);
* a per-answer time budget: one ``SIGALRM`` interval timer (``setitimer``, float precision) around the
  whole parse + verify of an answer, in the main thread of the process that grades. math-verify's own
  per-call ``signal.alarm`` timeouts are switched off because they take whole seconds, would add up
  (gold parse + prediction parse + each comparison) and would clobber the single process-wide timer;
* a parent-side watchdog (:class:`GradingPool`): graders run in worker processes; a worker that has made
  no progress for ``timeout + margin`` seconds (a C-level hang that no signal can interrupt) is killed
  and replaced, its in-flight answer grades ``None``/"timeout" and the rest of its chunk is re-queued.

Model output is only ever parsed (by math-verify's LaTeX/expression parser), never executed.
"""

from __future__ import annotations

import atexit
import dataclasses
import itertools
import logging
import math
import multiprocessing
import os
import re
import signal
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import wait as _mp_wait
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "MAX_ANSWER_CHARS",
    "MAX_GOLD_CHARS",
    "MAX_RESPONSE_CHARS",
    "GradingPool",
    "Verdict",
    "answers_equal",
    "code_flags",
    "extract_answer",
    "extract_boxed",
    "grade_batch",
    "grade_one",
]

#: responses longer than this only have their last MAX_RESPONSE_CHARS characters searched for an answer
MAX_RESPONSE_CHARS = 32_000
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


# --------------------------------------------------------------------------------------------------
# Extraction (pure string work: linear scans, no sympy, safe to run in any thread / the parent)
# --------------------------------------------------------------------------------------------------

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)
_UNBRACED_BOX_ARG_RE = re.compile(r"[^\s$]+")
_ANSWER_IS_RE = re.compile(r"answer\s+is(?![A-Za-z])", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
_EMPTY_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER_RE = re.compile(
    r"(?P<frac>(?P<fsign>(?<![\w)\]}])[-\u2212])?\\[dt]?frac\{\s*(?P<fnum>\d+)\s*\}\{\s*(?P<fden>\d+)\s*\})"
    rf"|(?P<sign>(?<![\w)\]}}])[-\u2212])?(?P<num>{_NUM})(?:/(?P<den>{_NUM}))?"
)


def _tail(text: str) -> str:
    return text if len(text) <= MAX_RESPONSE_CHARS else text[-MAX_RESPONSE_CHARS:]


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - we want the last match
        pass
    return last


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed``/``\\fbox`` in ``text``; None if it is absent, empty or unclosed."""
    last = _last_match(_BOX_RE, text)
    if last is None:
        return None
    pos = last.end()
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    if pos >= n:
        return None
    if text[pos] != "{":  # "\boxed 5": LaTeX boxes the next token
        m = _UNBRACED_BOX_ARG_RE.match(text, pos)
        return m.group(0) if m else None
    depth = 0
    for tok in _BRACE_TOKEN_RE.finditer(text, pos):
        t = tok.group(0)
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if depth == 0:
                content = text[pos + 1 : tok.start()].strip()
                return content or None
    return None  # unclosed (truncated response)


def _clean_prose_answer(s: str) -> str:
    s = _EMPTY_BOX_RE.sub("", s)
    prev = None
    while s != prev:
        prev = s
        s = s.strip().strip("*").strip()
        s = s.lstrip(":").rstrip(".,;:").strip()
        for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
                s = s[len(left) : len(s) - len(right)]
        s = s.strip("$")
    return s.strip()


def _answer_is(text: str) -> str | None:
    last = _last_match(_ANSWER_IS_RE, text)
    if last is None:
        return None
    rest = text[last.end() :].lstrip(" \t:")
    line = ""
    for candidate in rest.split("\n", 8)[:8]:  # the first non-blank line after "answer is"
        if candidate.strip():
            line = candidate
            break
    m = _SENTENCE_END_RE.search(line)
    if m:
        line = line[: m.start()]
    out = _clean_prose_answer(line)
    return out or None


def _last_number(text: str) -> str | None:
    last = _last_match(_NUMBER_RE, text)
    if last is None:
        return None
    if last.group("frac"):
        sign = "-" if last.group("fsign") else ""
        return f"{sign}{last.group('fnum')}/{last.group('fden')}"
    sign = "-" if last.group("sign") else ""
    out = sign + last.group("num").replace(",", "")
    if last.group("den"):
        out += "/" + last.group("den").replace(",", "")
    return out


def extract_answer(text: str) -> str | None:
    """The paper's extraction rule, on the tail of ``text``.

    1. the content of the LAST ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces handled by a linear
       scan; an empty or unclosed last box counts as no box;
    2. else what follows the last "answer is" (up to the end of that line/sentence, with a trailing
       period and surrounding ``$``/``\\(...\\)`` stripped);
    3. else the last number in the text (integers, decimals, negatives, ``3/4``, ``\\frac{3}{4}``).

    Returns None when nothing is found.
    """
    if not text:
        return None
    if not isinstance(text, str):
        text = str(text)
    text = _tail(text)
    return _last_boxed(text) or _answer_is(text) or _last_number(text)


def extract_boxed(text: str) -> str | None:
    """The content of the LAST ``\\boxed{...}``/``\\fbox{...}`` in (the tail of) ``text``.

    None when there is no box, or the last one is empty or unclosed (the format reward's test).
    """
    if not text:
        return None
    if not isinstance(text, str):
        text = str(text)
    return _last_boxed(_tail(text))


def code_flags(text: str) -> tuple[bool, bool]:
    """(has_python, has_code_block): "python" in the lower-cased text; a closed ``` fenced block."""
    if not text:
        return False, False
    if not isinstance(text, str):
        text = str(text)
    has_python = "python" in text.lower()
    start = text.find("```")
    has_block = start >= 0 and text.find("```", start + 3) >= 0
    return has_python, has_block


# --------------------------------------------------------------------------------------------------
# Equivalence with math-verify, under a per-answer SIGALRM budget (main thread only)
# --------------------------------------------------------------------------------------------------


class _BudgetExceeded(BaseException):
    """Raised from the SIGALRM handler; a BaseException so that `except Exception` does not swallow it."""


_budget_armed = False
_REFIRE_S = 0.25  # if some library swallows the first exception, the timer fires again


def _alarm_handler(signum: int, frame: Any) -> None:
    if _budget_armed:
        raise _BudgetExceeded()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _with_budget(fn: Callable[[], Any], seconds: float) -> tuple[bool, Any]:
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


def _clear_caches() -> None:
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
        timed_out, value = _with_budget(lambda: core(gold, pred), timeout)
    except Exception:  # never let a grader bug escape into the caller
        logger.exception("internal error while grading")
        return None, INTERNAL_ERROR
    result = (None, TIMEOUT) if timed_out else value
    if timed_out:
        logger.debug("grading timed out after %.1fs (answer %r...)", timeout, pred[:60])
    _cache_put(_JUDGE_CACHE, key, result, _JUDGE_CACHE_SIZE)
    return result


def _as_text(x: Any) -> str:
    if x is None:
        return ""
    return x if isinstance(x, str) else str(x)


def _norm(answer: str) -> str:
    """Strip whitespace and a trailing period (math-verify fails to parse "5." and "x - 1.")."""
    answer = answer.strip()
    while answer.endswith(".") and not answer.endswith(".."):
        answer = answer[:-1].rstrip()
    return answer


def _grade_in_process(response: Any, answer: Any, timeout: float) -> Verdict:
    response, answer = _as_text(response), _as_text(answer)
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
    return Verdict(correct, extracted, reason, has_python, has_block)


def _equal_in_process(a: Any, b: Any, timeout: float) -> bool | None:
    a, b = _norm(_as_text(a)), _norm(_as_text(b))
    if not a or not b:
        return None
    if a == b:
        return True
    if len(a) > MAX_ANSWER_CHARS or len(b) > MAX_ANSWER_CHARS:
        return None
    return _judge("e", a, b, timeout)[0]


def grade_one(response: str, answer: str, timeout: float = 5.0) -> Verdict:
    """Grade one response against a gold answer, in this process.

    Uses SIGALRM, so it must run in the main thread; called from another thread it hands the work to
    the shared worker pool (see :func:`grade_batch`) instead. Never raises for any input.
    """
    if not _in_main_thread():
        return grade_batch([(response, answer)], timeout=timeout)[0]
    return _grade_in_process(response, answer, timeout)


def answers_equal(a: str, b: str, timeout: float = 5.0) -> bool | None:
    """Whether two answer strings are math-equivalent (symmetric; e.g. to cluster majority votes).

    None if either is empty, over-long, unparseable or the comparison timed out. In-process and main
    thread only (called from another thread it uses the shared worker pool).
    """
    if not _in_main_thread():
        return _shared_pool(None).equal([(a, b)], timeout=timeout)[0]
    return _equal_in_process(a, b, timeout)


# --------------------------------------------------------------------------------------------------
# Worker processes
# --------------------------------------------------------------------------------------------------

_Task = tuple[str, str, str, tuple[bool, bool] | None]  # (kind, a, b, precomputed code flags)


def _execute(task: _Task, timeout: float) -> tuple:
    kind, a, b, flags = task
    try:
        if kind == "e":
            return (_equal_in_process(a, b, timeout),)
        verdict = _grade_in_process(a, b, timeout)
        if flags is not None:
            return (verdict.correct, verdict.extracted, verdict.reason, flags[0], flags[1])
        return (
            verdict.correct,
            verdict.extracted,
            verdict.reason,
            verdict.has_python,
            verdict.has_code_block,
        )
    except Exception:
        logger.exception("internal error in grading worker")
        if kind == "e":
            return (None,)
        hp, hb = flags if flags is not None else code_flags(a)
        return (None, None, INTERNAL_ERROR, hp, hb)


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


def _worker_main(conn: Any, progress: Any, warmup: bool = True) -> None:
    """Worker loop: receive chunks of tasks, send back their results; ``progress`` counts tasks started."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and shuts us down
    try:
        if warmup:  # import sympy's lazy parts and compile the parsers before the first real answer
            for response, gold in _WARMUP:
                _grade_in_process(response, gold, 30.0)
            _clear_caches()
        conn.send(("ready", os.getpid()))
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                break
            if msg is None:
                break
            chunk_id, tasks, timeout = msg
            out = []
            for task in tasks:
                progress.value += 1
                out.append(_execute(task, timeout))
            conn.send(("done", chunk_id, out))
    except (KeyboardInterrupt, BrokenPipeError, EOFError, OSError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass


class _Worker:
    __slots__ = ("proc", "conn", "progress", "state", "chunk", "chunk_id", "base", "seen", "seen_at", "born")

    def __init__(self, proc: Any, conn: Any, progress: Any) -> None:
        self.proc = proc
        self.conn = conn
        self.progress = progress
        self.state = "starting"  # -> "idle" <-> "busy"; "dead"
        self.chunk: list[int] = []
        self.chunk_id = -1
        self.base = 0
        self.seen = 0
        self.seen_at = 0.0
        self.born = time.monotonic()


def _cpu_count() -> int:
    """CPUs usable by this process: os.cpu_count(), narrowed by the affinity mask where there is one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _default_start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class GradingPool:
    """Worker processes that grade (response, gold) pairs with hard per-answer timeouts.

    ``workers=None`` -> the CPUs this process may use (``os.cpu_count()`` unless an affinity mask, e.g.
    a SLURM allocation, says fewer); ``workers=0`` -> grade in this process (no pool, no
    watchdog; main thread only). Workers are started at construction (the "forkserver" context, else
    "spawn": safe in a process that already initialised torch/CUDA) and reused across calls. Work goes
    out in chunks; a worker whose current answer has taken more than ``timeout + kill_margin`` seconds
    is killed and replaced. Thread-safe (calls are serialised). Use as a context manager or call
    :meth:`close`.
    """

    #: workers that fail to start this many times in a row mark the pool as broken
    MAX_START_FAILURES = 3
    #: a task re-queued this many times (its worker died each time) is given up as "worker_crashed"
    MAX_TASK_ATTEMPTS = 3

    def __init__(
        self,
        workers: int | None = None,
        timeout: float = 5.0,
        *,
        chunk_size: int | None = None,
        kill_margin: float | None = None,
        start_method: str | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        self.workers = _cpu_count() if workers is None else max(0, int(workers))
        self.timeout = float(timeout)
        self.chunk_size = chunk_size
        self.kill_margin = kill_margin
        self.startup_timeout = float(startup_timeout)
        self.start_method = start_method or _default_start_method()
        self.kills = 0  # workers killed by the watchdog (a hang beyond the signal budget)
        self.crashes = 0  # workers that died on their own
        self._lock = threading.RLock()
        self._pool: list[_Worker] = []
        self._chunk_ids = itertools.count()
        self._start_failures = 0
        self._broken = False
        self._closed = False
        self._ctx: Any = None
        if self.workers > 0:
            self._ctx = multiprocessing.get_context(self.start_method)
            if self.start_method == "forkserver":
                # the fork server imports math-verify once, so (re)started workers are ready in ms
                try:
                    self._ctx.set_forkserver_preload(["__main__", "spurisweep.grading", "math_verify"])
                except Exception:  # pragma: no cover - defensive
                    logger.debug("could not set forkserver preload", exc_info=True)
            for _ in range(self.workers):
                if not self._broken:
                    self._spawn()

    # -- public API -------------------------------------------------------------------------------

    def __enter__(self) -> GradingPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def grade(self, pairs: Sequence[tuple[str, str]], timeout: float | None = None) -> list[Verdict]:
        """Grade (response, gold answer) pairs; results in input order. Never raises for bad input."""
        timeout = self.timeout if timeout is None else float(timeout)
        tasks: list[_Task] = []
        for response, answer in pairs:
            response, answer = _as_text(response), _as_text(answer)
            flags = None
            if len(response) > MAX_RESPONSE_CHARS:  # ship only the tail; flag the full text here
                flags = code_flags(response)
                response = _tail(response)
            tasks.append(("g", response, answer, flags))
        if self.workers == 0 or self._closed:
            if self._closed:
                logger.warning("GradingPool is closed; grading in-process")
            return [self._grade_local(t, timeout) for t in tasks]
        raw = self._run(tasks, timeout)
        return [Verdict(*r) for r in raw]

    def equal(self, pairs: Sequence[tuple[str, str]], timeout: float | None = None) -> list[bool | None]:
        """:func:`answers_equal` for many pairs, in the workers."""
        timeout = self.timeout if timeout is None else float(timeout)
        tasks: list[_Task] = [("e", _as_text(a), _as_text(b), None) for a, b in pairs]
        if self.workers == 0 or self._closed:
            return [self._equal_local(t, timeout) for t in tasks]
        return [r[0] for r in self._run(tasks, timeout)]

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until every worker has started (imported math-verify and warmed up); True if they all
        did within ``timeout`` seconds (default: the pool's startup timeout)."""
        if self.workers == 0 or self._closed:
            return True
        limit = self.startup_timeout if timeout is None else float(timeout)
        with self._lock:
            run = _Run(self, [], self.timeout)
            deadline = time.monotonic() + limit
            while not self._broken and time.monotonic() < deadline:
                if not any(w.state == "starting" for w in self._pool):
                    break
                run._wait_and_collect()
                run._watchdog()
            self._pool = [w for w in self._pool if w.state != "dead"]
            return not self._broken and all(w.state == "idle" for w in self._pool)

    def worker_pids(self) -> list[int]:
        """Process ids of the live workers (for monitoring and tests; lock-free, may be momentarily stale)."""
        return [w.proc.pid for w in list(self._pool) if w.state != "dead"]

    def close(self) -> None:
        """Stop the workers (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for w in self._pool:
                if w.state != "dead":
                    try:
                        w.conn.send(None)
                    except (OSError, ValueError):
                        pass
            deadline = time.monotonic() + 2.0
            for w in self._pool:
                w.proc.join(max(0.0, deadline - time.monotonic()))
                if w.proc.is_alive():
                    w.proc.kill()
                    w.proc.join(1.0)
                self._release(w)
            self._pool = []

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    # -- internals --------------------------------------------------------------------------------

    def _grade_local(self, task: _Task, timeout: float) -> Verdict:
        _, response, answer, flags = task
        if _in_main_thread():
            v = _grade_in_process(response, answer, timeout)
        else:
            v = grade_batch([(response, answer)], timeout=timeout)[0]
        if flags is not None:
            v = dataclasses.replace(v, has_python=flags[0], has_code_block=flags[1])
        return v

    def _equal_local(self, task: _Task, timeout: float) -> bool | None:
        if _in_main_thread():
            return _equal_in_process(task[1], task[2], timeout)
        return _shared_pool(None).equal([(task[1], task[2])], timeout=timeout)[0]

    def _spawn(self) -> None:
        try:
            parent_conn, child_conn = self._ctx.Pipe(duplex=True)
            progress = self._ctx.RawValue("q", 0)
            proc = self._ctx.Process(
                target=_worker_main, args=(child_conn, progress), name="spurisweep-grader", daemon=True
            )
            proc.start()
            child_conn.close()
        except Exception:  # e.g. "daemonic processes are not allowed to have children"
            logger.exception("cannot start a grading worker; grading in-process instead")
            self._broken = True
            return
        self._pool.append(_Worker(proc, parent_conn, progress))

    @staticmethod
    def _release(w: _Worker) -> None:
        w.state = "dead"
        try:
            w.conn.close()
        except OSError:
            pass
        try:
            w.proc.close()
        except (ValueError, AttributeError):
            pass

    def _chunk_len(self, n: int) -> int:
        if self.chunk_size:
            return max(1, int(self.chunk_size))
        return max(1, min(64, math.ceil(n / (4 * max(1, self.workers)))))

    def _run(self, tasks: list[_Task], timeout: float) -> list[tuple]:
        with self._lock:
            return _Run(self, tasks, timeout).go()


class _Run:
    """One GradingPool.grade call: dispatch chunks, collect results, watch for hung/dead workers."""

    def __init__(self, pool: GradingPool, tasks: list[_Task], timeout: float) -> None:
        self.pool = pool
        self.tasks = tasks
        self.timeout = timeout
        margin = pool.kill_margin if pool.kill_margin is not None else max(2.0, 0.5 * timeout)
        self.hard_limit = timeout + margin
        self.results: list[tuple | None] = [None] * len(tasks)
        self.remaining = len(tasks)
        size = pool._chunk_len(len(tasks))
        self.queue: deque[list[int]] = deque(
            list(range(i, min(i + size, len(tasks)))) for i in range(0, len(tasks), size)
        )
        self.attempts: dict[int, int] = {}
        self.chunks: dict[int, _Worker] = {}

    # results for tasks that a worker could not finish
    def _lost_result(self, idx: int, reason: str) -> tuple:
        kind, a, _b, flags = self.tasks[idx]
        if kind == "e":
            return (None,)
        hp, hb = flags if flags is not None else code_flags(a)
        return (None, extract_answer(a), reason, hp, hb)

    def _set(self, idx: int, result: tuple) -> None:
        if self.results[idx] is None:
            self.results[idx] = result
            self.remaining -= 1

    def go(self) -> list[tuple]:
        pool = self.pool
        while self.remaining:
            if pool._broken or not any(w.state != "dead" for w in pool._pool):
                self._finish_without_pool()
                break
            self._dispatch()
            if not self.queue and not any(w.state == "busy" for w in pool._pool):
                # nothing queued or in flight, yet results missing: never expected; settle, don't spin
                for i in range(len(self.tasks)):
                    self._set(i, self._lost_result(i, INTERNAL_ERROR))
                break
            self._wait_and_collect()
            self._watchdog()
        pool._pool = [w for w in pool._pool if w.state != "dead"]
        return [r for r in self.results]  # type: ignore[misc]

    def _dispatch(self) -> None:
        for w in self.pool._pool:
            if not self.queue:
                return
            if w.state != "idle":
                continue
            chunk = self.queue.popleft()
            chunk_id = next(self.pool._chunk_ids)
            w.chunk, w.chunk_id = chunk, chunk_id
            w.base = w.seen = w.progress.value
            w.seen_at = time.monotonic()
            w.state = "busy"
            try:
                w.conn.send((chunk_id, [self.tasks[i] for i in chunk], self.timeout))
            except (OSError, ValueError):
                self._lost(w, WORKER_CRASHED, killed=False)

    def _wait_and_collect(self) -> None:
        active = [w for w in self.pool._pool if w.state in ("busy", "starting")]
        if not active:
            if self.queue and not any(w.state == "idle" for w in self.pool._pool):
                time.sleep(0.01)
            return
        by_obj: dict[Any, _Worker] = {}
        for w in active:
            by_obj[w.conn] = w
            by_obj[w.proc.sentinel] = w
        try:
            ready = _mp_wait(list(by_obj), timeout=0.1)
        except OSError:
            ready = []
        seen: set[int] = set()
        for obj in ready:
            w = by_obj[obj]
            if id(w) in seen or w.state == "dead":
                continue
            seen.add(id(w))
            self._receive(w)

    def _receive(self, w: _Worker) -> None:
        # drain every message available; a dead worker with nothing left to say is "lost"
        while w.state != "dead":
            try:
                if not w.conn.poll():
                    if not w.proc.is_alive():
                        self._lost(w, WORKER_CRASHED, killed=False)
                    return
                msg = w.conn.recv()
            except (EOFError, OSError):
                self._lost(w, WORKER_CRASHED, killed=False)
                return
            if msg[0] == "ready":
                w.state = "idle"
                self.pool._start_failures = 0
            elif msg[0] == "done":
                _, chunk_id, out = msg
                if chunk_id == w.chunk_id:
                    for idx, result in zip(w.chunk, out, strict=False):
                        self._set(idx, result)
                    for idx in w.chunk[len(out) :]:  # never expected; settle rather than wait forever
                        self._set(idx, self._lost_result(idx, INTERNAL_ERROR))
                w.chunk, w.chunk_id = [], -1
                w.state = "idle"

    def _watchdog(self) -> None:
        now = time.monotonic()
        for w in list(self.pool._pool):
            if w.state == "busy":
                value = w.progress.value
                if value != w.seen:
                    w.seen, w.seen_at = value, now
                elif now - w.seen_at > self.hard_limit:
                    logger.warning(
                        "grading worker %s made no progress for %.1fs: killing and replacing it",
                        w.proc.pid,
                        now - w.seen_at,
                    )
                    self._lost(w, TIMEOUT, killed=True)
            elif w.state == "starting" and now - w.born > self.pool.startup_timeout:
                logger.error(
                    "grading worker %s did not start in %.0fs", w.proc.pid, self.pool.startup_timeout
                )
                self._lost(w, WORKER_CRASHED, killed=True)

    def _lost(self, w: _Worker, reason: str, *, killed: bool) -> None:
        """Worker ``w`` is hung or dead: settle its in-flight task, re-queue the rest, replace it."""
        pool = self.pool
        was = w.state
        if w.proc.is_alive():
            w.proc.kill()
        w.proc.join(1.0)
        if not killed:
            logger.warning("grading worker %s died (exit code %s); replacing it", w.proc.pid, w.proc.exitcode)
        started = 0
        try:
            started = w.progress.value - w.base
        except Exception:  # pragma: no cover - defensive
            pass
        if was != "starting":
            if killed:
                pool.kills += 1
            else:
                pool.crashes += 1
        if was == "busy":
            chunk = [i for i in w.chunk if self.results[i] is None]
            in_flight = w.chunk[started - 1] if 0 < started <= len(w.chunk) else None
            if in_flight is not None and self.results[in_flight] is None:
                self._set(in_flight, self._lost_result(in_flight, reason))
            retry = []
            for i in chunk:
                if i == in_flight:
                    continue
                self.attempts[i] = self.attempts.get(i, 0) + 1
                if self.attempts[i] >= pool.MAX_TASK_ATTEMPTS:
                    self._set(i, self._lost_result(i, WORKER_CRASHED))
                else:
                    retry.append(i)
            if retry:
                self.queue.appendleft(retry)
        elif was == "starting":
            pool._start_failures += 1
            if pool._start_failures >= pool.MAX_START_FAILURES:
                logger.error("grading workers keep failing to start; grading in-process instead")
                pool._broken = True
        pool._release(w)
        if not pool._broken and not pool._closed:
            pool._spawn()

    def _finish_without_pool(self) -> None:
        """No usable workers: grade what is left in this process (SIGALRM: main thread only)."""
        main = _in_main_thread()
        for i, task in enumerate(self.tasks):
            if self.results[i] is not None:
                continue
            if not main:
                self._set(i, self._lost_result(i, POOL_UNAVAILABLE))
            else:
                self._set(i, _execute(task, self.timeout))


# --------------------------------------------------------------------------------------------------
# Module-level shared pool
# --------------------------------------------------------------------------------------------------

_shared: GradingPool | None = None
_shared_lock = threading.Lock()


def _shared_pool(workers: int | None) -> GradingPool:
    global _shared
    want = _cpu_count() if workers is None else max(1, int(workers))
    with _shared_lock:
        if _shared is None or _shared._closed or _shared.workers != want:
            if _shared is not None:
                _shared.close()
            _shared = GradingPool(workers=want)
        return _shared


def _close_shared() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.close()
            _shared = None


atexit.register(_close_shared)


def grade_batch(
    pairs: Iterable[tuple[str, str]], workers: int | None = None, timeout: float = 5.0
) -> list[Verdict]:
    """Grade (response, gold) pairs in a module-level pool, started on first use and reused.

    ``workers=0`` grades in-process (main thread only). The pool is closed at interpreter exit.
    """
    pairs = list(pairs)
    if not pairs:
        return []
    if workers == 0 and _in_main_thread():
        return [_grade_in_process(r, a, timeout) for r, a in pairs]
    return _shared_pool(workers).grade(pairs, timeout=timeout)
