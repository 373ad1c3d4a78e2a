"""The intrinsic rewards (entropy, self_certainty) against hand-computed values: the per-token statistics
of fixed logits (training.trainer.token_statistics, the function the trainer computes them with), then the
rewards on those statistics, as the trainer passes them."""

from __future__ import annotations

import math

import pytest
import torch

from spurisweep import rewards
from spurisweep.rewards import RewardContext, intrinsic
from spurisweep.training.trainer import token_statistics

LN2 = math.log(2.0)


def build(name: str, params: dict | None = None):
    expr = rewards.parse(name)
    return rewards.build(name, rewards.resolve_params(expr, params or {}), RewardContext(grading_workers=0))


def fixed_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """One response of two tokens over a vocabulary of 4: a uniform step, then p = (1/2, 1/4, 1/8, 1/8)
    (logits log p); the sampled tokens are 3 and 1."""
    uniform = [0.0, 0.0, 0.0, 0.0]
    skewed = [math.log(0.5), math.log(0.25), math.log(0.125), math.log(0.125)]
    return torch.tensor([[uniform, skewed]]), torch.tensor([[3, 1]])


def test_token_statistics_of_fixed_logits_are_the_hand_computed_values():
    logits, tokens = fixed_logits()
    s = token_statistics(logits, tokens)
    # uniform: log p = -log 4, H = log 4, KL(U || U) = 0
    # skewed: log p(1) = -2 ln2; H = (1/2)ln2 + (1/4)2ln2 + 2 (1/8)3ln2 = 1.75 ln2;
    #         KL(U || p) = -ln4 - mean(log p) = -2ln2 + (1 + 2 + 3 + 3)/4 ln2 = 0.25 ln2
    assert s[intrinsic.LOGP][0].tolist() == pytest.approx([-2 * LN2, -2 * LN2])
    assert s[intrinsic.ENTROPY][0].tolist() == pytest.approx([2 * LN2, 1.75 * LN2])
    assert s[intrinsic.SELF_CERTAINTY][0].tolist() == pytest.approx([0.0, 0.25 * LN2], abs=1e-6)


def test_token_statistics_follow_the_sampling_temperature_and_chunks_change_nothing():
    logits, tokens = fixed_logits()
    t = 2.0
    p = [math.sqrt(x) for x in (0.5, 0.25, 0.125, 0.125)]  # softmax(log p / 2) is proportional to sqrt(p)
    z = sum(p)
    p = [x / z for x in p]
    h = -sum(x * math.log(x) for x in p)
    kl = -math.log(4) - sum(math.log(x) for x in p) / 4
    s = token_statistics(logits, tokens, temperature=t, chunk=1)
    assert s[intrinsic.LOGP][0, 1].item() == pytest.approx(math.log(p[1]))
    assert s[intrinsic.ENTROPY][0, 1].item() == pytest.approx(h)
    assert s[intrinsic.SELF_CERTAINTY][0, 1].item() == pytest.approx(kl, abs=1e-6)  # float32
    assert s[intrinsic.ENTROPY][0, 0].item() == pytest.approx(2 * LN2)  # uniform at any temperature


def stats_of(logits: torch.Tensor, tokens: torch.Tensor, lengths: list[int]) -> dict[str, list[list[float]]]:
    """The keyword arguments the trainer passes: per completion, its own tokens' statistics."""
    s = token_statistics(logits, tokens)
    return {k: [v[i, :n].tolist() for i, n in enumerate(lengths)] for k, v in s.items()}


def test_entropy_reward_levels_and_aggregates():
    logits, tokens = fixed_logits()
    kw = stats_of(logits.repeat(2, 1, 1), tokens.repeat(2, 1), [2, 0])  # the second response is empty
    two = ["a", "b"]
    assert build("entropy")(two, **kw) == pytest.approx([-(2 + 1.75) / 2 * LN2, None])  # RENT: -mean H
    token_sum = build("entropy", {"entropy": {"aggregate": "sum"}})(two, **kw)
    assert token_sum == pytest.approx([-3.75 * LN2, 0.0])
    seq = build("entropy", {"entropy": {"level": "sequence", "aggregate": "sum"}})(two, **kw)
    assert seq == pytest.approx([-4 * LN2, 0.0])  # log p(y) summed: minus the sequence entropy estimate
    seq_mean = build("entropy", {"entropy": {"level": "sequence"}})(two, **kw)
    assert seq_mean == pytest.approx([-2 * LN2, None])


def test_self_certainty_is_the_mean_kl_from_uniform():
    logits, tokens = fixed_logits()
    kw = stats_of(logits, tokens, [2])
    assert build("self_certainty")(["a"], **kw) == pytest.approx([0.125 * LN2])


def test_a_more_peaked_policy_earns_more_under_both():
    peaked = torch.tensor([[[8.0, 0.0, 0.0, 0.0]]])
    flat = torch.tensor([[[0.1, 0.0, 0.0, 0.0]]])
    tokens = torch.tensor([[0]])
    for name in ("entropy", "self_certainty"):
        fn = build(name)
        (hi,) = fn(["a"], **stats_of(peaked, tokens, [1]))
        (lo,) = fn(["a"], **stats_of(flat, tokens, [1]))
        assert hi > lo, name


def test_they_declare_the_statistics_they_read_and_compositions_read_the_union():
    assert intrinsic.token_stats(build("entropy")) == (intrinsic.ENTROPY,)
    seq = build("entropy", {"entropy": {"level": "sequence"}})
    assert intrinsic.token_stats(seq) == (intrinsic.LOGP,)
    assert intrinsic.token_stats(build("self_certainty")) == (intrinsic.SELF_CERTAINTY,)
    assert intrinsic.token_stats(build("format")) == ()
    mixed = build("0.5*entropy+0.5*self_certainty_AND_format")
    assert intrinsic.token_stats(mixed) == (intrinsic.ENTROPY, intrinsic.SELF_CERTAINTY)
    assert intrinsic.token_stats(build("inverse_entropy")) == (intrinsic.ENTROPY,)


def test_a_mixture_with_format_adds_the_weighted_parts():
    logits, tokens = fixed_logits()
    kw = stats_of(logits.repeat(2, 1, 1), tokens.repeat(2, 1), [2, 2])
    out = build("1*self_certainty+2*format")(["\\boxed{5}", "no box"], **kw)
    assert out == pytest.approx([0.125 * LN2 + 2.0, 0.125 * LN2])


def test_without_the_statistics_they_say_where_they_come_from():
    with pytest.raises(ValueError, match="per-token statistics .*token_entropy.*SpuriTrainer"):
        build("entropy")(["a"])
    with pytest.raises(ValueError, match="2 rows of token_self_certainty for 1 completions"):
        build("self_certainty")(["a"], token_self_certainty=[[0.1], [0.2]])


def test_bad_parameters_name_the_reward_and_the_valid_values():
    with pytest.raises(ValueError, match="entropy reward: level must be one of token, sequence"):
        rewards.resolve_params(rewards.parse("entropy"), {"entropy": {"level": "word"}})
    with pytest.raises(ValueError, match="entropy reward: aggregate must be one of mean, sum"):
        rewards.resolve_params(rewards.parse("entropy"), {"entropy": {"aggregate": "max"}})


def test_registered_as_spurious_and_scored_on_the_suites_per_token_cases():
    """They read no answer (spurious in the paper's sense); their value is not a function of the response
    text, so verify-rewards scores them on the suite's cases that carry per-token statistics."""
    from spurisweep.rewards.verify_suite import CASES

    for name in ("entropy", "self_certainty"):
        d = rewards.REGISTRY[name]
        assert d.spurious is True and d.expected == "suite" and d.data == "train"
        assert (
            all(c.stats for c in CASES if name in c.expected) and sum(name in c.expected for c in CASES) == 3
        )
