"""Paper-faithful runs: the `paper` preset resolves to the official code's switches, `spurisweep fidelity`
lists what a sweep still differs in, bad or contradictory settings are one line naming file and field
(the real CLI in a subprocess), and the official R1-style templates render exactly."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep.models import families
from spurisweep.plan import fidelity, grid, presets, spec

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]

#: the switches whose differences the paper preset removes
OBJECTIVE_GRADER_PROMPT = {
    "grader",
    "IS correction",
    "advantage whitening",
    "loss aggregation",
    "prompt template",
    "BOS / stop / answer tag",
    "evaluation cadence",
    "data.labelling",
    "data.label_prompt",
    "data.label_holdout",
}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*EXE, *args], capture_output=True, text=True, cwd=ROOT, env={**os.environ}, timeout=300
    )


def expand(tmp_path: Path, text: str) -> list[grid.Cell]:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return grid.expand(spec.load_sweep(p))


def one(
    tmp_path: Path, model: str = "llama3.1-8b", preset: str = "paper", settings: str = "{}"
) -> spec.CellConfig:
    text = f"name: t\npreset: {preset}\ngrid: {{model: [{model}], reward: [majority_vote]}}\nsettings: {settings}\n"
    (cell,) = expand(tmp_path, text)
    return cell.config


def paper_table() -> list[grid.Cell]:
    return grid.expand(spec.load_sweep(ROOT / "sweeps" / "paper_table.yaml"))


# ---------------------------------------------------------------------------------------------- the preset
def test_paper_preset_resolves_to_the_official_switches():
    for c in paper_table():
        cfg = c.config
        assert cfg.grader == "paper"
        t = cfg.train
        assert (t.is_correction, t.token_whitening, t.loss_type) == (False, True, "bnpo")
        assert fidelity.pack_size(cfg) == 4 and fidelity.updates_per_rollout(cfg) == 8
        assert cfg.eval.eval_every == 1
        d = cfg.data
        assert (d.labelling, d.label_prompt, d.label_holdout) == ("paper", "raw", 100)
        # base families prompted R1-style get the official text; the chat families keep their chat template
        # (the training script's text, literal backslash-n, in training and its in-training evaluation)
        want = "r1_paper_literal_newlines" if cfg.model == "olmo2-7b" else "chat"
        assert cfg.prompt == want, cfg.model
        assert (t.template_stop, t.reward_text, cfg.eval.double_bos) == (True, "raw", True)


def test_fidelitys_reference_is_the_recipe_file_and_not_the_live_preset(tmp_path, monkeypatch):
    """Fidelity reads the same recipe file as the `paper` preset, in its own copy: a preset changed at run
    time is a difference, not a moved reference."""
    recipe = presets.paper_recipe()
    train = recipe["preset"]["train"]
    assert fidelity.OFFICIAL_TRAIN == {k: train[k] for k in fidelity.OFFICIAL_TRAIN}
    assert (
        fidelity.OFFICIAL_PACK == train["micro_batch"]
        and fidelity.OFFICIAL_DATA == recipe["preset"]["data"]["train"]
    )
    assert fidelity.OFFICIAL_LABEL_TOKENS == recipe["official"]["data"]["label_max_new_tokens"]
    assert fidelity.OFFICIAL_PAPER_BENCHMARKS == tuple(recipe["preset"]["eval"]["benchmarks"])
    assert fidelity.OFFICIAL_REWARDS == set(recipe["official"]["rewards"]) >= {"random", "ground_truth"}
    moved = copy.deepcopy(presets.PRESETS["paper"])
    moved["train"]["learning_rate"] = 1e-6
    monkeypatch.setitem(presets.PRESETS, "paper", moved)
    (row,) = [d for d in fidelity.differences(one(tmp_path)) if d.setting == "learning rate"]
    assert (row.ours, row.official) == ("1e-06", "5e-07")


def test_paper_preset_prompts_llama_base_officially_and_an_explicit_prompt_wins(tmp_path):
    assert one(tmp_path).prompt == "r1_paper_literal_newlines"
    assert one(tmp_path, settings="{prompt: r1}").prompt == "r1"
    assert one(tmp_path, preset="smoke").prompt == "r1"  # the substitution belongs to the paper preset only


def test_fidelity_of_paper_table_shows_no_objective_grader_or_prompt_difference():
    cells = paper_table()
    table = fidelity.sweep_report(cells)
    settings = {r["setting"] for r in table.records}
    assert not settings & OBJECTIVE_GRADER_PROMPT, settings
    # what remains is stated, not hidden: the labels drawn again and the seed count
    assert settings == {"label samples", "seeds per setting"}
    row = next(r for r in table.records if r["setting"] == "label samples")
    assert row["cells"] == "reward=incorrect_label,majority_vote (24 of 72)"
    assert next(r for r in table.records if r["setting"] == "seeds per setting")["ours"] == "3"


def test_smoke_preset_lists_every_switch_with_an_effect():
    cells = grid.expand(spec.load_sweep(ROOT / "sweeps" / "smoke.yaml"))
    records = fidelity.sweep_report(cells).records
    settings = {r["setting"] for r in records}
    assert {
        "grader",
        "IS correction",
        "advantage whitening",
        "loss aggregation",
        "evaluation cadence",
    } <= settings
    assert {
        "max steps",
        "learning rate",
        "samples per prompt",
        "updates per rollout",
        "max response tokens",
    } <= settings
    assert "seeds per setting" not in settings  # one seed, as the official code
    assert all(r["effect"] for r in records)
    grader = next(r for r in records if r["setting"] == "grader")
    assert "higher baselines" in grader["effect"] and "smaller gains" in grader["effect"]
    clip = next(r for r in records if r["setting"] == "clip")
    assert clip["cells"] == "clip=no_clip (2 of 4)"


@pytest.mark.parametrize(
    "settings, gone",
    [
        ("{grader: paper}", "grader"),
        ("{train: {is_correction: false}}", "IS correction"),
        ("{train: {generation_backend: transformers}}", "IS correction"),  # no vLLM: nothing to correct
        ("{train: {token_whitening: true}}", "advantage whitening"),
        ("{train: {loss_type: bnpo, micro_batch: 4}}", "loss aggregation"),
        ("{eval: {eval_every: 1}}", "evaluation cadence"),
        ("{data: {labelling: paper, limit: 200}}", "data.labelling"),
        ("{prompt: r1_paper}", "prompt template"),
        ("{prompt: r1_paper}", "BOS / stop / answer tag"),
    ],
)
def test_each_switch_removes_its_difference(tmp_path, settings, gone):
    before = {d.setting for d in fidelity.differences(one(tmp_path, preset="smoke"))}
    after = {d.setting for d in fidelity.differences(one(tmp_path, preset="smoke", settings=settings))}
    assert gone in before and gone not in after


def test_pack_size_follows_the_micro_batch_and_the_processes(tmp_path):
    cfg = one(tmp_path, settings="{train: {micro_batch: 16}}")
    assert fidelity.pack_size(cfg) == 16
    loss = next(d for d in fidelity.differences(cfg) if d.setting == "loss aggregation")
    assert loss.ours == "bnpo, over 16 responses per pass"
    cfg = one(tmp_path, settings="{train: {micro_batch: null}, resources: {gpus_per_node: 8}}")
    assert fidelity.pack_size(cfg) == 16  # a mini-batch of 128 split over 8 processes


def test_literal_newline_prompt_is_the_official_text_of_training_and_its_evaluation(tmp_path):
    lit = one(tmp_path, settings="{prompt: r1_paper_literal_newlines}")
    names = {d.setting for d in fidelity.differences(lit)}
    assert "prompt newlines" not in names and "prompt template" not in names
    assert any("literal backslash-n" in q for q in fidelity.quirks(lit))
    real = one(tmp_path, settings="{prompt: r1_paper}")
    assert "prompt newlines" in {d.setting for d in fidelity.differences(real)}
    real_eval = one(
        tmp_path,
        settings="{prompt: r1_paper_literal_newlines, eval: {benchmarks: [math500], "
        "protocols: {math500: {prompt: r1_paper}}}}",
    )
    assert "prompt newlines" in {d.setting for d in fidelity.differences(real_eval)}


# ---------------------------------------------------------------------------------------------- cell ids
def test_settings_added_later_keep_existing_cell_ids():
    # the smoke sweep's ids as written before the paper-faithful settings existed
    cells = grid.expand(spec.load_sweep(ROOT / "sweeps" / "smoke.yaml"))
    assert [c.id for c in cells] == ["8d47cac2e0f6", "5ee7b2b10199", "06663dc830d9", "b14423b6428d"]
    for path, default in spec.LATE_DEFAULTS.items():
        assert grid.get_dotted(cells[0].config, path) == default, path


@pytest.mark.parametrize(
    "settings",
    [
        "{grader: paper}",
        "{train: {is_correction: false}}",
        "{train: {token_whitening: true}}",
        "{eval: {eval_every: 1}}",
        "{data: {labelling: paper, limit: 200}}",
        "{data: {label_holdout: 5}}",
    ],
)
def test_a_late_setting_away_from_its_default_changes_the_id(tmp_path, settings):
    base = "name: t\npreset: smoke\ngrid: {model: [tiny], reward: [majority_vote]}\n"
    (a,) = expand(tmp_path, base)
    (b,) = expand(tmp_path, base + f"settings: {settings}\n")
    assert a.id != b.id


# ---------------------------------------------------------------------------------------------- the CLI
def test_cli_fidelity_json():
    proc = cli("fidelity", "sweeps/paper_table.yaml", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert {c["setting"] for c in out["cells"]} == {"label samples", "seeds per setting"}
    assert {"setting", "ours", "official", "effect", "cells"} <= set(out["cells"][0])


@pytest.mark.parametrize(
    "settings, field, fragment",
    [
        ("{grader: paper_v2}", "settings.grader", "'math_verify' or 'paper'"),
        ("{data: {labelling: official}}", "settings.data.labelling", "'equivalence' or 'paper'"),
        ("{prompt: r1_papr}", "prompt", "did you mean 'r1_paper'"),
        ("{data: {label_prompt: nope}}", "data.label_prompt", "valid:"),
        ("{train: {is_correction: true, generation_backend: transformers}}", "train.is_correction", "vLLM"),
        ("{eval: {eval_every: 1, checkpoints: false}}", "eval.eval_every", "eval.checkpoints"),
        (
            "{train: {is_correction: false}, trl: {vllm_importance_sampling_correction: true}}",
            "trl.vllm_importance_sampling_correction",
            "train.is_correction",
        ),
        ("{data: {labelling: paper, limit: 64}}", "data.label_holdout", "nothing is left"),
        ("{eval: {eval_every: 0}}", "settings.eval.eval_every", "greater than or equal to 1"),
    ],
)
def test_bad_values_exit_2_with_one_line_naming_file_and_field(tmp_path, settings, field, fragment):
    p = tmp_path / "bad.yaml"
    p.write_text(
        f"name: t\npreset: smoke\ngrid: {{model: [tiny], reward: [majority_vote]}}\nsettings: {settings}\n"
    )
    proc = cli("fidelity", str(p))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(p) in lines[0] and f" {field}:" in lines[0] and fragment in lines[0], lines[0]


# ---------------------------------------------------------------------------------------------- templates
OFFICIAL = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
    "The reasoning process and answer are enclosed within <think> </think> and <answer> </answer> tags, "
    "respectively, i.e., <think> reasoning process here </think> <answer> answer here </answer>.\n\n<|user|>\n"
    "What is $1+1$?\n<|assistant|>\n<think>"
)


def test_r1_paper_renders_the_official_text_exactly():
    assert families.render_prompt(None, "r1_paper", "What is $1+1$?") == OFFICIAL
    t = families.template("r1_paper")
    assert (t.add_bos, t.stop, t.answer_tag) == (False, ("</answer>",), True)


def test_literal_newline_variant_differs_only_in_the_newlines():
    problem = "Line one.\nLine two: {x}?"  # the problem's own newlines stay real, as in the official script
    real = families.render_prompt(None, "r1_paper", problem)
    literal = families.render_prompt(None, "r1_paper_literal_newlines", problem)
    assert literal != real
    assert literal.count("\\n") == 5 and literal.count("\n") == 1
    assert literal.replace("\\n", "\n") == real
    t = families.template("r1_paper_literal_newlines")
    assert (t.add_bos, t.stop, t.answer_tag) == (False, ("</answer>",), True)


def test_every_template_renders_and_the_older_ones_keep_their_switches():
    for name, t in families.TEMPLATES.items():
        assert families.PROMPTS[name] == t.text
        if "{chat_template}" not in t.text:
            assert "QQQ" in families.render_prompt(None, name, "QQQ")
        if name in ("chat", "chat_boxed", "r1", "plain", "qa", "raw"):
            assert (t.add_bos, t.stop, t.answer_tag) == (True, (), False), name
    assert families.render_prompt(None, "raw", "QQQ") == "QQQ"
