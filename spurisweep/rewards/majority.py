"""The online majority reward (TTRL, arXiv 2504.16084; SRT, arXiv 2505.21444): each group's majority answer
is the label its completions are rewarded against, so a cell trains on prompts without answers: the
`answer` column is not read for the reward (it may be empty; where it is not, the label's accuracy is
logged). A benchmark's own prompts are `data.train: benchmark:NAME` behind `data.test_set_training: true`.

The group: every completion of one prompt in the rollout. TRL calls a reward with this rank's share of the
rollout, the prompt repeated once per completion, and spreads a group's completions over the data-parallel
ranks; the reward therefore gathers the rollout from every rank (torch.distributed, when initialised) and
groups by prompt text (two copies of one prompt in a rollout vote together).

The vote, by the cell's grader (the equivalence the offline majority_vote labels use):
* math_verify: each completion's answer as math-verify's grader extracts it (grading.extract_answer);
  answers are grouped into classes by math-verify equivalence (grading.answers_equal: `0.5`, `1/2` and
  `\\frac{1}{2}` vote together);
* paper: the official extraction and normalisation (grading.paper.extract_answer, after the last <answer>
  under an answer-tag template); classes are exact normalised strings (the official majority rule).
A completion without an answer casts no vote. The label is the class with the most votes.

Rules, stated once: a completion in the majority class scores 1; one outside it 0, including one with no
answer; one whose equivalence to the label was undecidable (a comparison that timed out or did not parse)
scores None, as the grader's own undecidable verdicts. A group with no vote, or (with `tie: skip`, the
default) two or more classes tied for the most votes, has no label: its completions all score None
(`no_label: none`, TRL then gives them no advantage) or 0 (`no_label: zero`, which keeps the other parts of
a mixture scoring). `tie: first` takes the tied class voted first in the rollout's order (TTRL's
Counter.most_common).

Logged (TRL's log_metric): online_majority/labelled (share of groups with a label), /vote_share (the
label's share of the group's completions, over labelled groups) and, where the data has a non-empty
`answer` column, /label_accuracy (share of labelled groups whose label equals the answer, by the grader).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .registry import UNSCORED, RewardContext, completion_text, register

TIES = ("skip", "first")
NO_LABEL = ("none", "zero")


@dataclass(frozen=True)
class GroupVote:
    """One group's vote: the label (a representative answer; None: no label), its votes, the group size,
    and per completion 1.0 / 0.0 / None (in the class / outside it / undecidable)."""

    label: str | None
    votes: int
    size: int
    scores: tuple[float | None, ...]


def check_online_majority(params: dict[str, Any]) -> None:
    if params.get("tie") not in TIES:
        raise ValueError(
            f"online_majority reward: tie must be one of {', '.join(TIES)}, got {params.get('tie')!r}"
        )
    if params.get("no_label") not in NO_LABEL:
        raise ValueError(
            f"online_majority reward: no_label must be one of {', '.join(NO_LABEL)}, got {params.get('no_label')!r}"
        )


def vote(
    answers: Sequence[str | None], equal: Callable[[str, str], bool | None], *, tie: str = "skip"
) -> GroupVote:
    """The majority of one group's extracted answers (None or blank: no vote) under `equal`."""
    reps: list[str] = []  # one representative per class, in order of first vote
    votes: list[int] = []
    member: list[int | None] = []  # each completion's class
    memo: dict[tuple[str, str], bool | None] = {}

    def same(a: str, b: str) -> bool | None:
        if a == b:
            return True
        if (a, b) not in memo:
            memo[(a, b)] = equal(a, b)
        return memo[(a, b)]

    for ans in answers:
        a = ans.strip() if ans else ""
        if not a:
            member.append(None)
            continue
        k = next((i for i, r in enumerate(reps) if same(a, r)), None)
        if k is None:
            reps.append(a)
            votes.append(0)
            k = len(reps) - 1
        votes[k] += 1
        member.append(k)
    if not votes:
        return GroupVote(None, 0, len(answers), (None,) * len(answers))
    top = max(votes)
    winners = [i for i, v in enumerate(votes) if v == top]
    if len(winners) > 1 and tie == "skip":
        return GroupVote(None, top, len(answers), (None,) * len(answers))
    win = winners[0]
    label = reps[win]
    scores: list[float | None] = []
    for ans, k in zip(answers, member, strict=True):
        if k == win:
            scores.append(1.0)
        elif k is None:
            scores.append(0.0)
        else:  # another class: its representative differs from the label; undecided against it -> None
            decided = same((ans or "").strip(), label)
            scores.append(None if decided is None else 0.0)
    return GroupVote(label, top, len(answers), tuple(scores))


def gather_rollout(local: list[Any]) -> tuple[list[Any], int]:
    """Every rank's `local` list concatenated in rank order, and where this rank's starts (one process:
    `local` itself and 0). All ranks call it together: TRL scores each rollout on every rank at once."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(local), 0
    parts: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(local))
    offset = sum(len(p) for p in parts[: dist.get_rank()])
    return [x for p in parts for x in p], offset


def _extractor(ctx: RewardContext) -> Callable[[str], str | None]:
    if ctx.grader == "paper":
        from ..grading.paper import extract_answer as extract_paper

        return lambda text: extract_paper(text, r1=ctx.answer_tag) or None
    from ..grading import extract_answer

    return extract_answer


def _equal(ctx: RewardContext) -> Callable[[str, str], bool | None]:
    if ctx.grader == "paper":  # the official vote: exact normalised strings
        return lambda a, b: a == b
    from ..grading import answers_equal

    return lambda a, b: answers_equal(a, b, timeout=ctx.grading_timeout)


def group_votes(keys: Sequence[str], answers: Sequence[str | None], equal, tie: str) -> dict[str, GroupVote]:
    """Each group's vote, the groups being the completions of equal keys (in rollout order)."""
    members: dict[str, list[int]] = {}
    for i, k in enumerate(keys):
        members.setdefault(k, []).append(i)
    return {k: vote([answers[i] for i in idx], equal, tie=tie) for k, idx in members.items()}


def scores_of(keys: Sequence[str], groups: dict[str, GroupVote], no_label: str) -> list[float | None]:
    """Each completion's score, in rollout order, from its group's vote."""
    seen: dict[str, int] = {}
    out: list[float | None] = []
    for k in keys:
        j = seen.get(k, 0)
        seen[k] = j + 1
        g = groups[k]
        out.append(g.scores[j] if g.label is not None else (0.0 if no_label == "zero" else None))
    return out


@register(
    "online_majority",
    expected=UNSCORED,
    params={"tie": "skip", "no_label": "none"},
    check=check_online_majority,
    description="1 if the answer is in its group's majority class (TTRL / SRT); no answer column needed",
)
def online_majority(params: dict[str, Any], ctx: RewardContext):
    """Not spurious: the majority of the policy's own answers carries (weak) information about the correct
    answer, as the offline majority_vote label does. Cost: the grader's equivalence between the distinct
    answers of each group (a few comparisons per group: identical strings are equal without one)."""
    check_online_majority(params)
    tie, no_label = params["tie"], params["no_label"]
    extract, equal = _extractor(ctx), _equal(ctx)

    def online_majority(
        completions, prompts=None, answer=None, log_metric=None, **kwargs
    ) -> list[float | None]:
        n = len(completions)
        keys = [completion_text(p) for p in prompts] if prompts is not None else [""] * n
        local = [(k, extract(completion_text(c))) for k, c in zip(keys, completions, strict=True)]
        rollout, offset = gather_rollout(local)
        all_keys = [k for k, _ in rollout]
        groups = group_votes(all_keys, [a for _, a in rollout], equal, tie)
        scores = scores_of(all_keys, groups, no_label)[offset : offset + n]
        if log_metric is not None:
            _log(log_metric, groups, _golds(keys, answer), ctx)
        return scores

    return online_majority


def _golds(keys: Sequence[str], answer: Sequence[Any] | None) -> dict[str, str]:
    """This rank's non-empty gold answers by prompt (for the label-accuracy metric only)."""
    if answer is None:
        return {}
    return {k: str(a) for k, a in zip(keys, answer, strict=True) if a is not None and str(a).strip()}


def _log(log_metric: Callable[[str, float], None], groups: dict[str, GroupVote], golds, ctx) -> None:
    labelled = [g for g in groups.values() if g.label is not None]
    log_metric("online_majority/labelled", len(labelled) / max(1, len(groups)))
    if labelled:
        log_metric("online_majority/vote_share", sum(g.votes / g.size for g in labelled) / len(labelled))
    checked = [(g.label, golds[k]) for k, g in groups.items() if g.label is not None and k in golds]
    if checked:
        from ..grading import answers_equal

        grader = "paper" if ctx.grader == "paper" else "math_verify"
        hits = [
            answers_equal(label, gold, timeout=ctx.grading_timeout, grader=grader) for label, gold in checked
        ]
        log_metric("online_majority/label_accuracy", sum(bool(h) for h in hits) / len(hits))
