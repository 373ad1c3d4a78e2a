"""The cost model behind `spurisweep plan`: each cell's wall hours and GPU-hours (rollout, training,
evaluation, labels) from the model's config, the cell's lengths and batch shape, and assumed per-GPU
throughputs (spec.CostAssumptions: a sweep's `cost:` section, or `plan --assume KEY=VALUE`), beside what
the same cell costs in the official code's layout. Arithmetic on the shipped configs: no torch, no download.

Two layouts of one cell on G GPUs (RESEARCH.md, "Resources at the paper's scale", "The official code's
behaviour"), both priced with the same assumptions:

- spurisweep: every GPU holds a training rank (FSDP) and TRL's colocated vLLM engine (its share of memory:
  train.vllm_gpu_memory_utilization). Each rollout step, one after the other on all G GPUs: generate the
  rollout, train on it, and at an evaluation step generate the benchmarks' samples on the same engines.
  TRL sizes each engine for its rank's share of the rollout (max_num_seqs): evaluations, too, decode at
  most that many sequences a GPU at once. Training micro-batches are trimmed to their own longest
  response (`pad_factor` over the real tokens); TRL's old-log-probability forward pads each rank's share
  of the rollout to its longest response, taken to be train.max_completion_length (one of a rank's 128
  responses reaching the cap is likely).
- official (OpenRLHF-style): G/2 GPUs train on packed responses (no padding), G/2 serve vLLM alone (a
  0.85 share, as spurisweep's own dedicated engines; at most 256 sequences at once, vLLM's default). The
  rollout runs on the vLLM half while the training half waits; then the training half trains while the
  vLLM half evaluates, so an evaluation adds wall time only where it outlasts that step's training. Every
  GPU is held throughout: GPU-hours = G x wall.

The arithmetic:
- decode, tokens/s per GPU = decode_tokens_per_s x roof(phase) / roof(reference), a memory/compute
  roofline: roof = B / max(W/tp + B c k, W B / decode_batch), a decode step's tokens over the bytes it
  reads (the bf16 weights W, 2 bytes a parameter, and every sequence's KV cache: c the mean context of a
  sequence in flight, prompt + half its response, k its KV bytes a token) or over its FLOPs (2 a
  parameter and token) in bytes at decode_batch FLOPs a byte. B, the sequences decoding at once per GPU, is
  the phase's share of them, or fewer where the engine's KV cache (its share of memory less the weights
  and vLLM's workspace, memory.py's terms) holds fewer. The reference: 7e9 parameters, Qwen2.5-7B's
  57,344 KV bytes a token, 128 sequences of 1,024 tokens per GPU. Prompt prefill is not counted.
- training, FLOPs per token and forward pass = 2 N + 2 L q S (N the parameters a token multiplies by, L
  layers, q the query width, S the sequence length: causal attention reads S/2 positions on average); the
  update is 3 passes (forward and backward), 4 with gradient checkpointing, over the rollout once per
  epoch; TRL's old-log-probability forward (a rollout feeding several updates, or the vLLM
  importance-sampling correction) and a reference model (KL coefficient above 0) add one pass each; all at
  train_tflops per GPU.
- evaluation: each benchmark's problems x samples, eval_response_tokens each (at most its max_new_tokens),
  ceil(steps / eval_every) evaluations (eval_every: eval.eval_every, else train.save_every). The untrained
  baseline, shared by every cell, is not counted.
- labels (majority_vote, incorrect_label): training prompts x label samples x label_response_tokens on
  dedicated engines, data-parallel over the label job's GPUs; the same in both layouts. A label set is made
  once per model and label settings and shared: its GPU-hours are split evenly over the sweep's cells that
  train on it, so the sweep's total counts it once. `wall` is the cell's own job (labels are a job of
  their own, before it).

Not counted in either layout: weight syncs into vLLM, sleep and wake, reward grading, checkpoint writes,
start-up.

The defaults are arithmetic for H100 80 GB GPUs, not measurements; calibrate them on a GPU with
bench/gpu_check.py, or from a run's metrics.jsonl (timing/generate_s and timing/generated_tokens: decode
speed; completions/mean_length: the response length):
- decode_tokens_per_s 2,500: at the reference point a step reads ~21.5 GB; at ~60% of 3.35 TB/s that is
  ~10,000 tokens/s while the batch is full. The drain tail (a rollout's last, longest responses decoding
  in a nearly empty batch), sampling and scheduling are taken to leave a quarter of it over a whole rollout.
- decode_batch 128: ~400 TFLOPs achieved over 3.35 TB/s is ~120 FLOPs a byte: at ~120 sequences a step's
  FLOPs (2 a parameter each) take as long as reading the weights (2 bytes a parameter).
- train_tflops 400: ~40% of the H100's 989 dense bf16 TFLOPs, usual for a sharded 7B at 1-4k tokens.
- pad_factor 1.5: a micro-batch of 4 is as wide as its longest response; E[max of 4] / mean is about
  1 + 1.03 CV for normally spread lengths: 1.5 at a coefficient of variation of 0.5.
- prompt_tokens 200 (a DeepScaleR problem in its template), response_tokens 700 (Qwen2.5-Math-7B early in
  training; one figure for every family), eval_response_tokens 750 (MATH-500 ~600, AIME ~1,500, AMC ~900,
  weighted by samples), label_response_tokens 700.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError, SpurisweepError, suggest
from . import memory
from .spec import CellConfig, CostAssumptions, first_error

#: the point decode_tokens_per_s is stated at: parameters, KV bytes a token, sequences per GPU, context
REFERENCE = (7e9, 57_344, 128, 1024)
#: the share of a GPU a dedicated vLLM engine holds (the official layout's; spurisweep's label engines)
DEDICATED_VLLM_MEMORY = 0.85
#: the sequences a dedicated vLLM engine decodes at once (vLLM's max_num_seqs default)
DEDICATED_MAX_SEQS = 256
#: training-set rows known without downloading: the prompts a label set labels
TRAIN_SET_ROWS = {"agentica-org/DeepScaleR-Preview-Dataset": 40_315}
HOUR = 3600.0
PHASES = ("rollout", "train", "eval", "labels")


# ---------------------------------------------------------------------------------------------- settings
def assumptions(base: CostAssumptions, pairs: list[str]) -> CostAssumptions:
    """`base` (a sweep's `cost:` section) with `plan --assume KEY=VALUE` pairs on top; a bad pair is a
    ConfigError naming `--assume KEY`."""
    valid = list(CostAssumptions.model_fields)
    update: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(f"{pair!r} is not KEY=VALUE (keys: {', '.join(valid)})", field="--assume")
        if key not in valid:
            raise ConfigError(suggest(key, valid), field="--assume")
        update[key] = value.strip()
    try:
        return CostAssumptions.model_validate({**base.model_dump(), **update})
    except ValidationError as exc:
        key, msg = first_error(exc)
        raise ConfigError(f"{update.get(key)!r}: {msg}", field=f"--assume {key}") from None


# ---------------------------------------------------------------------------------------------- workload
@dataclass(frozen=True)
class Work:
    """One cell's workload in the cost model's terms (token counts are means)."""

    shape: memory.ModelShape
    gpus: int
    gpu_mem_gb: float
    share: float  # the colocated engine's share of a GPU's memory
    tp: int
    steps: int
    rollout: int  # responses per rollout step
    epochs: int
    prompt: float
    response: float  # mean response, within the cap
    max_response: int
    update_passes: int  # forward + backward (+ the recomputed forward)
    extra_passes: int  # old log-probabilities, reference model: one forward each
    evals: int
    eval_seqs: int
    eval_tokens: float

    @property
    def eval_mean(self) -> float:
        return self.eval_tokens / self.eval_seqs if self.eval_seqs else 0.0


def workload(cfg: CellConfig, a: CostAssumptions, shape: memory.ModelShape) -> Work:
    """A cell's workload: its GPUs, batch shape (training.config's), lengths and evaluations."""
    from .grpo import batch_shape

    t = cfg.train
    b = batch_shape(t, cfg.clip, cfg.resources.world_size)
    # TRL runs the old-log-probability forward when a rollout feeds several updates, or for its vLLM
    # importance-sampling correction (on unless train.is_correction is false)
    old = b.rollout > b.mini or b.iterations > 1 or t.is_correction is not False
    every = cfg.eval.eval_every or t.save_every
    seqs, tokens = eval_load(cfg, a)
    return Work(
        shape=shape,
        gpus=(cfg.resources.gpus_per_node or 0) * cfg.resources.nodes,
        gpu_mem_gb=cfg.resources.node.gpu_mem_gb,
        share=t.vllm_gpu_memory_utilization,
        tp=t.vllm_tensor_parallel_size,
        steps=t.steps,
        rollout=b.rollout,
        epochs=b.iterations,
        prompt=a.prompt_tokens,
        response=min(a.response_tokens, t.max_completion_length),
        max_response=t.max_completion_length,
        update_passes=3 + t.gradient_checkpointing,
        extra_passes=int(old) + int(t.beta > 0),
        evals=math.ceil(t.steps / every) if cfg.eval.checkpoints else 1,
        eval_seqs=seqs,
        eval_tokens=tokens,
    )


def eval_load(cfg: CellConfig, a: CostAssumptions) -> tuple[int, float]:
    """(sequences, tokens) one evaluation generates: every benchmark's problems x samples."""
    from ..data import sets as data

    seqs, tokens = 0, 0.0
    for name in cfg.eval.benchmarks:
        bench = data.BENCHMARKS.get(name)
        proto = bench.protocol if bench is not None else data.GREEDY
        over = cfg.eval.protocols.get(name)
        n = (bench.problems if bench is not None else None) or 500  # its entry's size; else MATH-500's
        for limit in (cfg.eval.limit, over.limit if over else None):
            n = min(n, limit or n)
        samples = (over.samples if over else None) or proto.samples
        new = (over.max_new_tokens if over else None) or proto.max_new_tokens
        seqs += n * samples
        tokens += n * samples * min(a.eval_response_tokens, new)
    evals = 1 + len(cfg.eval.variants)  # each eval.variants entry evaluates every point again
    return seqs * evals, tokens * evals


# ---------------------------------------------------------------------------------------------- speeds
def matmul_params(shape: memory.ModelShape) -> int:
    """The parameters a token is multiplied by: all but an untied input embedding (a lookup)."""
    return shape.params - (0 if shape.tie_word_embeddings else shape.embed_params)


def _roof(weights: float, batch: float, seq_kv: float, tp: int, decode_batch: float) -> float:
    """Tokens a decode step yields per byte it reads (or per byte-equivalent of its FLOPs), per GPU."""
    return batch / max(weights / tp + batch * seq_kv, weights * batch / decode_batch)


def _engine_fixed(shape: memory.ModelShape, tp: int) -> float:
    """What a vLLM engine holds per GPU besides its KV cache: bf16 weights and its workspace (memory.py)."""
    return 2.0 * matmul_params(shape) / tp + memory.VLLM_ACTIVATION_GB * memory.GB


def kv_seqs(shape: memory.ModelShape, *, share: float, gpu_mem_gb: float, tp: int, context: float) -> float:
    """Sequences of mean context `context` per GPU that the KV cache of an engine holding `share` of each GPU
    keeps."""
    free = share * gpu_mem_gb * memory.GB - _engine_fixed(shape, tp)
    return free / (context * memory.kv_bytes_per_token(shape))


def share_for(shape: memory.ModelShape, *, seqs: float, gpu_mem_gb: float, tp: int, context: float) -> float:
    """The share of each GPU an engine needs for its KV cache to keep `seqs` sequences per GPU."""
    kv = seqs * context * memory.kv_bytes_per_token(shape)
    return (_engine_fixed(shape, tp) + kv) / (gpu_mem_gb * memory.GB)


def decode_rate(
    shape: memory.ModelShape,
    a: CostAssumptions,
    *,
    seqs_per_gpu: float,
    context: float,
    share: float,
    gpu_mem_gb: float,
    max_seqs: float = DEDICATED_MAX_SEQS,
    tp: int = 1,
) -> float:
    """Decode tokens/s per GPU for `seqs_per_gpu` sequences of mean context `context` on an engine holding
    `share` of each GPU and decoding at most `max_seqs` sequences per GPU at once (the roofline in the
    module docstring, scaled from decode_tokens_per_s)."""
    weights = 2.0 * matmul_params(shape)
    seq_kv = context * memory.kv_bytes_per_token(shape)
    fit = kv_seqs(shape, share=share, gpu_mem_gb=gpu_mem_gb, tp=tp, context=context)
    batch = max(1.0, min(seqs_per_gpu, max_seqs, fit))
    params, kv, ref_batch, ref_context = REFERENCE
    ref = _roof(2.0 * params, ref_batch, ref_context * kv, 1, a.decode_batch)
    return a.decode_tokens_per_s * _roof(weights, batch, seq_kv, tp, a.decode_batch) / ref


def forward_flops(shape: memory.ModelShape, tokens: float, length: float) -> float:
    """One forward pass over `tokens` tokens in sequences `length` long."""
    return tokens * (2.0 * matmul_params(shape) + 2.0 * shape.num_layers * shape.q_dim * length)


def train_seconds(w: Work, a: CostAssumptions, gpus: int, *, pad: float, old_width: float) -> float:
    """One rollout step's training on `gpus` GPUs: the update over the rollout (its sequences `pad` times
    their real length), and the extra forwards over sequences `old_width` long."""
    seq = (w.prompt + w.response) * pad
    update = w.update_passes * forward_flops(w.shape, w.rollout * w.epochs * seq, seq)
    extra = w.extra_passes * forward_flops(w.shape, w.rollout * old_width, old_width)
    return (update + extra) / (gpus * a.train_tflops * 1e12)


def decode_seconds(
    w: Work, a: CostAssumptions, gpus: int, seqs: float, tokens: float, **engine: Any
) -> float:
    """Generating `tokens` tokens over `seqs` sequences on `gpus` GPUs, data-parallel."""
    context = w.prompt + tokens / max(seqs, 1.0) / 2
    rate = decode_rate(w.shape, a, seqs_per_gpu=seqs / gpus, context=context, **engine)
    return tokens / (gpus * rate)


# ---------------------------------------------------------------------------------------------- layouts
@dataclass(frozen=True)
class Cost:
    """One cell in one layout: wall hours of each phase of the cell's own job (every GPU held throughout,
    so GPU-hours = GPUs x wall), and the cell's share of its label set in GPU-hours (None: unknown)."""

    gpus: int
    rollout: float
    train: float
    eval: float
    labels: float | None = 0.0

    @property
    def wall_h(self) -> float:
        return self.rollout + self.train + self.eval

    def gpu_hours(self) -> dict[str, float | None]:
        phases = {p: self.gpus * getattr(self, p) for p in PHASES[:3]}
        return {**phases, "labels": self.labels}

    @property
    def gpu_h(self) -> float:
        return self.gpus * self.wall_h + (self.labels or 0.0)

    def as_dict(self) -> dict[str, Any]:
        by_phase = {k: None if v is None else round(v, 2) for k, v in self.gpu_hours().items()}
        return {"gpus": self.gpus, "wall_h": round(self.wall_h, 2), "gpu_h": round(self.gpu_h, 2), **by_phase}


def ours(w: Work, a: CostAssumptions) -> Cost:
    """spurisweep's layout: every GPU colocated; rollout, training and evaluation in turn. TRL sizes its
    colocated engines for a rank's share of the rollout (max_num_seqs), evaluations included."""
    engine = dict(share=w.share, gpu_mem_gb=w.gpu_mem_gb, tp=w.tp, max_seqs=w.rollout / w.gpus)
    tokens = w.rollout * w.response
    rollout = decode_seconds(w, a, w.gpus, w.rollout, tokens, **engine)
    train = train_seconds(w, a, w.gpus, pad=a.pad_factor, old_width=w.prompt + w.max_response)
    evals = decode_seconds(w, a, w.gpus, w.eval_seqs, w.eval_tokens, **engine) if w.eval_seqs else 0.0
    return Cost(w.gpus, w.steps * rollout / HOUR, w.steps * train / HOUR, w.evals * evals / HOUR)


def official(w: Work, a: CostAssumptions) -> Cost | None:
    """The official layout: half the GPUs train on packed responses, half serve vLLM; the rollout, then
    training with the evaluation beside it. None for a cell of fewer than 2 GPUs."""
    half = w.gpus // 2
    if half < 1:
        return None
    engine = dict(share=DEDICATED_VLLM_MEMORY, gpu_mem_gb=w.gpu_mem_gb)
    rollout = decode_seconds(w, a, half, w.rollout, w.rollout * w.response, **engine)
    train = train_seconds(w, a, half, pad=1.0, old_width=w.prompt + w.response)
    evals = decode_seconds(w, a, half, w.eval_seqs, w.eval_tokens, **engine) if w.eval_seqs else 0.0
    beyond = max(0.0, evals - train)  # the evaluation's time past that step's training
    return Cost(w.gpus, w.steps * rollout / HOUR, w.steps * train / HOUR, w.evals * beyond / HOUR)


# ---------------------------------------------------------------------------------------------- labels
def label_gpu_hours(cfg: CellConfig, spec: Any, shape: memory.ModelShape, a: CostAssumptions) -> float | None:
    """GPU-hours of one label set (labels.LabelSpec) on dedicated engines; None when the number of prompts
    is not known here (a data set other than DeepScaleR without data.limit)."""
    prompts = TRAIN_SET_ROWS.get(spec.dataset, spec.limit)
    if prompts is None:
        return None
    seqs = min(prompts, spec.limit or prompts) * spec.samples
    length = min(a.label_response_tokens, spec.max_new_tokens)
    # every engine has far more prompts than it decodes at once, however many GPUs the label job has
    rate = decode_rate(
        shape,
        a,
        seqs_per_gpu=seqs,
        context=a.prompt_tokens + length / 2,
        share=DEDICATED_VLLM_MEMORY,
        gpu_mem_gb=cfg.resources.node.gpu_mem_gb,
    )
    return seqs * length / rate / HOUR


def label_shares(cells: list[Any], a: CostAssumptions, shapes: dict[str, memory.ModelShape | None]) -> dict:
    """Each cell's share of its label set's GPU-hours (cells that need none: absent)."""
    from ..evaluation import labels

    groups: dict[str, list[Any]] = {}
    for c in cells:
        spec = labels.needed(c.config)
        if spec is not None and shapes.get(c.id) is not None:
            groups.setdefault(spec.key(), []).append((c, spec))
    out: dict[str, float | None] = {}
    for members in groups.values():
        first, spec = members[0]
        total = label_gpu_hours(first.config, spec, shapes[first.id], a)
        for c, _ in members:
            out[c.id] = None if total is None else total / len(members)
    return out


# ---------------------------------------------------------------------------------------------- cells
@dataclass(frozen=True)
class CellCost:
    """A cell's cost in both layouts, and how much of a rank's share of the rollout (the most TRL's
    colocated engine decodes at once) that engine's KV cache holds."""

    ours: Cost
    official: Cost | None
    seqs_per_gpu: float
    kv_seqs: float  # sequences per GPU the colocated KV cache holds (at the longer of the two contexts)
    full_share: float  # the train.vllm_gpu_memory_utilization whose KV cache holds seqs_per_gpu

    def as_dict(self) -> dict[str, Any]:
        kv = {
            "seqs_per_gpu": round(self.seqs_per_gpu, 1),
            "kv_seqs_per_gpu": round(self.kv_seqs, 1),
            "share_for_all": round(self.full_share, 3),
        }
        theirs = None if self.official is None else self.official.as_dict()
        return {"ours": self.ours.as_dict(), "official": theirs, "colocated_kv": kv}


def cell_cost(w: Work, a: CostAssumptions, labels: float | None) -> CellCost:
    """Both layouts of one workload, with its share `labels` of a label set."""
    theirs = official(w, a)
    seqs = w.rollout / w.gpus
    engine = dict(gpu_mem_gb=w.gpu_mem_gb, tp=w.tp, context=w.prompt + max(w.response, w.eval_mean) / 2)
    return CellCost(
        replace(ours(w, a), labels=labels),
        None if theirs is None else replace(theirs, labels=labels),
        seqs,
        kv_seqs(w.shape, share=w.share, **engine),
        share_for(w.shape, seqs=seqs, **engine),
    )


def _shape(cfg: CellConfig, cache: dict[tuple[str, str | None], Any]) -> memory.ModelShape | None:
    """The model's shape for a cell that generates with vLLM on GPUs; None for any other cell (a CPU
    cell, transformers rollouts, a model whose config cannot be read without downloading)."""
    if not cfg.resources.gpus_per_node or cfg.train.generation_backend == "transformers":
        return None
    key = (cfg.model, cfg.model_path)
    if key not in cache:
        try:
            cache[key] = memory.family_shape(cfg.model, cfg.model_path)
        except SpurisweepError:
            cache[key] = None
    return cache[key]


def estimate(cells: list[Any], a: CostAssumptions) -> dict[str, CellCost | None]:
    """Every cell's cost in both layouts, by cell id (None: not estimated, see _shape)."""
    cache: dict[tuple[str, str | None], Any] = {}
    shapes = {c.id: _shape(c.config, cache) for c in cells}
    shares = label_shares(cells, a, shapes)
    out: dict[str, CellCost | None] = {}
    for c in cells:
        shape = shapes[c.id]
        if shape is None:
            out[c.id] = None
            continue
        out[c.id] = cell_cost(workload(c.config, a, shape), a, shares.get(c.id, 0.0))
    return out


def totals(costs: dict[str, CellCost | None]) -> dict[str, Any]:
    """The sweep's GPU-hours in both layouts (each label set once: the shares add up to it)."""
    known = [c for c in costs.values() if c is not None]
    theirs = [c.official.gpu_h for c in known if c.official is not None]
    return {
        "cells_estimated": len(known),
        "gpu_h": round(sum(c.ours.gpu_h for c in known), 1),
        "official_gpu_h": round(sum(theirs), 1) if len(theirs) == len(known) else None,
    }


# ---------------------------------------------------------------------------------------------- text
#: the summary's columns: (header, width); every line fits 80 columns
COLUMNS = (
    ("model", 20),
    ("n", 3),
    ("GPUs", 4),
    ("wall", 6),
    ("GPU-h", 6),
    ("roll", 6),
    ("train", 6),
    ("eval", 6),
    ("labels", 6),
    ("official", 8),
)


def _hours(x: float | None) -> str:
    return "?" if x is None else (f"{x:.0f}" if x >= 100 else f"{x:.1f}")


def _thousands(x: float | None) -> str:
    return "?" if x is None else f"{x:,.0f}"


def _row(values: list[str], first: int = COLUMNS[0][1]) -> str:
    """One fixed-width row; the first column is `first` wide (the longest model name: never cut)."""
    head, *rest = zip(values, (w for _, w in COLUMNS), strict=True)
    return " ".join([f"{head[0]:<{first}}", *(f"{v:>{w}}" for v, w in rest)])


def summary_lines(cells: list[Any], costs: dict[str, CellCost | None], a: CostAssumptions) -> list[str]:
    """The cost block `plan` prints: one row per model and cost (cells that cost the same share a row),
    the sweep's totals, and the assumptions; nothing when no cell was estimated."""
    rows: dict[tuple[Any, ...], list[Any]] = {}
    for c in cells:
        cost = costs.get(c.id)
        if cost is not None:
            key = (c.config.model, cost)
            rows.setdefault(key, [c.config.model, 0, cost])[1] += 1
    if not rows:
        return []
    first = max(COLUMNS[0][1], *(len(str(r[0])) for r in rows.values()))
    lines = [
        "cost per cell, estimated in hours (GPU-h: GPUs x wall + a share of the labels)",
        _row([h for h, _ in COLUMNS], first),
    ]
    for model, n, cost in rows.values():
        g = cost.ours.gpu_hours()
        theirs = None if cost.official is None else cost.official.gpu_h
        values = [cost.ours.wall_h, cost.ours.gpu_h, g["rollout"], g["train"], g["eval"], g["labels"], theirs]
        lines.append(_row([model, str(n), str(cost.ours.gpus), *map(_hours, values)], first))
    lines += _over_notes(rows.values())
    t = totals(costs)
    lines.append(
        f"sweep: {t['gpu_h']:,.0f} GPU-h; in the official layout {_thousands(t['official_gpu_h'])} GPU-h "
        "(labels once)"
    )
    return lines + assumption_lines(a)


def _over_notes(rows: Any) -> list[str]:
    """A note for each model that costs more here than in the official layout, saying so, and where its
    colocated KV cache holds less than a rank's share of the rollout, the engine share that holds it all."""
    out, said = [], set()
    for model, _, cost in rows:
        theirs = cost.official
        if theirs is None or cost.ours.gpu_h <= theirs.gpu_h or model in said:
            continue
        said.add(model)
        out.append(f"{model}: above the official layout")
        if cost.kv_seqs < cost.seqs_per_gpu:
            share = math.ceil(cost.full_share * 100) / 100
            out[-1] += f"; its KV cache holds {max(cost.kv_seqs, 0):.0f} of {cost.seqs_per_gpu:.0f}"
            out.append(f"  sequences a GPU (train.vllm_gpu_memory_utilization {share:g} holds them all)")
    return out


def assumption_lines(a: CostAssumptions) -> list[str]:
    """The assumptions, short: what `plan` states under its cost block."""
    v = {k: f"{x:g}" for k, x in a.model_dump().items()}
    return [
        "assumed (sweep `cost:` or plan --assume KEY=VALUE; why: spurisweep/plan/cost.py)",
        f"  decode_tokens_per_s={v['decode_tokens_per_s']} (vLLM per GPU, 7B bf16, 128 seqs) "
        f"decode_batch={v['decode_batch']}",
        f"  train_tflops={v['train_tflops']} (achieved per GPU) pad_factor={v['pad_factor']} "
        "(trimmed micro-batches)",
        f"  prompt_tokens={v['prompt_tokens']} response_tokens={v['response_tokens']} "
        f"eval_response_tokens={v['eval_response_tokens']}",
        f"  label_response_tokens={v['label_response_tokens']}; not counted: weight syncs, grading, saves",
        "ours: every GPU colocated; rollout, training, evaluation in turn",
        f"official: half the GPUs train (packed), half serve vLLM at {DEDICATED_VLLM_MEMORY:g} and evaluate",
    ]
