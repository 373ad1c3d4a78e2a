"""Generation backends: vLLM on a GPU when installed, transformers everywhere.

Both take the same rendered prompt strings and sampling settings and return the same records
(`Generation`: text, number of generated tokens, whether it hit the token limit). temperature 0 means
greedy. vLLM is imported only when it is chosen.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 3072
    seed: int = 0


@dataclass(frozen=True)
class Generation:
    text: str
    n_tokens: int
    truncated: bool


def vllm_available() -> bool:
    if importlib.util.find_spec("vllm") is None:
        return False
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def choose_backend(requested: str = "auto") -> str:
    if requested == "vllm":
        if not vllm_available():
            from .errors import ConfigError

            raise ConfigError("generation_backend 'vllm' needs vLLM installed and a CUDA GPU", field="train")
        return "vllm"
    if requested == "transformers":
        return "transformers"
    return "vllm" if vllm_available() else "transformers"


def auto_batch_size(model: Any, max_new_tokens: int, n: int) -> int:
    """Sequences per generate() call: bounded by a token budget (KV cache) that scales with memory."""
    try:
        import torch

        if next(model.parameters()).is_cuda:
            free, _ = torch.cuda.mem_get_info()
            cfg = model.config
            kv_per_token = 2 * cfg.num_hidden_layers * cfg.hidden_size * 2  # bytes, bf16, upper bound
            budget = int(free * 0.5 / max(kv_per_token * (max_new_tokens + 512), 1))
            return max(n, min(512, budget))
    except Exception:
        pass
    return max(n, 32)


def generate_transformers(
    model: Any, tokenizer: Any, prompts: list[str], sampling: Sampling, batch_size: int | None = None,
    progress: Any = None,
) -> list[list[Generation]]:
    """Batched generation with left padding; prompts are grouped by length to waste less padding."""
    import torch

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    pad_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    seqs_per_call = batch_size or auto_batch_size(model, sampling.max_new_tokens, sampling.n)
    prompts_per_call = max(1, seqs_per_call // sampling.n)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[Generation] | None] = [None] * len(prompts)
    greedy = sampling.temperature <= 0
    gen_kwargs: dict[str, Any] = dict(
        max_new_tokens=sampling.max_new_tokens,
        do_sample=not greedy,
        num_return_sequences=sampling.n,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    if not greedy:
        gen_kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=0)
    else:
        gen_kwargs.update(temperature=None, top_p=None, top_k=None)
    torch.manual_seed(sampling.seed)
    try:
        with torch.no_grad():
            for start in range(0, len(order), prompts_per_call):
                idx = order[start : start + prompts_per_call]
                enc = tokenizer([prompts[i] for i in idx], return_tensors="pt", padding=True,
                                add_special_tokens=False).to(device)
                res = model.generate(**enc, **gen_kwargs)
                new = res[:, enc["input_ids"].shape[1] :]
                for j, i in enumerate(idx):
                    gens = []
                    for s in range(sampling.n):
                        ids = new[j * sampling.n + s].tolist()
                        n_tok = _length(ids, tokenizer.pad_token_id, tokenizer.eos_token_id)
                        ended = n_tok < len(ids) or (ids and ids[n_tok - 1] == tokenizer.eos_token_id)
                        text = tokenizer.decode(ids[:n_tok], skip_special_tokens=True)
                        gens.append(Generation(text, n_tok, truncated=not ended and n_tok >= sampling.max_new_tokens))
                    out[i] = gens
                if progress is not None:
                    progress(len(idx))
    finally:
        tokenizer.padding_side = pad_side
        if was_training:
            model.train()
    return [g or [] for g in out]


def _length(ids: list[int], pad_id: int | None, eos_id: int | None) -> int:
    """Generated tokens up to and including the first EOS (padding after it is not generated)."""
    for k, t in enumerate(ids):
        if t == eos_id:
            return k + 1
    n = len(ids)
    while n and ids[n - 1] == pad_id and pad_id != eos_id:
        n -= 1
    return n


def generate_vllm(model_path: str, prompts: list[str], sampling: Sampling, gpu_memory_utilization: float = 0.85):
    """One offline LLM.generate call with all prompts and n samples each (GPU only)."""
    from vllm import LLM, SamplingParams  # type: ignore[import-not-found]

    llm = LLM(model=model_path, seed=sampling.seed, gpu_memory_utilization=gpu_memory_utilization)
    params = SamplingParams(
        n=sampling.n,
        temperature=sampling.temperature,
        top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
        max_tokens=sampling.max_new_tokens,
        seed=sampling.seed,
    )
    results = llm.generate(prompts, params)
    return [
        [Generation(o.text, len(o.token_ids), o.finish_reason == "length") for o in r.outputs] for r in results
    ]
