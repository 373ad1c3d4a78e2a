"""Training presets: nested settings applied before a sweep's own `settings`.

`paper` is the paper's recipe (RESEARCH.md, "Paper training settings"); CellConfig's defaults already
are the paper's values, so the preset only names them. `smoke` is a CPU-sized run of the same structure
(several gradient updates per rollout, so clipping acts) on the built-in arithmetic set.
"""

from __future__ import annotations

from typing import Any

PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "train": {
            "steps": 300,
            "learning_rate": 5e-7,
            "lr_scheduler": "constant",
            "warmup_steps": 0,
            "adam_beta1": 0.9,
            "adam_beta2": 0.95,
            "weight_decay": 0.0,
            "max_grad_norm": 1.0,
            "prompts_per_step": 64,
            "samples_per_prompt": 16,
            "mini_batch": 128,
            "epochs_per_rollout": 1,
            "max_prompt_length": 1024,
            "max_completion_length": 3072,
            "temperature": 1.0,
            "top_p": 1.0,
            "beta": 0.0,
            "save_every": 50,
        },
        "data": {"train": "agentica-org/DeepScaleR-Preview-Dataset"},
        "eval": {"benchmarks": ["math500", "aime24", "amc"]},
    },
    "smoke": {
        "train": {
            "steps": 4,
            "learning_rate": 5e-4,
            "prompts_per_step": 4,
            "samples_per_prompt": 4,
            "mini_batch": 8,
            "max_prompt_length": 128,
            "max_completion_length": 24,
            "save_every": 2,
        },
        "data": {"train": "builtin:arith", "limit": 64},
        "eval": {"benchmarks": ["arith"], "limit": 12, "protocols": {"arith": {"max_new_tokens": 24}}},
    },
}
