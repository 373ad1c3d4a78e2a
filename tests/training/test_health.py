"""Training-health flags: each one raised and not raised on hand-built metric rows shaped like TRL's logs,
and the flags of a real run in health.json, the cell's status and DONE."""

from __future__ import annotations

import json
from typing import Any

import pytest

from spurisweep import artifacts
from spurisweep.training import health
from tests.helpers_train import make_cell, run_cell


def rollouts(n: int, updates: int = 2, **series: list[float] | float) -> list[dict[str, Any]]:
    """Rows like metrics.jsonl: `updates` rows per rollout step; reward-side metrics (reward_std,
    frac_reward_zero_std, completions/clipped_ratio) on the first update only, the rest on every update."""
    gen_keys = {"reward_std", "frac_reward_zero_std", "completions/clipped_ratio"}
    rows = []
    for step in range(1, n + 1):
        for u in range(updates):
            row: dict[str, Any] = {"update": (step - 1) * updates + u + 1, "step": step}
            for key, values in series.items():
                if key in gen_keys and u > 0:
                    continue
                row[key] = values[step - 1] if isinstance(values, list) else values
            rows.append(row)
    return rows


HEALTHY = dict(
    reward_std=0.45, entropy=2.0, kl=0.01, frac_reward_zero_std=0.25, **{"completions/clipped_ratio": 0.1}
)


def flag_names(rows: list[dict[str, Any]], **kw: Any) -> list[str]:
    return health.names(health.flags(rows, **kw))


def test_a_healthy_run_raises_nothing():
    assert health.flags(rollouts(6, **HEALTHY)) == []
    assert health.flags([]) == []


def test_reward_std_collapse_needs_a_window_of_low_std():
    low = {**HEALTHY, "reward_std": [0.5, 0.4, 0.05, 0.04, 0.03, 0.5]}
    (f,) = health.flags(rollouts(6, **low))
    assert f["flag"] == "reward_std_collapse" and f["step"] == 5
    blip = {**HEALTHY, "reward_std": [0.5, 0.05, 0.5, 0.05, 0.05, 0.5]}  # never 3 steps in a row
    assert flag_names(rollouts(6, **blip)) == []
    assert flag_names(rollouts(6, **blip), window=2) == ["reward_std_collapse"]


def test_entropy_collapse_is_relative_to_the_first_value():
    falling = {**HEALTHY, "entropy": [2.0, 1.0, 0.15, 0.1, 0.1, 0.1]}
    (f,) = health.flags(rollouts(6, **falling))
    assert f["flag"] == "entropy_collapse" and f["step"] == 5 and "0.2" in f["detail"]
    slow = {**HEALTHY, "entropy": [2.0, 1.5, 1.0, 0.8, 0.5, 0.3]}  # falls, but never below 10% of 2.0
    assert flag_names(rollouts(6, **slow)) == []


def test_kl_explosion_on_any_step_and_only_when_kl_is_logged():
    spiking = {**HEALTHY, "kl": [0.01, 0.02, 3.5, 0.5, 0.1, 0.1]}
    (f,) = health.flags(rollouts(6, **spiking))
    assert f["flag"] == "kl_explosion" and f["step"] == 3 and "3.5" in f["detail"]
    no_kl = {k: v for k, v in HEALTHY.items() if k != "kl"}  # beta = 0: TRL logs no KL
    assert flag_names(rollouts(6, **no_kl)) == []


def test_zero_advantage_rollouts_are_counted():
    zero = {**HEALTHY, "frac_reward_zero_std": [0.5, 1.0, 0.25, 1.0, 0.5, 0.5]}
    (f,) = health.flags(rollouts(6, **zero))
    assert f["flag"] == "zero_advantage" and f["step"] == 2 and f["detail"].startswith("2 of 6 rollout(s)")
    almost = {**HEALTHY, "frac_reward_zero_std": 0.99}
    assert flag_names(rollouts(6, **almost)) == []


def test_mostly_truncated_looks_at_the_last_window():
    late = {**HEALTHY, "completions/clipped_ratio": [0.0, 0.0, 0.1, 0.7, 0.8, 0.9]}
    (f,) = health.flags(rollouts(6, **late))
    assert f["flag"] == "mostly_truncated" and f["step"] == 4 and f["detail"].startswith("80%")
    early = {**HEALTHY, "completions/clipped_ratio": [0.9, 0.9, 0.9, 0.1, 0.1, 0.1]}  # recovered
    assert flag_names(rollouts(6, **early)) == []


def test_short_runs_use_their_length_as_the_window_and_nan_is_ignored():
    assert flag_names(rollouts(2, reward_std=[0.05, 0.02])) == ["reward_std_collapse"]
    assert flag_names(rollouts(2, reward_std=[0.05, 0.5])) == []
    rows = rollouts(3, **HEALTHY)
    rows[0]["kl"] = float("nan")
    assert health.flags(rows) == []


def test_thresholds_are_settings():
    rows = rollouts(4, **{**HEALTHY, "kl": 0.3})
    assert flag_names(rows) == []
    assert flag_names(rows, t=health.Thresholds(kl_ceiling=0.2)) == ["kl_explosion"]


@pytest.mark.parametrize(
    "gamma, expected, absent",
    [
        (0.0, {"reward_std_collapse", "zero_advantage"}, set()),
        (0.5, set(), {"reward_std_collapse", "zero_advantage"}),
    ],
)
def test_flags_of_a_real_run_reach_health_json_status_and_done(tmp_path, gamma, expected, absent):
    """The random reward with gamma 0 gives every completion 0: no reward variance, every advantage 0."""
    results = tmp_path / "r"
    d = make_cell(
        results,
        {
            "reward_params": {"random": {"gamma": gamma}},
            "train": {"steps": 3, "save_every": 3},
            "eval": {"baseline": False, "checkpoints": False, "benchmarks": []},
        },
    )
    run_cell(d, results)
    found = {f["flag"]: f for f in json.loads((d / "health.json").read_text())}
    assert expected <= set(found) and not (absent & set(found))
    cell = artifacts.CellDir(d)
    assert set(json.loads(cell.done_path.read_text())["health"]) == set(found)
    assert set(cell.status()["health"]) == set(found)
    # the tiny random model never emits EOS within 24 tokens: every completion is truncated
    assert "mostly_truncated" in found
