"""Training presets: nested settings applied before a sweep's own `settings` (see grid.resolve).

`paper` is the paper's recipe and the official code's switches, read from the data file
`resources/paper_recipe.yaml` (its `preset` section, each setting commented with the RESEARCH.md line it
implements); `spurisweep fidelity` compares every cell with the same file, so the recipe is written once.
Besides the settings, base families whose default is the R1-style template get the official training
script's text under `paper` (FAMILY_PROMPTS: r1_paper_literal_newlines, the R1 prompt with each newline a
literal backslash-n, as the shell passed it; no BOS, stops at </answer>, graded after <answer>), in training
and in its in-training evaluation, as the official runs; the chat families keep their chat template.

training.grpo_kwargs maps this onto GRPOConfig (per_device_train_batch_size x gradient_accumulation_steps =
mini-batch, generation_batch_size = rollout, max_steps = steps x updates per rollout).

`smoke` is a CPU-sized run of the same structure on the built-in arithmetic set and the 2-layer `tiny`
model: 4 prompts x 4 samples per rollout consumed in 4 updates of 4, with a learning rate high enough that
the policy moves within a rollout, so the ratio leaves [0.8, 1.2] and `standard` shows non-zero clip ratios.
"""

from __future__ import annotations

from typing import Any

RECIPE_FILE = "paper_recipe.yaml"  # in spurisweep/resources


def paper_recipe() -> dict[str, Any]:
    """The paper's recipe file, parsed afresh (callers may keep and change their copy): `preset` (the
    `paper` preset's settings) and `official` (what fidelity compares beyond them)."""
    from importlib import resources

    import yaml

    text = resources.files("spurisweep").joinpath(f"resources/{RECIPE_FILE}").read_text(encoding="utf-8")
    return yaml.safe_load(text)


PRESETS: dict[str, dict[str, Any]] = {
    "paper": paper_recipe()["preset"],
    "smoke": {
        "train": {
            "steps": 4,
            "learning_rate": 2e-2,
            "prompts_per_step": 4,
            "samples_per_prompt": 4,
            "mini_batch": 4,
            "max_prompt_length": 128,
            "max_completion_length": 24,
            "save_every": 2,
        },
        "data": {"train": "builtin:arith", "limit": 64},
        "eval": {"benchmarks": ["arith"], "limit": 12, "protocols": {"arith": {"max_new_tokens": 24}}},
    },
}


#: per preset, the template that replaces a family's default one (a cell's explicit `prompt` wins): the
#: official code prompts every base model without a chat template in its own R1-style text
FAMILY_PROMPTS: dict[str, dict[str, str]] = {"paper": {"r1": "r1_paper_literal_newlines"}}


def family_prompt(preset: str, default: str) -> str:
    """The template a family whose default is `default` uses under `preset`."""
    return FAMILY_PROMPTS.get(preset, {}).get(default, default)
