"""Clip modes: their GRPOConfig arguments, and their effect proven from what TRL logs while training the
tiny model (several updates per rollout, a learning rate high enough that the ratio leaves 1 +- 0.2)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from spurisweep.errors import ConfigError
from spurisweep.plan import clipping, grpo
from spurisweep.plan.spec import ClipParams
from tests.helpers_train import make_cell, metrics, run_cell

CLIP_KEYS = ("clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean")


# ---------------------------------------------------------------------------------------------- arguments
def test_grpo_arguments_per_mode():
    none = ClipParams()
    assert clipping.grpo_args("standard", none) == {"epsilon": 0.2, "epsilon_high": 0.2}
    assert clipping.grpo_args("clip_higher", none) == {"epsilon": 0.2, "epsilon_high": 0.28}
    assert clipping.grpo_args("no_clip", none) == {
        "epsilon": clipping.NO_CLIP_EPS,
        "epsilon_high": clipping.NO_CLIP_EPS,
    }
    assert clipping.grpo_args("on_policy", none) == {"epsilon": 0.2, "epsilon_high": 0.2}
    # explicit epsilons win over the mode's defaults
    assert clipping.grpo_args("clip_higher", ClipParams(eps_high=0.3)) == {
        "epsilon": 0.2,
        "epsilon_high": 0.3,
    }
    assert clipping.grpo_args("standard", ClipParams(eps_low=0.1, eps_high=0.1)) == {
        "epsilon": 0.1,
        "epsilon_high": 0.1,
    }


def test_resolved_params_are_explicit_in_the_cell_config():
    assert clipping.resolve_params("clip_higher", ClipParams()) == ClipParams(eps_low=0.2, eps_high=0.28)
    assert clipping.resolve_params("no_clip", ClipParams()) == ClipParams()
    # an epsilon given to no_clip is kept (not dropped), so plan-time validation can reject it
    assert clipping.resolve_params("no_clip", ClipParams(eps_low=0.1)).eps_low == 0.1
    with pytest.raises(ConfigError, match="no_clip never clips") as exc:
        clipping.check_params("no_clip", ClipParams(eps_low=0.1), file="s.yaml")
    assert exc.value.field == "clip_params" and exc.value.file == "s.yaml"
    clipping.check_params("standard", ClipParams(eps_low=0.1))


def test_clip_modes_only_combine_with_losses_that_clip_the_ratio():
    for loss in clipping.PPO_CLIP_LOSSES:
        clipping.check_loss_type("clip_higher", loss, {})
    for mode in ("no_clip", "on_policy"):
        clipping.check_loss_type(mode, "sapo", {})
    clipping.check_loss_type(
        "standard", "cispo", {"epsilon_high": 5.0}
    )  # explicit TRL epsilons: the user's call
    with pytest.raises(ConfigError, match="sapo") as exc:
        clipping.check_loss_type("standard", "sapo", {})
    assert exc.value.field == "clip"


def test_on_policy_is_a_batch_shape_not_an_epsilon(tmp_path):
    from spurisweep.plan.spec import TrainSettings

    t = TrainSettings(prompts_per_step=8, samples_per_prompt=4, mini_batch=8, epochs_per_rollout=2)
    assert grpo.batch_shape(t, "standard").updates_per_rollout == 8  # 4 mini-batches x 2 epochs
    s = grpo.batch_shape(t, "on_policy")
    assert (s.mini, s.iterations, s.updates_per_rollout) == (32, 1, 1)


def test_the_code_reads_a_modes_behaviour_not_its_name(monkeypatch):
    """A mode that never clips, under another name, behaves as no_clip everywhere; one that is on-policy
    as on_policy."""
    from spurisweep.plan.spec import TrainSettings

    monkeypatch.setitem(clipping.CLIP_MODES, "free", clipping.ClipMode("free", 1.0, 1.0, clipped=False))
    monkeypatch.setitem(clipping.CLIP_MODES, "once", clipping.ClipMode("once", 0.3, 0.3, on_policy=True))
    assert clipping.grpo_args("free", ClipParams()) == clipping.grpo_args("no_clip", ClipParams())
    assert clipping.resolve_params("free", ClipParams()) == ClipParams()
    with pytest.raises(ConfigError, match="free never clips"):
        clipping.check_params("free", ClipParams(eps_high=0.3))
    for mode in ("free", "once"):
        clipping.check_loss_type(mode, "sapo", {})
    with pytest.raises(ConfigError, match="use clip no_clip or on_policy or free or once"):
        clipping.check_loss_type("standard", "sapo", {})
    t = TrainSettings(prompts_per_step=8, samples_per_prompt=4, mini_batch=8, epochs_per_rollout=2)
    assert grpo.batch_shape(t, "once") == grpo.batch_shape(t, "on_policy")


def test_a_mapping_normalises_to_a_mode_and_reads_as_one():
    assert clipping.normalise({"eps_low": 0.1, "eps_high": 0.28}) == (
        "standard",
        ClipParams(eps_low=0.1, eps_high=0.28),
    )
    assert clipping.normalise({"eps_high": 0.28}) == ("clip_higher", ClipParams())  # clip_higher's defaults
    assert clipping.normalise({"name": "clip_higher", "eps_low": 0.2}) == ("clip_higher", ClipParams())
    assert (
        clipping.label("standard", ClipParams(eps_low=0.1, eps_high=0.28))
        == "standard(eps_low=0.1,eps_high=0.28)"
    )
    assert clipping.label("clip_higher", ClipParams(eps_low=0.2, eps_high=0.28)) == "clip_higher"
    assert clipping.label("no_clip", ClipParams()) == "no_clip"


DUMMY = """
from spurisweep.plan import clipping
clipping.CLIP_MODES["narrow"] = clipping.ClipMode("narrow", 0.05, 0.1, description="a test mode")
"""


def test_a_new_mode_is_one_entry(tmp_path):
    """A ClipMode added to CLIP_MODES (in the process that runs the real CLI, before it starts) and nothing
    else: `plan --check` expands the grid with it, TRL builds its GRPOConfig, and its mapping form works."""
    import os
    import subprocess
    import sys

    from tests.plan.test_grpo import ROOT, WRAPPER

    sweep = tmp_path / "narrow.yaml"
    sweep.write_text(
        "name: narrow\npreset: smoke\ngrid: {model: [tiny], clip: [standard, narrow, {name: narrow, eps_high: 0.3}]}\n"
    )
    env = {**os.environ, "SPURISWEEP_CACHE": str(tmp_path / "cache")}
    code = WRAPPER.format(patch=DUMMY)
    proc = subprocess.run(
        [sys.executable, "-c", code, "plan", str(sweep), "--check", "--results", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "narrow(eps_low=0.05,eps_high=0.3)" in proc.stdout and proc.stdout.count("narrow") >= 2
    without = subprocess.run(
        [
            sys.executable,
            "-c",
            WRAPPER.format(patch=""),
            "plan",
            str(sweep),
            "--results",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert without.returncode == 2 and "narrow" in without.stderr and "clip" in without.stderr


# ---------------------------------------------------------------------------------------------- real TRL runs
#: 8 prompts x 4 samples per rollout in 4 updates of 8; lr 2e-2 (the smoke preset) moves the tiny policy
#: enough within a rollout for the ratio to leave [0.8, 1.2]. Seeded: the runs are deterministic.
SETTINGS = {
    "train": {
        "steps": 3,
        "prompts_per_step": 8,
        "samples_per_prompt": 4,
        "mini_batch": 8,
        "max_completion_length": 16,
        "learning_rate": 2e-2,
        "save_every": 3,
    },
    "eval": {"baseline": False, "checkpoints": False, "benchmarks": []},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, list[dict[str, Any]]]:
    out = {}
    for mode in ("standard", "clip_higher", "no_clip", "on_policy"):
        results: Path = tmp_path_factory.mktemp(mode) / "results"
        d = make_cell(results, SETTINGS, clip=mode)
        done = run_cell(d, results)
        assert done["updates_per_rollout"] == (1 if mode == "on_policy" else 4)
        out[mode] = metrics(d)
    return out


def total(rows: list[dict[str, Any]], key: str) -> float:
    return sum(r[key] for r in rows)


def test_standard_and_clip_higher_clip(runs):
    for mode in ("standard", "clip_higher"):
        rows = runs[mode]
        assert len(rows) == 12
        assert total(rows, "clip_ratio/low_mean") > 0 and total(rows, "clip_ratio/high_mean") > 0
        assert total(rows, "clip_ratio/region_mean") > 0
        # the first update of each rollout runs on the policy that sampled it: ratio 1, nothing clipped
        assert all(r["clip_ratio/region_mean"] == 0 for r in rows if "reward" in r)


def test_no_clip_and_on_policy_never_clip(runs):
    assert len(runs["no_clip"]) == 12 and len(runs["on_policy"]) == 3
    for mode in ("no_clip", "on_policy"):
        for r in runs[mode]:
            assert all(r[k] == 0.0 for k in CLIP_KEYS), (mode, r)


def test_no_clip_logs_zero_where_the_same_ratios_were_clipped_under_standard(runs):
    """Both runs share the first update exactly (ratio 1 everywhere, so no clipping to tell them apart), so
    the ratios at update 2 are the same tokens' ratios: standard clips some of them, no_clip none."""
    std, nc = runs["standard"], runs["no_clip"]
    assert std[0]["loss"] == nc[0]["loss"] and std[0]["grad_norm"] == nc[0]["grad_norm"]
    assert std[1]["clip_ratio/region_mean"] > 0 and nc[1]["clip_ratio/region_mean"] == 0


def test_clip_higher_clips_fewer_tokens_on_the_upper_side(runs):
    std, ch = runs["standard"], runs["clip_higher"]
    # same ratios at update 2 (identical first update): same lower side, strictly fewer upper-side clips
    assert ch[1]["clip_ratio/low_mean"] == std[1]["clip_ratio/low_mean"]
    assert ch[1]["clip_ratio/high_mean"] < std[1]["clip_ratio/high_mean"]
    # and over the whole run
    assert total(ch, "clip_ratio/high_mean") < total(std, "clip_ratio/high_mean")


def test_mean_token_probability_is_logged_for_every_rollout(runs):
    for mode, rows in runs.items():
        probs = [r["token_prob/mean"] for r in rows if "reward" in r]
        assert len(probs) == 3 and all(0 < p < 1 for p in probs), mode


def test_on_policys_extra_forward_runs_in_micro_batches(tmp_path, monkeypatch):
    """One update per rollout: TRL skips its old-log-prob forward and SpuriTrainer runs one for the
    token_prob metric. It must go in micro-batches, as TRL's own forwards do (the whole rollout of a 7B
    model in one pass runs out of memory). A spy on the real method records each call's chunking."""
    import copy

    from spurisweep.training.trainer import SpuriTrainer

    seen: list[tuple[int, int]] = []
    real = SpuriTrainer._get_per_token_logps_and_entropies

    def spy(self, model, input_ids, *args, **kw):
        seen.append((input_ids.size(0), kw.get("batch_size") or input_ids.size(0)))
        return real(self, model, input_ids, *args, **kw)

    monkeypatch.setattr(SpuriTrainer, "_get_per_token_logps_and_entropies", spy)
    settings = copy.deepcopy(SETTINGS)
    settings["train"].update(steps=1, micro_batch=4)
    results = tmp_path / "results"
    run_cell(make_cell(results, settings, clip="on_policy"), results)
    whole = [n for n, _ in seen if n == 32]  # the metric's forward over the rollout's 32 responses
    assert whole, seen
    assert all(chunk <= 4 for _, chunk in seen), seen
