"""A cell's training set: which problems its reward trains on, rendered as the prompt rows TRL reads.

The prompt text is the cell's template rendered exactly as evaluation renders it (families.render_prompt),
so training and evaluation see the same token ids.

`data.train: benchmark:NAME` trains on a benchmark's own problems, as evaluation reads them (TTRL's
test-time setting, e.g. under online_majority, which reads no answer); the sweep must say
`data.test_set_training: true` (spec.DataSettings refuses it otherwise), and diagnose and fidelity flag it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .. import rewards
from ..data import sets as data
from ..errors import DataError
from ..models import families
from ..plan.spec import CellConfig

log = logging.getLogger(__name__)


def training_problems(cfg: CellConfig, results: Path) -> list[data.Problem]:
    kind = rewards.data_kind(rewards.parse(cfg.reward))
    d = cfg.data
    if kind == "one_shot":
        if d.one_shot_id is None:
            one = data.PI1
        else:
            pool = train_set(cfg, limit=None)
            match = [p for p in pool if p.id == d.one_shot_id]
            if not match:
                raise DataError(f"one_shot_id {d.one_shot_id!r} is not an id in {d.train}")
            one = match[0]
        return [one] * d.one_shot_repeat
    if kind in ("majority", "incorrect"):
        if test_set_benchmark(cfg) is not None:
            raise DataError(
                f"data.train {d.train}: majority labels are made from a data set, not a benchmark"
            )
        from ..evaluation import labels

        return labels.labelled_problems(cfg, results, incorrect=kind == "incorrect")
    return train_set(cfg, limit=d.limit)


#: `data.train` naming a benchmark's own problems (test-set training, behind data.test_set_training)
BENCHMARK_PREFIX = "benchmark:"


def test_set_benchmark(cfg: CellConfig) -> str | None:
    """The benchmark whose own problems the cell trains on (`data.train: benchmark:NAME`), else None."""
    train = cfg.data.train
    return train[len(BENCHMARK_PREFIX) :] if train.startswith(BENCHMARK_PREFIX) else None


def train_set(cfg: CellConfig, *, limit: int | None) -> list[data.Problem]:
    """The problems of `data.train`: a data set, or a benchmark's own (refused without
    data.test_set_training, whatever else let the setting through)."""
    d = cfg.data
    bench = test_set_benchmark(cfg)
    if bench is None:
        return data.load_problems(
            d.train, split=d.split, limit=limit, problem_field=d.problem_field, answer_field=d.answer_field
        )
    if not d.test_set_training:
        raise DataError(
            f"data.train {d.train} trains on a benchmark's prompts: data.test_set_training is not set"
        )
    path = cfg.eval.protocols[bench].path if bench in cfg.eval.protocols else None
    return data.load_benchmark(bench, path=path, limit=limit)


def for_trl(tokenizer: Any, text: str) -> str:
    """The prompt text to hand TRL so that it tokenizes to exactly the ids evaluation uses.

    TRL tokenizes string prompts with the tokenizer's special tokens; a chat template that already wrote
    the BOS (Llama 3) would then start with two. Evaluation (generate.encode_prompts) adds no second BOS,
    so here the written one is dropped whenever that makes the two token sequences identical."""
    from ..evaluation.generate import encode_prompts

    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not text.startswith(bos):
        return text
    want = encode_prompts(tokenizer, [text])[0]
    if list(tokenizer(text)["input_ids"]) == want:
        return text
    stripped = text[len(bos) :]
    return stripped if list(tokenizer(stripped)["input_ids"]) == want else text


def training_rows(cfg: CellConfig, tokenizer: Any, problems: list[data.Problem]) -> list[dict[str, str]]:
    """Dataset rows for TRL: the prompt rendered with the cell's template (the exact text evaluation uses,
    families.render_prompt), so TRL does not apply a chat template again; over-long prompts are dropped."""
    rows = []
    for p in problems:
        text = for_trl(tokenizer, families.render_prompt(tokenizer, cfg.prompt or "", p.problem))
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= cfg.train.max_prompt_length:
            rows.append({"prompt": text, "answer": p.answer, "problem_id": p.id})
    if not rows:
        raise DataError(f"no training prompt fits max_prompt_length={cfg.train.max_prompt_length}")
    if len(rows) < len(problems):
        log.info(
            "dropped %d of %d training prompts longer than %d tokens",
            len(problems) - len(rows),
            len(problems),
            cfg.train.max_prompt_length,
        )
    return rows
