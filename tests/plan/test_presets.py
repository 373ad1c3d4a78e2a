"""The official code's switches that move a row of the paper's table (issue: the last differences), each
changing exactly the setting it names; and `fidelity` complete: every value of the `paper` preset, moved
away from the official one, makes fidelity say so (or is exempt here with its reason)."""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from spurisweep.evaluation.generate import encode_prompts
from spurisweep.evaluation.run import baseline_eval_id, protocol_for
from spurisweep.ids import short_hash
from spurisweep.models import families
from spurisweep.plan import fidelity, grid, presets, spec
from spurisweep.plan.grpo import grpo_kwargs, training_stops
from spurisweep.plan.spec import EvalSettings

ROOT = Path(__file__).resolve().parents[2]


def cell(
    tmp_path: Path,
    model: str = "olmo2-7b",
    preset: str = "paper",
    settings: dict | None = None,
    reward: str = "ground_truth",
):
    doc = {"name": "t", "preset": preset, "grid": {"model": [model], "reward": [reward]}}
    doc["settings"] = settings or {}
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(doc))
    (c,) = grid.expand(spec.load_sweep(p))
    return c.config


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(families.model_source("tiny"))


@pytest.fixture(scope="module")
def bos_tok():
    """The tiny tokenizer adding a BOS to every encoding, as Llama's does."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(families.model_source("tiny"), add_bos_token=True)


# ---------------------------------------------------------------------------------------------- BOS
def test_double_bos_adds_a_second_bos_only_where_the_template_wrote_one(bos_tok):
    tok = bos_tok
    bos = tok.bos_token_id
    templated = tok.bos_token + "User: 1 + 1?"
    plain = "User: 1 + 1?"
    one = encode_prompts(tok, [templated, plain])
    two = encode_prompts(tok, [templated, plain], double_bos=True)
    assert [ids[:2].count(bos) for ids in one] == [1, 1]
    assert [ids[:2].count(bos) for ids in two] == [2, 1]  # the plain prompt gets its one BOS either way
    assert two[0][1:] == one[0]  # nothing else moves
    no_bos = encode_prompts(tok, [templated], add_bos=False, double_bos=True)[0]  # the R1 prompt: none added
    assert no_bos.count(bos) == 1


def test_double_bos_is_part_of_the_evaluation_id_only_when_on():
    off = protocol_for(EvalSettings(), "math500")
    on = protocol_for(EvalSettings(double_bos=True), "math500")
    assert on.double_bos and not off.double_bos
    assert baseline_eval_id("m", None, "chat", off) != baseline_eval_id("m", None, "chat", on)
    # the id of an evaluation without it is the one written before the setting existed
    later = ("prompt", "double_bos", "subsample_seed", "seed", "variant")  # each in the id only when set
    old = {k: v for k, v in asdict(off).items() if k not in later}
    was = "base-" + short_hash({"model": "m", "model_path": None, "prompt": "chat", "protocol": old})
    assert baseline_eval_id("m", None, "chat", off) == was


# ---------------------------------------------------------------------------------------------- stops
def test_the_template_stop_reaches_vllm_sampling_only_when_asked(tmp_path):
    olmo = cell(tmp_path)
    assert training_stops(olmo) == ("</answer>",)
    kw = grpo_kwargs(olmo, str(tmp_path), cpu=False, world=8, backend="vllm")
    assert kw["generation_kwargs"] == {"stop": ["</answer>"], "include_stop_str_in_output": True}
    off = cell(tmp_path, settings={"train": {"template_stop": False}})
    assert training_stops(off) == ()
    assert "generation_kwargs" not in grpo_kwargs(off, str(tmp_path), cpu=False, world=8, backend="vllm")
    qwen = cell(tmp_path, model="qwen2.5-math-7b")  # the chat template has no stop string
    assert training_stops(qwen) == ()


def test_the_transformers_backend_cuts_a_rollout_after_its_stop_string(tok):
    from spurisweep.training.trainer import cut_at_stops

    text = "<think> 2 + 2 </think> <answer> 4 </answer> and then more text"
    ids = tok(text, add_special_tokens=False).input_ids
    cut = cut_at_stops(ids, tok, ("</answer>",))
    kept = tok.decode(cut)
    assert kept.rstrip().endswith("</answer>") and "more" not in kept
    assert tok.decode(cut[:-1]).find("</answer>") < 0  # the shortest prefix holding the stop
    assert cut_at_stops(ids, tok, ("<never>",)) == ids


def test_the_grpo_config_carries_the_stop_for_trl(tmp_path):
    from trl import GRPOConfig

    kw = grpo_kwargs(cell(tmp_path), str(tmp_path), cpu=True, world=8, backend="vllm")
    kw.update(use_vllm=False, use_cpu=True, bf16=False)  # a GRPOConfig that builds on this CPU
    args = GRPOConfig(**{k: v for k, v in kw.items() if not k.startswith("vllm_")})
    assert args.generation_kwargs == {"stop": ["</answer>"], "include_stop_str_in_output": True}


# ---------------------------------------------------------------------------------------------- reward text
def test_raw_reward_text_hands_the_reward_the_special_tokens(tok):
    from spurisweep.training.cell import raw_text_reward

    seen: list[str] = []

    def reward(completions, **_):
        seen.extend(completions)
        return [0.0] * len(completions)

    ids = tok("the answer is 4", add_special_tokens=False).input_ids + [tok.eos_token_id]
    plain = tok.batch_decode([ids], skip_special_tokens=True)
    raw_text_reward(reward, tok)(plain, completion_ids=[ids])
    assert seen == [tok.decode(ids, skip_special_tokens=False)]
    assert tok.eos_token in seen[0] and tok.eos_token not in plain[0]
    assert raw_text_reward(reward, tok).__name__ == "reward"  # TRL logs rewards by name


def test_the_paper_grader_reads_the_raw_text_as_the_official_reward(tok):
    """An unboxed 'the answer is X' followed by the EOS text scores 0 read raw, 1 read plain."""
    from spurisweep.grading import paper

    ids = tok("so the answer is 4", add_special_tokens=False).input_ids + [tok.eos_token_id]
    plain = tok.decode(ids, skip_special_tokens=True)
    raw = tok.decode(ids, skip_special_tokens=False)
    assert paper.grade(plain, "4", 5.0).correct is True
    assert paper.grade(raw, "4", 5.0).correct is False


def test_an_empty_gold_is_graded_the_official_way():
    from spurisweep.grading import paper, verify

    assert paper.grade("So \\boxed{}.", "", 5.0).correct is True
    assert paper.grade("So \\boxed{5}.", "", 5.0).correct is False
    assert verify.grade("So \\boxed{}.", "", 5.0).correct is None  # math-verify leaves it unscored


# ---------------------------------------------------------------------------------------------- the prompt
def test_the_paper_preset_trains_and_evaluates_base_models_on_the_literal_template(tmp_path, tok):
    cfg = cell(tmp_path)
    assert cfg.prompt == "r1_paper_literal_newlines"
    text = families.render_prompt(tok, cfg.prompt, "What is 1 + 1?")
    assert "\\n" in text and "\n" not in text
    assert families.render_prompt(tok, "r1_paper", "What is 1 + 1?").count("\n") > 0


# ---------------------------------------------------------------------------------------------- the recipe file
def test_the_paper_preset_is_the_recipe_file_and_every_value_reaches_the_cell(tmp_path):
    """resources/paper_recipe.yaml is the one place the recipe is written (fidelity reads it too); every value
    of its `preset` section reaches a resolved cell as written (a float stays a float: YAML reads `5e-7` as
    text, so the file writes 5.0e-7)."""
    recipe = presets.paper_recipe()
    assert presets.PRESETS["paper"] == recipe["preset"]
    cfg = cell(tmp_path, model="qwen2.5-math-7b")
    for path, value in _leaves(recipe["preset"]):
        got: object = cfg
        for part in path.split("."):
            got = getattr(got, part)
        assert got == value and type(got) is type(value), (path, got, value)
    # besides the paper's values, only how a run is kept (resume points, not a paper setting)
    assert (
        recipe["preset"]["train"]["resume_every"] == 10 and recipe["preset"]["train"]["keep_checkpoints"] == 1
    )
    assert cfg.clip == "standard" and cfg.clip_params.eps_low == 0.2
    assert cfg.train.bf16 is None  # bf16 on GPU, as the paper; fp32 on CPU


def test_the_recipes_official_values_are_the_defaults_a_paper_cell_keeps(tmp_path):
    """The `official` section names what the preset leaves at CellConfig's defaults: a paper cell holds each."""
    official = presets.paper_recipe()["official"]["data"]
    d = cell(tmp_path, reward="majority_vote").data
    for key, value in official.items():
        got = getattr(d, key)
        if key == "label_max_new_tokens" and got is None:  # None: the training response limit
            got = cell(tmp_path).train.max_completion_length
        assert got == value, key


# ---------------------------------------------------------------------------------------------- completeness
#: paper-preset settings whose value changes nothing fidelity compares, each with why
EXEMPT = {
    "train.save_every": "checkpoint cadence: where a run keeps weights, no number of the table",
    "train.resume_every": "resume points: where a preempted run restarts, not what it computes",
    "train.keep_checkpoints": "how many checkpoints stay on disk, no number of the table",
    "eval.benchmarks": "which benchmarks are read: the table's rows, not a setting of a run",
    "data.train": None,  # listed ("training data"): the perturbation below must be a real data set name
}


def _leaves(d: dict, prefix: str = "") -> list[tuple[str, object]]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _leaves(v, f"{prefix}{k}.")
        else:
            out.append((f"{prefix}{k}", v))
    return out


def _moved(value: object) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value * 2 or 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.1
    if isinstance(value, str):
        return {
            "paper": "math_verify",
            "raw": "plain",
            "group": "batch",
            "constant": "linear",
            "bnpo": "grpo",
        }.get(value, value)
    return value


MODELS = ("olmo2-7b", "llama3.1-8b-instruct")  # an R1-prompted base model and a chat model


def _differences(tmp_path: Path) -> set:
    return {d for m in MODELS for d in fidelity.differences(cell(tmp_path, model=m, reward="majority_vote"))}


@pytest.mark.parametrize(
    "path, value", [(p, v) for p, v in _leaves(presets.PRESETS["paper"]) if EXEMPT.get(p, "") == ""]
)
def test_fidelity_is_never_silent_about_a_moved_paper_setting(tmp_path, monkeypatch, path, value):
    special = {
        "data.train": "builtin:arith",
        "data.label_prompt": "chat",
        "data.labelling": "equivalence",
        "train.max_prompt_length": 512,  # longer ones would pass the models' 4,096-token context
        "train.max_completion_length": 1536,
    }
    moved = special.get(path, _moved(value))
    assert moved != value, f"no perturbation for {path}={value!r}: add one"
    before = _differences(tmp_path)
    preset = copy.deepcopy(presets.PRESETS["paper"])
    node = preset
    *parents, leaf = path.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = moved
    monkeypatch.setitem(presets.PRESETS, "paper", preset)
    assert _differences(tmp_path) - before, f"fidelity is silent about {path}: {value!r} -> {moved!r}"


def test_every_paper_setting_is_covered_or_exempt_with_a_reason():
    paths = {p for p, _ in _leaves(presets.PRESETS["paper"])}
    assert set(EXEMPT) <= paths  # no stale exemption
    assert all(reason for p, reason in EXEMPT.items() if reason is not None)


def test_fidelity_lists_fit_80_columns_and_never_cut_a_word():
    cells = grid.expand(spec.load_sweep(ROOT / "sweeps" / "smoke.yaml"))
    table = fidelity.sweep_report(cells, title="smoke")
    from spurisweep.analysis import render

    text = render.to_list(table, 80)
    words = {w for r in table.records for v in r.values() for w in str(v).split()}
    lines = text.splitlines()
    assert lines and max(len(ln) for ln in lines) <= 80
    printed = {w for ln in lines for w in ln.split()}
    assert {w for w in words if len(w) < 70} <= printed  # every word whole on some line
