"""Memory planner: a cell's peak memory per GPU, from the model's config.json alone (no weights, no torch).

`model_shape` counts parameters from an HF config dict (checked against the published counts of the paper's
families); `estimate` adds up what one GPU holds while a GRPO cell trains: master weights, gradients, AdamW
states, the low-precision compute copy, activations at the cell's micro-batch and lengths, the LM head's
working set, and the colocated vLLM engine's share. `MemoryEstimate.fits` gives the verdict and
`suggestions` what would make a cell fit (each suggestion re-estimated, so it is known to fit).

The model of a training step follows what the installed stack does (TRL 1.16, transformers 5, torch FSDP2):
- TRL scores completions through its fused LM head (`add_fused_lm_head`): logits are computed in
  [4096 tokens x 32768 vocab] tiles and never materialised; older TRL materialised fp32 logits
  (`fused_lm_head=False` models that).
- HF Trainer zeroes gradients with set_to_none, so between updates (while vLLM generates) a GPU holds
  weights and optimizer states but no gradients.
- TRL's colocated vLLM sleeps at level 2 (weights and KV cache freed) while training runs.
Activation terms are approximations (which tensors autograd keeps, by counting the decoder layer's ops);
bench/memory_plan.py compares them with a measured CPU peak and bench/gpu_check.py with a CUDA peak.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError, DataError

GB = 1e9  # decimal gigabytes, as GPU memory is sold (an "80 GB" H100 has 80e9 bytes and a little more)
#: TRL's fused LM head tile (trl/kernels/chunked_logprob.py: TOKEN_CHUNK_SIZE x _CHUNKED_LOGPROB_CHUNK_SIZE)
LM_HEAD_TILE = (4096, 32768)
#: CUDA context, NCCL buffers and allocator fragmentation: an allowance, not derived from the model
RUNTIME_OVERHEAD_GB = 2.0
#: what a level-2-sleeping vLLM engine keeps (CUDA graph pool, sampler buffers): an allowance
VLLM_SLEEP_RESIDUE_GB = 1.0
#: vLLM's own activation workspace inside its share, before the KV cache (profiled by vLLM at start)
VLLM_ACTIVATION_GB = 2.0
DTYPE_BYTES = {"bf16": 2, "fp16": 2, "fp32": 4}


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only model's dimensions and parameter counts (per part, so sharding units can be sized)."""

    name: str
    model_type: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    tie_word_embeddings: bool
    layer_params: int  # one decoder layer (attention, MLP, norms, biases)
    embed_params: int
    head_params: int  # 0 when the LM head is tied to the embeddings

    @property
    def params(self) -> int:
        # + the final norm's weight
        return self.num_layers * self.layer_params + self.embed_params + self.head_params + self.hidden_size

    @property
    def q_dim(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim


def _field(config: dict[str, Any], key: str, name: str) -> int:
    if key not in config:
        raise ConfigError(f"config.json has no {key!r}; cannot size the model", file=name or None, field=key)
    return int(config[key])


def model_shape(config: dict[str, Any], name: str = "") -> ModelShape:
    """Parameter counts from an HF config.json dict.

    Per layer: q/o projections hidden x q_dim, k/v hidden x kv_dim (grouped-query attention shares K/V heads),
    a gated MLP of three hidden x intermediate matrices, two RMSNorm weights. Family differences:
    qwen2 has biases on q, k and v (always, whatever `attention_bias` says); llama has them (and on o)
    only when `attention_bias`; olmo2 adds q_norm/k_norm over the full q and k widths.
    """
    config = config.get("text_config", config)  # multimodal configs nest the language model
    model_type = str(config.get("model_type", "llama"))
    hidden = _field(config, "hidden_size", name)
    heads = _field(config, "num_attention_heads", name)
    kv_heads = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    inter = _field(config, "intermediate_size", name)
    vocab = _field(config, "vocab_size", name)
    q_dim, kv_dim = heads * head_dim, kv_heads * head_dim
    attn = 2 * hidden * q_dim + 2 * hidden * kv_dim
    if model_type == "qwen2":
        attn += q_dim + 2 * kv_dim
    elif config.get("attention_bias"):
        attn += q_dim + 2 * kv_dim + hidden
    mlp = 3 * hidden * inter + (2 * inter + hidden if config.get("mlp_bias") else 0)
    norms = 2 * hidden + (q_dim + kv_dim if model_type == "olmo2" else 0)
    tied = bool(config.get("tie_word_embeddings", False))
    return ModelShape(
        name=name,
        model_type=model_type,
        vocab_size=vocab,
        hidden_size=hidden,
        num_layers=_field(config, "num_hidden_layers", name),
        intermediate_size=inter,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        tie_word_embeddings=tied,
        layer_params=attn + mlp + norms,
        embed_params=vocab * hidden,
        head_params=0 if tied else vocab * hidden,
    )


# ---------------------------------------------------------------------------------------------- configs
def shipped_configs() -> dict[str, dict[str, Any]]:
    """The paper families' config fields (package data), keyed by hub id (families owns the file)."""
    from ..models.families import shipped_configs as shipped

    return shipped()


def load_config(folder: str | Path) -> dict[str, Any]:
    """A local model folder's config.json (a built family, a toy model, a `model_path`)."""
    path = Path(folder) / "config.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: no config.json; the planner sizes a model from it") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def family_shape(family: str, model_path: str | None = None, *, build: bool = False) -> ModelShape:
    """The shape of a cell's model without downloading weights: a local `model_path` from its own config,
    a hub family from the shipped configs, a locally built family (`tiny`, toys) from its built folder
    (built first when `build`, else a DataError saying it is not built yet)."""
    from ..models import families

    if model_path and Path(model_path).is_dir():
        return model_shape(load_config(model_path), model_path)
    fam = families.get(family)
    hub_id = model_path or fam.hub_id
    if fam.builder is None or model_path:
        shipped = shipped_configs()
        if hub_id not in shipped:
            raise DataError(
                f"{hub_id}: no shipped config (spurisweep/resources/model_configs.json has "
                f"{', '.join(sorted(shipped))}); pass a local model_path with a config.json"
            )
        return model_shape(shipped[hub_id], hub_id)
    folder = families.cache_dir() / "models" / f"{fam.name}-v{fam.version}"
    if build:
        folder = families.ensure_built(fam)
    elif not (folder / "config.json").exists():
        raise DataError(
            f"{family}: built on first use and not built yet ({folder}); build it to plan its memory"
        )
    return model_shape(load_config(folder), family)


# ---------------------------------------------------------------------------------------------- estimate
Sharding = Literal["none", "fsdp"]


@dataclass(frozen=True)
class Settings:
    """What a cell's memory depends on besides the model (the keyword arguments of `estimate`)."""

    sharding: Sharding = "none"
    world_size: int = 1
    micro_batch: int = 1
    prompt_len: int = 1024
    completion_len: int = 3072
    grad_checkpointing: bool = False
    master_fp32: bool = True
    compute_dtype: str = "bf16"
    vllm_gpu_memory_utilization: float | None = None  # None: no colocated vLLM engine
    vllm_sleep: bool = False
    vllm_tp: int = 1
    gpu_mem_gb: float = 80.0
    fused_lm_head: bool = True  # TRL >= 1.x scores tokens without materialising the logits
    triton: bool = True  # TRL's fused head has Triton kernels (CUDA); False models its torch fallback (CPU)
    generate_batch: int | None = None  # without vLLM: sequences transformers generates at once per GPU
    overhead_gb: float = RUNTIME_OVERHEAD_GB

    def check(self) -> None:
        """Every invalid setting at once, each naming its field."""
        bad = []
        if self.sharding not in ("none", "fsdp"):
            bad.append(f"sharding {self.sharding!r} (valid: none, fsdp)")
        if self.compute_dtype not in DTYPE_BYTES:
            bad.append(f"compute_dtype {self.compute_dtype!r} (valid: {', '.join(DTYPE_BYTES)})")
        for name in ("world_size", "micro_batch", "vllm_tp"):
            if getattr(self, name) < 1:
                bad.append(f"{name} {getattr(self, name)} (must be >= 1)")
        util = self.vllm_gpu_memory_utilization
        if util is not None and not 0 < util <= 1:
            bad.append(f"vllm_gpu_memory_utilization {util} (must be in (0, 1])")
        if bad:
            raise ConfigError("; ".join(bad), field="memory")


@dataclass(frozen=True)
class Suggestion:
    """A change of settings and the peak it gives (every suggestion is re-estimated and fits)."""

    change: dict[str, Any]
    peak_gb: float

    def __str__(self) -> str:
        what = ", ".join(f"{k}={v!r}" for k, v in self.change.items())
        return f"{what} ({self.peak_gb:.1f} GB)"


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU bytes, term by term. Two phases peak separately: the update (`training_peak`: a micro-batch's
    forward and backward) and the rollout (`rollout_peak`: generation, no gradients or activations)."""

    shape: ModelShape
    settings: Settings
    weights: int  # master weights (this GPU's shard under fsdp)
    compute_copy: int  # bf16 copies: autocast's cast cache (ddp) or all-gathered units (fsdp)
    gradients: int
    ddp_buckets: int  # DDP's all-reduce buckets (a second gradient copy)
    optimizer: int  # AdamW's two moments
    activations: int  # kept for backward through the whole backward pass
    backward: int  # one layer's backward: its recomputed activations (checkpointing) and gradients
    lm_head: int  # the LM head's backward: fused working set, or materialised logits
    vllm: int  # the engine's share during the update (its sleep residue when sleeping)
    vllm_awake: int  # its share during generation
    generation: int  # transformers generate's KV cache (no vLLM)
    overhead: int
    vllm_kv: int | None  # KV cache bytes left inside vLLM's share (None: no vLLM)
    vllm_seq_kv: int  # KV cache of one full-length sequence on one GPU of the engine

    @property
    def resident(self) -> int:
        """Held across both phases: weights, optimizer states, DDP buckets, runtime overhead."""
        return self.weights + self.optimizer + self.ddp_buckets + self.overhead

    @property
    def training_peak(self) -> int:
        # the LM head's backward runs before any layer's, and its buffers are freed by then
        step = self.compute_copy + self.gradients + self.activations + max(self.backward, self.lm_head)
        return self.resident + step + self.vllm

    @property
    def rollout_peak(self) -> int:
        if self.vllm_kv is not None:
            return self.resident + self.vllm_awake
        return self.resident + self.compute_copy + self.generation

    @property
    def peak(self) -> int:
        return max(self.training_peak, self.rollout_peak)

    def problems(self, gpu_mem_gb: float | None = None) -> list[str]:
        """Why the cell does not fit (empty when it does)."""
        cap = (gpu_mem_gb or self.settings.gpu_mem_gb) * GB
        out = []
        if self.peak > cap:
            phase = "update" if self.training_peak >= self.rollout_peak else "rollout"
            out.append(f"peak {self.peak / GB:.1f} GB ({phase}) exceeds {cap / GB:.0f} GB per GPU")
        if self.vllm_kv is not None and self.vllm_kv < self.vllm_seq_kv:
            out.append(
                f"vLLM's share leaves {max(self.vllm_kv, 0) / GB:.1f} GB for its KV cache, less than one "
                f"sequence needs ({self.vllm_seq_kv / GB:.2f} GB)"
            )
        return out

    def fits(self, gpu_mem_gb: float | None = None) -> bool:
        return not self.problems(gpu_mem_gb)

    def suggestions(self) -> list[Suggestion]:
        return suggest_fixes(self)

    def breakdown(self) -> dict[str, int]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("shape", "settings", "vllm_kv", "vllm_seq_kv")
        }

    def as_dict(self) -> dict[str, Any]:
        """Numbers for `plan --json` (bytes, plus GB totals and the verdict)."""
        return {
            "model": self.shape.name,
            "params": self.shape.params,
            "settings": dataclasses.asdict(self.settings),
            "bytes": self.breakdown(),
            "vllm_kv_bytes": self.vllm_kv,
            "training_peak_gb": round(self.training_peak / GB, 2),
            "rollout_peak_gb": round(self.rollout_peak / GB, 2),
            "peak_gb": round(self.peak / GB, 2),
            "fits": self.fits(),
            "problems": self.problems(),
            "suggestions": [dict(s.change, peak_gb=round(s.peak_gb, 2)) for s in self.suggestions()],
        }


def estimate(shape: ModelShape, **settings: Any) -> MemoryEstimate:
    """A cell's per-GPU memory. Keyword arguments are `Settings` fields: sharding ("none" | "fsdp"),
    world_size, micro_batch, prompt_len, completion_len, grad_checkpointing, master_fp32, compute_dtype,
    vllm_gpu_memory_utilization (None: no vLLM), vllm_sleep, vllm_tp, gpu_mem_gb, ..."""
    unknown = set(settings) - {f.name for f in dataclasses.fields(Settings)}
    if unknown:
        valid = ", ".join(f.name for f in dataclasses.fields(Settings))
        raise ConfigError(f"unknown {', '.join(sorted(unknown))}; valid: {valid}", field="memory")
    s = Settings(**settings)
    s.check()
    return _estimate(shape, s)


def _estimate(shape: ModelShape, s: Settings) -> MemoryEstimate:
    p = shape.params
    master = 4 if s.master_fp32 else 2
    e = DTYPE_BYTES[s.compute_dtype]
    shards = s.world_size if s.sharding == "fsdp" else 1
    # FSDP2 wraps each decoder layer; the root unit keeps what is left (embeddings, LM head, final norm)
    root = shape.embed_params + shape.head_params + shape.hidden_size
    unit = max(root, shape.layer_params)
    if s.sharding == "fsdp":
        # a unit is all-gathered (in the compute dtype under mixed precision) just before its forward/backward;
        # the root stays gathered around the layers, and the next layer is prefetched while one computes
        copy = (root + 2 * shape.layer_params) * min(e, master)
        # a unit's full gradient exists (reduce dtype fp32) until it is reduce-scattered into the shard
        unsharded_grad = unit * 4
    else:
        # autocast casts each weight once per forward and caches the cast until the forward ends
        copy = p * e if e < master else 0
        unsharded_grad = 0
    vllm_share, vllm_kv, seq_kv = _vllm_terms(shape, s)
    sleeping = int(VLLM_SLEEP_RESIDUE_GB * GB) if s.vllm_sleep else vllm_share
    return MemoryEstimate(
        shape=shape,
        settings=s,
        weights=p * master // shards,
        compute_copy=copy,
        # optimizer states and gradients are kept in the parameters' dtype (torch AdamW, HF Trainer)
        gradients=p * master // shards + unsharded_grad,
        # DDP's default gradient_as_bucket_view=False keeps the all-reduce buckets beside .grad
        ddp_buckets=p * master if s.sharding == "none" and s.world_size > 1 else 0,
        optimizer=2 * p * master // shards,
        activations=activation_bytes(shape, s),
        backward=backward_bytes(shape, s),
        lm_head=lm_head_bytes(shape, s),
        vllm=sleeping if vllm_kv is not None else 0,
        vllm_awake=vllm_share,
        generation=_generate_kv_bytes(shape, s),
        overhead=int(s.overhead_gb * GB),
        vllm_kv=vllm_kv,
        vllm_seq_kv=seq_kv,
    )


def layer_activation_bytes_per_token(shape: ModelShape, e: int) -> int:
    """Bytes autograd keeps per token for one decoder layer's backward (no checkpointing).

    RMSNorm (x2): it upcasts its input to fp32 and keeps that (4 B), the normalised value before the weight
    multiply and its output, the next projection's input (2 x e) - in fp32 compute the upcast is the input
    itself and the count (4 + 2e) still holds. Attention: the rotated q and k, v and the attention output
    (flash / memory-efficient SDPA keeps no seq x seq matrix). MLP: the gate output (kept by SiLU), SiLU's
    output and the up projection (kept by the product) and the product (kept by down_proj), each
    intermediate wide. OLMo-2's q/k norms add a norm over q and k.
    """
    h, i = shape.hidden_size, shape.intermediate_size
    norm = (4 + 2 * e) * h
    attn = e * (2 * shape.q_dim + 2 * shape.kv_dim)
    if shape.model_type == "olmo2":
        attn += (4 + 2 * e) * (shape.q_dim + shape.kv_dim)
    return 2 * norm + attn + 4 * e * i


def activation_bytes(shape: ModelShape, s: Settings) -> int:
    """Activations kept for backward, for one micro-batch at full length (TRL pads a micro-batch to its
    longest sequence; the planner assumes the longest is max prompt + max completion).

    Checkpointing keeps only each layer's input (tokens x hidden); without it every layer's activations
    are kept. (The final norm's are counted with the LM head: they are freed by its backward.)
    """
    e = DTYPE_BYTES[s.compute_dtype]
    tokens = s.micro_batch * (s.prompt_len + s.completion_len)
    if s.grad_checkpointing:
        per_layer = tokens * shape.hidden_size * e
    else:
        per_layer = tokens * layer_activation_bytes_per_token(shape, e)
    return shape.num_layers * per_layer


def backward_bytes(shape: ModelShape, s: Settings) -> int:
    """The working set of one decoder layer's backward, on top of what is kept.

    With checkpointing the layer's activations are recomputed first, so one layer's full set exists at
    once. Either way, at the MLP's backward (the layer's widest point) the product's gradient
    (intermediate-wide) exists beside the incoming hidden-state gradient and the residual's (hidden-wide);
    later gradients appear as earlier activations are freed. (Checked against the CPU allocator's peak by
    bench/memory_plan.py.)
    """
    e = DTYPE_BYTES[s.compute_dtype]
    tokens = s.micro_batch * (s.prompt_len + s.completion_len)
    recompute = tokens * layer_activation_bytes_per_token(shape, e) if s.grad_checkpointing else 0
    grads = tokens * e * (shape.intermediate_size + 2 * shape.hidden_size)
    return recompute + grads


def lm_head_bytes(shape: ModelShape, s: Settings) -> int:
    """The LM head's backward: the final norm's activations and the head's working set.

    Fused (TRL's add_fused_lm_head): one [4096 x 32768] logits tile in the compute dtype (0.27 GB in bf16), the hidden-state
    gradient accumulated in fp32, and the head's weight gradient accumulated in fp32 then cast to the
    compute dtype. Unfused (older TRL): fp32 logits of every scored position plus their log-softmax kept for
    backward - micro x completion x vocab x 4 bytes twice, which dominates for 130-150k vocabularies.
    Its backward runs before the layers' (MemoryEstimate.training_peak takes the larger of the two).
    """
    e = DTYPE_BYTES[s.compute_dtype]
    # with Triton only the labelled (completion) positions are scored; the fallback scores every position
    positions = s.completion_len if s.triton else s.prompt_len + s.completion_len - 1
    scored = s.micro_batch * positions
    vh = shape.vocab_size * shape.hidden_size
    # the final norm's activations (its fp32 upcast, normalised value and output) live until here
    tokens = s.micro_batch * (s.prompt_len + s.completion_len)
    final_norm = tokens * (4 + 2 * e) * shape.hidden_size
    if not s.fused_lm_head:
        return final_norm + 2 * scored * shape.vocab_size * 4
    rows, width = min(scored, LM_HEAD_TILE[0]), min(shape.vocab_size, LM_HEAD_TILE[1])
    # the tile buffer is allocated at the full chunk width even when the vocabulary is narrower
    tile = rows * LM_HEAD_TILE[1] * e
    # the torch fallback folds a tile with whole-tile fp32 temporaries (upcast, log p, p, grad, products)
    fallback = 0 if s.triton else 7 * rows * width * 4
    return final_norm + tile + fallback + scored * shape.hidden_size * 4 + vh * (4 + e)


def kv_bytes_per_token(shape: ModelShape, e: int = 2) -> int:
    """K and V of every layer for one token."""
    return 2 * shape.num_layers * shape.kv_dim * e


def _vllm_terms(shape: ModelShape, s: Settings) -> tuple[int, int | None, int]:
    """vLLM's share, the KV cache left in it, and one sequence's KV cache, all per GPU.

    vLLM claims gpu_memory_utilization x the GPU's memory on every GPU of its engine whatever the
    tensor-parallel size; tp splits the bf16 weights and the KV heads across those GPUs, which leaves more
    of the share for KV cache.
    """
    seq_kv = (s.prompt_len + s.completion_len) * kv_bytes_per_token(shape) // s.vllm_tp
    if s.vllm_gpu_memory_utilization is None:
        return 0, None, seq_kv
    share = int(s.vllm_gpu_memory_utilization * s.gpu_mem_gb * GB)
    kv = share - shape.params * 2 // s.vllm_tp - int(VLLM_ACTIVATION_GB * GB)
    return share, kv, seq_kv


def _generate_kv_bytes(shape: ModelShape, s: Settings) -> int:
    """transformers generate's KV cache when there is no vLLM: every sequence of the batch at full length."""
    if s.vllm_gpu_memory_utilization is not None or not s.generate_batch:
        return 0
    tokens = s.generate_batch * (s.prompt_len + s.completion_len)
    return tokens * kv_bytes_per_token(shape, DTYPE_BYTES[s.compute_dtype])


def _try(est: MemoryEstimate, change: dict[str, Any]) -> Suggestion | None:
    new = _estimate(est.shape, dataclasses.replace(est.settings, **change))
    return Suggestion(change, new.peak / GB) if new.fits() else None


def _candidates(s: Settings) -> list[dict[str, Any]]:
    """Single changes that can lower the peak, cheapest to the run first."""
    out: list[dict[str, Any]] = []
    if s.sharding == "none" and s.world_size > 1:
        out.append({"sharding": "fsdp"})
    if not s.grad_checkpointing:
        out.append({"grad_checkpointing": True})
    if s.vllm_gpu_memory_utilization is not None and not s.vllm_sleep:
        out.append({"vllm_sleep": True})
    m = s.micro_batch // 2
    while m >= 1:  # the largest micro-batch that fits, so the cell keeps as much parallelism as it can
        out.append({"micro_batch": m})
        m //= 2
    w = s.world_size * 2
    while w <= 64:  # more GPUs only help when the states are sharded across them
        out.append({"sharding": "fsdp", "world_size": w})
        w *= 2
    return out


def suggest_fixes(est: MemoryEstimate) -> list[Suggestion]:
    """What would make a cell fit: every single change that fits on its own (for micro-batch and GPUs only
    the first that does); when none does, one cumulative combination in the order of `_candidates`."""
    if est.fits():
        return []
    s = est.settings
    out: list[Suggestion] = []
    seen: set[str] = set()
    for change in _candidates(s) + _vllm_candidates(est):
        key = "micro_batch" if "micro_batch" in change else "world_size" if "world_size" in change else ""
        if key and key in seen:
            continue
        found = _try(est, change)
        if found:
            out.append(found)
            seen.add(key)
    if out:
        return out
    combined: dict[str, Any] = {}
    for change in _candidates(s) + _vllm_candidates(est):
        combined.update(change)
        found = _try(est, dict(combined))
        if found:
            return [found]
    return []


def _vllm_candidates(est: MemoryEstimate) -> list[dict[str, Any]]:
    """A share that leaves room for one sequence's KV cache and no more than the training state allows."""
    s = est.settings
    if s.vllm_gpu_memory_utilization is None:
        return []
    cap = s.gpu_mem_gb * GB
    # the largest share the rollout phase can afford, and the smallest that holds weights + one sequence
    most = (cap - est.resident) / cap
    least = (est.shape.params * 2 / s.vllm_tp + VLLM_ACTIVATION_GB * GB + 4 * est.vllm_seq_kv) / cap
    out = []
    if least <= most:
        for util in (round(most - 0.02, 2), round(least + 0.02, 2)):
            if 0 < util <= 1 and util != s.vllm_gpu_memory_utilization:
                out.append({"vllm_gpu_memory_utilization": util})
    tp = s.vllm_tp * 2
    if tp <= s.world_size:
        out.append({"vllm_tp": tp})
    return out
