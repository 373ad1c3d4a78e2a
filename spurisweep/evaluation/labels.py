"""Majority-vote labels made by the base model (the `majority_vote` and `incorrect_label` rewards).

As in the paper: sample N completions per training prompt (default 64, temperature 1.0, top_p 1, no
chat template), extract each answer, and take the most common non-empty one as the label. The labelled
set keeps, per prompt, the majority label, its vote share, and whether it matches the ground truth;
`incorrect_label` trains only on prompts whose majority answer is wrong, toward that wrong answer.
Two ways to vote and judge (data.labelling):

* `equivalence` (spurisweep's default): answers extracted as the math-verify grader reads them and
  grouped by math equivalence (so `0.5`, `1/2` and `\\frac{1}{2}` vote together); a prompt with no
  answer has no label and is never trained on; "wrong" is judged by math-verify.
* `paper` (the official construction, RESEARCH.md "Rewards"): answers extracted and normalised by the
  official extractor (grading.paper.extract_answer), the label is the most frequent exact normalised
  string among the non-empty ones, ties to the first seen (:func:`majority_exact`); a prompt with none
  gets the empty label "" and stays in the set, as officially; "wrong" is the official grader's
  ``grade_answer(label, gold)`` False, which keeps empty labels and labels mangled by the normalisation.

Either way the first `holdout` prompts of the set a cell trains on (every labelled prompt for
majority_vote, the wrong ones for incorrect_label) are held out and never trained on: the official code
cuts its 100-prompt test split after that filter.

Labels are made once per (model, data set, labelling settings) under a file lock, into
results/_labels/<key>.jsonl (+ .json metadata saying how they were made), and shared by every cell that
needs them. Under `run` they are made by a label job of their own before the cells that train on them
(launch/labeljob.py); a cell that finds them missing (`debug`, a direct run_cell) makes them itself, under
the same lock. On vLLM one engine runs per GPU of the process (label_workers), each sampling a share of the
prompts in a process of its own; each prompt is seeded by its index, so the engines draw the samples one
engine draws (exactly on vLLM's CPU build; a GPU's kernels may round differently in another batch). The
metadata says how many engines made them and fingerprints the samples (samples_sha256).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import artifacts
from ..data import sets as data
from ..errors import DataError
from ..ids import short_hash
from ..models import families
from ..plan.spec import CellConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LabelSpec:
    model: str
    model_path: str | None
    dataset: str
    split: str = "train"
    limit: int | None = None
    samples: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 3072
    prompt: str = "plain"
    seed: int = 0
    labelling: str = "equivalence"
    holdout: int = 0

    def key(self) -> str:
        """The hash of every setting; one added later is left out while it holds the value that does what
        the code did before it existed, so label files made before keep their names."""
        d = {k: v for k, v in self.__dict__.items() if not (k in _LATE and v == _LATE[k])}
        return short_hash(d)

    @property
    def grader(self) -> str:
        """The grader that extracts the votes and judges the label against the gold."""
        return "paper" if self.labelling == "paper" else "math_verify"


#: LabelSpec fields added after label files were first written, with their then-implied values
_LATE: dict[str, Any] = {"labelling": "equivalence", "holdout": 0}


def spec_for(cfg: CellConfig) -> LabelSpec:
    d = cfg.data
    return LabelSpec(
        model=cfg.model,
        model_path=cfg.model_path,
        dataset=d.train,
        split=d.split,
        limit=d.limit,
        samples=d.label_samples,
        temperature=d.label_temperature,
        top_p=d.label_top_p,
        max_new_tokens=d.label_max_new_tokens or cfg.train.max_completion_length,
        prompt=d.label_prompt,
        labelling=d.labelling,
        holdout=d.label_holdout or 0,
    )


def needed(cfg: CellConfig) -> LabelSpec | None:
    """The labels a cell trains on when spurisweep makes them (majority_vote / incorrect_label without a
    ready labelled file); None for every other cell."""
    from .. import rewards

    if cfg.data.labels:
        return None
    kind = rewards.data_kind(rewards.parse(cfg.reward))
    return spec_for(cfg) if kind in ("majority", "incorrect") else None


def labels_path(results: Path, spec: LabelSpec) -> Path:
    return artifacts.labels_dir(results) / f"{spec.model}-{spec.key()}.jsonl"


def majority(answers: list[str | None], equal: Callable[[str, str], bool | None]) -> tuple[str | None, float]:
    """The most common non-empty answer (grouping equivalent answers) and its share of all votes."""
    counts = Counter(a.strip() for a in answers if a and a.strip())
    if not counts:
        return None, 0.0
    groups: list[list[Any]] = []  # [representative, votes]
    for ans, n in counts.most_common():
        for g in groups:
            if ans == g[0] or equal(ans, g[0]):
                g[1] += n
                break
        else:
            groups.append([ans, n])
    rep, votes = max(groups, key=lambda g: g[1])  # ties: the first (most common single spelling) wins
    return rep, votes / len(answers)


def majority_exact(answers: list[str]) -> tuple[str, float]:
    """The official vote: the most frequent exact string among the non-empty answers (already extracted
    and normalised), ties to the first seen; "" when none is non-empty. Returns it and its share of all
    votes. (Counter.most_common orders equal counts by first appearance, which is the tie rule.)"""
    counts = Counter(a for a in answers if a)
    if not counts:
        return "", 0.0
    label, votes = counts.most_common(1)[0]
    return label, votes / len(answers)


def vote(spec: LabelSpec, texts: list[str], gold: str) -> dict[str, Any]:
    """One prompt's label from its sampled texts, by the spec's labelling: the label, its vote share and
    whether it matches the gold (None when the comparison could not be made)."""
    from ..grading import answers_equal

    if spec.labelling == "paper":
        from ..grading.paper import extract_answer as extract_paper

        label, share = majority_exact([extract_paper(t) for t in texts])
        return {
            "answer": label,
            "vote_share": share,
            "matches_gold": answers_equal(label, gold, grader="paper"),
        }
    from ..grading import extract_answer

    label, share = majority([extract_answer(t) for t in texts], answers_equal)
    match = None if label is None else answers_equal(label, gold)
    return {"answer": label, "vote_share": share, "matches_gold": match}


def select(rows: list[dict[str, Any]], spec: LabelSpec, *, incorrect: bool) -> list[dict[str, Any]]:
    """The rows a majority_vote (incorrect=False) or incorrect_label cell trains on, holdout removed.

    Under `paper` labelling an empty label is a label (the official set keeps it; the cell's grader then
    finds no gold to compare with, so those prompts carry no reward signal); under `equivalence` a prompt
    without a majority answer is dropped. The holdout is cut after this filter, as the official code."""
    if spec.labelling == "paper":
        chosen = [r for r in rows if r["answer"] is not None]
    else:
        chosen = [r for r in rows if r["answer"]]
    if incorrect:
        chosen = [r for r in chosen if r["matches_gold"] is False]
    return chosen[spec.holdout :]


def make_labels(
    spec: LabelSpec,
    out: Path,
    *,
    progress: Callable[[int], None] | None = None,
    batch_size: int | None = None,
    backend: str = "auto",
    engines: int | None = None,
) -> Path:
    """Sample, vote and write the labelled set (atomically; metadata last). `backend` as in
    generate.choose_backend; the labels' key does not include it (the same spec on either backend is the
    same labels, sampled by another engine). On vLLM, `engines` engines (label_workers.engine_count: by
    default one per visible GPU) each sample a share of the prompts in a process of their own; every
    prompt is seeded by its index, not by its engine."""
    from . import reach
    from .generate import choose_backend

    backend = choose_backend(backend)
    # offline without the model or the data set: one line now, not the hub libraries' retries
    reach.check(models=[families.model_source(spec.model, spec.model_path)], datasets=[spec.dataset])
    problems = data.load_problems(spec.dataset, split=spec.split, limit=spec.limit)
    t0 = time.time()
    if backend == "vllm":
        labelled, engines = _label_vllm(spec, problems, engines, progress)
    else:
        labelled, engines = _label_transformers(spec, problems, batch_size, progress), 1
    rows = [row for row, _ in labelled]
    meta = {
        **spec.__dict__,  # how they were made: labelling, prompt, samples, sampling, holdout, ...
        "grader": spec.grader,
        "key": spec.key(),
        "backend": backend,
        "engines": engines,
        "problems": len(rows),
        "labelled": sum(bool(r["answer"]) for r in rows),
        "majority_correct": sum(bool(r["matches_gold"]) for r in rows),
        "samples_sha256": _combined([d for _, d in labelled]),
        "seconds": round(time.time() - t0, 1),
    }
    artifacts.atomic_write_jsonl(out, rows)
    artifacts.atomic_write_json(out.with_suffix(".json"), meta)
    return out


def _sampling(spec: LabelSpec) -> Any:
    from .generate import Sampling

    return Sampling(spec.samples, spec.temperature, spec.top_p, spec.max_new_tokens, spec.seed)


def label_row(spec: LabelSpec, problem: data.Problem, gens: list[Any]) -> tuple[dict[str, Any], str]:
    """One prompt's labels row from its generations, and the digest of its samples (label_workers.digest).
    Module-level, so label_workers' engine processes run it where the samples are."""
    from .engines import digest

    texts = [g.text for g in gens]
    voted = vote(spec, texts, problem.answer)
    row = {
        "id": problem.id,
        "problem": problem.problem,
        "answer": voted["answer"],
        "gold": problem.answer,
        "vote_share": voted["vote_share"],
        "matches_gold": voted["matches_gold"],
        "samples": len(gens),
    }
    return row, digest(texts)


def _combined(digests: list[str]) -> str:
    """The digest of every prompt's samples, in prompt order (equal iff two runs drew the same samples)."""
    import hashlib

    return hashlib.sha256("".join(digests).encode()).hexdigest()


def _label_transformers(
    spec: LabelSpec,
    problems: list[data.Problem],
    batch_size: int | None,
    progress: Callable[[int], None] | None,
) -> list[tuple[dict[str, Any], str]]:
    from .generate import generate_transformers

    model, tok = families.load_model_and_tokenizer(families.model_source(spec.model, spec.model_path))
    prompts = [families.render_prompt(tok, spec.prompt, p.problem) for p in problems]
    gens = generate_transformers(
        model, tok, prompts, _sampling(spec), batch_size=batch_size, progress=progress
    )
    return [label_row(spec, p, gs) for p, gs in zip(problems, gens, strict=True)]


def _label_vllm(
    spec: LabelSpec, problems: list[data.Problem], engines: int | None, progress: Callable[[int], None] | None
) -> tuple[list[tuple[dict[str, Any], str]], int]:
    """The rows (and sample digests) on vLLM, and how many engines made them: one in this process, or
    several in processes of their own (label_workers), whose rows are merged in prompt order."""
    import functools

    from transformers import AutoTokenizer

    from . import engines as label_workers
    from .generate import generate_vllm, release_vllm

    source = families.model_source(spec.model, spec.model_path)
    tok = AutoTokenizer.from_pretrained(source)
    prompts = [families.render_prompt(tok, spec.prompt, p.problem) for p in problems]
    n = min(label_workers.engine_count(engines), max(len(prompts), 1))
    if n == 1:
        try:
            gens = generate_vllm(source, prompts, _sampling(spec), tokenizer=tok)
        finally:
            release_vllm()  # labels are made before training: the cells need the memory
        return [label_row(spec, p, gs) for p, gs in zip(problems, gens, strict=True)], 1
    reduce = functools.partial(label_row, spec)
    shares = label_workers.generate_shares(
        source, prompts, _sampling(spec), engines=n, reduce=reduce, extras=problems, progress=progress
    )
    return label_workers.merge(len(prompts), [(s.indices, s.results) for s in shares]), n


def ensure_labels(results: Path, spec: LabelSpec) -> Path:
    """The labels file for this spec, made first if missing (once, whoever asks first)."""
    from filelock import FileLock

    out = labels_path(results, spec)
    if out.with_suffix(".json").exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):
        if not out.with_suffix(".json").exists():
            log.info(
                "making majority-vote labels for %s on %s (%d samples per prompt)",
                spec.model,
                spec.dataset,
                spec.samples,
            )
            make_labels(spec, out)
    return out


def labelled_problems(cfg: CellConfig, results: Path, *, incorrect: bool) -> list[data.Problem]:
    """The training set of a majority_vote (all labelled prompts) or incorrect_label cell (wrong ones)."""
    if cfg.data.labels:  # a ready labelled file: its answer field is the label
        probs = data.load_problems(cfg.data.labels, limit=cfg.data.limit)
        return probs
    spec = spec_for(cfg)
    path = ensure_labels(results, spec)
    rows = artifacts.read_jsonl(path)
    rows = [r for r in rows if "problem" in r and "id" in r]  # a damaged row is skipped, not a KeyError
    keep = select(rows, spec, incorrect=incorrect)
    if not keep:
        what = "whose majority answer is wrong" if incorrect else "with a majority answer"
        held = f", after holding out the first {spec.holdout}" if spec.holdout else ""
        raise DataError(
            f"{path}: no training prompt {what} ({len(rows)} labelled{held}); more prompts or samples needed"
        )
    return [data.Problem(id=str(r["id"]), problem=r["problem"], answer=str(r["answer"])) for r in keep]
