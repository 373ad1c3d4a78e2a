"""TRL's colocated vLLM engine as the cell's evaluation engine, and its weight sync on vLLM's CPU build.

With `train.generation_backend: vllm` every training rank holds a vLLM engine (TRL's colocate mode) that
already serves the rollouts. Evaluations run on it too: its weights are brought up to the training step
(the same sync TRL runs before a rollout, once per step), the evaluation prompts are split across the
ranks' engines, and nothing is exported and no other engine is started inside a training process (an
engine built there would join, move or, on release, destroy the training process group).

Touches TRL 1.16 internals: `trainer.vllm_generation` (its `llm`, `sync_weights`, `enable_sleep_mode`,
`_llm_weights_sleeping`, `tensor_parallel_size`) and `trainer._last_loaded_step`; the CPU sync calls vLLM
0.31's `model_runner.reload_weights`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)


def colocated(trainer: Any) -> Any:
    """The trainer's colocated vLLM generation object, or None (transformers rollouts, or a vLLM server)."""
    vg = getattr(trainer, "vllm_generation", None)
    if vg is None or getattr(vg, "mode", None) != "colocate":
        return None
    return vg


def install_cpu_sync(vg: Any) -> None:
    """On vLLM's CPU build, replace TRL's weight sync with one the CPU build can run.

    TRL loads each parameter through the model's `load_weights`, which needs every parameter's
    `weight_loader`; the CPU build repacks linear weights for its GEMM kernels after loading and drops
    that attribute (AttributeError at the first sync). vLLM's own in-place reload
    (`model_runner.reload_weights`) restores the checkpoint layout layer by layer, loads and repacks, which
    is what the CPU build supports. A tied output head (tie_word_embeddings) is repacked from the new
    embedding afterwards: vLLM's reload only reprocesses one of the tied layers (its documented limit)."""

    def sync() -> None:
        runner = vg.llm.llm_engine.model_executor.driver_worker.model_runner
        runner.reload_weights(weights_iterator=vg._iter_named_params())
        _repack_tied_head(runner.get_model())
        vg.llm.reset_prefix_cache()

    vg.sync_weights = sync


def _repack_tied_head(model: Any) -> None:
    head, embed = getattr(model, "lm_head", None), _embedding(model)
    if head is None or embed is None or getattr(head, "weight", None) is not embed.weight:
        return
    method = getattr(head, "quant_method", None)
    if method is not None and hasattr(method, "process_weights_after_loading"):
        method.process_weights_after_loading(head)


def _embedding(model: Any) -> Any:
    inner = getattr(model, "model", None)
    return getattr(inner, "embed_tokens", None)


def sync_to_step(trainer: Any) -> None:
    """Bring the colocated engine's weights to the trainer's current step (TRL's own sync, skipped when the
    engine already holds them; the next rollout then skips it too)."""
    vg = colocated(trainer)
    step = trainer.state.global_step
    if step == getattr(trainer, "_last_loaded_step", None) and not getattr(
        vg, "_llm_weights_sleeping", False
    ):
        return
    vg.sync_weights()
    vg._llm_weights_sleeping = False
    trainer._last_loaded_step = step


@contextlib.contextmanager
def awake(trainer: Any) -> Iterator[Any]:
    """The colocated engine with the trainer's current weights and its KV cache, for one evaluation; put
    back to sleep afterwards when TRL's sleep mode is on (as TRL does after each rollout)."""
    vg = colocated(trainer)
    sync_to_step(trainer)
    if vg.enable_sleep_mode:
        vg.llm.wake_up(tags=["kv_cache"])
    try:
        yield vg.llm
    finally:
        if vg.enable_sleep_mode:
            vg.llm.sleep(level=2)
            vg._llm_weights_sleeping = True


def eval_placement(trainer: Any, rank: int, world: int) -> tuple[int, int, bool]:
    """(share, shares, writes): this rank's share of an evaluation on the colocated engines (what
    evaluation.run.Colocated is built from; its metadata names the engine run.COLOCATED). Ranks of one
    tensor-parallel group drive one engine together and must send it the same prompts, so a share is a TP
    group's; its first rank writes the share."""
    tp = max(1, int(getattr(colocated(trainer), "tensor_parallel_size", 1) or 1))
    return rank // tp, max(1, world // tp), rank % tp == 0
