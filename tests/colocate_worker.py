"""Two GRPO steps of the tiny model with TRL's colocated vLLM engine (real vLLM, CPU build), in its own
process: the engine's external launcher initialises torch.distributed in the process that builds it, which
must not leak into the test process. Used by tests/evaluation/test_vllm_engine.py.

    python -m tests.colocate_worker MODEL_DIR OUT_JSON SEED

The engine's weights are synced by spurisweep's CPU sync (training/engine.py; TRL's own fails on the CPU
build). After training, the engine is compared with the trained policy on one prompt: the log-probs of the
policy's top tokens under both, before the engine is synced to the last update ("stale") and after it
("synced"). Writes {"completions": [...], "stale": [[engine, policy], ...], "synced": [...]}, or
{"error": ..., "traceback": ...}.
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

    from spurisweep.training import engine
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
        max_steps=2,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=16,
        learning_rate=1e-2,  # large: the weights must move visibly between the syncs
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
    try:
        trainer.train()
        result: dict = {"completions": seen, "stale": compare(trainer, tok, prompts[0])}
        engine.sync_to_step(trainer)
        result["synced"] = compare(trainer, tok, prompts[0])
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
    with open(out, "w") as f:
        json.dump(result, f)


def compare(trainer, tok, prompt: str) -> list[list[float]]:
    """[engine, policy] log-probs of the policy's 5 likeliest next tokens after `prompt`."""
    import torch
    from vllm import SamplingParams

    ids = tok(prompt).input_ids
    with torch.no_grad():
        logits = trainer.model(torch.tensor([ids])).logits[0, -1].float()
    policy = torch.log_softmax(logits, -1)
    top = policy.topk(5).indices.tolist()
    params = SamplingParams(max_tokens=1, temperature=0, logprobs=20, prompt_logprobs=None)
    (out,) = trainer.vllm_generation.llm.generate([{"prompt_token_ids": ids}], params, use_tqdm=False)
    got = out.outputs[0].logprobs[0]
    return [[got[t].logprob if t in got else -99.0, float(policy[t])] for t in top]


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
