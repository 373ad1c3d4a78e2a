"""One cell's GRPO run: the paper preset and its mapping onto TRL, `trl:` validation at plan time, training
data and prompts, trackers, the per-update metrics, checkpoints with their evaluations, and resume after
kill -9. Every run is real TRL on the built-in tiny model (CPU, seconds)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from spurisweep import artifacts, training
from spurisweep.errors import ConfigError
from spurisweep.models import families
from spurisweep.plan import grid, grpo, spec
from tests.helpers_train import make_cell, metrics, run_cell

ROOT = Path(__file__).resolve().parents[2]
NO_EVAL = {"baseline": False, "checkpoints": False, "benchmarks": []}


def config_of(cell_dir: Path) -> spec.CellConfig:
    return spec.CellConfig.model_validate(artifacts.CellDir(cell_dir).config()["config"])


def checkpoints(cell_dir: Path) -> list[str]:
    return sorted(
        (p.name for p in (cell_dir / "checkpoints").glob("checkpoint-*")), key=lambda n: int(n.split("-")[1])
    )


def resolved(tmp_path: Path, text: str) -> list[grid.Cell]:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return grid.expand(spec.load_sweep(p))


# ---------------------------------------------------------------------------------------------- the paper preset
# the preset's values against the recipe file: tests/plan/test_presets.py; against RESEARCH.md's text: here
def test_paper_values_are_the_ones_research_md_states():
    doc = ROOT.parent / "shared" / "RESEARCH.md"
    if not doc.exists():
        pytest.skip("../shared/RESEARCH.md is not on this machine")
    text = doc.read_text()
    section = text.split("## Paper training settings", 1)[1].split("\n## ", 1)[0]
    for phrase in (
        "agentica-org/DeepScaleR-Preview-Dataset",
        "Learning rate 5e-7 constant, no warmup",
        "Adam betas (0.9, 0.95)",
        "weight decay 0",
        "grad-norm clip 1.0",
        "64 prompts per rollout step x 16",
        "mini-batch 128",
        "1 epoch per rollout",
        "Prompt up to 1024 tokens, response up to 3072",
        "Temperature 1.0, top_p 1.0",
        "KL coefficient 0",
        "v2 at step 300",  # the preset trains 300 steps (the arXiv version reads Figure 1 there)
        "checkpoints every 50",
        "(r - mean)/(std + 1e-9) within the group",
    ):
        assert phrase in section, phrase


def test_paper_preset_maps_onto_trl_as_8_updates_per_rollout(tmp_path):
    from trl import GRPOConfig

    (cell,) = resolved(
        tmp_path,
        "name: p\npreset: paper\ngrid: {model: [qwen2.5-math-7b]}\nsettings: {train: {micro_batch: 16}}\n",
    )
    kw = grpo.grpo_kwargs(cell.config, str(tmp_path / "out"), cpu=True)
    args = GRPOConfig(**kw)
    # TRL's own derivation (GRPOConfig.__post_init__): 1024 responses per generation, forward passes of 16
    assert args.generation_batch_size == 1024 and args.num_generations == 16
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 128  # the mini-batch
    assert args.steps_per_generation == 1024 // 16 and args.num_iterations == 1
    assert grpo.updates_per_rollout(kw) == 8
    assert args.max_steps == 300 * 8 and args.save_steps == 10 * 8  # a resume point every 10 steps
    # GRPOTrainer computes the old log-probs (so the ratio can move) only when generations are reused:
    assert args.gradient_accumulation_steps % (args.steps_per_generation * args.num_iterations) != 0
    assert args.vllm_importance_sampling_correction is False
    assert (args.loss_type, args.scale_rewards, args.beta, args.epsilon, args.epsilon_high) == (
        "bnpo",
        "group",
        0.0,
        0.2,
        0.2,
    )
    assert (args.learning_rate, args.lr_scheduler_type, args.adam_beta2, args.temperature) == (
        5e-7,
        "constant",
        0.95,
        1.0,
    )


def test_on_policy_is_one_update_per_rollout_in_trl(tmp_path):
    from trl import GRPOConfig

    (cell,) = resolved(
        tmp_path,
        "name: p\npreset: paper\ngrid: {model: [qwen2.5-math-7b], clip: [on_policy]}\n"
        "settings: {train: {micro_batch: 16}}\n",
    )
    kw = grpo.grpo_kwargs(cell.config, str(tmp_path / "out"), cpu=True)
    args = GRPOConfig(**kw)
    assert grpo.updates_per_rollout(kw) == 1 and args.max_steps == 300
    assert args.gradient_accumulation_steps == args.steps_per_generation * args.num_iterations  # no old logps


def test_data_parallel_processes_share_the_mini_batch(tmp_path):
    (cell,) = resolved(
        tmp_path,
        "name: p\npreset: paper\ngrid: {model: [qwen2.5-math-7b]}\nsettings: {train: {micro_batch: 8}}\n",
    )
    kw = grpo.grpo_kwargs(cell.config, str(tmp_path), cpu=True, world=4)
    assert kw["per_device_train_batch_size"] * kw["gradient_accumulation_steps"] * 4 == 128
    assert grpo.updates_per_rollout(kw, world=4) == 8
    # ranks wait for rank 0's evaluations far longer than TRL's 30 min; DDP skips the unused-parameter scan
    assert kw["ddp_timeout"] == grpo.DDP_TIMEOUT_S and kw["ddp_find_unused_parameters"] is False
    assert "ddp_timeout" not in grpo.grpo_kwargs(cell.config, str(tmp_path), cpu=True)


def test_other_loss_types_are_reachable(tmp_path):
    (a, b) = resolved(
        tmp_path, "name: p\npreset: smoke\ngrid: {model: [tiny], train.loss_type: [dapo, dr_grpo]}\n"
    )
    assert grpo.grpo_kwargs(a.config, str(tmp_path), cpu=True)["loss_type"] == "dapo"
    (c,) = resolved(
        tmp_path, "name: p\npreset: smoke\ngrid: {model: [tiny]}\nsettings: {trl: {loss_type: bnpo}}\n"
    )
    grpo.validate(c.config)
    assert grpo.grpo_kwargs(c.config, str(tmp_path), cpu=True)["loss_type"] == "bnpo"


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "settings, field, words",
    [
        ({"trl": {"not_a_field": 1}}, "trl.not_a_field", "GRPOConfig fields"),
        ({"trl": {"num_iteration": 2}}, "trl.num_iteration", "did you mean 'num_iterations'"),
        ({"trl": {"output_dir": "/tmp/x"}}, "trl.output_dir", "results layout"),
        (
            {"train": {"mini_batch": 2}, "trl": {"generation_batch_size": 18}},
            "trl.generation_batch_size",
            "must be divisible by num_generations (4)",
        ),
        ({"trl": {"num_generations": 3}}, "trl.num_generations", "divisible by num_generations (3)"),
        (
            {"trl": {"generation_batch_size": 30}},
            "trl.generation_batch_size",
            "divisible by the responses per forward pass (4)",
        ),
        ({"trl": {"loss_type": "ppo"}}, "trl.loss_type", "valid: bnpo"),
        ({"train": {"loss_type": "grpoo"}}, "train.loss_type", "did you mean 'grpo'"),
        ({"train": {"scale_rewards": "groups"}}, "train.scale_rewards", "did you mean 'group'"),
        ({"train": {"mini_batch": 5}}, "train.mini_batch", "divisible by mini_batch (5)"),
        ({"trl": {"loss_type": "cispo"}}, "clip", "epsilon_high caps the importance weight"),
        ({"tracking": {"report_to": ["wandbb"]}}, "tracking.report_to[0]", "did you mean 'wandb'"),
        (
            {"train": {"mini_batch": 8, "micro_batch": 4}, "trl": {"steps_per_generation": 3}},
            "trl.steps_per_generation",
            "not a whole number of updates",
        ),
    ],
)
def test_invalid_training_settings_are_rejected_at_plan_time(tmp_path, settings, field, words):
    text = yaml.safe_dump({"name": "v", "preset": "smoke", "grid": {"model": ["tiny"]}, "settings": settings})
    (cell,) = resolved(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        grpo.validate(cell.config, file="v.yaml")
    assert exc.value.field == field and exc.value.file == "v.yaml"
    assert words in str(exc.value)


def test_no_clip_takes_no_epsilons(tmp_path):
    (cell,) = resolved(
        tmp_path,
        "name: v\npreset: smoke\ngrid: {model: [tiny], clip: [no_clip]}\nsettings: {clip_params: {eps_high: 0.3}}\n",
    )
    with pytest.raises(ConfigError, match="no_clip never clips"):
        grpo.validate(cell.config, file="v.yaml")


def test_valid_overrides_pass_and_reach_grpo_config(tmp_path):
    (cell,) = resolved(
        tmp_path,
        "name: v\npreset: smoke\ngrid: {model: [tiny]}\n"
        "settings: {trl: {mask_truncated_completions: true, top_entropy_quantile: 0.5}}\n",
    )
    grpo.validate(cell.config)
    kw = grpo.grpo_kwargs(cell.config, str(tmp_path), cpu=True)
    assert kw["mask_truncated_completions"] is True and kw["top_entropy_quantile"] == 0.5


def test_overriding_the_batch_shape_keeps_rollout_steps_aligned(tmp_path):
    # 16 responses per rollout in forward passes of 2, updates of 4 passes: 2 updates per rollout
    (cell,) = resolved(
        tmp_path,
        "name: v\npreset: smoke\ngrid: {model: [tiny]}\n"
        "settings: {trl: {per_device_train_batch_size: 2, gradient_accumulation_steps: 4}}\n",
    )
    grpo.validate(cell.config)
    kw = grpo.grpo_kwargs(cell.config, str(tmp_path), cpu=True)
    assert grpo.updates_per_rollout(kw) == 2
    assert (
        kw["max_steps"] == cell.config.train.steps * 2
        and kw["save_steps"] == cell.config.train.save_every * 2
    )


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"trl": {"not_a_field": 1}}, "trl.not_a_field"),
        ({"train": {"mini_batch": 2}, "trl": {"generation_batch_size": 18}}, "trl.generation_batch_size"),
    ],
)
def test_cli_plan_rejects_bad_trl_overrides_with_exit_2_and_one_line(tmp_path, settings, field):
    sweep = tmp_path / "bad.yaml"
    sweep.write_text(
        yaml.safe_dump({"name": "bad", "preset": "smoke", "grid": {"model": ["tiny"]}, "settings": settings})
    )
    proc = subprocess.run(
        [sys.executable, "-m", "spurisweep.cli", "plan", str(sweep), "--results", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(sweep) in lines[0] and field in lines[0]


def test_a_validated_training_setup_is_remembered_and_a_rejected_one_is_not(tmp_path, monkeypatch):
    """validate_all validates once per training setup; with cached=True (plan) a setup that passed before is
    not validated again, while one that failed fails every time; cached=False (run, plan --check) always
    validates."""
    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path / "cache"))
    calls: list[spec.CellConfig] = []
    real = grpo.validate

    def counted(cfg: spec.CellConfig, file: str | None = None) -> None:
        calls.append(cfg)
        real(cfg, file)

    monkeypatch.setattr(grpo, "validate", counted)
    good = [
        c.config for c in resolved(tmp_path, "name: v\npreset: smoke\ngrid: {model: [tiny], seed: [0, 1]}\n")
    ]
    grpo.validate_all(good, cached=True)
    assert len(calls) == 1  # two seeds, one training setup
    grpo.validate_all(good, cached=True)
    assert len(calls) == 1
    grpo.validate_all(good, cached=False)
    assert len(calls) == 2
    text = "name: b\npreset: smoke\ngrid: {model: [tiny]}\nsettings: {trl: {not_a_field: 1}}\n"
    bad = [c.config for c in resolved(tmp_path, text)]
    for _ in range(2):
        with pytest.raises(ConfigError, match="GRPOConfig fields"):
            grpo.validate_all(bad, file="b.yaml", cached=True)
    assert len(calls) == 4


def test_plan_of_a_validated_sweep_does_not_load_trl_and_plan_check_does(tmp_path):
    """The fast plan: the first `plan` validates with TRL, the second answers without importing it (the
    setup was validated before), and `plan --check` validates again."""
    env = {**os.environ, "SPURISWEEP_CACHE": str(tmp_path / "cache")}

    def plan_imports_trl(*extra: str) -> bool:
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "spurisweep.cli", "plan", "sweeps/smoke.yaml", *extra],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return any(line.split("|")[-1].strip() == "trl" for line in proc.stderr.splitlines())

    assert plan_imports_trl()
    assert not plan_imports_trl()
    assert plan_imports_trl("--check")


# ---------------------------------------------------------------------------------------------- data, prompts
def test_default_training_data_is_deepscaler_on_the_hub():
    assert spec.CellConfig(model="tiny").data.train == "agentica-org/DeepScaleR-Preview-Dataset"


def test_local_deepscaler_slice_with_a_limit(tmp_path, shared_data):
    d = make_cell(
        tmp_path / "r", {"data": {"train": str(shared_data / "deepscaler_level1_train.json"), "limit": 20}}
    )
    cfg = config_of(d)
    problems = training.training_problems(cfg, tmp_path / "r")
    raw = json.loads((shared_data / "deepscaler_level1_train.json").read_text())[:20]
    assert [p.problem for p in problems] == [r["prompt"] for r in raw]
    assert [p.answer for p in problems] == [str(r["answer"]) for r in raw]


@pytest.mark.parametrize("suffix", ["jsonl", "parquet"])
def test_local_jsonl_and_parquet_training_files(tmp_path, suffix):
    import pandas as pd

    rows = [{"problem": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(5)]
    path = tmp_path / f"train.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        pd.DataFrame(rows).to_parquet(path)
    d = make_cell(tmp_path / "r", {"data": {"train": str(path), "limit": 3}})
    problems = training.training_problems(config_of(d), tmp_path / "r")
    assert [(p.problem, p.answer) for p in problems] == [(r["problem"], r["answer"]) for r in rows[:3]]


def test_training_and_evaluation_see_the_same_rendered_prompt(tmp_path):
    """Train and evaluate on one local file: each problem's training prompt is the evaluation's prompt."""
    probs = [{"id": f"p{i}", "problem": f"What is {i} + {i}?", "answer": str(2 * i)} for i in range(4)]
    path = tmp_path / "probs.json"
    path.write_text(json.dumps(probs))
    results = tmp_path / "r"
    d = make_cell(
        results,
        {
            "data": {"train": str(path)},
            "train": {"steps": 1, "save_every": 1},
            "eval": {"baseline": False, "protocols": {"arith": {"path": str(path)}}},
        },
    )
    cfg = config_of(d)
    assert cfg.prompt == "chat"  # the family's template, resolved into the cell's config (and id)
    run_cell(d, results)
    tok = families.load_model_and_tokenizer(families.model_source("tiny"))[1]
    rows = {
        r["problem_id"]: r["prompt"]
        for r in training.training_rows(cfg, tok, training.training_problems(cfg, results))
    }
    (meta,) = artifacts.CellDir(d).completed_evals()
    evaluated = {
        r["problem_id"]: r["prompt"] for r in artifacts.read_jsonl(d / "evals" / f"{meta['eval_id']}.jsonl")
    }
    assert evaluated == rows and len(rows) == 4
    assert (
        rows["p1"] == families.render_prompt(tok, "chat", "What is 1 + 1?")
        and "User: What is 1 + 1?" in rows["p1"]
    )


# ---------------------------------------------------------------------------------------------- metrics, trackers
def test_every_update_is_logged_with_the_training_signals(tmp_path):
    """micro-batch 4 < mini-batch 8 < rollout 16: gradient accumulation, 2 updates per rollout, and a KL term."""
    results = tmp_path / "r"
    d = make_cell(
        results,
        {
            "train": {"steps": 3, "mini_batch": 8, "micro_batch": 4, "beta": 0.04, "save_every": 3},
            "eval": NO_EVAL,
        },
    )
    done = run_cell(d, results)
    rows = metrics(d)
    assert done["updates_per_rollout"] == 2 and done["updates"] == 6
    assert done["backend"] == "transformers" == artifacts.CellDir(d).status()["backend"]  # no vLLM/GPU here
    assert [r["update"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows] == [1, 1, 2, 2, 3, 3]
    generated = [r["update"] for r in rows if "reward" in r]
    assert generated == [1, 3, 5]  # TRL generated exactly once per rollout step
    for r in rows:
        for key in (
            "loss",
            "entropy",
            "kl",
            "clip_ratio/low_mean",
            "clip_ratio/high_mean",
            "clip_ratio/region_mean",
        ):
            assert isinstance(r[key], float), (key, r)
    for r in (r for r in rows if "reward" in r):
        for key in (
            "reward_std",
            "rewards/random/mean",
            "rewards/random/std",
            "completions/mean_length",
            "completions/max_length",
            "completions/clipped_ratio",
            "frac_reward_zero_std",
            "token_prob/mean",
            "timing/generate_s",
            "timing/generated_tokens",
        ):
            assert isinstance(r[key], float), (key, r)
        assert 0 < r["token_prob/mean"] < 1 and r["entropy"] > 0
    # the untrained tiny model's sampled tokens are near-uniform over its 512-token vocabulary
    assert rows[0]["token_prob/mean"] == pytest.approx(1 / 512, rel=0.5)


def test_vllm_colocate_when_installed_with_a_gpu_else_transformers(monkeypatch, tmp_path):
    """vLLM and a GPU cannot run here: generate.vllm_available is mocked; the GRPOConfig arguments are real."""
    from spurisweep.evaluation import generate

    (cell,) = resolved(tmp_path, "name: p\npreset: paper\ngrid: {model: [qwen2.5-math-1.5b]}\n")
    monkeypatch.setattr(generate, "vllm_available", lambda: False)
    monkeypatch.setattr(generate, "vllm_platform", lambda: None)
    assert generate.choose_backend("auto") == "transformers"
    kw = grpo.grpo_kwargs(cell.config, "out", cpu=True, backend="transformers")
    assert kw["use_vllm"] is False and "vllm_mode" not in kw
    monkeypatch.setattr(generate, "vllm_available", lambda: True)
    monkeypatch.setattr(generate, "vllm_platform", lambda: "cuda")
    assert generate.choose_backend("auto") == "vllm"
    kw = grpo.grpo_kwargs(cell.config, "out", cpu=False, backend="vllm")
    assert kw["use_vllm"] is True and kw["vllm_mode"] == "colocate"
    assert kw["vllm_max_model_length"] == 1024 + 3072 and kw["bf16"] is True


def test_tracker_environment_names_the_run_and_group_and_is_restored(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_RUN_GROUP", raising=False)
    cfg = spec.CellConfig(model="tiny", tracking={"report_to": ["wandb", "tensorboard"], "project": "spur"})
    with training.tracker_env(cfg, tmp_path / "cell", "abc123", "mysweep"):
        assert os.environ["WANDB_RUN_GROUP"] == "mysweep" and os.environ["WANDB_RUN_ID"] == "abc123"
        assert os.environ["WANDB_PROJECT"] == "spur"
        assert os.environ["TENSORBOARD_LOGGING_DIR"] == str(tmp_path / "cell" / "tensorboard")
    assert "WANDB_RUN_GROUP" not in os.environ and "TENSORBOARD_LOGGING_DIR" not in os.environ
    kw = grpo.grpo_kwargs(
        cfg.model_copy(
            update={"train": spec.TrainSettings(prompts_per_step=2, samples_per_prompt=2, mini_batch=2)}
        ),
        "out",
        cpu=True,
    )
    assert kw["report_to"] == ["wandb", "tensorboard"] and kw["project"] == "spur"


def read_tensorboard(folder: Path) -> tuple[dict[str, list[float]], dict[str, str]]:
    """Scalars and texts from tensorboard event files (TFRecord framing, tensorboardX's Event proto)."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[float]] = {}
    texts: dict[str, str] = {}
    for f in folder.rglob("events.out.tfevents.*"):
        buf = f.read_bytes()
        i = 0
        while i + 12 <= len(buf):
            (n,) = struct.unpack("<Q", buf[i : i + 8])
            ev = event_pb2.Event.FromString(buf[i + 12 : i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                if v.HasField("simple_value"):
                    scalars.setdefault(v.tag, []).append(v.simple_value)
                elif v.HasField("tensor") and v.tensor.string_val:
                    texts[v.tag] = v.tensor.string_val[0].decode()
    return scalars, texts


def test_report_to_tensorboard_writes_the_cells_run(tmp_path):
    pytest.importorskip("tensorboardX")
    results = tmp_path / "r"
    d = make_cell(
        results,
        {"train": {"steps": 2, "save_every": 2}, "eval": NO_EVAL, "tracking": {"report_to": ["tensorboard"]}},
        name="tbsweep",
    )
    run_cell(d, results)
    scalars, texts = read_tensorboard(d / "tensorboard")
    assert len(scalars["train/reward"]) == 2 and len(scalars["train/loss"]) == len(metrics(d))
    assert [round(x, 5) for x in scalars["train/reward"]] == [
        round(r["reward"], 5) for r in metrics(d) if "reward" in r
    ]
    assert f'"run_name": "{d.name}"' in texts["args/text_summary"]
    assert "TENSORBOARD_LOGGING_DIR" not in os.environ


# ---------------------------------------------------------------------------------------------- checkpoints
def test_checkpoints_every_n_steps_are_each_evaluated_and_pruned(tmp_path):
    results = tmp_path / "r"
    d = make_cell(
        results,
        {
            "train": {"steps": 5, "save_every": 2, "keep_checkpoints": 2},
            "eval": {"baseline": True, "limit": 3},
        },
    )
    done = run_cell(d, results)
    upr = done["updates_per_rollout"]
    # saved at steps 2 and 4 (every 2) and at the end (5); the two newest are kept
    assert checkpoints(d) == [
        f"checkpoint-{4 * upr}",
        f"checkpoint-{5 * upr}",
    ]
    assert all((p / "COMPLETE").exists() for p in (d / "checkpoints").glob("checkpoint-*"))
    evals = artifacts.CellDir(d).completed_evals()
    assert sorted(m["step"] for m in evals) == [2, 4, 5]
    assert {m["baseline_eval_id"] for m in evals} == set(done["baselines"].values())
    assert (results / artifacts.BASELINES / f"{done['baselines']['arith']}.json").exists()
    assert artifacts.CellDir(d).status()["checkpoint"] == f"checkpoint-{5 * upr}"


def test_keep_checkpoints_none_keeps_every_checkpoint(tmp_path):
    results = tmp_path / "r"
    d = make_cell(
        results, {"train": {"steps": 3, "save_every": 1, "keep_checkpoints": None}, "eval": NO_EVAL}
    )
    done = run_cell(d, results)
    upr = done["updates_per_rollout"]
    assert checkpoints(d) == [f"checkpoint-{k * upr}" for k in (1, 2, 3)]


def test_incomplete_checkpoints_are_ignored_and_removed(tmp_path):
    ck = tmp_path / "checkpoints"
    for n, complete in ((4, True), (8, True), (12, False)):
        (ck / f"checkpoint-{n}").mkdir(parents=True)
        (ck / f"checkpoint-{n}" / "model.safetensors").write_text("x")
        if complete:
            (ck / f"checkpoint-{n}" / "COMPLETE").write_text("1")
    assert training.latest_complete_checkpoint(ck) == ck / "checkpoint-8"
    assert not (ck / "checkpoint-12").exists() and (ck / "checkpoint-4").exists()
    assert training.prune_checkpoints(ck, 1) == [ck / "checkpoint-4"]
    assert [p.name for p in ck.iterdir()] == ["checkpoint-8"]
    assert training.latest_complete_checkpoint(tmp_path / "none") is None


# ---------------------------------------------------------------------------------------------- resume
CHILD = """
import functools, sys, time
from pathlib import Path

import spurisweep.rewards as R

def slow_build(*a, **k):  # a test harness slow-down, so the parent can kill between two checkpoints
    fn = R._original_build(*a, **k)

    @functools.wraps(fn)
    def slow(*args, **kw):
        time.sleep(float(sys.argv[3]))
        return fn(*args, **kw)
    return slow

if __name__ == "__main__":
    R._original_build, R.build = R.build, slow_build
    from spurisweep import launch
    launch.CellJob()(sys.argv[1], sys.argv[2])
"""


def start_cell(cell_dir: Path, results: Path, delay: float, tmp_path: Path) -> subprocess.Popen:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = {**os.environ, "SPURISWEEP_THREADS": "1", "OMP_NUM_THREADS": "1", "SPURISWEEP_GRADING_WORKERS": "1"}
    return subprocess.Popen(
        [sys.executable, str(script), str(cell_dir), str(results), str(delay)],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> None:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err.decode()[-3000:]


RESUME_SETTINGS = {
    "train": {"steps": 6, "save_every": 2, "keep_checkpoints": 1},
    "eval": {"baseline": True, "limit": 4},
}


@pytest.mark.slow
def test_kill_9_mid_training_resumes_to_the_uninterrupted_result(tmp_path):
    # the uninterrupted run of the cell
    ref_results = tmp_path / "ref"
    ref = make_cell(ref_results, RESUME_SETTINGS)
    finish(start_cell(ref, ref_results, 0.0, tmp_path))
    ref_done = json.loads((ref / "DONE").read_text())
    upr, total = ref_done["updates_per_rollout"], ref_done["updates"]

    # the same cell, killed with SIGKILL once its first checkpoint is complete, then run again
    results = tmp_path / "killed"
    d = make_cell(results, RESUME_SETTINGS)
    assert d.name == ref.name
    proc = start_cell(d, results, 0.4, tmp_path)
    deadline = time.time() + 240
    while not list((d / "checkpoints").glob("checkpoint-*/COMPLETE")):
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else ""
        assert time.time() < deadline, "no checkpoint completed in time"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (d / "DONE").exists()
    (ckpt,) = (p.parent for p in (d / "checkpoints").glob("checkpoint-*/COMPLETE"))
    killed_at = int(ckpt.name.split("-")[1])
    assert 0 < killed_at < total
    before = {m["eval_id"]: m["created"] for m in artifacts.CellDir(d).completed_evals()}

    finish(start_cell(d, results, 0.0, tmp_path))
    done = json.loads((d / "DONE").read_text())
    assert done["resumed_from"] == [ckpt.name] and done["updates"] == total
    assert artifacts.CellDir(d).status()["resumed_from"] == [ckpt.name]

    # the same evaluations, each once, and none written before the kill was generated again
    evals = artifacts.CellDir(d).completed_evals()
    ref_evals = artifacts.CellDir(ref).completed_evals()
    assert sorted(m["eval_id"] for m in evals) == sorted(m["eval_id"] for m in ref_evals)
    assert sorted(m["step"] for m in evals) == [2, 4, 6]
    assert all(m["created"] == before[m["eval_id"]] for m in evals if m["eval_id"] in before)
    for m in evals:  # greedy decoding from identical weights: identical responses
        ours = artifacts.read_jsonl(d / "evals" / f"{m['eval_id']}.jsonl")
        theirs = artifacts.read_jsonl(ref / "evals" / f"{m['eval_id']}.jsonl")
        assert [r["response"] for r in ours] == [r["response"] for r in theirs]

    # exactly one metric row per update, and the resumed updates retrace the uninterrupted run: TRL restored
    # the weights, optimizer, scheduler, RNG state and data position of the checkpoint
    rows, ref_rows = metrics(d), metrics(ref)
    assert [r["update"] for r in rows] == list(range(1, total + 1))
    for r, q in zip(rows, ref_rows, strict=True):
        for key in ("loss", "grad_norm", "entropy", "clip_ratio/region_mean", "reward", "learning_rate"):
            if key in q:
                assert r[key] == pytest.approx(q[key], rel=1e-4, abs=1e-6), (r["update"], key, killed_at)
    assert killed_at % upr == 0


def test_a_checkpoint_whose_evaluation_was_lost_is_evaluated_on_resume(tmp_path):
    """Rewind a finished cell to its step-2 checkpoint as a kill right after that save would leave it: the
    resumed run evaluates step 2 (on_train_begin), retrains steps 3-4 and ends where the first run ended."""
    results = tmp_path / "r"
    d = make_cell(
        results,
        {
            "train": {"steps": 4, "save_every": 2, "keep_checkpoints": None},
            "eval": {"baseline": False, "limit": 3},
        },
    )
    first = run_cell(d, results)
    upr = first["updates_per_rollout"]
    evals = {m["step"]: m for m in artifacts.CellDir(d).completed_evals()}
    responses = {
        s: [r["response"] for r in artifacts.read_jsonl(d / "evals" / f"{m['eval_id']}.jsonl")]
        for s, m in evals.items()
    }
    rows = metrics(d)
    shutil.rmtree(d / "checkpoints" / f"checkpoint-{4 * upr}")
    for m in evals.values():
        for p in (d / "evals").glob(f"{m['eval_id']}.*"):
            p.unlink()
    (d / "DONE").unlink()

    again = run_cell(d, results)
    assert again["resumed_from"] == [f"checkpoint-{2 * upr}"]
    evals2 = {m["step"]: m for m in artifacts.CellDir(d).completed_evals()}
    assert sorted(evals2) == [2, 4]
    for s, m in evals2.items():
        assert [
            r["response"] for r in artifacts.read_jsonl(d / "evals" / f"{m['eval_id']}.jsonl")
        ] == responses[s]
    again_rows = metrics(d)
    assert [r["update"] for r in again_rows] == [r["update"] for r in rows]
    assert [r["loss"] for r in again_rows] == pytest.approx([r["loss"] for r in rows], rel=1e-5, abs=1e-7)


@pytest.mark.slow
def test_a_kill_after_the_last_checkpoint_only_completes_its_evaluation(tmp_path):
    results = tmp_path / "r"
    d = make_cell(results, {"train": {"steps": 2, "save_every": 2}, "eval": {"baseline": False, "limit": 3}})
    done = run_cell(d, results)
    final = [m for m in artifacts.CellDir(d).completed_evals() if m["step"] == 2]
    assert len(final) == 1
    # simulate a kill after the final checkpoint but before its evaluation and DONE
    for p in (d / "evals").glob(f"{final[0]['eval_id']}.*"):
        p.unlink()
    (d / "DONE").unlink()
    rows_before = metrics(d)
    again = run_cell(d, results)
    assert again["resumed_from"] == [f"checkpoint-{done['updates']}"] and again["updates"] == done["updates"]
    assert metrics(d) == rows_before  # nothing was trained again
    assert [m["step"] for m in artifacts.CellDir(d).completed_evals()] == [2]


def test_the_smoke_sweep_reuses_rollouts_so_clipping_can_act():
    for cell in grid.expand(spec.load_sweep(ROOT / "sweeps" / "smoke.yaml")):
        kw = grpo.grpo_kwargs(cell.config, "out", cpu=True)
        assert grpo.updates_per_rollout(kw) >= 4, cell.label


def test_training_prompt_tokens_equal_evaluation_prompt_tokens_with_a_bos_writing_template(tmp_path):
    """A Llama-3-style chat template writes the BOS itself; TRL's tokenization of string prompts adds
    another. The text handed to TRL must tokenize to exactly the ids evaluation generates from."""
    from spurisweep.evaluation.generate import encode_prompts
    from spurisweep.models import families
    from spurisweep.training import for_trl

    tok = families.build_tokenizer(
        families.tokenizer_corpus(),
        vocab_size=300,
        chat_template="{{ bos_token }}{% for m in messages %}User: {{ m['content'] }}\n{% endfor %}Assistant:",
    )
    tok.add_bos_token = True  # the tokenizer adds BOS on its own, as Llama's does
    from tokenizers import processors

    tok._tokenizer.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)]
    )
    text = families.render_prompt(tok, "chat", "What is 2 + 3?")
    assert text.startswith("<s>")
    eval_ids = encode_prompts(tok, [text])[0]
    assert list(tok(text)["input_ids"]) != eval_ids  # what TRL would see without the fix: two BOS
    assert list(tok(for_trl(tok, text))["input_ids"]) == eval_ids
    assert eval_ids.count(tok.bos_token_id) == 1
    plain = families.render_prompt(tok, "qa", "What is 2 + 3?")  # no BOS written: left alone
    assert for_trl(tok, plain) == plain
