"""Rewards that carry no (or only format) information about the answer."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..distributed import rank
from .registry import SUITE, UNSCORED, RewardContext, completion_text, number, register


def check_random(params: dict[str, Any]) -> None:
    number("random", params, "gamma", low=0.0, high=1.0)  # a probability


@register(
    "random",
    spurious=True,
    expected=UNSCORED,  # it draws: no value to expect of one response
    params={"gamma": 0.5},
    description="1 with probability gamma, independently per completion",
    check=check_random,
)
def random_reward(params: dict[str, Any], ctx: RewardContext):
    check_random(params)
    gamma = float(params["gamma"])

    def random(completions, trainer_state=None, prompts=None, **kwargs) -> list[float | None]:
        # Seeded by (cell seed, step, prompt, position in the batch): a re-run or a resume from a
        # checkpoint draws exactly the same rewards for the same rollout.
        # Data-parallel ranks each score their own slice, so the position carries the rank: a group split
        # across ranks at the same local positions must not draw the same rewards twice.
        step = getattr(trainer_state, "global_step", 0) if trainer_state is not None else 0
        r = rank()
        out: list[float | None] = []
        for i, _c in enumerate(completions):
            p = prompts[i] if prompts is not None and i < len(prompts) else ""
            pos = f"{r}:{i}" if r else str(i)
            key = f"{ctx.seed}|{step}|{pos}|{completion_text(p)[-200:]}".encode()
            u = int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64
            out.append(1.0 if u < gamma else 0.0)
        return out

    return random


_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")


@register(
    "format",
    spurious=True,
    expected=SUITE,
    description="1 if the last \\boxed{} is present and non-empty, correctness ignored",
)
def format_reward(params: dict[str, Any], ctx: RewardContext):
    """Under the paper grader, the official rule (grading.paper.format_ok: an unclosed box counts, \\fbox
    does not, a box of only unit words is empty; with an <answer> template, text after the last <answer>)."""

    def fmt(completions, **kwargs) -> list[float | None]:
        from ..grading import extract_boxed

        return [float(bool((extract_boxed(completion_text(c)) or "").strip())) for c in completions]

    def fmt_paper(completions, **kwargs) -> list[float | None]:
        from ..grading.paper import format_ok

        return [float(format_ok(completion_text(c), r1=ctx.answer_tag)) for c in completions]

    return fmt_paper if ctx.grader == "paper" else fmt


@register(
    "python",
    spurious=True,
    expected=SUITE,
    description="1 if the lower-cased response contains 'python' (code reasoning)",
)
def python_reward(params: dict[str, Any], ctx: RewardContext):
    def python(completions, **kwargs) -> list[float | None]:
        return [float("python" in completion_text(c).lower()) for c in completions]

    return python


def check_no_repetition(params: dict[str, Any]) -> None:
    min_len = number("no_repetition", params, "min_length", integer=True, low=1)
    max_len = number("no_repetition", params, "max_length", integer=True, low=1)
    number("no_repetition", params, "repeats", integer=True, low=3)
    if min_len > max_len:
        raise ValueError(
            f"no_repetition reward: min_length ({min_len}) must not exceed max_length ({max_len})"
        )


@register(
    "no_repetition",
    spurious=True,
    expected=SUITE,
    params={"min_length": 10, "max_length": 256, "repeats": 10},
    description="0 if one pattern of min_length..max_length characters repeats at least `repeats` times "
    "in a row (the paper's detector), else 1",
    check=check_no_repetition,
)
def no_repetition(params: dict[str, Any], ctx: RewardContext):
    check_no_repetition(params)
    min_len, max_len, repeats = int(params["min_length"]), int(params["max_length"]), int(params["repeats"])

    def no_rep(completions, **kwargs) -> list[float | None]:
        return [
            0.0 if has_repetition(completion_text(c), min_len, max_len, repeats) else 1.0 for c in completions
        ]

    return no_rep


def has_repetition(text: str, min_length: int = 10, max_length: int = 256, repeats: int = 10) -> bool:
    """Whether one pattern of min_length..max_length characters occurs `repeats` times in a row.

    The official code's rule: a loop ("so the answer is 5. so the answer is 5. ...") is caught, a phrase
    that merely recurs all over a long solution is not. The official search tries every start with
    every length; this one makes about len(text) / (repeats - 2) * ln(max_length / min_length) slice
    comparisons (see _repeats_with_period), so a 20 kB response costs milliseconds."""
    for period in range(min_length, min(max_length, len(text) // repeats) + 1):
        if _repeats_with_period(text, period, repeats):
            return True
    return False


def _repeats_with_period(text: str, period: int, repeats: int) -> bool:
    """Whether text[s:s+period] repeats `repeats` (>= 3) times in a row from some s.

    That is a stretch of (repeats - 1) * period positions i with text[i] == text[i + period]. Such a
    stretch covers at least repeats - 2 whole blocks [b * period, (b + 1) * period) that each equal the
    next block, and any repeats - 2 consecutive blocks include one whose index is a multiple of
    repeats - 2. So only those blocks are compared (C-speed slice comparisons); around an equal one the
    run of equal blocks is grown, and characters are compared only at its two ends."""
    n, stride = len(text), repeats - 2
    last = n // period - 2  # the last block that has a whole block after it

    def equal(b: int) -> bool:
        lo = b * period
        return text[lo : lo + period] == text[lo + period : lo + 2 * period]

    b = 0
    while b <= last:
        if not equal(b):
            b += stride
            continue
        first, end = b, b + 1
        while first > 0 and equal(first - 1):
            first -= 1
        while end <= last and equal(end):
            end += 1
        if _stretch(text, period, first * period, end * period) >= (repeats - 1) * period:
            return True
        b = -(-(end + 1) // stride) * stride  # the next multiple of stride past the unequal block `end`
    return False


def _stretch(text: str, period: int, start: int, end: int) -> int:
    """Length of the stretch of positions i with text[i] == text[i + period] around [start, end).

    Neither end can grow by a whole period (that block would have been equal), so each end is a common
    prefix or suffix of two slices of at most `period` characters."""
    lo = max(0, start - period)
    left = _common_prefix(text[lo:start][::-1], text[lo + period : start + period][::-1])
    right = _common_prefix(text[end : end + period], text[end + period : end + 2 * period])
    return end - start + left + right


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix of a and b, by bisection on slice equality (C-speed compares)."""
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo
