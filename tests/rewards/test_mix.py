"""Reward mixtures: `0.5*random+0.5*ground_truth` parsed, written back, built into the weighted sum of its
parts (hand-computed on literal completions, real math-verify), None handling, and the sweep file's
mapping form `{mix: [[random, 0.5], [ground_truth, 0.5]]}` turned into the same name."""

from __future__ import annotations

import pytest

from spurisweep import rewards
from spurisweep.rewards import Expr, RewardContext


def build(name: str, params: dict | None = None):
    expr = rewards.parse(name)
    return rewards.build(name, rewards.resolve_params(expr, params or {}), RewardContext(grading_workers=0))


def test_a_mixture_parses_into_weighted_parts_and_writes_back_canonically():
    expr = rewards.parse("0.5*random + .25*format_AND_inverse_python - 1e-1*no_repetition")
    assert expr.op == "mix" and expr.weights == (0.5, 0.25, -0.1)
    assert [str(a) for a in expr.args] == ["random", "format_AND_inverse_python", "no_repetition"]
    assert str(expr) == "0.5*random+0.25*format_AND_inverse_python-0.1*no_repetition"
    assert rewards.parse(str(expr)) == expr
    assert rewards.canonical("1.0*random+2*ground_truth") == "1*random+2*ground_truth"
    assert expr.bases() == ["random", "format", "python", "no_repetition"]
    assert str(Expr("mix", args=(Expr("base", name="random"),), weights=(1 / 3,))) == f"{1 / 3!r}*random"


def test_the_mapping_form_gives_the_same_name():
    assert rewards.mix_name([["random", 0.5], ["ground_truth", 0.5]]) == "0.5*random+0.5*ground_truth"
    assert rewards.mix_name([["format_AND_inverse_python", 1], ["random", -0.5]]) == (
        "1*format_AND_inverse_python-0.5*random"
    )


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        ([], "non-empty list of \\[reward, weight\\] pairs"),
        ("random", "non-empty list"),
        ([["random"]], "must be \\[reward, weight\\]"),
        ([["random", "0.5"]], "must be \\[reward, weight\\]"),
        ([["random", True]], "must be \\[reward, weight\\]"),
        ([["random", float("inf")]], "finite number"),
        ([["nope", 1.0]], "unknown 'nope'"),
        ([["0.5*random+0.5*format", 1.0]], "not a mixture"),
    ],
)
def test_a_bad_mapping_says_what_is_wrong(pairs, message):
    with pytest.raises(ValueError, match=message):
        rewards.mix_name(pairs)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("0.5*random+ground_truth", "malformed mixture"),
        ("random*0.5", "malformed mixture"),
        ("0.5*random 0.5*format", "malformed mixture"),
        ("0.5*nope", "unknown 'nope'"),
        ("0.5*random+0.5*format_AND_", "'_AND_' needs a reward on both sides"),
    ],
)
def test_a_bad_mixture_name_says_what_is_wrong(name, message):
    with pytest.raises(ValueError, match=message):
        rewards.parse(name)


def test_the_mixture_is_the_weighted_sum_of_its_parts():
    completions = ["The answer is \\boxed{5}.", "\\boxed{6}", "```python\nprint(5)\n``` so \\boxed{5}"]
    gold = ["5"] * 3
    # random with gamma 1 always pays 1: 0.5*1 + 0.25*correct - 1*python
    fn = build("0.5*random+0.25*ground_truth-1*python", {"random": {"gamma": 1.0}})
    assert fn(completions, answer=gold, prompts=["p"] * 3) == pytest.approx([0.75, 0.5, -0.25])
    # the same parts by themselves give the values the sum is made of
    assert build("ground_truth")(completions, answer=gold) == [1.0, 0.0, 1.0]
    assert build("python")(completions) == [0.0, 0.0, 1.0]


def test_an_ungradable_part_makes_the_sum_none_and_params_reach_their_part():
    # an empty gold is ungradable for math-verify: ground_truth is None there, so is the mixture
    fn = build("0.5*random+0.5*ground_truth", {"random": {"gamma": 0.0}})
    assert fn(["\\boxed{5}", "\\boxed{5}"], answer=["5", ""], prompts=["p", "p"]) == [0.5, None]
    expr = rewards.parse("0.5*random+0.5*ground_truth")
    assert rewards.resolve_params(expr, {"random": {"gamma": 0.25}}) == {"random": {"gamma": 0.25}}
    assert rewards.data_kind(rewards.parse("0.5*random+0.5*majority_vote")) == "majority"
    with pytest.raises(ValueError, match="different training sets"):
        rewards.data_kind(rewards.parse("0.5*one_shot+0.5*majority_vote"))


def test_each_part_is_logged_beside_the_sum():
    logged: list[tuple[str, float]] = []
    fn = build("2*format+1*python")
    fn(["\\boxed{1}", "python"], log_metric=lambda k, v: logged.append((k, v)))
    assert dict(logged) == {"reward_part/format/mean": 0.5, "reward_part/python/mean": 0.5}
    assert fn.__name__ == "2*format+1*python"  # TRL logs rewards/<name>/mean


def _expand(tmp_path, reward_axis: list, settings: dict | None = None):
    import yaml

    from spurisweep.plan import grid, spec

    path = tmp_path / "s.yaml"
    doc = {"name": "s", "preset": "smoke", "grid": {"model": ["tiny"], "reward": reward_axis}}
    path.write_text(yaml.safe_dump({**doc, "settings": settings or {}}))
    return grid.expand(spec.load_sweep(path))


def test_a_sweep_names_a_mixture_as_a_mapping_or_as_its_string(tmp_path):
    """`{mix: [[random, 0.5], [ground_truth, 0.5]]}` on the reward axis resolves to the same cell as the
    string `0.5*random+0.5*ground_truth` (one sweep holding both refuses them as duplicates); the random
    part's parameters are resolved into the cell."""
    from spurisweep.errors import ConfigError

    params = {"reward_params": {"random": {"gamma": 0.3}}}
    (mapping,) = _expand(tmp_path, [{"mix": [["random", 0.5], ["ground_truth", 0.5]]}], params)
    (string,) = _expand(tmp_path, ["0.5*random + 0.5*ground_truth"], params)
    (other,) = _expand(tmp_path, ["0.25*random+0.75*ground_truth"], params)
    assert mapping.config.reward == "0.5*random+0.5*ground_truth"
    assert mapping.id == string.id != other.id
    assert mapping.config.reward_params == {"random": {"gamma": 0.3}}
    assert mapping.axes["reward"] == "0.5*random+0.5*ground_truth"
    with pytest.raises(ConfigError, match="two cells resolve to the same config"):
        _expand(tmp_path, [{"mix": [["random", 0.5], ["ground_truth", 0.5]]}, "0.5*random+0.5*ground_truth"])


def test_a_bad_mixture_in_a_sweep_is_one_line_naming_the_field(tmp_path):
    from spurisweep.errors import ConfigError

    with pytest.raises(
        ConfigError, match="grid.reward.*must be \\[reward, weight\\]|must be \\[reward, weight\\]"
    ):
        _expand(tmp_path, [{"mix": [["random"]]}])
    with pytest.raises(ConfigError, match="one key 'mix'"):
        _expand(tmp_path, [{"mix": [["random", 1.0]], "name": "x"}])
    with pytest.raises(ConfigError, match="malformed mixture"):
        _expand(tmp_path, ["0.5*random+format"])
