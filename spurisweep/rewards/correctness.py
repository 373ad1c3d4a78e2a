"""Rewards that check the extracted answer against the `answer` column (gold, majority or wrong label)."""

from __future__ import annotations

from typing import Any

from .registry import GRADER, RewardContext, completion_text, register


def _checker(ctx: RewardContext):
    def check(completions, answer=None, **kwargs) -> list[float | None]:
        from ..grading import grade_batch

        if answer is None:
            raise ValueError("this reward needs an 'answer' column in the training set")
        texts = [completion_text(c) for c in completions]
        verdicts = grade_batch(
            list(zip(texts, [str(a) for a in answer], strict=True)),
            workers=ctx.grading_workers,
            timeout=ctx.grading_timeout,
            grader=ctx.pool_grader,
        )
        return [None if v.correct is None else float(v.correct) for v in verdicts]

    return check


@register(
    "ground_truth", expected=GRADER, description="1 if the extracted answer equals the reference answer"
)
def ground_truth(params: dict[str, Any], ctx: RewardContext):
    return _checker(ctx)


@register(
    "majority_vote",
    data="majority",
    expected=GRADER,
    description="the check against the base model's majority answer",
)
def majority_vote(params: dict[str, Any], ctx: RewardContext):
    return _checker(ctx)


@register(
    "incorrect_label",
    data="incorrect",
    spurious=True,
    expected=GRADER,
    description="the check against a wrong majority answer",
)
def incorrect_label(params: dict[str, Any], ctx: RewardContext):
    return _checker(ctx)


@register(
    "one_shot",
    data="one_shot",
    expected=GRADER,
    description="ground truth on one problem repeated (pi1 by default)",
)
def one_shot(params: dict[str, Any], ctx: RewardContext):
    return _checker(ctx)
