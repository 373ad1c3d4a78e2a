"""The reward registry: what a reward is and how one registers (a leaf the reward modules import)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

RewardFn = Callable[..., list[float | None]]


@dataclass(frozen=True)
class RewardDef:
    name: str
    factory: Callable[[dict[str, Any], RewardContext], RewardFn]
    params: dict[str, Any] = field(default_factory=dict)  # defaults; the resolved values join the cell id
    data: str = "train"  # which training set: train | majority | incorrect | one_shot
    description: str = ""
    #: checks resolved params against their domains (ValueError naming reward and parameter); run at plan
    #: time by rewards.resolve_params and again by the factory
    check: Callable[[dict[str, Any]], None] | None = None
    #: carries no information about the correct answer (random, format, a wrong label, ...): `diagnose`
    #: treats a gain under it as spurious
    spurious: bool = False


@dataclass
class RewardContext:
    """What a reward may need beyond its inputs: the cell seed (random), grading settings."""

    seed: int = 0
    grading_timeout: float = 5.0
    grading_workers: int | None = None
    grader: str = "math_verify"  # the cell's `grader`: math_verify, or paper (the official rules)
    answer_tag: bool = False  # the prompt template's answer is read after the last <answer> (r1_paper)

    @property
    def pool_grader(self) -> str:
        """The grading pool's name for this grader and template."""
        return "paper_r1" if self.grader == "paper" and self.answer_tag else self.grader


REGISTRY: dict[str, RewardDef] = {}


def register(
    name: str,
    *,
    params: dict[str, Any] | None = None,
    data: str = "train",
    description: str = "",
    check: Callable[[dict[str, Any]], None] | None = None,
    spurious: bool = False,
):
    def deco(factory: Callable[[dict[str, Any], RewardContext], RewardFn]):
        REGISTRY[name] = RewardDef(name, factory, dict(params or {}), data, description, check, spurious)
        return factory

    return deco


def number(
    reward: str,
    params: dict[str, Any],
    key: str,
    *,
    integer: bool = False,
    low: float | None = None,
    high: float | None = None,
) -> float:
    """params[key] as a finite number within [low, high]; else a ValueError naming the reward and parameter."""
    value = params.get(key)
    kind = "an integer" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
        raise ValueError(f"{reward} reward: {key} must be {kind}, got {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"[{low if low is not None else '-inf'}, {high if high is not None else 'inf'}]"
        raise ValueError(f"{reward} reward: {key} must be in {bounds}, got {value!r}")
    return value


def completion_text(c: Any) -> str:
    """TRL passes strings for plain prompts and message lists for conversational ones."""
    if isinstance(c, str):
        return c
    if isinstance(c, list) and c and isinstance(c[-1], dict):
        return str(c[-1].get("content", ""))
    return str(c)
