"""FSDP2 full sharding of a cell's policy through TRL/transformers' own FSDP support, on GPUs and on CPUs.

A sharded cell trains exactly like a DDP cell except for four calls (see the lead's notes in the training
cell): `fsdp_training_args` adds the GRPOConfig keyword arguments that switch transformers' Trainer onto
accelerate's FSDP2 plugin; `enable_cpu_fsdp` lifts accelerate's CPU gate so the same configuration runs
over gloo on a laptop; `assert_sharded` (and the `ShardingCheck` callback) fail the cell at start when
accelerate did not shard after all; `export_hf` gathers the sharded weights into an HF folder at every
checkpoint (a sharded checkpoint holds no HF weights, and the live sharded model cannot be evaluated by
one rank alone without deadlocking the others).

How the settings travel (transformers 5.17 to 5.25, accelerate 1.15 and 1.16):
`TrainingArguments(fsdp=True, fsdp_config=...)` -> `args.fsdp_plugin_args`
(TrainingArguments._process_fsdp_args) -> Trainer builds
`FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)` and passes it to `Accelerator` ->
`AcceleratorState` keeps the plugin only for multi-device GPU-like backends -> `Accelerator.prepare`
calls `fsdp2_prepare_model` (fully_shard on each decoder layer, the embeddings/head group, then the root).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..errors import ShardingError

#: fp32 master weights: TRL loads a policy given by name in float32 unless told otherwise; we say so
#: explicitly, because AdamW at lr 5e-7 does not move bf16 weights (RESEARCH.md)
MASTER_DTYPE = "float32"


# ---------------------------------------------------------------------------------------------- settings
def decoder_layer_classes(model_config_or_model: Any) -> list[str]:
    """Class names of the model's decoder layers (the FSDP wrapping unit), e.g. ['LlamaDecoderLayer'].

    Taken from the model's `_no_split_modules` (what transformers itself uses for device maps and what
    accelerate falls back to); for a config (or a model folder / hub id) from the causal-LM class that
    transformers maps the config to."""
    obj = model_config_or_model
    if isinstance(obj, (str, os.PathLike)):
        from transformers import AutoConfig

        obj = AutoConfig.from_pretrained(str(obj))
    names = getattr(obj, "_no_split_modules", None)
    if names is None and hasattr(obj, "model_type"):  # a config: look at the class it would build
        from transformers import AutoModelForCausalLM

        try:
            cls = AutoModelForCausalLM._model_mapping[type(obj)]
        except KeyError:
            raise ShardingError(
                f"no causal-LM class is known for model type {obj.model_type!r}; cannot choose FSDP units"
            ) from None
        names = getattr(cls, "_no_split_modules", None)
    if not names:
        raise ShardingError(
            f"{type(obj).__name__} names no decoder-layer class (_no_split_modules); cannot choose FSDP units"
        )
    return sorted(set(names))


#: the TrainingArguments fields that switch on transformers' own gradient (activation) checkpointing,
#: old name first: transformers <= 5.17 has `gradient_checkpointing` only; later 5.x renamed it
#: `activation_checkpointing` and keeps `gradient_checkpointing` as a deprecated alias (to go in v6)
CHECKPOINTING_FIELDS = ("gradient_checkpointing", "activation_checkpointing")


def checkpointing_fields() -> tuple[str, ...]:
    """The installed TrainingArguments' fields among CHECKPOINTING_FIELDS (decided by the dataclass
    itself, not by a version number)."""
    import dataclasses

    from transformers import TrainingArguments

    names = {f.name for f in dataclasses.fields(TrainingArguments)}
    found = tuple(n for n in CHECKPOINTING_FIELDS if n in names)
    if not found:
        raise ShardingError(
            f"transformers' TrainingArguments has none of {', '.join(CHECKPOINTING_FIELDS)}; cannot turn "
            "its own activation checkpointing off under FSDP"
        )
    return found


def fsdp_training_args(
    model_config_or_model: Any,
    *,
    activation_checkpointing: bool,
    bf16: bool = False,
    layers: list[str] | tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """GRPOConfig / TrainingArguments keyword arguments for FSDP2 full sharding; apply them over the cell's
    other GRPOConfig arguments (they replace `gradient_checkpointing`/`activation_checkpointing` and
    `bf16`).

    - one FSDP unit per decoder layer (transformer-based auto-wrap): `layers`, else the model's
      (`decoder_layer_classes`; `model_config_or_model` may then be None);
    - FSDP's own activation checkpointing (`fsdp_config["activation_checkpointing"]`, read the same way by
      transformers 5.17 and 5.25) instead of transformers' gradient checkpointing, which is turned off
      under every name the installed TrainingArguments has (`checkpointing_fields`): both at once would
      recompute twice and add an all-gather per layer in the backward pass;
    - fp32 master weights always; with `bf16` (GPU), bf16 compute through accelerate's mixed precision,
      which becomes the FSDP2 MixedPrecisionPolicy (call `use_fp32_reduce` to keep gradient reduction in
      fp32); on CPU leave `bf16` off: fp32 compute, as the unsharded CPU path;
    - sharded checkpoints (torch.distributed.checkpoint, one file set per rank): resume without gathering.
    """
    layers = sorted(set(layers)) if layers else decoder_layer_classes(model_config_or_model)
    kw: dict[str, Any] = {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            "reshard_after_forward": True,  # full shard (ZeRO-3): parameters are freed after each layer
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "transformer_layer_cls_to_wrap": layers,
            "activation_checkpointing": bool(activation_checkpointing),
            "state_dict_type": "SHARDED_STATE_DICT",
            "cpu_ram_efficient_loading": False,
        },
    }
    kw.update(dict.fromkeys(checkpointing_fields(), False))  # FSDP's own (fsdp_config) replaces transformers'
    kw.update(bf16=bool(bf16), model_init_kwargs={"dtype": MASTER_DTYPE})
    return kw


def use_fp32_reduce(args: Any) -> None:
    """Keep gradient reduce-scatter in fp32 under bf16 compute (torchtitan's default); call on the built
    GRPOConfig before constructing the trainer. accelerate's own bf16 policy reduces in bf16, and
    transformers forwards no mixed-precision policy from `fsdp_config`; the Trainer builds its FSDP plugin
    from `args.fsdp_plugin_args`, whose `mixed_precision_policy` accelerate keeps (it only fills a
    missing one from `mixed_precision`).

    The model's outputs (the logits) leave the sharded root in fp32 (`output_dtype`), so TRL's log-probs,
    entropies, importance ratios and clipped ratios are computed in fp32 from bf16 matmuls, as the official
    code (OpenRLHF casts the logits to fp32 before its log-softmax); bf16 outputs would round every
    log-prob to bf16 (~3 significant digits) before the ratio exp(logp - old_logp)."""
    import torch

    plugin_args = getattr(args, "fsdp_plugin_args", None)
    if not plugin_args or not getattr(args, "bf16", False):
        return
    plugin_args["mixed_precision_policy"] = {
        "param_dtype": torch.bfloat16,
        "reduce_dtype": torch.float32,
        "output_dtype": torch.float32,
    }


# ---------------------------------------------------------------------------------------------- the CPU gate
_CPU_GATE_LIFTED = False


def enable_cpu_fsdp() -> None:
    """Let accelerate apply FSDP2 to a multi-process CPU (gloo) run. Idempotent; no effect on GPUs.

    What accelerate does (accelerate 1.15, AcceleratorState.__init__): it switches `distributed_type` to
    FSDP and keeps the `fsdp_plugin` only when the backend is one of the multi-device accelerator types
    (MULTI_GPU, MULTI_XPU, ...). For MULTI_CPU it drops the plugin without a word, so Trainer sees
    `is_fsdp_enabled == False` and Accelerator.prepare wraps the model in plain DDP.

    Why lifting it is safe: FSDP2 (`fully_shard`) is device-agnostic; on CPU its collectives run over
    gloo, which implements all-gather and reduce-scatter. The patch does, for MULTI_CPU only, exactly
    what accelerate does for GPUs (set FSDP, hand the plugin its mixed precision, keep the plugin), after
    the original constructor has run; every other backend is left untouched."""
    global _CPU_GATE_LIFTED
    if _CPU_GATE_LIFTED:
        return
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__
    signature = inspect.signature(original)

    @functools.wraps(original)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        plugin = signature.bind(self, *args, **kwargs).arguments.get("fsdp_plugin")
        if plugin is None or self.distributed_type != DistributedType.MULTI_CPU:
            return
        self.distributed_type = DistributedType.FSDP
        if self._mixed_precision != "no":
            plugin.set_mixed_precision(self._mixed_precision)
        self.fsdp_plugin = plugin
        PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    __init__._spurisweep_original = original  # type: ignore[attr-defined]
    AcceleratorState.__init__ = __init__
    _CPU_GATE_LIFTED = True


# ---------------------------------------------------------------------------------------------- checks
def _model_of(model_or_trainer: Any) -> Any:
    """The model itself, or a trainer's (under FSDP, Trainer.model is the wrapped model once prepared)."""
    import torch

    if isinstance(model_or_trainer, torch.nn.Module):
        return model_or_trainer
    return model_or_trainer.model


def _backend(model_or_trainer: Any) -> str:
    accelerator = getattr(model_or_trainer, "accelerator", None)
    if accelerator is None:
        return "no accelerator"
    state = accelerator.state
    version = getattr(getattr(state, "fsdp_plugin", None), "fsdp_version", None)
    kind = str(state.distributed_type).split(".")[-1]
    return f"{kind}, {state.num_processes} processes" + (f", FSDP v{version}" if version else "")


def sharding_report(model: Any) -> dict[str, tuple[int, int]]:
    """{parameter name: (local numel, full numel)} for the model's DTensor parameters."""
    from torch.distributed.tensor import DTensor

    out = {}
    for name, p in model.named_parameters():
        if isinstance(p, DTensor):
            out[name] = (p.to_local().numel(), p.numel())
    return out


def assert_sharded(model_or_trainer: Any) -> None:
    """Raise ShardingError unless the model is FSDP2-sharded across more than one process.

    On a trainer before `train()`, checks what accelerate decided (the model is wrapped only when training
    starts); on a model, or a trainer whose model has been prepared, checks the parameters themselves:
    every parameter a DTensor whose local shard is smaller than the full tensor (where it has at least as
    many rows as processes)."""
    from torch.distributed.fsdp import FSDPModule

    backend = _backend(model_or_trainer)
    accelerator = getattr(model_or_trainer, "accelerator", None)
    if accelerator is not None:
        state = accelerator.state
        if getattr(state, "fsdp_plugin", None) is None or getattr(state.fsdp_plugin, "fsdp_version", 0) != 2:
            raise _unsharded(backend, "accelerate dropped the FSDP plugin")
        if state.num_processes < 2:
            raise _unsharded(backend, "one process: nothing to shard across")
    model = _model_of(model_or_trainer)
    if not isinstance(model, FSDPModule):
        if accelerator is not None:
            return  # not prepared yet: the ShardingCheck callback looks again when training starts
        raise _unsharded(backend, f"the model is a {type(model).__name__}, not FSDP2-wrapped")
    from torch.distributed.tensor import DTensor

    params = dict(model.named_parameters())
    plain = [n for n, p in params.items() if not isinstance(p, DTensor)]
    if plain:
        raise _unsharded(backend, f"{len(plain)} parameters are not sharded, e.g. {plain[0]}")
    world = _mesh_size(model)
    # FSDP2 shards dim 0: a tensor with fewer rows than processes may legitimately sit whole on one rank
    whole = [n for n, p in params.items() if p.to_local().numel() >= p.numel() and p.shape[0] >= world > 1]
    if world < 2 or whole:
        why = f"{whole[0]} is held whole by this process" if whole else "the device mesh has one process"
        raise _unsharded(backend, why)


def _mesh_size(model: Any) -> int:
    from torch.distributed.tensor import DTensor

    for p in model.parameters():
        if isinstance(p, DTensor):
            return p.device_mesh.size()
    return 1


def _unsharded(backend: str, why: str) -> ShardingError:
    return ShardingError(
        f"train.sharding is fsdp but accelerate trained unsharded ({backend}: {why}); refusing to train "
        "a sharded cell unsharded"
    )


def sharding_check_callback() -> Any:
    """A TrainerCallback that runs `assert_sharded` on the prepared model when training starts (before
    the first rollout)."""
    from transformers import TrainerCallback

    class ShardingCheck(TrainerCallback):
        def on_train_begin(self, args, state, control, model=None, **kw):
            assert_sharded(model)

    return ShardingCheck()


# ---------------------------------------------------------------------------------------------- export
def gather_full_state_dict(model_or_trainer: Any) -> dict[str, Any]:
    """The full (unsharded) state dict, on CPU, on rank 0; an empty dict on other ranks. Collective: every
    rank must call it. Works for unsharded models too (then every rank gets it)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    model = _model_of(model_or_trainer)
    if not isinstance(model, FSDPModule):
        return {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def _unwrap(model: Any) -> Any:
    return getattr(model, "module", model)


def export_hf(
    trainer_or_model: Any,
    tokenizer: Any,
    out_dir: str | os.PathLike[str],
    dtype: Any = None,
) -> Path | None:
    """Write an HF model folder (config.json, safetensors in `dtype` (bf16 by default), tokenizer) that
    `from_pretrained` loads, from a sharded or unsharded model. Collective: every rank must call it; rank
    0 writes into a temporary sibling folder and swaps it in with os.replace, then all ranks wait for it.
    Returns the folder on rank 0, None on the others."""
    import torch
    import torch.distributed as dist

    dtype = dtype or torch.bfloat16
    model = _unwrap(_model_of(trainer_or_model))
    state = gather_full_state_dict(
        trainer_or_model
    )  # rank 0: the fp32 weights in host memory (~30 GB for 7B)
    is_writer = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    out = Path(out_dir)
    if is_writer:
        for k in list(state):  # one tensor at a time, so the peak is the fp32 copy, not fp32 + bf16
            state[k] = state[k].to(dtype)
        _write_hf(model, state, tokenizer, out, dtype)
    del state
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    return out if is_writer else None


def _write_hf(model: Any, state: dict[str, Any], tokenizer: Any, out: Path, dtype: Any) -> None:
    import copy

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, state_dict=state, safe_serialization=True, is_main_process=True)
        config = copy.deepcopy(model.config)
        config.dtype = dtype  # the weights' dtype: from_pretrained(dtype="auto") loads them as written
        config.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        # the umask's modes, not mkdtemp's 0700 folder and safetensors' 0600 weights
        from ..artifacts import follow_umask

        follow_umask(tmp)
        _swap_in(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(tmp: Path, out: Path) -> None:
    """os.replace for a folder that may already exist (a re-export after resume): the old one is moved
    aside first, so `out` is never a partly written folder (the old export, briefly none, or the new)."""
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
