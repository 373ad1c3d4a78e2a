"""The online majority reward on constructed groups (real extraction and math-verify equivalence): the
majority class by equivalence, ties, completions without an answer, undecidable comparisons, groups by
prompt, the paper grader's exact vote, the logged label statistics, and a group split across two
data-parallel ranks (two real processes over gloo)."""

from __future__ import annotations

import pytest

from spurisweep import rewards
from spurisweep.rewards import RewardContext, majority


def run(completions, prompts, params=None, grader="math_verify", **kw):
    expr = rewards.parse("online_majority")
    fn = rewards.build(
        "online_majority",
        rewards.resolve_params(expr, {"online_majority": params or {}}),
        RewardContext(grading_workers=0, grader=grader),
    )
    out = fn(completions, prompts=prompts, **kw)
    assert len(out) == len(completions)
    return out


def test_the_majority_class_is_formed_by_math_equivalence():
    group = ["so \\boxed{1/2}", "I get \\boxed{0.5}", "\\boxed{\\frac{1}{2}}", "\\boxed{3}", "no idea"]
    # 1/2, 0.5 and \frac{1}{2} are one class of three votes: the label; 3 and the answerless one score 0
    assert run(group, ["p"] * 5) == [1.0, 1.0, 1.0, 0.0, 0.0]


def test_groups_are_the_completions_of_one_prompt():
    completions = ["\\boxed{4}", "\\boxed{4}", "\\boxed{7}", "\\boxed{9}", "\\boxed{9}", "\\boxed{4}"]
    prompts = ["A", "A", "A", "B", "B", "B"]
    assert run(completions, prompts) == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    # interleaved: A holds 4, 7, 9 (a tie: no label), B holds 4, 9, 4
    assert run(completions, ["A", "B"] * 3) == [None, 1.0, None, 0.0, None, 1.0]


def test_a_tie_has_no_label_unless_asked_to_take_the_first():
    tied = ["\\boxed{1}", "\\boxed{2}", "\\boxed{2}", "\\boxed{1}"]
    assert run(tied, ["p"] * 4) == [None, None, None, None]
    assert run(tied, ["p"] * 4, {"no_label": "zero"}) == [0.0, 0.0, 0.0, 0.0]
    assert run(tied, ["p"] * 4, {"tie": "first"}) == [1.0, 0.0, 0.0, 1.0]  # 1 was voted first


def test_a_group_without_any_answer_has_no_label():
    assert run(["hello", "world"], ["p", "p"]) == [None, None]
    assert run(["hello", "world"], ["p", "p"], {"no_label": "zero"}) == [0.0, 0.0]


def test_a_single_vote_is_a_majority_of_one():
    assert run(["\\boxed{8}", "no answer here", "none either"], ["p"] * 3) == [1.0, 0.0, 0.0]


def test_an_undecidable_comparison_with_the_label_scores_none():
    """`vote` with an equivalence that cannot decide between "x" and the label (what math-verify's timeout
    or parse failure returns): that completion is neither in nor outside the majority class."""

    def equal(a: str, b: str) -> bool | None:
        return None if "x" in (a, b) else a == b

    v = majority.vote(["5", "5", "x", "7", None], equal)
    assert (v.label, v.votes, v.size) == ("5", 2, 5)
    assert v.scores == (1.0, 1.0, None, 0.0, 0.0)


def test_the_paper_grader_votes_with_exact_normalised_strings():
    group = ["\\boxed{12}", "\\boxed{12}", "\\boxed{13}"]
    assert run(group, ["p"] * 3, grader="paper") == [1.0, 1.0, 0.0]


def test_the_label_statistics_are_logged():
    logged: list[tuple[str, float]] = []
    completions = ["\\boxed{4}", "\\boxed{4}", "\\boxed{5}", "\\boxed{1}", "\\boxed{2}", "\\boxed{9}"]
    prompts = ["A", "A", "A", "B", "B", "B"]
    run(completions, prompts, answer=["4"] * 3 + ["9"] * 3, log_metric=lambda k, v: logged.append((k, v)))
    got = dict(logged)
    assert got["online_majority/labelled"] == 0.5  # B is a three-way tie
    assert got["online_majority/vote_share"] == pytest.approx(2 / 3)
    assert got["online_majority/label_accuracy"] == 1.0  # A's label 4 is its answer
    logged.clear()
    run(completions[:3], prompts[:3], answer=["5"] * 3, log_metric=lambda k, v: logged.append((k, v)))
    assert dict(logged)["online_majority/label_accuracy"] == 0.0


def test_registered_as_informative_and_unscored_on_the_text_suite():
    d = rewards.REGISTRY["online_majority"]
    assert d.spurious is False and d.expected == rewards.UNSCORED
    with pytest.raises(ValueError, match="online_majority reward: tie must be one of skip, first"):
        rewards.resolve_params(rewards.parse("online_majority"), {"online_majority": {"tie": "last"}})
    with pytest.raises(ValueError, match="no_label must be one of none, zero"):
        rewards.resolve_params(rewards.parse("online_majority"), {"online_majority": {"no_label": 0}})


# ------------------------------------------------------------------------------ a group split over ranks
def _rank(rank: int, init: str, out: str) -> None:
    import json

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    # one group of four: rank 0 holds 5, 5; rank 1 holds 7, 5. Alone, rank 1 would see a tie.
    local = [["\\boxed{5}", "\\boxed{5}"], ["\\boxed{7}", "\\boxed{5}"]][rank]
    scores = run(local, ["p", "p"])
    with open(f"{out}.{rank}", "w") as f:
        json.dump(scores, f)
    dist.destroy_process_group()


@pytest.mark.slow
def test_a_group_split_across_ranks_votes_as_one(tmp_path):
    import json

    import torch.multiprocessing as mp

    out = str(tmp_path / "scores")
    mp.spawn(_rank, args=(f"file://{tmp_path / 'rendezvous'}", out), nprocs=2, join=True)
    assert json.load(open(f"{out}.0")) == [1.0, 1.0]
    assert json.load(open(f"{out}.1")) == [0.0, 1.0]  # the rollout's majority, not rank 1's tie


# ------------------------------------------------------------------- training on a benchmark's own prompts
def _cell(tmp_path, data: dict, reward: str = "online_majority"):
    import yaml

    from spurisweep.plan import grid, spec

    path = tmp_path / "s.yaml"
    grid_axes = {"model": ["tiny"], "reward": [reward]}
    path.write_text(
        yaml.safe_dump({"name": "s", "preset": "smoke", "grid": grid_axes, "settings": {"data": data}})
    )
    (cell,) = grid.expand(spec.load_sweep(path))
    return cell.config


def test_training_on_a_benchmarks_prompts_needs_the_explicit_setting(tmp_path):
    from spurisweep.errors import ConfigError

    with pytest.raises(ConfigError, match="benchmark's own prompts; set data.test_set_training: true"):
        _cell(tmp_path, {"train": "benchmark:arith"})


def test_with_it_the_cell_trains_on_the_benchmarks_problems(tmp_path):
    from spurisweep.data import sets
    from spurisweep.errors import DataError
    from spurisweep.training import data as training_data

    cfg = _cell(tmp_path, {"train": "benchmark:arith", "test_set_training": True})
    assert training_data.test_set_benchmark(cfg) == "arith"
    got = training_data.training_problems(cfg, tmp_path)
    want = sets.load_benchmark("arith", limit=cfg.data.limit)  # the smoke preset's limit
    assert [p.problem for p in got] == [p.problem for p in want] and len(want) > 0
    plain = _cell(tmp_path, {"train": "builtin:arith"})
    assert training_data.test_set_benchmark(plain) is None
    assert plain.data.test_set_training is False
    labelled = _cell(
        tmp_path, {"train": "benchmark:arith", "test_set_training": True}, reward="majority_vote"
    )
    with pytest.raises(DataError, match="majority labels are made from a data set"):
        training_data.training_problems(labelled, tmp_path)
