"""Grading model answers: extraction, equivalence under a time budget, and a pool of worker processes.

* :mod:`.extract` - the answer in a response (last ``\\boxed``, "the answer is", last number) and the
  code-reasoning flags; pure string work;
* :mod:`.verify` - the "math_verify" grader: equivalence with math-verify under a per-answer SIGALRM
  budget, and the :class:`Verdict` every grader returns;
* :mod:`.pool` - worker processes with a watchdog that kills and replaces hung workers, the grader
  registry (:data:`GRADERS`) and the entry points :func:`grade_batch`, :func:`grade_one`,
  :func:`answers_equal`.

Model output is only ever parsed, never executed.
"""

from __future__ import annotations

from .extract import MAX_RESPONSE_CHARS, code_flags, extract_answer, extract_boxed
from .pool import DEFAULT_GRADER, GRADERS, GradingPool, answers_equal, grade_batch, grade_one
from .verify import MAX_ANSWER_CHARS, MAX_GOLD_CHARS, Verdict

__all__ = [
    "DEFAULT_GRADER",
    "GRADERS",
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
