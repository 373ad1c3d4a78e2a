"""Running the memorisation probe: cut, generate greedily, score, grade, store (RESEARCH.md, "Is the gain
real? Contamination"). The pure parts (cutting, scoring, summaries) are spurisweep.evaluation.probe.

What the model sees. The study feeds the partial problem and greedy-decodes, so a probe prompt is a
*completion*, never an instruction: the text of the family's prompt template before `{problem}` (the `qa`
template's "Question: ", the `r1` template's preamble up to "User: ", nothing for `plain`) followed by the
cut problem, and nothing after it (no "\\nAnswer:", no boxed instruction). A chat template would close the
user's turn right after the cut, so for `chat` / `chat_boxed` the cut problem is given as raw text, the
study's base-model setup. The greedy continuation is expected to finish the problem and then, often, to
solve it: its first tokens are compared with the true remainder (exact match, ROUGE-L: probe.py), and the
whole continuation is graded against the answer with the cells' grader (grading.grade_batch), the
partial-prompt answer accuracy.

Generation is evaluation's: the same backends (generate.choose_backend: vLLM when installed, else batched
transformers), prompt encoding and stopping; greedy, one sample, the benchmark protocol's max_new_tokens
plus EXTRA_TOKENS (the continuation first finishes the problem) unless set. All missing fractions of one
benchmark generate in one batched call, and grading overlaps generation (run.generate_graded), so a
probe costs about what an evaluation of the same prompts does.

Storage. One probe is (model, weights, checkpoint, benchmark, fraction, protocol); its id is "probe-" +
ids.short_hash of those and its files are results/_probes/<probe_id>.jsonl (one row per problem,
schema.PROBE_SAMPLE_COLUMNS; a problem too short to cut is a row with `skipped` true) and then .json (the
metadata, written last: its presence means the probe is complete). A stored probe is never computed again,
and computing happens under one file lock per model and weights, so concurrent cells that ask for their
untrained model's probe (`ensure_probe`) compute it once, like a shared baseline.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from .. import artifacts, schema
from ..data import sets as data
from ..errors import ConfigError, suggest
from ..ids import short_hash
from ..models import families
from . import probe
from .run import (
    SINGLE,
    Engines,
    Meta,
    Placement,
    Progress,
    Share,
    Weights,
    check_placement,
    generate_graded,
    versions_used,
)

log = logging.getLogger(__name__)

#: the fields of every per-problem probe row (spurisweep.schema owns them; the store reads exactly these)
ROW_FIELDS = tuple(schema.PROBE_SAMPLE_COLUMNS)
#: bump when cutting, scoring or the prompt change meaning: every probe id changes with it
PROBE_VERSION = 1
#: tokens a continuation gets beyond the benchmark's own budget: it finishes the problem before solving it
#: (toy-memo cut at 40% ran out of its 64 tokens inside the \boxed{} of half of its answers)
EXTRA_TOKENS = 64
_CHAT = ("chat", "chat_boxed")
#: a probe summary's fields in the order `--format csv/json` lists them
SUMMARY_FIELDS = ("n", "skipped", "exact_match", "rouge_l", "accuracy", "ungradable")


@dataclass(frozen=True)
class ProbeProtocol:
    """What makes two probes the same, besides the model: the benchmark data, the cut and the decoding."""

    benchmark: str
    fraction: float
    prompt: str  # the template whose head precedes the cut problem
    max_new_tokens: int
    path: str | None = None  # the benchmark file, as for its evaluation (eval.protocols.<bench>.path)
    limit: int | None = None
    min_words: int = probe.MIN_WORDS
    version: int = PROBE_VERSION


def probe_id(model: str, model_path: str | None, checkpoint: str | None, proto: ProbeProtocol) -> str:
    """The probe's id: one per (model, weights, checkpoint, protocol), shared by every cell and sweep."""
    where = checkpoint
    if checkpoint and Path(checkpoint).expanduser().exists():
        where = str(Path(checkpoint).expanduser().resolve())
    return "probe-" + short_hash(
        {"model": model, "model_path": model_path, "checkpoint": where, "protocol": asdict(proto)}
    )


# ---------------------------------------------------------------------------------------------- inputs
def parse_benchmarks(value: str | Iterable[str]) -> list[str]:
    """Benchmark names from `math500,aime24` or a list: known, at least one; ConfigError naming `benchmarks`."""
    names = (
        [b.strip() for b in value.split(",")] if isinstance(value, str) else [str(b).strip() for b in value]
    )
    names = list(dict.fromkeys(b for b in names if b))
    if not names:
        raise ConfigError("no benchmark given; expected e.g. math500,randcalc", field="benchmarks")
    for b in names:
        if b not in data.BENCHMARKS:
            raise ConfigError(suggest(b, list(data.BENCHMARKS)), field="benchmarks")
    return names


def template_head(template: str) -> str:
    """The text a probe prompt starts with: the template up to `{problem}` ('' for chat templates)."""
    if template not in families.PROMPTS:
        raise ConfigError(suggest(template, list(families.PROMPTS)), field="prompt")
    if template in _CHAT:
        return ""
    return families.PROMPTS[template].split("{problem}", 1)[0]


def protocols(
    benchmarks: Sequence[str],
    fractions: Sequence[float],
    *,
    template: str,
    settings: Any = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
) -> list[ProbeProtocol]:
    """One protocol per (benchmark, fraction), in that order. The benchmark's file, limit and token budget
    follow its evaluation (the benchmark's protocol with `settings.protocols` overrides: spec.EvalSettings);
    `limit` and `max_new_tokens` override both; by default a continuation gets EXTRA_TOKENS more than the
    evaluation, to finish the problem before solving it."""
    template_head(template)
    out = []
    for b in benchmarks:
        base = data.get_benchmark(b).protocol
        ov = settings.protocols.get(b) if settings is not None else None
        path = ov.path if ov is not None else None
        lim = limit or (ov.limit if ov is not None and ov.limit else None) or getattr(settings, "limit", None)
        own = (ov.max_new_tokens if ov is not None else None) or base.max_new_tokens
        tokens = max_new_tokens or own + EXTRA_TOKENS
        for f in probe.parse_fractions(fractions):
            out.append(ProbeProtocol(b, f, template, int(tokens), path, lim))
    return out


def stored_meta(folder: Path, pid: str) -> dict[str, Any] | None:
    if not artifacts.eval_complete(folder, pid):
        return None
    return artifacts.read_json(artifacts.eval_files(folder, pid)[1])


# ---------------------------------------------------------------------------------------------- the job
@dataclass(frozen=True)
class ProbeJob:
    """The probes of one benchmark at several fractions, as one job of evaluation.run (`run(job)`): every
    fraction's cut problems generate in one batched call (items: each (fraction, problem) that can be cut,
    fraction by fraction), graded as they come; `write` writes one probe per fraction. `protos` are the
    probes asked for, `todo` those this job makes (default: all; `pending` drops the stored ones)."""

    protos: tuple[ProbeProtocol, ...]
    ids: tuple[str, ...]  # each protocol's probe id
    ident: Meta  # model, model_path, checkpoint: recorded in each probe's metadata
    folder: Path
    seed: int
    weights: Weights
    placement: Placement = SINGLE
    todo: tuple[ProbeProtocol, ...] | None = None

    def __post_init__(self) -> None:
        if len({p.benchmark for p in self.protos}) != 1 or len(self.ids) != len(self.protos):
            raise ValueError("a probe job is one benchmark's protocols, each with its id")
        check_placement(self.placement, self.weights)
        object.__setattr__(self, "folder", Path(self.folder))
        if not isinstance(self.ident, Meta):
            object.__setattr__(self, "ident", Meta(self.ident))

    @property
    def making(self) -> tuple[ProbeProtocol, ...]:
        return self.protos if self.todo is None else self.todo

    def id_of(self, p: ProbeProtocol) -> str:
        return self.ids[self.protos.index(p)]

    # the Job interface (evaluation.run.Job)
    @property
    def key(self) -> str:
        return "probe-joint-" + short_hash([self.id_of(p) for p in self.making])

    def stored(self) -> bool:
        return all(stored_meta(self.folder, self.id_of(p)) is not None for p in self.making)

    def result(self) -> list[dict[str, Any]]:
        return [stored_meta(self.folder, pid) for pid in self.ids]  # type: ignore[misc]

    def pending(self) -> ProbeJob:
        return replace(
            self, todo=tuple(p for p in self.making if stored_meta(self.folder, self.id_of(p)) is None)
        )

    def lock_file(self) -> Path:
        # one lock per model and weights: concurrent cells of one model wait, then read what the first wrote
        ident = self.ident
        who = {
            "m": ident["model"],
            "p": ident["model_path"],
            "c": ident["checkpoint"],
        }  # the name it always had
        return self.folder / f"model-{short_hash(who, 12)}.lock"

    def needs(self) -> dict[str, list[Any]]:
        return {"benchmarks": [(p.benchmark, p.path) for p in self.making]}

    def share(self, rank: int, world: int, progress: Progress | None = None) -> Share:
        """Generate and grade this process's share of the items (greedy: one continuation each)."""
        from .engines import share_of
        from .generate import Sampling, encode_prompts

        weights = self.weights.loaded()
        first = self.making[0]
        problems = self.problems()
        items = self.items(problems)
        mine = share_of(len(items), rank, world)
        head = template_head(first.prompt)
        prompts = [head + items[j][2] for j in mine]
        answers = [problems[items[j][1]].answer for j in mine]

        def pairs(local: list[int], gens: list[list[Any]]) -> tuple[list[int], list[tuple[str, str]]]:
            return local, [(g[0].text, answers[k]) for k, g in zip(local, gens, strict=True)]

        graded = generate_graded(
            weights,
            prompts,
            encode_prompts(weights.tokenizer, prompts),
            Sampling(1, 0.0, 1.0, first.max_new_tokens, self.seed),
            pairs,
            keys=mine,
            progress=progress,
        )
        rows = []
        for k, g in enumerate(graded.gens):
            v = graded.verdicts[k].math_verify
            rows.append(
                {"text": g[0].text, "n_tokens": g[0].n_tokens, "truncated": g[0].truncated}
                | {"extracted": v.extracted, "correct": v.correct, "reason": v.reason}
            )
        return Share(mine, rows, graded.generate_s, graded.grade_s, graded.grade_wait_s)

    def write(self, shares: list[Share], wall_s: float) -> list[dict[str, Any]]:
        """Each fraction's probe from the merged items (metadata last), then every asked probe's metadata."""
        from .engines import merge

        problems = self.problems()
        items = self.items(problems)
        merged = merge(len(items), [(sh.indices, sh.rows) for sh in shares])
        t_gen = max(sh.generate_s for sh in shares)
        tokens = sum(r["n_tokens"] for r in merged)
        shared = {
            "prompt_head": template_head(self.making[0].prompt),
            "data_source": data.benchmark_source(self.making[0].benchmark, self.making[0].path),
            "backend": self.weights.backend,
            "seed": self.seed,
            "n_problems": len(problems),
            # generation is shared by this benchmark's fractions: the figures are for the joint call
            "joint_fractions": [q.fraction for q in self.making],
            "generated_tokens": tokens,
            "generate_s": round(t_gen, 3),
            "grade_s": round(max(sh.grade_s for sh in shares), 3),
            "wall_s": round(wall_s, 3),
            "tokens_per_s": round(tokens / t_gen, 2) if t_gen > 0 else None,
            "versions": versions_used(self.weights.backend),
        }
        if isinstance(self.placement, Engines):  # as an evaluation's metadata says it (the rows are the same)
            shared["engines"] = self.placement.count
        by_item = {(p, i): (j, prefix, rest) for j, (p, i, prefix, rest) in enumerate(items)}
        for p in self.making:
            _write_probe(self, p, problems, by_item, merged, shared)
        return self.result()

    # the items
    def problems(self) -> list[Any]:
        first = self.making[0]
        problems = data.load_benchmark(first.benchmark, path=first.path, limit=first.limit)
        if not problems:
            where = data.benchmark_source(first.benchmark, first.path)
            raise ConfigError(f"{first.benchmark}: no problems in {where}", field="benchmarks")
        return problems

    def items(self, problems: list[Any]) -> list[tuple[ProbeProtocol, int, str, str]]:
        """(protocol, problem index, prefix, remainder) of every problem each fraction can cut, in order."""
        out = []
        for p in self.making:
            for i, prob in enumerate(problems):
                cut = probe.truncate(prob.problem, p.fraction)
                if cut is not None:
                    out.append((p, i, *cut))
        return out


#: the joint generation's fields a probe's metadata lists first (the rest follow n_skipped)
_FIRST = ("prompt_head", "data_source", "backend", "seed", "n_problems")


def _write_probe(
    job: ProbeJob,
    p: ProbeProtocol,
    problems: list[Any],
    by_item: dict[tuple[ProbeProtocol, int], tuple[int, str, str]],
    merged: list[dict[str, Any]],
    shared: dict[str, Any],
) -> None:
    pid = job.id_of(p)
    rows = _rows(p, pid, problems, by_item, merged)
    summary = probe.summary(rows)
    meta = {
        **job.ident,
        "probe_id": pid,
        "benchmark": p.benchmark,
        "fraction": p.fraction,
        "prompt": p.prompt,
        "prompt_head": shared["prompt_head"],
        "protocol": asdict(p),
        "data_source": shared["data_source"],
        "backend": shared["backend"],
        "seed": shared["seed"],
        "n_problems": shared["n_problems"],
        "n_skipped": summary["skipped"],
        **{k: v for k, v in shared.items() if k not in _FIRST},
        "created": time.time(),
        "summary": summary,
    }
    artifacts.write_eval(job.folder, pid, rows, meta)
    log.info(
        "probe %s %s at %.2f: exact match %s, answer accuracy %s (%d probed, %d too short)",
        pid, p.benchmark, p.fraction, _pct(summary["exact_match"]), _pct(summary["accuracy"]),
        summary["n"], summary["skipped"],
    )  # fmt: skip


def _rows(
    p: ProbeProtocol,
    pid: str,
    problems: list[Any],
    by_item: dict[tuple[ProbeProtocol, int], tuple[int, str, str]],
    merged: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """One row per problem of one probe: its continuation metrics and the verdict on its answer (the
    math-verify grader's; a problem too short to cut is a skipped row)."""
    rows = []
    for i, prob in enumerate(problems):
        hit = by_item.get((p, i))
        row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
        row.update(probe_id=pid, problem_id=prob.id, answer=prob.answer, skipped=hit is None)
        if hit is not None:
            j, prefix, remainder = hit
            g = merged[j]
            row.update(prefix=prefix, remainder=remainder, response=g["text"])
            row.update(probe.continuation_metrics(g["text"], remainder))
            row.update(extracted=g["extracted"], correct=g["correct"], reason=g["reason"])
            row.update(n_tokens=g["n_tokens"], truncated=g["truncated"])
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- running
def run_probes(
    *,
    model: str,
    benchmarks: str | Sequence[str],
    results: Path,
    fractions: str | Sequence[float] = probe.DEFAULT_FRACTIONS,
    model_path: str | None = None,
    checkpoint: str | None = None,
    prompt: str | None = None,
    settings: Any = None,
    limit: int | None = None,
    max_new_tokens: int | None = None,
    backend: str = "auto",
    batch_size: int | None = None,
    seed: int = 0,
    loaded: tuple[Any, Any] | None = None,
    engines: int | None = None,
) -> list[dict[str, Any]]:
    """Probe a model (or a checkpoint) on benchmarks at fractions; returns each probe's metadata (with its
    `summary`), in (benchmark, fraction) order. Stored probes are read back, not computed again.

    One ProbeJob per benchmark, run by evaluation.run.run. `loaded` is an already loaded (model, tokenizer)
    of these weights (a training cell has one); without it the weights are loaded only when something is
    left to compute, once for every benchmark. With vLLM, `engines` engines (engines.engine_count: by default
    one per visible GPU) each probe a share of the cut problems in a process of their own.
    """
    from . import run as evaluate
    from .generate import choose_backend

    fam = families.get(model)
    names = parse_benchmarks(benchmarks)
    fracs = probe.parse_fractions(fractions)
    template = prompt or fam.prompt
    protos = protocols(
        names, fracs, template=template, settings=settings, limit=limit, max_new_tokens=max_new_tokens
    )
    folder = artifacts.probes_dir(results)
    ids = {p: probe_id(model, model_path, checkpoint, p) for p in protos}
    stored = {p: stored_meta(folder, ids[p]) for p in protos}
    if all(m is not None for m in stored.values()):
        return [stored[p] for p in protos]  # type: ignore[misc]
    chosen = choose_backend(backend)
    source = checkpoint or families.model_source(model, model_path)
    mdl, tok = loaded if loaded is not None and chosen != "vllm" else (None, None)
    weights = evaluate.Weights(source, chosen, model=mdl, tokenizer=tok, batch_size=batch_size)
    ident = {"model": model, "model_path": model_path, "checkpoint": checkpoint}
    placement: Placement = SINGLE
    if chosen == "vllm":
        from .engines import engine_count

        n = engine_count(engines, env=False)
        placement = Engines(n) if n > 1 else SINGLE
    jobs = []
    for b in names:
        mine = tuple(p for p in protos if p.benchmark == b)
        jobs.append(ProbeJob(mine, tuple(ids[p] for p in mine), ident, folder, seed, weights, placement))
    with evaluate.loaded(jobs) as ready:
        metas = [m for job in ready for m in evaluate.run(job)]
    return metas


def ensure_probe(
    model: str,
    model_path: str | None,
    benchmarks: Sequence[str],
    fractions: Sequence[float],
    results: Path,
    *,
    settings: Any = None,
    prompt: str | None = None,
    backend: str = "auto",
    max_new_tokens: int | None = None,
    loaded: tuple[Any, Any] | None = None,
) -> list[dict[str, Any]]:
    """The untrained model's probe for a sweep cell (`eval.probe: true`): computed once per model, weights
    and protocol, under a file lock, and shared by every cell and sweep like a baseline evaluation.
    `settings` is the cell's spec.EvalSettings (its protocols choose each benchmark's file and limit)."""
    return run_probes(
        model=model,
        model_path=model_path,
        benchmarks=list(benchmarks),
        fractions=list(fractions),
        results=results,
        prompt=prompt,
        settings=settings,
        backend=backend,
        max_new_tokens=max_new_tokens,
        batch_size=getattr(settings, "batch_size", None),
        loaded=loaded,
    )


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


# ---------------------------------------------------------------------------------------------- showing
def table(metas: list[dict[str, Any]]) -> Any:
    """The probes as an analysis.render.Table: one row per benchmark and fraction."""
    from ..analysis import render as rnd

    rows, records = [], []
    for m in metas:
        s = m["summary"]
        rouge = "-" if s["rouge_l"] is None else f"{s['rouge_l']:.3f}"
        rows.append(
            [
                m["benchmark"],
                f"{m['fraction']:g}",
                str(s["n"]),
                str(s["skipped"]),
                _pct(s["exact_match"]),
                rouge,
                _pct(s["accuracy"]),
            ]
        )
        # the summary's fields in probe.summary's order, whether it was just made or read back (sorted)
        fields = {k: s[k] for k in SUMMARY_FIELDS if k in s} | s
        records.append(
            {"benchmark": m["benchmark"], "fraction": m["fraction"], **fields, "probe_id": m["probe_id"]}
        )
    who = metas[0]["checkpoint"] or metas[0]["model"] if metas else "-"
    hdr = ["benchmark", "fraction", "n", "skipped", "exact match", "ROUGE-L", "answer accuracy"]
    return rnd.Table(
        hdr,
        rows,
        f"memorisation probe of {who}: the first fraction of each problem, greedy continuation",
        [
            "exact match: the continuation reproduces the rest of the problem; ROUGE-L: rouge-score F "
            "against it; answer accuracy: the answer reached from the cut problem; skipped: too short to cut"
        ],
        records=records,
        justify=["left", "right", "right", "right", "right", "right", "right"],
    )
