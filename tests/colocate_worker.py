"""One GRPO step of the tiny model with TRL's colocated vLLM engine (real vLLM, CPU build), in its own
process: the engine's external launcher initialises torch.distributed in the process that builds it, which
must not leak into the test process. Used by tests/test_vllm_engine.py.

    python -m tests.colocate_worker MODEL_DIR OUT_JSON SEED

TRL's weight sync before the first rollout is replaced with nothing (the engine has just loaded the same
weights from MODEL_DIR, so the first rollout is what a working sync would give): the only way to run TRL's
colocated rollouts on vLLM's CPU build, whose sync fails (spurisweep.generate.CPU_COLOCATE_LIMIT). After
the step the real sync is called once, and how it ends is recorded. Writes {"completions": [...],
"sync_error": "Type: message" or null}, or {"error": ..., "traceback": ...} if the step itself failed.
"""

from __future__ import annotations

import json
import os
import sys
import traceback


def main(model_dir: str, out: str, seed: int) -> None:
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB: vLLM's CPU build would take most of RAM
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    from spurisweep.training.trainer import SpuriTrainer

    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [f"User: What is {a} + {a * 3}?\nAssistant:" for a in range(4)]
    seen: list[str] = []

    def reward(completions, **_):
        seen.extend(completions)
        return [float(len(c) % 2) for c in completions]

    args = GRPOConfig(
        output_dir=os.path.splitext(out)[0] + "-trl",
        use_cpu=True,
        bf16=False,
        seed=seed,
        max_steps=1,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=16,
        learning_rate=1e-6,
        report_to=[],
        save_strategy="no",
        use_vllm=True,
        vllm_mode="colocate",
        vllm_gpu_memory_utilization=0.1,
        vllm_max_model_length=256,
        vllm_enable_sleep_mode=False,
        logging_steps=1,
    )
    trainer = SpuriTrainer(
        model=model_dir,
        reward_funcs=[reward],
        args=args,
        train_dataset=Dataset.from_dict({"prompt": prompts}),
        processing_class=tok,
    )
    real_sync = trainer.vllm_generation.sync_weights
    trainer.vllm_generation.sync_weights = lambda: None
    try:
        trainer.train()
        result: dict = {"completions": seen, "sync_error": None}
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    else:
        try:
            real_sync()
        except Exception as exc:  # the documented limit
            result["sync_error"] = f"{type(exc).__name__}: {exc}"
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
