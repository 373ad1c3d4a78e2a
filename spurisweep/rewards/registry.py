"""The reward registry: what a reward is and how one registers (a leaf the reward modules import)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

RewardFn = Callable[..., list[float | None]]

#: `expected=` forms (what a reward must score on the adversarial suite, rewards/verify_suite.yaml):
GRADER = "grader"  # the grader's verdict on every case: the reward runs the grader's check on `answer`
SUITE = "suite"  # its own values, under its name in the suite file's cases
UNSCORED = "unscored"  # nothing to expect case by case (random draws); left out of verify-rewards
#: one of the three names above, or {case_id: 1.0 | 0.0 | None} on the suite's cases, written inline
Expected = str | Mapping[str, float | None]


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
    #: what it must score on the adversarial suite (GRADER, SUITE, UNSCORED or {case_id: value});
    #: None = not declared, which `verify-rewards` refuses, naming the reward
    expected: Expected | None = None


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
    expected: Expected | None = None,
):
    """Register a reward factory under `name`. `spurious` and `expected` are its two declarations: whether a
    gain under it is spurious (diagnose), and what it must score on the adversarial suite (verify-rewards)."""
    check_expected(name, expected)

    def deco(factory: Callable[[dict[str, Any], RewardContext], RewardFn]):
        REGISTRY[name] = RewardDef(
            name, factory, dict(params or {}), data, description, check, spurious, expected
        )
        return factory

    return deco


def check_expected(name: str, expected: Expected | None) -> None:
    """A malformed `expected=` is a programming error, refused where the reward registers."""
    if expected is None or expected in (GRADER, SUITE, UNSCORED):
        return
    if isinstance(expected, Mapping) and not isinstance(expected, str):
        for case_id, value in expected.items():
            if value not in (0.0, 1.0, None) or isinstance(value, bool):
                raise ValueError(
                    f"reward {name!r}: expected[{case_id!r}] must be 1.0, 0.0 or None, got {value!r}"
                )
        return
    raise ValueError(
        f"reward {name!r}: expected must be {GRADER!r}, {SUITE!r}, {UNSCORED!r} or {{case_id: value}}, "
        f"got {expected!r}"
    )


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
