"""Majority-vote labels made by the base model (the `majority_vote` and `incorrect_label` rewards).

As in the paper: sample N completions per training prompt (default 64, temperature 1.0, top_p 1, no
chat template), extract each answer, and take the most common non-empty one as the label. Answers are
grouped by math equivalence (so `0.5`, `1/2` and `\\frac{1}{2}` vote together). The labelled set keeps,
per prompt, the majority label, its vote share, and whether it matches the ground truth;
`incorrect_label` trains only on prompts whose majority answer is wrong, toward that wrong answer.

Labels are made once per (model, data set, labelling settings) under a file lock, into
results/_labels/<key>.jsonl (+ .json metadata), and shared by every cell that needs them. Under `run`
they are made by a label job of their own before the cells that train on them (launch/labeljob.py);
a cell that finds them missing (`debug`, a direct run_cell) makes them itself, under the same lock.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import artifacts, data, families
from .errors import DataError
from .ids import short_hash
from .spec import CellConfig

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

    def key(self) -> str:
        return short_hash(self.__dict__)


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
    )


def needed(cfg: CellConfig) -> LabelSpec | None:
    """The labels a cell trains on when spurisweep makes them (majority_vote / incorrect_label without a
    ready labelled file); None for every other cell."""
    from . import rewards

    if cfg.data.labels:
        return None
    kind = rewards.data_kind(rewards.parse(cfg.reward))
    return spec_for(cfg) if kind in ("majority", "incorrect") else None


def labels_path(results: Path, spec: LabelSpec) -> Path:
    return Path(results) / artifacts.LABELS / f"{spec.model}-{spec.key()}.jsonl"


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


def make_labels(
    spec: LabelSpec,
    out: Path,
    *,
    progress: Callable[[int], None] | None = None,
    batch_size: int | None = None,
) -> Path:
    """Sample, vote and write the labelled set (atomically; metadata last)."""
    from .generate import Sampling, choose_backend, generate_transformers, generate_vllm
    from .grading import answers_equal, extract_answer

    problems = data.load_problems(spec.dataset, split=spec.split, limit=spec.limit)
    source = families.model_source(spec.model, spec.model_path)
    backend = choose_backend("auto")
    if backend == "vllm":
        from transformers import AutoTokenizer

        model, tok = None, AutoTokenizer.from_pretrained(source)
    else:
        model, tok = families.load_model_and_tokenizer(source)
    prompts = [families.render_prompt(tok, spec.prompt, p.problem) for p in problems]
    sampling = Sampling(spec.samples, spec.temperature, spec.top_p, spec.max_new_tokens, spec.seed)
    t0 = time.time()
    if backend == "vllm":
        gens = generate_vllm(source, prompts, sampling)
    else:
        gens = generate_transformers(model, tok, prompts, sampling, batch_size=batch_size, progress=progress)
    rows = []
    for p, gs in zip(problems, gens, strict=True):
        label, share = majority([extract_answer(g.text) for g in gs], answers_equal)
        match = None if label is None else answers_equal(label, p.answer)
        rows.append(
            {
                "id": p.id,
                "problem": p.problem,
                "answer": label,
                "gold": p.answer,
                "vote_share": share,
                "matches_gold": match,
                "samples": len(gs),
            }
        )
    meta = {
        **spec.__dict__,
        "key": spec.key(),
        "backend": backend,
        "problems": len(rows),
        "labelled": sum(r["answer"] is not None for r in rows),
        "majority_correct": sum(bool(r["matches_gold"]) for r in rows),
        "seconds": round(time.time() - t0, 1),
    }
    artifacts.atomic_write_jsonl(out, rows)
    artifacts.atomic_write_json(out.with_suffix(".json"), meta)
    return out


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
    path = ensure_labels(results, spec_for(cfg))
    rows = artifacts.read_jsonl(path)
    keep = [r for r in rows if r["answer"] is not None and (not incorrect or r["matches_gold"] is False)]
    if not keep:
        what = "whose majority answer is wrong" if incorrect else "with a majority answer"
        raise DataError(
            f"{path}: no training prompt {what} ({len(rows)} labelled); more prompts or samples needed"
        )
    return [data.Problem(id=str(r["id"]), problem=r["problem"], answer=str(r["answer"])) for r in keep]
