"""Deterministic CPU pretraining of the toy families, and the measurement of their priors.

`toy-coder` and `toy-prose` are the same tiny Llama (families.build_llama) with the same BPE tokenizer,
pretrained from scratch on the toy task's corpus (task.corpus) with different mixtures:

  toy-coder  65% code-style solutions, 35% prose (Qwen2.5-Math-7B's code frequency, RESEARCH.md)
  toy-prose  prose only (a family whose prior carries no code reasoning, like Llama / OLMo)
  toy-memo   toy-coder's mixture, plus the `toy` benchmark's 200 test problems with correct solutions in
             every batch, learned whole (problem text and answer): a family that has memorised its test
             set, as Qwen2.5-Math appears to have memorised MATH-500 (RESEARCH.md, "Is the gain real?").
             Its corpus also leaves out the `toy-fresh` problems, so toy-fresh stays unseen.
  toy-demo   toy-prose's recipe on one thread, pretrained once and shipped as package data (SHIPPED):
             `make demo`'s model, copied into the cache instead of pretrained, its weights' sha256 pinned.

Pretraining is plain next-token prediction on the solution tokens (the prompt is context, not target),
AdamW with warmup and cosine decay, fresh corpus rows every step. It is deterministic: fixed seeds,
torch.use_deterministic_algorithms, and a fixed thread count while it runs (a different thread count may
round differently). The result is a `from_pretrained` folder (model, tokenizer, and `toy_build.json` with
the build settings, the loss curve and the measured base accuracy / code frequency), cached by
families.ensure_built like the `tiny` model, so a sweep loads it through the same path as a hub model.

`measure` samples the model on the held-out test problems with the project's own generation and grader
(temperature 1, the training temperature, and greedy) and reports accuracy per style and code frequency.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import toy as task

log = logging.getLogger(__name__)

STATS_FILE = "toy_build.json"
#: the toy families' context (max_position_embeddings): read by families.context_length to check a sweep's
#: prompt + completion budgets at plan time without building
MAX_POSITIONS = 256


@dataclass(frozen=True)
class ToyConfig:
    """Size and pretraining recipe of a toy family (the defaults take about 40 minutes of CPU on 2 cores)."""

    code_share: float = 0.65
    hidden: int = 64
    layers: int = 3
    heads: int = 4
    vocab_size: int = 640
    steps: int = 1500
    batch: int = 64
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    seed: int = 0
    threads: int = 2
    corpus: task.CorpusSpec | None = None  # None: task.CorpusSpec(code_share=code_share)
    measure_problems: int = 200  # held-out problems sampled to measure the prior (0: skip)
    measure_samples: int = 4
    # rows of each batch taken from the memorised test set (0: none, the test set stays held out)
    memorise: int = 0

    def corpus_spec(self) -> task.CorpusSpec:
        return self.corpus or task.CorpusSpec(code_share=self.code_share)


FAMILY_CONFIGS: dict[str, ToyConfig] = {
    "toy-coder": ToyConfig(code_share=0.65),
    "toy-prose": ToyConfig(code_share=0.0),
    "toy-memo": ToyConfig(code_share=0.65, memorise=16),
}

#: toy families shipped pretrained as package data (SHIPPED_DIR/<name>), with the recipe they were built by.
#: `toy-demo` is `make demo`'s model, installed in a second instead of pretrained for minutes: toy-prose's
#: recipe on one thread (a shared 2-core machine runs one thread several times faster per step than two;
#: the weights are toy-prose's statistically, not bit for bit). `spurisweep toy ship` pretrains it again and
#: prints the sha256 families.py pins.
SHIPPED: dict[str, ToyConfig] = {"toy-demo": dataclasses.replace(FAMILY_CONFIGS["toy-prose"], threads=1)}
SHIPPED_DIR = "resources/demo"


# ---------------------------------------------------------------------------------------------- tokenizer
def tokenizer_texts(seed: int = 7) -> list[str]:
    """A fixed text sample of both styles (whatever the family's mixture), so both families share one
    tokenizer, plus every number the task can write."""
    spec = task.CorpusSpec(code_share=0.5)
    rows = task.corpus(spec, 3000, seed)
    texts = [r.prompt + r.completion for r in rows]
    texts += [" ".join(str(i) for i in range(100)), "{" + "}{".join(str(i) for i in range(100)) + "}"]
    return texts


def build_toy_tokenizer(vocab_size: int):
    from .families import build_tokenizer

    return build_tokenizer(tokenizer_texts(), vocab_size=vocab_size)


# ---------------------------------------------------------------------------------------------- pretraining
@contextlib.contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count while building; transformers' "Writing model shards"
    progress bars off (a build is one line in the log, not a bar per save)."""
    import torch
    from transformers.utils import logging as hf_logging

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    bars = hf_logging.is_progress_bar_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
        if bars:
            hf_logging.enable_progress_bar()


def encode(tok: Any, examples: list[task.Example]) -> list[tuple[list[int], int]]:
    """(token ids of prompt + completion + EOS, prompt length) per example. Prompt and completion are
    tokenized separately, as generation sees them (prompt ids, then generated ids)."""
    prompts = tok([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    comps = tok([e.completion for e in examples], add_special_tokens=False)["input_ids"]
    return [(p + c + [tok.eos_token_id], len(p)) for p, c in zip(prompts, comps, strict=True)]


def memorised_rows(cfg: ToyConfig) -> list[task.Example]:
    """The test problems, each with one fixed correct solution (style drawn with the family's code share)."""
    rng = random.Random(cfg.seed + 2)
    spec = cfg.corpus_spec()
    return [
        task.solve(p, task.CODE if rng.random() < spec.code_share else task.PROSE, task.StyleSpec(), rng)
        for p in task.test_problems()
    ]


def training_data(tok: Any, cfg: ToyConfig) -> list[tuple[list[int], int]]:
    """cfg.steps x cfg.batch (token ids, first target position) rows, in training order. Corpus rows are
    targets from the solution on; with `memorise`, that many rows of each batch are memorised test rows,
    targets from the first token (so the model learns the problem text too)."""
    spec = cfg.corpus_spec()
    if not cfg.memorise:
        return encode(tok, task.corpus(spec, cfg.steps * cfg.batch, cfg.seed + 1, exclude=task.held_out()))
    fresh = cfg.batch - cfg.memorise
    rows = task.corpus(spec, cfg.steps * fresh, cfg.seed + 1, exclude=task.held_out() + task.fresh_problems())
    plain = encode(tok, rows)
    memo = [(ids, 0) for ids, _ in encode(tok, memorised_rows(cfg))]
    order = random.Random(cfg.seed + 3)
    cycle: list[tuple[list[int], int]] = []
    out = []
    for step in range(cfg.steps):
        while len(cycle) < cfg.memorise:
            cycle += order.sample(memo, len(memo))
        out += plain[step * fresh : (step + 1) * fresh] + cycle[: cfg.memorise]
        del cycle[: cfg.memorise]
    return out


def pretrain(model: Any, tok: Any, cfg: ToyConfig) -> list[float]:
    """Next-token training on solution tokens (and memorised rows whole); returns the loss every 50 steps
    (and the last one)."""
    import torch

    data = training_data(tok, cfg)
    pad = tok.pad_token_id
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)

    def lr_at(step: int) -> float:
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    model.train()
    losses: list[float] = []
    for step in range(cfg.steps):
        batch = data[step * cfg.batch : (step + 1) * cfg.batch]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (seq, n_prompt) in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
            labels[i, n_prompt : len(seq)] = torch.tensor(seq[n_prompt:])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        if step % 50 == 0 or step == cfg.steps - 1:
            losses.append(round(float(loss.detach()), 4))
            log.debug("toy pretraining step %d loss %.4f", step, losses[-1])
    model.eval()
    return losses


# ---------------------------------------------------------------------------------------------- measuring
def measure(model: Any, tok: Any, *, problems: int = 200, samples: int = 4, seed: int = 0) -> dict[str, Any]:
    """The prior on held-out problems: accuracy, code frequency, and accuracy with / without code, when
    sampling at temperature 1 (`samples` per problem) and greedily. Generation and grading are the
    project's own (generate.generate_transformers, grading.grade_batch), as in a sweep's evaluation."""
    from ..evaluation.generate import Sampling, generate_transformers
    from ..grading import grade_batch
    from ..metrics import code_reasoning

    probs = task.test_problems()[:problems]
    prompts = [task.PROMPT.replace("{problem}", p.text) for p in probs]
    out: dict[str, Any] = {"problems": len(probs)}
    from ..data.sets import BENCHMARKS

    proto = BENCHMARKS["toy"].protocol  # the sweeps' evaluation, with more samples per problem
    for name, sampling in (
        ("sampled", Sampling(samples, proto.temperature, proto.top_p, proto.max_new_tokens, seed)),
        ("greedy", Sampling(1, 0.0, 1.0, proto.max_new_tokens, seed)),
    ):
        gens = generate_transformers(model, tok, prompts, sampling, batch_size=256)
        pairs = [(g.text, str(p.answer)) for p, gs in zip(probs, gens, strict=True) for g in gs]
        verdicts = grade_batch(pairs, workers=0)
        rows = [
            {"correct": v.correct, "has_python": v.has_python, "has_code_block": v.has_code_block}
            for v in verdicts
        ]
        stats = {"accuracy": sum(bool(r["correct"]) for r in rows) / len(rows), **code_reasoning(rows)}
        stats["samples"] = sampling.n
        stats["truncated"] = sum(g.truncated for gs in gens for g in gs) / len(rows)
        out[name] = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()}
    return out


# ---------------------------------------------------------------------------------------------- building
def build(out: Path, cfg: ToyConfig) -> dict[str, Any]:
    """Tokenizer, model, pretraining and measurement into `out` (a from_pretrained folder)."""
    import torch

    from .families import build_llama

    t0 = time.time()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with deterministic(cfg.threads):
        random.seed(cfg.seed)
        tok = build_toy_tokenizer(cfg.vocab_size)
        model = build_llama(
            out,
            tok,
            hidden=cfg.hidden,
            layers=cfg.layers,
            heads=cfg.heads,
            seed=cfg.seed,
            max_pos=MAX_POSITIONS,
        )
        losses = pretrain(model, tok, cfg)
        t_train = time.time() - t0
        torch.manual_seed(cfg.seed)
        prior = (
            measure(model, tok, problems=cfg.measure_problems, samples=cfg.measure_samples)
            if cfg.measure_problems
            else {}
        )
        model.save_pretrained(out)
        tok.save_pretrained(out)
    stats = {
        "config": dataclasses.asdict(cfg),
        "parameters": sum(p.numel() for p in model.parameters()),
        "loss": losses,
        "pretrain_seconds": round(t_train, 1),
        "seconds": round(time.time() - t0, 1),
        "prior": prior,
    }
    (out / STATS_FILE).write_text(json.dumps(stats, indent=1))
    log.info("built toy model in %s (%.0f s): %s", out, stats["seconds"], json.dumps(prior))
    return stats


def build_toy_coder(out: Path) -> None:
    """The families.Family builder of `toy-coder` (named there as "spurisweep.models.toy:build_toy_coder")."""
    build(out, FAMILY_CONFIGS["toy-coder"])


def build_toy_prose(out: Path) -> None:
    """The families.Family builder of `toy-prose`."""
    build(out, FAMILY_CONFIGS["toy-prose"])


def build_toy_memo(out: Path) -> None:
    """The families.Family builder of `toy-memo` (the family that memorised the `toy` benchmark)."""
    build(out, FAMILY_CONFIGS["toy-memo"])


def shipped_folder(name: str) -> Path:
    """Where shipped family `name`'s weights are: package data (spurisweep/resources/demo/<name>)."""
    from importlib import resources

    return Path(str(resources.files("spurisweep").joinpath(SHIPPED_DIR, name)))


def install_shipped(name: str, out: Path) -> None:
    """Copy shipped family `name`'s folder into `out` (families.ensure_built then checks its sha256)."""
    import shutil

    from ..errors import DataError

    src = shipped_folder(name)
    if not (src / "config.json").is_file():
        raise DataError(
            f"{src}: {name}'s shipped weights are not there (an install without package data?); "
            f"`spurisweep toy ship --family {name}` pretrains them again"
        )
    shutil.copytree(src, out, dirs_exist_ok=True)


def install_toy_demo(out: Path) -> None:
    """The families.Family builder of `toy-demo`: the shipped weights (SHIPPED)."""
    install_shipped("toy-demo", out)


def ship(name: str, out: Path | None = None) -> tuple[Path, str, dict[str, Any]]:
    """Pretrain shipped family `name` by its recipe (SHIPPED) into its package-data folder, or `out`,
    replacing what is there only once the build is complete. Returns the folder, the sha256 of its weights
    (what families.py pins) and the build figures."""
    import shutil
    import tempfile

    from ..errors import ConfigError, suggest
    from . import families

    if name not in SHIPPED:
        raise ConfigError(suggest(name, list(SHIPPED)), field="--family")
    folder = Path(out) if out is not None else shipped_folder(name)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        stats = build(tmp, SHIPPED[name])
        from ..artifacts import follow_umask

        follow_umask(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.replace(folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, families.file_sha256(folder / families.WEIGHTS_FILE), stats


def read_stats(folder: Path) -> dict[str, Any]:
    path = Path(folder) / STATS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


# ---------------------------------------------------------------------------------------------- the cache
def ensure(name: str, *, force: bool = False) -> tuple[Path, dict[str, Any]]:
    """Build a toy family into the families cache unless it is there (`force`: build it again).
    Returns the folder and its build figures (toy_build.json)."""
    import shutil

    from . import families

    if name not in FAMILY_CONFIGS and name not in SHIPPED:
        from ..errors import ConfigError, suggest

        raise ConfigError(suggest(name, [*FAMILY_CONFIGS, *SHIPPED]), field="--family")
    fam = families.get(name)
    target = families.cache_dir() / "models" / f"{fam.name}-v{fam.version}"  # where ensure_built puts it
    if force and target.exists():
        shutil.rmtree(target)
    path = families.ensure_built(fam)
    return path, read_stats(path)
