"""What a cell asks of the cluster, checked before anything is queued: per-node totals against the sweep's
node shape, and the memory planner's per-GPU estimate against the GPU memory.

Plan side (no torch): the estimate comes from the model's config alone (spurisweep.plan.memory: the shipped
configs of the hub families, a local model folder's own config.json, the built cache folder of `tiny`
and the toy families), so nothing is downloaded. A cell whose model shape cannot be read (a local family
not built yet, an unknown hub id) gets no estimate rather than a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, SpurisweepError
from . import memory
from .spec import CellConfig

GB = 1e9


@dataclass(frozen=True)
class NodeTotals:
    """What one node of a cell's job holds: SLURM's --cpus-per-task is per task, memory per node."""

    nodes: int
    tasks: int
    gpus: int
    cpus: int | None
    mem_gb: float | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "tasks": self.tasks,
            "gpus": self.gpus,
            "cpus": self.cpus,
            "mem_gb": self.mem_gb,
        }

    def __str__(self) -> str:
        cpus = "?" if self.cpus is None else str(self.cpus)
        mem = "?" if self.mem_gb is None else f"{self.mem_gb:g} GB"
        per = f"{self.nodes} nodes x " if self.nodes > 1 else ""
        return f"{per}{self.tasks} tasks, {self.gpus} GPUs, {cpus} CPUs, {mem} per node"


def node_totals(cfg: CellConfig) -> NodeTotals:
    s = cfg.resources
    tasks = s.processes
    cpus = None if s.cpus_per_task is None else tasks * s.cpus_per_task
    return NodeTotals(s.nodes, tasks, s.gpus_per_node or 0, cpus, s.mem_gb)


def check_node(cfg: CellConfig) -> list[tuple[str, str]]:
    """(field, problem) for every request above the stated node shape."""
    n, t = cfg.resources.node, node_totals(cfg)
    out = []
    for field, asked, has, unit in (
        ("resources.gpus_per_node", t.gpus, n.gpus, "GPUs"),
        ("resources.cpus_per_task", t.cpus, n.cpus, "CPUs"),
        ("resources.mem_gb", t.mem_gb, n.mem_gb, "GB of memory"),
    ):
        if asked is not None and has is not None and asked > has:
            extra = (
                f" ({t.tasks} tasks x {cfg.resources.cpus_per_task})"
                if field == "resources.cpus_per_task"
                else ""
            )
            out.append((field, f"asks {asked:g} {unit} per node{extra}, a node has {has:g}"))
    return out


def estimate(cfg: CellConfig) -> memory.MemoryEstimate | None:
    """The planner's per-GPU estimate for a cell on the cluster's GPUs, or None when the model's shape
    cannot be read without downloading."""
    try:
        shape = memory.family_shape(cfg.model, cfg.model_path)
    except SpurisweepError:
        return None
    return memory.estimate(shape, **_settings(cfg))


def _settings(cfg: CellConfig) -> dict[str, Any]:
    """The planner's settings for a cell. `auto` generation means vLLM wherever the job has GPUs."""
    from .grpo import batch_shape

    t, world = cfg.train, cfg.resources.world_size
    vllm = t.generation_backend == "vllm" or (
        t.generation_backend == "auto" and bool(cfg.resources.gpus_per_node)
    )
    return dict(
        sharding=getattr(t, "sharding", "none"),
        world_size=world,
        micro_batch=batch_shape(t, cfg.clip, world).micro,
        prompt_len=t.max_prompt_length,
        completion_len=t.max_completion_length,
        grad_checkpointing=t.gradient_checkpointing,
        vllm_gpu_memory_utilization=t.vllm_gpu_memory_utilization if vllm else None,
        vllm_sleep=t.vllm_sleep,
        vllm_tp=t.vllm_tensor_parallel_size,
        gpu_mem_gb=cfg.resources.node.gpu_mem_gb,
    )


def check_cells(cells: list[Any], file: str | None = None) -> dict[str, memory.MemoryEstimate | None]:
    """Every cell against its node shape and GPU memory; the first cell that cannot run is a ConfigError
    naming the cell, the field, the numbers and what would make it fit. Returns the estimates by cell id
    (one estimate per distinct resource profile: a 72-cell sweep has a handful)."""
    cache: dict[tuple[Any, ...], memory.MemoryEstimate | None] = {}
    out = {}
    for c in cells:
        cfg = c.config
        for field, problem in check_node(cfg):
            raise ConfigError(f"cell {c.id} ({c.label}) {problem}", file=file, field=field)
        key = _profile(cfg)
        if key not in cache:
            cache[key] = estimate(cfg)
        est = out[c.id] = cache[key]
        if est is not None and not est.fits():
            fixes = "; ".join(_spec_words(s) for s in est.suggestions()[:3]) or "more GPUs or a smaller model"
            raise ConfigError(
                f"cell {c.id} ({c.label}) needs ~{est.peak / GB:.0f} GB per GPU, above "
                f"{cfg.resources.node.gpu_mem_gb:g} GB; would fit with: {fixes}",
                file=file,
                field="train.sharding"
                if getattr(cfg.train, "sharding", "none") == "none"
                else "train.micro_batch",
            )
    return out


#: the planner's setting names -> the sweep fields a researcher sets
SPEC_FIELDS = {
    "sharding": "train.sharding",
    "micro_batch": "train.micro_batch",
    "grad_checkpointing": "train.gradient_checkpointing",
    "world_size": "GPUs (resources.nodes x resources.gpus_per_node)",
    "vllm_gpu_memory_utilization": "train.vllm_gpu_memory_utilization",
    "vllm_sleep": "train.vllm_sleep",
    "vllm_tp": "train.vllm_tensor_parallel_size",
}


def _spec_words(s: memory.Suggestion) -> str:
    what = ", ".join(f"{SPEC_FIELDS.get(k, k)}: {v}" for k, v in s.change.items())
    return f"{what} (~{s.peak_gb:.0f} GB)"


def _profile(cfg: CellConfig) -> tuple[Any, ...]:
    """What the planner looks at, as a dict key (a tuple of scalars: JSON text cost more than the rest of
    planning a 20,000-cell sweep)."""
    return (cfg.model, cfg.model_path, *_settings(cfg).items(), *node_totals(cfg).as_dict().items())


def planner_table(cells: list[Any], estimates: dict[str, memory.MemoryEstimate | None]) -> Any:
    """One row per distinct resource profile: the model, how it trains, what a node must hold, and the
    planner's per-GPU estimate (weights + gradients + optimizer, activations, vLLM) against the GPU."""
    from ..analysis.render import Table

    rows, seen = [], {}
    for c in cells:
        cfg, est = c.config, estimates.get(c.id)
        key = _profile(cfg)
        if key in seen:
            seen[key][1] += 1
            continue
        t = node_totals(cfg)
        row = [
            cfg.model,
            getattr(cfg.train, "sharding", "none"),
            str(cfg.resources.world_size),
            f"{t.tasks}/{t.gpus}/{'?' if t.cpus is None else t.cpus}/{'?' if t.mem_gb is None else f'{t.mem_gb:g}'}",
            "-" if est is None else f"{est.peak / GB:.1f} / {cfg.resources.node.gpu_mem_gb:g}",
            "?" if est is None else ("yes" if est.fits() else "NO"),
        ]
        seen[key] = [row, 1]
        rows.append(key)
    header = ["model", "sharding", "ranks", "node: tasks/GPUs/CPUs/GB", "peak GB/GPU", "fits"]
    return Table(
        header=header + ["cells"],
        rows=[[*seen[k][0], str(seen[k][1])] for k in rows],
        title="memory planner (per GPU, from the model's config; '-': shape unknown here)",
        justify=["left", "left", "right", "right", "right", "left", "right"],
    )
