"""The one place that touches TRL internals: a GRPOTrainer subclass with two extra metrics, and the
GRPOConfig/trainer construction that works around what TRL's batch arithmetic does not count.

Overridden private methods (TRL 1.16): GRPOTrainer._generate, _generate_and_score_completions,
_prepare_inputs, _calculate_rewards, _get_per_token_logps_and_entropies and the `_metrics` dict; TrainingArguments._n_gpu
(engine.py: the colocated engine's internals). A TRL upgrade that
renames them breaks here and nowhere else.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback
from trl import GRPOConfig, GRPOTrainer

from ..rewards.intrinsic import ENTROPY, LOGP, SELF_CERTAINTY, TOKEN_STATS, token_stats
from . import sharding
from .engine import install_cpu_sync
from .whitening import token_whiten

log = logging.getLogger(__name__)


class SpuriTrainer(GRPOTrainer):
    """GRPOTrainer that also logs
    - token_prob/mean: the mean probability of the sampled tokens under the policy that sampled them
      (the paper's evidence for prior amplification: ~0.85 -> >0.93 under clipping);
    - timing/generate_s and timing/generated_tokens: wall time and completion tokens of each rollout's
      generation (throughput in metrics.jsonl and bench/train_step.py);
    and, with `token_whitening` (train.token_whitening), whitens each training rollout's group-normalised
    advantages a second time over every response token of the rollout on all ranks (whitening.py), as the
    official code does. TRL's own advantage log (its completions table) keeps the group-normalised values.

    Intrinsic rewards (rewards/intrinsic.py) read per-token statistics of the policy that sampled the
    rollout (`token_stats`: token_logp, token_entropy, token_self_certainty), computed here before the
    rewards and passed to them as keyword arguments (one list per completion, one value per response
    token). The cheapest exact source is used (_token_stats): TRL's own old-log-probability forward when it
    runs (its fused LM head computes the entropy alongside, at no extra pass), else one no-grad forward over
    the rollout that also serves token_prob/mean (which needed that forward anyway); token_self_certainty
    needs the whole vocabulary's log-probabilities, which the fused head does not give, so it always takes
    one no-grad forward with the completion logits materialised, one micro-batch at a time.

    Loss aggregation (what remains different from the official code): the official code packs four
    responses into one row per forward pass, takes the token mean of each pack (no per-response
    normalisation) and averages the packs of an update with equal weight (DeepSpeed's gradient
    accumulation and data-parallel mean). The paper preset's TRL equivalent, loss_type "bnpo" with
    micro_batch 4, is the same arithmetic: the token mean over each forward pass of four responses
    (padding masked out), divided by the accumulation steps, averaged over ranks. Left different: which
    four responses share a pack (TRL shuffles each rank's share of the rollout and cuts it in order; the
    official code draws packs from its shuffled replay buffer: a different random grouping, not a
    different weighting), and padding instead of packing (memory, not the loss). Another micro_batch or
    loss_type changes the weights; `spurisweep fidelity` lists that.
    """

    token_whitening: bool = False
    #: factor on each training rollout's advantages: G/(G-1) under train.algorithm rloo, which makes TRL's
    #: r - group mean (scale_rewards none) the leave-one-out r_i - mean_{j != i} r_j (plan.algorithms)
    advantage_scale: float = 1.0
    #: strings that end a rollout (config.training_stops); vLLM stops there itself, transformers is cut here
    stop_strings: tuple[str, ...] = ()
    #: the per-token statistics the reward reads (rewards.intrinsic.token_stats of it; none: none computed)
    token_stats: tuple[str, ...] = ()
    _rollout_ids: tuple[list[list[int]], list[list[int]]] | None = (
        None  # the last rollout's prompt/completion ids
    )
    _captured: dict[str, torch.Tensor] | None = None  # statistics read off TRL's own forward of this rollout
    _stats_logps: torch.Tensor | None = None  # the sampled tokens' log-probabilities from _stats_forward

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if getattr(self.args, "use_vllm", False) and getattr(self.args, "vllm_mode", None) == "colocate":
            reseed_rollouts(self.args.seed, self.accelerator.process_index)
            from ..evaluation.generate import vllm_platform

            if vllm_platform() == "cpu":  # the CPU build's weights are repacked: its own in-place reload
                install_cpu_sync(self.vllm_generation)

    def _prepare_inputs(self, generation_batch):
        return trim_completion_padding(super()._prepare_inputs(generation_batch), self.pad_to_multiple_of)

    def _generate_single_turn(self, prompt_ids, *args, **kwargs):
        completion_ids, logprobs = super()._generate_single_turn(prompt_ids, *args, **kwargs)
        if self.stop_strings and not self.use_vllm:  # HF generate takes stop strings only with a tokenizer
            tok = self.processing_class
            completion_ids = [cut_at_stops(ids, tok, self.stop_strings) for ids in completion_ids]
        return completion_ids, logprobs

    def _generate(self, prompts):
        t0 = time.perf_counter()
        out = super()._generate(prompts)
        mode = "train" if self.model.training else "eval"
        completion_ids = out[1]
        self._rollout_ids = (out[0], out[1])
        self._metrics[mode]["timing/generate_s"].append(time.perf_counter() - t0)
        self._metrics[mode]["timing/generated_tokens"].append(float(sum(len(c) for c in completion_ids)))
        return out

    def _generate_and_score_completions(self, inputs):
        self._stats_logps = None
        self._captured = {} if self.token_stats and self._old_logps_forward() else None
        try:
            out = super()._generate_and_score_completions(inputs)
        finally:
            self._captured = None
        if self.token_whitening and self.model.training:
            # TRL calls this once per rollout with this rank's whole share of it (then cuts it into
            # micro-batches), so the whitening sees every token of the rollout, all ranks together
            out["advantages"] = token_whiten(out["advantages"], out["completion_mask"])
        if self.advantage_scale != 1.0 and self.model.training:
            out["advantages"] = out["advantages"] * self.advantage_scale
        logps = out.get("old_per_token_logps")
        if logps is None:
            logps = out.get("sampling_per_token_logps")
        if (
            logps is None
            and self._stats_logps is not None
            and self._stats_logps.shape == out["completion_mask"].shape
        ):
            logps = self._stats_logps  # the intrinsic rewards' forward (_stats_forward) computed them
        if logps is None:  # one update per rollout: TRL skipped this forward pass; do it for the metric,
            # in micro-batches as TRL's own forwards (the whole rollout in one pass is out of memory at 7B)
            ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
            mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
            with torch.no_grad():
                logps = self._get_per_token_logps_and_entropies(
                    self.model,
                    ids,
                    mask,
                    out["completion_ids"].size(1),
                    batch_size=self.args.per_device_train_batch_size,
                )[0]
        m = out["completion_mask"].float()
        p = float((logps.exp() * m).sum() / m.sum().clamp(min=1.0))
        self._metrics["train" if self.model.training else "eval"]["token_prob/mean"].append(p)
        self._stats_logps = None
        return out

    def _old_logps_forward(self) -> bool:
        """Whether TRL 1.16 runs its no-grad old-log-probability forward over this rollout (its own test in
        _generate_and_score_completions)."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return self.args.gradient_accumulation_steps % generate_every != 0 or bool(
            self.use_vllm and self.vllm_importance_sampling_correction
        )

    def _get_per_token_logps_and_entropies(self, model, *args, compute_entropy=False, **kwargs):
        """TRL's forward; during the scoring of a rollout whose reward reads per-token statistics, its first
        no-grad pass over the policy (the old log-probabilities) also keeps the log-probabilities and, when
        asked for, the entropies its fused LM head computes in the same pass. Rows TRL masks out
        (mask_truncated_completions) would read zero there, so then nothing is kept."""
        cap = self._captured
        if (
            cap is None
            or cap
            or model is not self.model
            or torch.is_grad_enabled()
            or self.mask_truncated_completions
        ):
            return super()._get_per_token_logps_and_entropies(
                model, *args, compute_entropy=compute_entropy, **kwargs
            )
        want = ENTROPY in self.token_stats
        logps, entropies, aux = super()._get_per_token_logps_and_entropies(
            model, *args, compute_entropy=compute_entropy or want, **kwargs
        )
        cap[LOGP] = logps
        if want:
            cap[ENTROPY] = entropies
        return logps, entropies if compute_entropy else None, aux

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        if self.token_stats:
            stats = self._token_stats(completion_ids_list)
            inputs = [{**x, **{k: v[i] for k, v in stats.items()}} for i, x in enumerate(inputs)]
        return super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)

    def _token_stats(self, completion_ids_list: list[list[int]]) -> dict[str, list[list[float]]]:
        """The statistics the reward reads, per completion (its own tokens only), from the cheapest exact
        source: TRL's forward of this rollout where it ran, else _stats_forward."""
        need = [s for s in TOKEN_STATS if s in self.token_stats]
        have: dict[str, torch.Tensor] = dict(self._captured or {})
        if not all(s in have for s in need):
            have = self._stats_forward(full_vocabulary=SELF_CERTAINTY in need)
        rows = {s: have[s].float().cpu() for s in need}
        return {
            s: [rows[s][i, : len(ids)].tolist() for i, ids in enumerate(completion_ids_list)] for s in need
        }

    def _stats_forward(self, *, full_vocabulary: bool) -> dict[str, torch.Tensor]:
        """One no-grad forward of the policy over the last rollout, in micro-batches as TRL's own: through
        TRL's fused LM head (log-probabilities, entropies; no logits materialised), or with the completion
        logits materialised when the whole vocabulary's statistics are needed (token_statistics)."""
        ids, mask, width = rollout_tensors(
            *self._rollout_ids, pad_id=self._tokenizer.pad_token_id, multiple=self.pad_to_multiple_of
        )
        ids, mask = ids.to(self.accelerator.device), mask.to(self.accelerator.device)
        bs = (
            self.args.per_device_train_batch_size
            if self.model.training
            else self.args.per_device_eval_batch_size
        )
        with torch.no_grad():
            if full_vocabulary:
                with self.accelerator.autocast():
                    stats = logits_statistics(self.model, ids, mask, width, bs, self.temperature)
            else:
                logps, entropies, _ = self._get_per_token_logps_and_entropies(
                    self.model, ids, mask, width, batch_size=bs, compute_entropy=True
                )
                stats = {LOGP: logps, ENTROPY: entropies}
        self._stats_logps = stats[LOGP]
        return stats


def rollout_tensors(
    prompt_ids: list[list[int]], completion_ids: list[list[int]], *, pad_id: int, multiple: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """A rollout's (prompt + completion) ids and attention mask, padded as TRL pads them (prompts on the
    left, completions on the right, to `multiple`), and the completion width."""
    from trl.trainer.utils import pad

    def padded(rows: list[list[int]], side: str) -> tuple[torch.Tensor, torch.Tensor]:
        tensors = [torch.tensor(r, dtype=torch.long) for r in rows]
        ones = [torch.ones_like(t) for t in tensors]
        return (
            pad(tensors, padding_value=pad_id, padding_side=side, pad_to_multiple_of=multiple),
            pad(ones, padding_value=0, padding_side=side, pad_to_multiple_of=multiple),
        )

    p_ids, p_mask = padded(prompt_ids, "left")
    c_ids, c_mask = padded(completion_ids, "right")
    return torch.cat([p_ids, c_ids], dim=1), torch.cat([p_mask, c_mask], dim=1), c_ids.size(1)


def logits_statistics(
    model: Any, ids: torch.Tensor, mask: torch.Tensor, width: int, batch_size: int, temperature: float = 1.0
) -> dict[str, torch.Tensor]:
    """token_statistics of the last `width` tokens of each row under `model`, `batch_size` rows per forward
    (the model's own forward and LM head: logit scaling and soft-capping included)."""
    parts: dict[str, list[torch.Tensor]] = {s: [] for s in TOKEN_STATS}
    for start in range(0, ids.size(0), batch_size):
        rows, attn = ids[start : start + batch_size], mask[start : start + batch_size]
        logits = model(input_ids=rows, attention_mask=attn, logits_to_keep=width + 1, use_cache=False).logits
        for s, v in token_statistics(logits[:, :-1], rows[:, -width:], temperature).items():
            parts[s].append(v)
    return {s: torch.cat(v, dim=0) for s, v in parts.items()}


def token_statistics(
    logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0, chunk: int = 512
) -> dict[str, torch.Tensor]:
    """Per position of next-token `logits` (batch x length x V) and the `tokens` (batch x length) that
    followed: token_logp log p(y), token_entropy H(p) and token_self_certainty KL(U || p) = -log V -
    mean_v log p(v), p = softmax(logits / temperature); in float32, `chunk` positions at a time (one
    chunk's float32 copy of the logits is the only extra memory)."""
    out: dict[str, list[torch.Tensor]] = {s: [] for s in TOKEN_STATS}
    log_v = math.log(logits.size(-1))
    for s in range(0, logits.size(1), chunk):
        lp = torch.log_softmax(logits[:, s : s + chunk].float() / temperature, dim=-1)
        out[LOGP].append(lp.gather(-1, tokens[:, s : s + chunk, None]).squeeze(-1))
        out[ENTROPY].append(-(lp.exp() * lp).sum(-1))
        out[SELF_CERTAINTY].append(-log_v - lp.mean(-1))
    return {k: torch.cat(v, dim=1) if v else logits.new_zeros(logits.shape[:2]) for k, v in out.items()}


def cut_at_stops(ids: list[int], tokenizer: Any, stops: tuple[str, ...]) -> list[int]:
    """`ids` up to and including the token that completes the first stop string (vLLM's stop with the stop
    text kept); unchanged when no stop string occurs. A binary search over prefixes: once a prefix's text
    holds a stop string, every longer one does."""

    def has_stop(n: int) -> bool:
        text = tokenizer.decode(ids[:n], skip_special_tokens=False)
        return any(s in text for s in stops)

    if not ids or not has_stop(len(ids)):
        return ids
    lo, hi = 1, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if has_stop(mid):
            hi = mid
        else:
            lo = mid + 1
    return ids[:lo]


#: a micro-batch's per-completion-token tensors (batch x completion length), trimmed together
PER_TOKEN_KEYS = (
    "completion_ids",
    "completion_mask",
    "old_per_token_logps",
    "ref_per_token_logps",
    "sampling_per_token_logps",
    "importance_sampling_ratio",
    "tool_mask",
    "advantages",
)


def trim_completion_padding(inputs: dict[str, Any], multiple: int | None = None) -> dict[str, Any]:
    """One micro-batch without the completion columns no row of it uses.

    TRL pads a rollout's completions to its longest one and cuts the rollout into micro-batches, so every
    micro-batch is as wide as the longest response of the whole rollout (3,072 tokens at the paper's
    shape, most of it padding). Completions are right-padded and masked, and attention is causal, so
    columns after a micro-batch's longest response change no logit, no mask and no loss term: they are
    cut (to a multiple of `multiple`, TRL's pad_to_multiple_of, when set). Prompt padding (left) is kept."""
    mask = inputs.get("completion_mask")
    if mask is None or mask.dim() != 2 or mask.size(1) == 0:
        return inputs
    width = mask.size(1)
    used = mask.any(dim=0).nonzero()
    keep = max(1, int(used[-1]) + 1) if used.numel() else 1
    if multiple:
        keep = min(width, -(-keep // multiple) * multiple)
    if keep >= width:
        return inputs
    out = dict(inputs)
    for key in PER_TOKEN_KEYS:
        value = out.get(key)
        if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.size(1) == width:
            out[key] = value[:, :keep]
    return out


def rollout_seed(seed: int, rank: int) -> int:
    """The torch seed of a rank's colocated rollouts: the cell's seed and the rank, never the same pair twice."""
    return (int(seed) * 1_000_003 + int(rank)) % (2**63 - 1)


def reseed_rollouts(seed: int, rank: int) -> None:
    """Give the colocated vLLM engine's sampler the cell's seed.

    TRL 1.16 builds its colocated engine with `seed=process_index // tensor_parallel_size`, whatever the
    cell's seed (trl/generation/vllm_generation.py); the engine, in this process, re-seeds torch's global
    generators with it, and its sampler then draws every rollout token from them (requests carry no seed of
    their own). So cells of seeds 0, 1 and 2 sampled identical streams. Seeding torch again once the engine
    exists (after GRPOTrainer.__init__) makes the draws follow (cell seed, rank) without patching TRL;
    per-request seeds would not do: TRL sends a group's samples as identical requests with n=1, and equal
    seeds would give equal completions."""
    torch.manual_seed(rollout_seed(seed, rank))


def grpo_config(kw: dict[str, Any], *, cpu: bool, world: int, sharded: bool = False) -> GRPOConfig:
    """The GRPOConfig for keyword arguments from config.grpo_kwargs, on one GPU per process. `sharded`:
    `kw` carries sharding.fsdp_training_args; gradients are then reduced in fp32 under bf16 compute."""
    args = GRPOConfig(**kw)
    if sharded:
        sharding.use_fp32_reduce(args)
    if not cpu and world == 1 and args.n_gpu > 1:
        # TRL's batch arithmetic counts processes, not DataParallel replicas: use one GPU per process
        # (resources.tasks_per_node / gpus_per_node start one process per GPU: data-parallel)
        log.warning(
            "%d GPUs visible to one process; training on one (set resources.gpus_per_node or "
            "resources.tasks_per_node to train data-parallel on all of them)",
            args.n_gpu,
        )
        args._n_gpu = 1
    return args


def make_trainer(
    args: GRPOConfig,
    *,
    model: str,
    reward_fn: Any,
    dataset: Any,
    tokenizer: Any,
    callback: TrainerCallback,
    token_whitening: bool = False,
    sharded: bool = False,
    stop_strings: tuple[str, ...] = (),
    advantage_scale: float = 1.0,
) -> SpuriTrainer:
    """The cell's trainer. `sharded`: fail now (ShardingError) if accelerate dropped FSDP, and again when
    training starts unless every parameter is sharded (the check runs before the cell's callback)."""
    trainer = SpuriTrainer(
        model=model,
        reward_funcs=[reward_fn],
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        callbacks=([sharding.sharding_check_callback()] if sharded else []) + [callback],
    )
    trainer.token_whitening = token_whitening
    trainer.token_stats = token_stats(reward_fn)
    trainer.stop_strings = tuple(stop_strings)
    trainer.advantage_scale = advantage_scale
    trainer.remove_callback(PrinterCallback)  # metrics go to metrics.jsonl, not as dicts to stdout
    if sharded:
        sharding.assert_sharded(trainer)
    return trainer
