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
the same lock. Making them is a `LabellingJob` of evaluation.run, run like an evaluation: on vLLM one engine
per GPU of the process (`Engines`, engines.py), each sampling a share of the prompts in a process of its own
and voting there; each prompt is seeded by its index, so the engines draw the samples one engine draws (exactly on vLLM's CPU build; a GPU's kernels may round differently in another batch). The
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
from .run import SINGLE, Engines, Placement, Progress, Share, Weights, check_placement, generate, loaded, run

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
    force: bool = True,
) -> Path:
    """Sample, vote and write the labelled set (atomically; metadata last), as a LabellingJob of
    evaluation.run: under the labels' file lock, so concurrent callers make them once. `force` (the
    default, as `spurisweep label --force` asks) makes them again when they exist. `backend` as in
    generate.choose_backend; the labels' key does not include it (the same spec on either backend is the
    same labels, sampled by another engine). On vLLM, `engines` engines (engines.engine_count: by default
    one per visible GPU) each sample a share of the prompts in a process of their own; every prompt is
    seeded by its index, not by its engine."""
    from .engines import engine_count
    from .generate import choose_backend

    backend = choose_backend(backend)
    source = families.model_source(spec.model, spec.model_path)
    placement: Placement = SINGLE
    if backend == "vllm":
        n = min(engine_count(engines), max(len(_problems(spec)), 1))
        placement = Engines(n) if n > 1 else SINGLE
    job = LabellingJob(
        spec, Path(out), Weights(source, backend, batch_size=batch_size), placement, force=force
    )
    with loaded([job]) as (ready,):
        return run(ready, progress=progress)


@dataclass(frozen=True)
class LabellingJob:
    """Majority-vote labels of one training set, as a job of evaluation.run (`run(job)`): the items are the
    set's prompts; a share samples its prompts and votes where the samples are (`label_row`), so only the
    rows and the samples' digests travel back; `write` merges them in prompt order. `force`: made again even
    when stored (`spurisweep label --force`). Not launch.LabelJob: that is the submitit job whose node runs
    `ensure_labels`, and so this."""

    spec: LabelSpec
    out: Path
    weights: Weights
    placement: Placement = SINGLE
    force: bool = False

    def __post_init__(self) -> None:
        check_placement(self.placement, self.weights)

    # the Job interface (evaluation.run.Job)
    @property
    def folder(self) -> Path:
        return self.out.parent

    @property
    def key(self) -> str:
        return self.out.stem

    def stored(self) -> bool:
        return not self.force and self.out.with_suffix(".json").exists()

    def result(self) -> Path:
        return self.out

    def pending(self) -> LabellingJob:
        return self

    def lock_file(self) -> Path:
        return Path(str(self.out) + ".lock")

    def needs(self) -> dict[str, list[Any]]:
        return {"datasets": [self.spec.dataset]}

    def share(self, rank: int, world: int, progress: Progress | None = None) -> Share:
        """Sample and vote this process's share of the prompts (each keyed by its index in the set)."""
        from .engines import share_of

        spec, weights = self.spec, self.weights.loaded()
        problems = _problems(spec)
        mine = share_of(len(problems), rank, world)
        prompts = [families.render_prompt(weights.tokenizer, spec.prompt, problems[i].problem) for i in mine]
        t0 = time.perf_counter()
        gens = generate(weights, prompts, None, _sampling(spec), keys=mine, progress=progress)
        t_gen = time.perf_counter() - t0
        rows = [
            dict(zip(("row", "digest"), label_row(spec, problems[i], g), strict=True))
            for i, g in zip(mine, gens, strict=True)
        ]
        return Share(mine, rows, t_gen, time.perf_counter() - t0 - t_gen, 0.0)

    def write(self, shares: list[Share], wall_s: float) -> Path:
        from .engines import merge

        spec = self.spec
        labelled = merge(sum(len(sh.indices) for sh in shares), [(sh.indices, sh.rows) for sh in shares])
        rows = [x["row"] for x in labelled]
        meta = {
            **spec.__dict__,  # how they were made: labelling, prompt, samples, sampling, holdout, ...
            "grader": spec.grader,
            "key": spec.key(),
            "backend": self.weights.backend,
            "engines": getattr(self.placement, "count", 1),
            "problems": len(rows),
            "labelled": sum(bool(r["answer"]) for r in rows),
            "majority_correct": sum(bool(r["matches_gold"]) for r in rows),
            "samples_sha256": _combined([x["digest"] for x in labelled]),
            "seconds": round(wall_s, 1),
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        artifacts.atomic_write_jsonl(self.out, rows)
        artifacts.atomic_write_json(self.out.with_suffix(".json"), meta)
        return self.out


def _problems(spec: LabelSpec) -> list[data.Problem]:
    return data.load_problems(spec.dataset, split=spec.split, limit=spec.limit)


def _sampling(spec: LabelSpec) -> Any:
    from .generate import Sampling

    return Sampling(spec.samples, spec.temperature, spec.top_p, spec.max_new_tokens, spec.seed)


def label_row(spec: LabelSpec, problem: data.Problem, gens: list[Any]) -> tuple[dict[str, Any], str]:
    """One prompt's labels row from its generations, and the digest of its samples (engines.digest)."""
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


def ensure_labels(results: Path, spec: LabelSpec) -> Path:
    """The labels file for this spec, made first if missing (once, whoever asks first: make_labels waits
    on the labels' lock and reads what another made meanwhile)."""
    out = labels_path(results, spec)
    if out.with_suffix(".json").exists():
        return out
    log.info(
        "making majority-vote labels for %s on %s (%d samples per prompt)",
        spec.model,
        spec.dataset,
        spec.samples,
    )
    return make_labels(spec, out, force=False)


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
