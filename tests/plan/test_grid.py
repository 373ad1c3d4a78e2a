"""Sweep files -> cells: expansion order, stable ids, overrides, excludes, reward params, duplicates."""

from __future__ import annotations

from pathlib import Path

import pytest

from spurisweep.errors import ConfigError
from spurisweep.plan import grid, spec

ROOT = Path(__file__).resolve().parents[2]

BASE = """
name: t
preset: smoke
grid:
  model: [tiny]
  reward: [ground_truth, random]
  clip: [standard, clip_higher]
  seed: [0, 1]
"""


def expand(tmp_path: Path, text: str, name: str = "s.yaml") -> list[grid.Cell]:
    p = tmp_path / name
    p.write_text(text)
    return grid.expand(spec.load_sweep(p))


def test_expansion_is_the_product_in_grid_order(tmp_path):
    cells = expand(tmp_path, BASE)
    assert len(cells) == 8
    assert [c.axes for c in cells[:3]] == [
        {"model": "tiny", "reward": "ground_truth", "clip": "standard", "seed": 0},
        {"model": "tiny", "reward": "ground_truth", "clip": "standard", "seed": 1},
        {"model": "tiny", "reward": "ground_truth", "clip": "clip_higher", "seed": 0},
    ]
    assert len({c.id for c in cells}) == 8


def test_ids_are_stable_across_files_and_runs(tmp_path):
    a = expand(tmp_path, BASE, "a.yaml")
    # the same cells declared differently (other name, other axis order, explicit defaults) keep their ids
    b = expand(
        tmp_path,
        BASE.replace("name: t", "name: other").replace(
            "  seed: [0, 1]\n", "  seed: [1, 0]\nsettings: {train: {adam_beta2: 0.95}}\n"
        ),
        "b.yaml",
    )
    assert {c.id for c in a} == {c.id for c in b}
    again = expand(tmp_path, BASE, "c.yaml")
    assert [c.id for c in a] == [c.id for c in again]


def test_any_setting_change_changes_the_id(tmp_path):
    a = {c.label: c.id for c in expand(tmp_path, BASE, "a.yaml")}
    b = {
        c.label: c.id
        for c in expand(tmp_path, BASE + "settings: {train: {learning_rate: 0.001}}\n", "b.yaml")
    }
    assert a.keys() == b.keys()
    assert all(a[k] != b[k] for k in a)


def test_launch_resources_do_not_change_the_id(tmp_path):
    a = [c.id for c in expand(tmp_path, BASE, "a.yaml")]
    b = [
        c.id
        for c in expand(
            tmp_path, BASE + "settings: {resources: {partition: gpu, gpus_per_node: 8}}\n", "b.yaml"
        )
    ]
    assert a == b


def test_dotted_axis_and_reward_params_are_sweepable(tmp_path):
    cells = expand(
        tmp_path,
        """
name: t
preset: smoke
grid:
  model: [tiny]
  reward: [random]
  reward_params.random.gamma: [0.3, 0.7]
  train.learning_rate: [1.0e-4, 5.0e-4]
""",
    )
    assert len(cells) == 4
    assert sorted({c.config.reward_params["random"]["gamma"] for c in cells}) == [0.3, 0.7]
    assert sorted({c.config.train.learning_rate for c in cells}) == [1e-4, 5e-4]


def test_reward_given_as_mapping_sets_its_params(tmp_path):
    cells = expand(
        tmp_path,
        """
name: t
preset: smoke
grid:
  model: [tiny]
  reward: [ground_truth, {name: random, gamma: 0.001}]
""",
    )
    assert [c.axes["reward"] for c in cells] == ["ground_truth", "random(gamma=0.001)"]
    assert cells[1].config.reward_params == {"random": {"gamma": 0.001}}
    assert cells[0].config.reward_params == {}  # params of unused rewards never reach the id


def test_excludes_and_overrides(tmp_path):
    cells = expand(
        tmp_path,
        BASE
        + """
exclude:
  - {reward: random, clip: clip_higher}
overrides:
  - when: {clip: clip_higher}
    set: {train.learning_rate: 0.01, clip_params.eps_high: 0.3}
""",
    )
    assert len(cells) == 6
    assert not any(c.axes["reward"] == "random" and c.axes["clip"] == "clip_higher" for c in cells)
    higher = [c for c in cells if c.axes["clip"] == "clip_higher"]
    assert higher and all(c.config.train.learning_rate == 0.01 for c in higher)
    assert all(c.config.clip_params.eps_high == 0.3 for c in higher)
    assert all(c.config.train.learning_rate != 0.01 for c in cells if c not in higher)


def test_defaults_are_made_explicit(tmp_path):
    cells = expand(tmp_path, BASE)
    c = cells[2]
    assert c.config.prompt == "chat"  # the family's default prompt is part of the id
    assert (c.config.clip_params.eps_low, c.config.clip_params.eps_high) == (0.2, 0.28)


def test_irrelevant_swept_value_is_a_duplicate_error(tmp_path):
    with pytest.raises(ConfigError, match="same config"):
        expand(
            tmp_path,
            """
name: t
grid:
  model: [tiny]
  reward: [ground_truth]
  reward_params.random.gamma: [0.3, 0.7]
""",
        )


@pytest.mark.parametrize(
    "text, field, fragment",
    [
        ("name: t\ngrid: {model: [tiny], bogus: [1]}\n", "grid.bogus", "unknown 'bogus'"),
        ("name: t\ngrid: {model: [tiny], train.learnin_rate: [1]}\n", "grid.train.learnin_rate", "unknown"),
        ("name: t\ngrid: {model: [gpt5]}\n", "model", "valid:"),
        ("name: t\ngrid: {model: [tiny], reward: [gold]}\n", "reward", "valid:"),
        ("name: t\ngrid: {model: [tiny], reward: [format_AND_]}\n", "reward", "malformed"),
        ("name: t\ngrid: {model: [tiny], clip: [sometimes]}\n", "clip", "no_clip"),
        ("name: t\ngrid: {model: [tiny]}\nsettings: {train: {lr: 1}}\n", "settings.train", "unknown setting"),
        (
            "name: t\ngrid: {model: [tiny]}\nsettings: {train: {steps: 0}}\n",
            "settings.train.steps",
            "greater",
        ),
        (
            "name: t\ngrid: {model: [tiny]}\nsettings: {eval: {benchmarks: [gsm9k]}}\n",
            "eval.benchmarks[0]",
            "math500",
        ),
        ("name: t\ngrid: {model: []}\n", "grid", "non-empty"),
        ("name: t\ngrid: {reward: [random]}\n", "grid", "model"),
        ("grid: {model: [tiny]}\n", "name", "missing"),
        ("name: t\ngrid: {model: [tiny]}\nfoo: 1\n", "foo", "unknown setting"),
        ("name: t\npreset: fast\ngrid: {model: [tiny]}\n", "preset", "paper"),
        ("name: t\ngrid: {model: [tiny], seed: [0]}\nexclude: [{seed: 0}]\n", "grid", "empty"),
        ("name: t\ngrid: {model: [tiny]}\nexclude: [{colour: red}]\n", "exclude[0].colour", "unknown"),
        (
            "name: t\ngrid: {model: [tiny], reward: [random]}\nsettings: {reward_params: {random: {gama: 1}}}\n",
            "reward_params",
            "gamma",
        ),
        ("name: t\ngrid: {model: [tiny]\n", "line", "malformed YAML"),
        ("- just\n- a list\n", "(top level)", "mapping"),
    ],
)
def test_bad_input_names_file_and_field(tmp_path, text, field, fragment):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        grid.expand(spec.load_sweep(p))
    msg = str(info.value)
    assert str(p) in msg
    assert field in msg, msg
    assert fragment in msg, msg
    assert "\n" not in msg


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        spec.load_sweep(tmp_path / "nope.yaml")


def test_shipped_paper_table_expands_to_72_cells():
    cells = grid.expand(spec.load_sweep(ROOT / "sweeps" / "paper_table.yaml"))
    assert len(cells) == 72
    models = {c.config.model for c in cells}
    assert models == {"qwen2.5-math-7b", "qwen2.5-7b", "llama3.1-8b-instruct", "olmo2-7b"}
    assert {c.config.reward for c in cells} == {
        "ground_truth",
        "majority_vote",
        "one_shot",
        "incorrect_label",
        "random",
        "format",
    }
    c = cells[0].config
    assert (
        c.train.learning_rate,
        c.train.prompts_per_step,
        c.train.samples_per_prompt,
        c.train.mini_batch,
    ) == (5e-7, 64, 16, 128)


@pytest.mark.parametrize("path", sorted((ROOT / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_sweep_expands(path):
    assert grid.expand(spec.load_sweep(path))


# ---------------------------------------------------------------------------------------------- resources
def test_the_old_slurm_key_is_read_as_resources_with_one_note(tmp_path, capsys):
    new = BASE + "settings: {resources: {partition: gpu, gpus_per_node: 8}}\n"
    new += "overrides: [{when: {seed: 1}, set: {resources.nodes: 2}}]\n"
    cells = expand(tmp_path, new, "new.yaml")
    assert capsys.readouterr().err == ""
    old = expand(tmp_path, new.replace("resources", "slurm"), "old.yaml")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "old.yaml" in err and "'resources'" in err and "settings.slurm" in err
    assert [c.id for c in old] == [c.id for c in cells]
    assert [c.config.resources for c in old] == [c.config.resources for c in cells]
    assert {c.config.resources.nodes for c in old} == {1, 2}  # the override's dotted key was renamed too


def test_both_resource_names_in_one_sweep_are_refused(tmp_path):
    text = (
        BASE
        + "settings: {resources: {partition: gpu}}\noverrides: [{when: {seed: 1}, set: {slurm.nodes: 2}}]\n"
    )
    with pytest.raises(ConfigError, match="both 'resources'") as exc:
        expand(tmp_path, text)
    assert exc.value.file.endswith("s.yaml") and exc.value.field == "overrides[0].set.slurm.nodes"


def test_a_stored_config_with_the_old_key_still_loads():
    (cell,) = [
        c for c in grid.expand(spec.load_sweep(ROOT / "sweeps" / "smoke_sharded.yaml"), check_inputs=False)
    ]
    stored = cell.config.model_dump(mode="json")
    stored["slurm"] = stored.pop("resources")  # a config.json written before the rename
    again = spec.CellConfig.model_validate(stored)
    assert again.resources.tasks_per_node == 2 and grid.cell_id(again) == cell.id
    with pytest.raises(ValueError, match="both"):
        spec.CellConfig.model_validate({**stored, "resources": {}})


# ---------------------------------------------------------------------------------------------- clip mappings
CLIPS = """
name: t
preset: smoke
grid:
  model: [tiny]
  clip: {clips}
"""


def test_a_clip_mapping_is_a_mode_with_its_epsilons(tmp_path):
    cells = expand(
        tmp_path, CLIPS.format(clips="[standard, {eps_low: 0.1, eps_high: 0.28}, {eps_high: 0.3}]")
    )
    assert [c.axes["clip"] for c in cells] == [
        "standard",
        "standard(eps_low=0.1,eps_high=0.28)",
        "standard(eps_low=0.2,eps_high=0.3)",
    ]
    free = cells[1].config
    assert (free.clip, free.clip_params.eps_low, free.clip_params.eps_high) == ("standard", 0.1, 0.28)
    # the same cell written as the mode and its clip_params: one id
    (same,) = expand(
        tmp_path,
        CLIPS.format(clips="[standard]") + "settings: {clip_params: {eps_low: 0.1, eps_high: 0.28}}\n",
        "b.yaml",
    )
    assert same.id == cells[1].id


def test_a_clip_mapping_equal_to_a_named_mode_is_that_mode(tmp_path):
    (named,) = expand(tmp_path, CLIPS.format(clips="[clip_higher]"), "a.yaml")
    (mapped,) = expand(tmp_path, CLIPS.format(clips="[{eps_high: 0.28}]"), "b.yaml")
    assert mapped.id == named.id and mapped.axes["clip"] == "clip_higher"
    with pytest.raises(ConfigError, match="same config"):
        expand(tmp_path, CLIPS.format(clips="[clip_higher, {eps_low: 0.2, eps_high: 0.28}]"), "c.yaml")


@pytest.mark.parametrize(
    ("clips", "field", "message"),
    [
        ("[{eps_lo: 0.1}]", "grid.clip", "unknown key 'eps_lo'"),
        ("[{eps_low: 1.5}]", "grid.clip.eps_low", "less than or equal to 1"),
        ("[{name: clip_hi, eps_high: 0.3}]", "grid.clip.name", "clip_higher"),
    ],
)
def test_a_bad_clip_mapping_names_its_key(tmp_path, clips, field, message):
    with pytest.raises(ConfigError, match=message) as exc:
        expand(tmp_path, CLIPS.format(clips=clips))
    assert exc.value.field == field and exc.value.file.endswith("s.yaml")


# ---------------------------------------------------------------------------------------------- algorithms
#: the paper preset (loss_type bnpo, group std, token whitening) with budgets that fit the tiny model
ALGS = """
name: t
preset: paper
grid:
  model: [tiny]
  train.algorithm: {algs}
  clip: [{clip}]
  train.max_prompt_length: [128]
  train.max_completion_length: [64]
  eval.benchmarks: [[arith]]
"""


def test_the_grpo_algorithm_keeps_every_cell_id(tmp_path):
    plain = expand(tmp_path, BASE, "a.yaml")
    stated = expand(tmp_path, BASE + "settings: {train: {algorithm: grpo}}\n", "b.yaml")
    assert [c.id for c in plain] == [c.id for c in stated]
    assert "algorithm" not in grid.identity(plain[0].config)["train"]


def test_an_algorithm_sets_the_estimator_over_the_preset(tmp_path):
    cells = expand(tmp_path, ALGS.format(algs="[grpo, dr_grpo, rloo]", clip="standard"))
    got = [
        (c.config.train.loss_type, c.config.train.scale_rewards, c.config.train.token_whitening)
        for c in cells
    ]
    assert got == [("bnpo", "group", True), ("dr_grpo", "none", False), ("dr_grpo", "none", False)]
    assert len({c.id for c in cells}) == 3


def test_reinforce_needs_an_on_policy_clip_mode(tmp_path):
    (cell,) = expand(tmp_path, ALGS.format(algs="[reinforce]", clip="on_policy"), "a.yaml")
    assert cell.config.train.loss_type == "dr_grpo"
    with pytest.raises(ConfigError, match="updates once per rollout.*on_policy") as exc:
        expand(tmp_path, ALGS.format(algs="[reinforce]", clip="standard"), "b.yaml")
    assert exc.value.field == "clip"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ("settings: {train: {loss_type: bnpo}}\n", "settings.train.loss_type"),
        ("settings: {train.token_whitening: true}\n", "settings.train.token_whitening"),
        (
            "overrides: [{when: {model: tiny}, set: {train.scale_rewards: group}}]\n",
            "overrides[0].set.train.scale_rewards",
        ),
    ],
)
def test_a_setting_that_contradicts_the_algorithm_is_refused(tmp_path, extra, field):
    with pytest.raises(ConfigError, match="contradicts train.algorithm rloo") as exc:
        expand(tmp_path, ALGS.format(algs="[rloo]", clip="standard") + extra)
    assert exc.value.field == field and exc.value.file.endswith("s.yaml")
    # the same value the algorithm sets is no contradiction
    expand(
        tmp_path,
        ALGS.format(algs="[rloo]", clip="standard") + "settings: {train: {loss_type: dr_grpo}}\n",
        "ok.yaml",
    )


def test_an_unknown_algorithm_is_named(tmp_path):
    with pytest.raises(ConfigError, match="rlo.*rloo") as exc:
        expand(tmp_path, ALGS.format(algs="[rlo]", clip="standard"))
    assert exc.value.field == "train.algorithm"


PROTOCOL = (
    "settings: {eval: {benchmarks: [arith], protocols: {arith: {samples: 4, temperature: 1.0, limit: 5}}"
)


def test_eval_variants_and_an_unset_subsample_seed_keep_every_cell_id(tmp_path):
    """Variants are evaluations of the same checkpoints: adding them never retrains a cell. An unset
    subsample_seed is today's first-N and leaves the id; a set one is another evaluation set."""
    plain = expand(tmp_path, BASE + PROTOCOL + "}}\n", "a.yaml")
    varied = expand(tmp_path, BASE + PROTOCOL + ", variants: [{seed: 3}, {temperature: 0.6}]}}\n", "b.yaml")
    assert [c.id for c in plain] == [c.id for c in varied]
    assert varied[0].config.eval.variants[1].temperature == 0.6
    ident = grid.identity(varied[0].config)
    assert "variants" not in ident["eval"] and "subsample_seed" not in ident["eval"]["protocols"]["arith"]
    seeded = expand(
        tmp_path, BASE + PROTOCOL.replace("limit: 5", "limit: 5, subsample_seed: 1") + "}}\n", "c.yaml"
    )
    assert not {c.id for c in seeded} & {c.id for c in plain}


@pytest.mark.parametrize(
    ("extra", "field", "fragment"),
    [
        (
            ", variants: [{seed: 3}, {temperature: -1}]",
            "eval.variants[1].temperature",
            "greater than or equal",
        ),
        (", variants: [{top_p: 1.5}]", "eval.variants[0].top_p", "less than or equal"),
        (", variants: [{seed: 1.5}]", "eval.variants[0].seed", "integer"),
        (", variants: [{sed: 1}]", "eval.variants[0].sed", "unknown setting"),
        (", variants: [{}]", "eval.variants[0]", "at least one of seed, temperature, top_p"),
        (", variants: {seed: 1}", "eval.variants", "list"),
    ],
)
def test_a_bad_variant_names_its_field(tmp_path, extra, field, fragment):
    p = tmp_path / "bad.yaml"
    p.write_text(BASE + PROTOCOL + extra + "}}\n")
    with pytest.raises(ConfigError) as info:
        grid.expand(spec.load_sweep(p))
    msg = str(info.value)
    assert str(p) in msg and field in msg and fragment in msg and "\n" not in msg, msg


def test_a_subsample_seed_needs_a_limit(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(BASE + PROTOCOL.replace("limit: 5", "subsample_seed: 1") + ", limit: null}}\n")
    with pytest.raises(
        ConfigError, match=r"eval.protocols.arith.subsample_seed.*set eval.protocols.arith.limit"
    ):
        grid.expand(spec.load_sweep(p))
