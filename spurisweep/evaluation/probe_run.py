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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .. import artifacts, schema
from ..data import sets as data
from ..errors import ConfigError, suggest
from ..ids import short_hash
from ..models import families
from . import probe, reach

log = logging.getLogger(__name__)

#: the fields of every per-problem probe row (spurisweep.schema owns them; the store reads exactly these)
ROW_FIELDS = tuple(schema.PROBE_SAMPLE_COLUMNS)
#: bump when cutting, scoring or the prompt change meaning: every probe id changes with it
PROBE_VERSION = 1
#: tokens a continuation gets beyond the benchmark's own budget: it finishes the problem before solving it
#: (toy-memo cut at 40% ran out of its 64 tokens inside the \boxed{} of half of its answers)
EXTRA_TOKENS = 64
_CHAT = ("chat", "chat_boxed")


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
) -> list[dict[str, Any]]:
    """Probe a model (or a checkpoint) on benchmarks at fractions; returns each probe's metadata (with its
    `summary`), in (benchmark, fraction) order. Stored probes are read back, not computed again.

    `loaded` is an already loaded (model, tokenizer) of these weights (a training cell has one); without
    it the weights are loaded only when something is left to compute.
    """
    from filelock import FileLock

    from .generate import choose_backend, release_vllm

    fam = families.get(model)
    names = parse_benchmarks(benchmarks)
    fracs = probe.parse_fractions(fractions)
    template = prompt or fam.prompt
    protos = protocols(
        names, fracs, template=template, settings=settings, limit=limit, max_new_tokens=max_new_tokens
    )
    folder = artifacts.probes_dir(results)
    ids = {p: probe_id(model, model_path, checkpoint, p) for p in protos}
    metas = {p: stored_meta(folder, ids[p]) for p in protos}
    if all(m is not None for m in metas.values()):
        return [metas[p] for p in protos]
    folder.mkdir(parents=True, exist_ok=True)
    # one lock per model and weights: concurrent cells of one model wait here, then read what the first wrote
    lock = folder / f"model-{short_hash({'m': model, 'p': model_path, 'c': checkpoint}, 12)}.lock"
    with FileLock(str(lock)):
        metas = {p: stored_meta(folder, ids[p]) for p in protos}
        todo = [p for p in protos if metas[p] is None]
        if todo:
            chosen = choose_backend(backend)
            source = checkpoint or families.model_source(model, model_path)
            # offline without the weights or a benchmark: one line now, not the hub libraries' retries
            reach.check(models=[source], benchmarks=[(p.benchmark, p.path) for p in todo])
            mdl, tok = loaded if loaded is not None else _load(source, chosen)
            ident = {"model": model, "model_path": model_path, "checkpoint": checkpoint}
            try:
                for b in dict.fromkeys(p.benchmark for p in todo):
                    mine = [p for p in todo if p.benchmark == b]
                    done = _probe_benchmark(
                        mine, ids, ident, mdl, tok, source, chosen, folder, batch_size=batch_size, seed=seed
                    )
                    metas.update(done)
            finally:
                if chosen == "vllm":
                    release_vllm()  # the next phase (a cell's training, its engine) needs the memory
    return [metas[p] for p in protos]


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


def _load(source: str, backend: str) -> tuple[Any, Any]:
    if backend == "vllm":  # vLLM loads its own weights; the tokenizer encodes the prompts
        from transformers import AutoTokenizer

        return None, AutoTokenizer.from_pretrained(source)
    return families.load_model_and_tokenizer(source)


def _generate(
    prompts: list[str],
    prompt_ids: list[list[int]],
    answers: list[str],
    sampling: Any,
    weights: Any,
) -> Any:
    """Greedy continuations of every prompt, graded as they come (evaluation's batched generation and
    overlapped grading, run.generate_graded): the generations and the verdicts by prompt index."""
    from .run import generate_graded

    def pairs(indices: list[int], gens: list[list[Any]]) -> tuple[list[int], list[tuple[str, str]]]:
        return indices, [(g[0].text, answers[j]) for j, g in zip(indices, gens, strict=True)]

    return generate_graded(weights, prompts, prompt_ids, sampling, pairs)


def _rows(
    p: ProbeProtocol,
    pid: str,
    problems: list[Any],
    by_job: dict[tuple[ProbeProtocol, int], tuple[int, str, str]],
    gens: list[list[Any]],
    verdicts: dict[int, Any],
) -> list[dict[str, Any]]:
    """One row per problem of one probe: its continuation metrics and the verdict on its answer (the
    math-verify grader's; a problem too short to cut is a skipped row)."""
    rows = []
    for i, prob in enumerate(problems):
        hit = by_job.get((p, i))
        row: dict[str, Any] = dict.fromkeys(ROW_FIELDS)
        row.update(probe_id=pid, problem_id=prob.id, answer=prob.answer, skipped=hit is None)
        if hit is not None:
            j, prefix, remainder = hit
            g, v = gens[j][0], verdicts[j].math_verify
            row.update(prefix=prefix, remainder=remainder, response=g.text)
            row.update(probe.continuation_metrics(g.text, remainder))
            row.update(extracted=v.extracted, correct=v.correct, reason=v.reason)
            row.update(n_tokens=g.n_tokens, truncated=g.truncated)
        rows.append(row)
    return rows


def _probe_benchmark(
    protos: list[ProbeProtocol],
    ids: dict[ProbeProtocol, str],
    ident: dict[str, Any],
    mdl: Any,
    tok: Any,
    source: str,
    backend: str,
    folder: Path,
    *,
    batch_size: int | None,
    seed: int,
) -> dict[ProbeProtocol, dict[str, Any]]:
    """Every fraction of one benchmark in one batched generation; writes each probe's files."""
    from .generate import Sampling, encode_prompts
    from .run import Weights, versions_used

    t_start = time.perf_counter()
    first = protos[0]
    problems = data.load_benchmark(first.benchmark, path=first.path, limit=first.limit)
    data_source = data.benchmark_source(first.benchmark, first.path)
    if not problems:
        raise ConfigError(f"{first.benchmark}: no problems in {data_source}", field="benchmarks")
    head = template_head(first.prompt)
    jobs: list[tuple[ProbeProtocol, int, str, str]] = []  # (protocol, problem index, prefix, remainder)
    for p in protos:
        for i, prob in enumerate(problems):
            cut = probe.truncate(prob.problem, p.fraction)
            if cut is not None:
                jobs.append((p, i, *cut))
    prompts = [head + prefix for _, _, prefix, _ in jobs]
    prompt_ids = encode_prompts(tok, prompts)
    sampling = Sampling(1, 0.0, 1.0, first.max_new_tokens, seed)
    answers = [problems[i].answer for _, i, _, _ in jobs]
    weights = Weights(
        source, backend, model=None if backend == "vllm" else mdl, tokenizer=tok, batch_size=batch_size
    )
    graded = _generate(prompts, prompt_ids, answers, sampling, weights)
    gens, verdicts, t_gen, grade_busy = graded.gens, graded.verdicts, graded.generate_s, graded.grade_s
    by_job = {(p, i): (j, prefix, remainder) for j, (p, i, prefix, remainder) in enumerate(jobs)}
    tokens = sum(g[0].n_tokens for g in gens)
    out = {}
    for p in protos:
        pid = ids[p]
        rows = _rows(p, pid, problems, by_job, gens, verdicts)
        summary = probe.summary(rows)
        meta = {
            **ident,
            "probe_id": pid,
            "benchmark": p.benchmark,
            "fraction": p.fraction,
            "prompt": p.prompt,
            "prompt_head": head,
            "protocol": asdict(p),
            "data_source": data_source,
            "backend": backend,
            "seed": seed,
            "n_problems": len(problems),
            "n_skipped": summary["skipped"],
            # generation is shared by this benchmark's fractions: the figures are for the joint call
            "joint_fractions": [q.fraction for q in protos],
            "generated_tokens": tokens,
            "generate_s": round(t_gen, 3),
            "grade_s": round(grade_busy, 3),
            "wall_s": round(time.perf_counter() - t_start, 3),
            "tokens_per_s": round(tokens / t_gen, 2) if t_gen > 0 else None,
            "versions": versions_used(backend),
            "created": time.time(),
            "summary": summary,
        }
        artifacts.write_eval(folder, pid, rows, meta)
        log.info(
            "probe %s %s at %.2f: exact match %s, answer accuracy %s (%d probed, %d too short)",
            pid, p.benchmark, p.fraction, _pct(summary["exact_match"]), _pct(summary["accuracy"]),
            summary["n"], summary["skipped"],
        )  # fmt: skip
        out[p] = meta
    return out


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
        records.append(
            {"benchmark": m["benchmark"], "fraction": m["fraction"], **s, "probe_id": m["probe_id"]}
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
