"""Rewards that carry no (or only format) information about the answer."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from ..distributed import rank
from .registry import RewardContext, completion_text, register


@register(
    "random", params={"gamma": 0.5}, description="1 with probability gamma, independently per completion"
)
def random_reward(params: dict[str, Any], ctx: RewardContext):
    gamma = float(params["gamma"])
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"random reward: gamma must be in [0, 1], got {gamma}")

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


@register("format", description="1 if the last \\boxed{} is present and non-empty, correctness ignored")
def format_reward(params: dict[str, Any], ctx: RewardContext):
    def fmt(completions, **kwargs) -> list[float | None]:
        from ..grading import extract_boxed

        return [float(bool((extract_boxed(completion_text(c)) or "").strip())) for c in completions]

    return fmt


@register("python", description="1 if the lower-cased response contains 'python' (code reasoning)")
def python_reward(params: dict[str, Any], ctx: RewardContext):
    def python(completions, **kwargs) -> list[float | None]:
        return [float("python" in completion_text(c).lower()) for c in completions]

    return python


@register(
    "no_repetition",
    params={"max_repeats": 10, "min_length": 8},
    description="0 if some substring (of at least min_length chars) repeats more than max_repeats times",
)
def no_repetition(params: dict[str, Any], ctx: RewardContext):
    max_repeats = int(params["max_repeats"])
    min_len = int(params["min_length"])

    def no_rep(completions, **kwargs) -> list[float | None]:
        return [0.0 if has_repetition(completion_text(c), max_repeats, min_len) else 1.0 for c in completions]

    return no_rep


def has_repetition(text: str, max_repeats: int = 10, min_length: int = 8) -> bool:
    """Whether some substring of >= min_length characters occurs more than max_repeats times.

    Counts non-overlapping occurrences of every window of min_length characters (a longer repeated
    substring repeats each of its windows at least as often), in O(len(text))."""
    if len(text) < min_length * (max_repeats + 1):
        return False
    counts: dict[str, int] = {}
    last: dict[str, int] = {}
    for i in range(len(text) - min_length + 1):
        w = text[i : i + min_length]
        if i >= last.get(w, -min_length) + min_length:  # non-overlapping
            last[w] = i
            counts[w] = counts.get(w, 0) + 1
            if counts[w] > max_repeats:
                return True
    return False
