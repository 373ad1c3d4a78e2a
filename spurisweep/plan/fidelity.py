"""How far a resolved cell is from the paper's official code, setting by setting, before any GPU hour.

`differences(cell_config)` lists every resolved setting whose value differs from what the official code
ran (RESEARCH.md, "Paper training settings" and "The official code's behaviour"), each with the expected
direction of its effect on the numbers; `sweep_report(cells)` groups identical differences across the
cells of a sweep into one table for `spurisweep fidelity`. Pure: configs in, records out (no torch, no
files).

The official values are read from the paper's recipe file (resources/paper_recipe.yaml, through
presets.paper_recipe), the file the `paper` preset is read from: the recipe is written once, and a sweep's
own settings that move a value away from it show up here. This module parses its own copy at import, so
nothing that changes presets.PRESETS at run time moves the reference.

Not listed, on purpose: the advantage's std epsilon (TRL adds 1e-4 where the official code adds 1e-9),
which changes no advantage of a 0/1 reward (a group's std is 0, making every advantage 0 either way, or
at least 0.24); precision (bf16 on GPU as the official code); the data-parallel layout, which changes
no number once the loss aggregation matches; the reward itself and its parameters, which are the
experiment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from ..analysis.render import Table
from ..models import families
from . import clipping
from .presets import paper_recipe
from .spec import CellConfig

if TYPE_CHECKING:
    from .grid import Cell

#: per training setting: (what the setting is called in the table, the effect of a value below the official
#: one, the effect of a value above it)
_TRAIN_EFFECTS: dict[str, tuple[str, str, str]] = {
    "steps": (
        "max steps",
        "fewer steps: v2's step-300 reading (and, under 160, v1's 10-step mean at 150) not reached",
        "more steps: curves past the paper's readings (v1: step 150 smoothed; v2: step 300)",
    ),
    "learning_rate": (
        "learning rate",
        "smaller steps: the policy moves less by any given step, smaller gains",
        "larger steps: faster movement, larger gains or an earlier collapse",
    ),
    "lr_scheduler": ("lr schedule", "", "another schedule: a different step size over the run"),
    "warmup_steps": ("warmup", "", "warmup: smaller early updates, early curves lag"),
    "adam_beta1": ("Adam beta1", "less momentum: noisier updates", "more momentum: smoother, slower to turn"),
    "adam_beta2": (
        "Adam beta2",
        "shorter second-moment memory: step sizes track recent gradients",
        "longer second-moment memory: step sizes react slower",
    ),
    "weight_decay": ("weight decay", "", "weight decay: pulls weights toward 0, slightly smaller gains"),
    "max_grad_norm": (
        "grad-norm clip",
        "tighter clip: smaller updates on large gradients",
        "looser clip: larger updates on large gradients",
    ),
    "prompts_per_step": (
        "prompts per rollout",
        "fewer prompts per step: noisier updates",
        "more prompts per step: smoother updates",
    ),
    "samples_per_prompt": (
        "samples per prompt",
        "smaller groups: noisier group baselines, more groups whose responses all score the same (no signal)",
        "larger groups: more precise group baselines",
    ),
    "mini_batch": (
        "mini-batch (responses)",
        "smaller mini-batches: noisier updates",
        "larger mini-batches: smoother updates",
    ),
    "epochs_per_rollout": ("epochs_per_rollout", "", ""),
    "max_prompt_length": (
        "max prompt tokens",
        "longer problems dropped from training",
        "longer problems kept that the official code dropped",
    ),
    "max_completion_length": (
        "max response tokens",
        "responses truncated earlier: lower accuracy on long solutions, lower baselines and numbers",
        "longer responses allowed: higher accuracy on long solutions than the paper's",
    ),
    "temperature": (
        "sampling temperature",
        "less exploration: sharper rollouts, reward std collapses sooner",
        "more exploration: noisier rollouts",
    ),
    "top_p": ("sampling top_p", "truncated sampling: less exploration", ""),
    "beta": ("KL coefficient", "", "a KL penalty: the policy stays closer to the base model, smaller gains"),
}


_RECIPE = paper_recipe()  # this module's own copy (see the module docstring)
_PRESET, _OFFICIAL = _RECIPE["preset"], _RECIPE["official"]
#: the official code's training recipe (the Qwen2.5-Math-7B scripts; RESEARCH.md), the settings compared by
#: value, in the order the table lists them
OFFICIAL_TRAIN: dict[str, Any] = {k: _PRESET["train"][k] for k in _TRAIN_EFFECTS}
OFFICIAL_UPDATES_PER_ROLLOUT = (
    OFFICIAL_TRAIN["prompts_per_step"] * OFFICIAL_TRAIN["samples_per_prompt"] // OFFICIAL_TRAIN["mini_batch"]
) * OFFICIAL_TRAIN["epochs_per_rollout"]
#: responses per packed row: the official loss is a token mean over each pack (the preset's micro-batch)
OFFICIAL_PACK = _PRESET["train"]["micro_batch"]
OFFICIAL_DATA = _PRESET["data"]["train"]
#: the official majority-vote labelling (RESEARCH.md, "Rewards")
OFFICIAL_LABELS: dict[str, Any] = {
    **{k: _PRESET["data"][k] for k in ("labelling", "label_prompt", "label_holdout")},
    **{k: v for k, v in _OFFICIAL["data"].items() if k != "label_max_new_tokens"},
}
OFFICIAL_LABEL_TOKENS = _OFFICIAL["data"]["label_max_new_tokens"]
#: the official evaluation: every benchmark on its own protocol (spurisweep.data.sets.BENCHMARKS holds them)
OFFICIAL_PAPER_BENCHMARKS = tuple(_PRESET["eval"]["benchmarks"])


@dataclass(frozen=True)
class Difference:
    """One setting whose resolved value differs from the official code's, and what that does to the numbers."""

    setting: str
    ours: str
    official: str
    effect: str


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower() if v is not None else "none"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _direction(value: Any, official: Any, low: str, high: str) -> str:
    if isinstance(value, (int, float)) and isinstance(official, (int, float)):
        return (low if value < official else high) or "direction unknown"
    return high or low or "direction unknown"


def pack_size(cfg: CellConfig) -> int:
    """Responses per process in one forward pass: what TRL's `bnpo` token mean runs over.

    The same arithmetic as the trainer's batch shape (one mini-batch is split over the data-parallel
    processes when train.micro_batch is None), kept here so this module needs no trainer import."""
    t = cfg.train
    mini = (
        t.prompts_per_step * t.samples_per_prompt if clipping.CLIP_MODES[cfg.clip].on_policy else t.mini_batch
    )
    world = cfg.resources.world_size
    if t.micro_batch is not None:
        return min(t.micro_batch, mini)
    return max(1, mini // world) if world > 1 else mini


def updates_per_rollout(cfg: CellConfig) -> int:
    t = cfg.train
    if clipping.CLIP_MODES[cfg.clip].on_policy:
        return 1
    return (t.prompts_per_step * t.samples_per_prompt // t.mini_batch) * t.epochs_per_rollout


def official_prompt(cfg: CellConfig) -> str:
    """The template the official code prompts this cell's family with: its own R1-style text for base
    models prompted R1-style, the tokenizer's chat template for the others."""
    default = families.FAMILIES[cfg.model].prompt if cfg.model in families.FAMILIES else "chat"
    return "r1_paper" if default == "r1" else "chat"


def _grader(cfg: CellConfig) -> list[Difference]:
    if cfg.grader == "paper":
        return []
    return [
        Difference(
            "grader",
            cfg.grader,
            "paper (Qwen2.5-Math parser + PRM800K grade_answer)",
            "more lenient (agrees on 96.7% of realistic pairs, accepts more): higher baselines, most on "
            "untrained models, so smaller gains; format and no_repetition follow math-verify's rules; an "
            "empty gold label is unscored (officially 1 against an empty box)",
        )
    ]


def _objective(cfg: CellConfig) -> list[Difference]:
    t = cfg.train
    out: list[Difference] = []
    is_on = cfg.trl.get("vllm_importance_sampling_correction", t.is_correction)
    if is_on is not False and t.generation_backend != "transformers":
        out.append(
            Difference(
                "IS correction",
                "TRL default (on with vLLM)" if is_on is None else _fmt(is_on),
                "none",
                "tokens where vLLM and the trainer disagree are down-weighted: slightly smaller, "
                "less noisy updates",
            )
        )
    if not t.token_whitening:
        out.append(
            Difference(
                "advantage whitening",
                "group normalisation only",
                "group normalisation, then whitened over every token of the rollout (all ranks)",
                "without it, groups whose responses all scored the same get no push and advantages are not "
                "scaled up by the token std (below 1): slower movement per step, smaller gains",
            )
        )
    # bnpo over micro-batches of 4 is the official weighting (a token mean per pack of four, packs equal);
    # what is left (which four responses share a pack, padding instead of packing) moves no expected
    # gradient, so it is not listed (training/trainer.py, SpuriTrainer, says it in full)
    loss = cfg.trl.get("loss_type", t.loss_type)
    pack = pack_size(cfg)
    if loss != "bnpo" or pack != OFFICIAL_PACK:
        ours = f"{loss}, over {pack} responses per pass" if loss == "bnpo" else f"{loss} (TRL loss_type)"
        if loss == "grpo":
            effect = "per-response token mean: long responses weigh less than in the official loss"
        elif loss == "bnpo":
            effect = "token mean over packs of another size: long responses' extra weight spreads differently"
        else:
            effect = "another aggregation: direction unknown"
        out.append(
            Difference(
                "loss aggregation", ours, f"token mean over packs of {OFFICIAL_PACK} responses", effect
            )
        )
    return out


def _prompt(cfg: CellConfig) -> list[Difference]:
    want = official_prompt(cfg)
    ours = cfg.prompt or families.FAMILIES[cfg.model].prompt
    out: list[Difference] = []
    literal = "r1_paper_literal_newlines"
    if ours != want and not (want == "r1_paper" and ours == literal):
        out.append(
            Difference(
                "prompt template",
                ours,
                want,
                "baselines are very prompt-sensitive (Qwen2.5-Math-7B MATH-500 from 49.4 to 68.8 across "
                "prompts): baselines and gains move, direction unknown",
            )
        )
        mine, theirs = families.template(ours), families.template(want)
        if (mine.add_bos, mine.stop, mine.answer_tag) != (theirs.add_bos, theirs.stop, theirs.answer_tag):
            out.append(
                Difference(
                    "BOS / stop / answer tag",
                    _template_switches(mine),
                    _template_switches(theirs),
                    "responses run on past </answer> and are graded on all their text: longer responses, "
                    "format and answers judged on other text"
                    if theirs.stop and not mine.stop
                    else "direction unknown",
                )
            )
    if want == "r1_paper":
        e = cfg.eval
        evaluated = {(e.protocols[b].prompt if b in e.protocols else None) or ours for b in e.benchmarks}
        if ours == "r1_paper" or "r1_paper" in evaluated:
            out.append(
                Difference(
                    "prompt newlines",
                    "real newlines (r1_paper)",
                    f"literal backslash-n ({literal}: the training script's quirk, also in its in-training "
                    "evaluation, the curves the paper read)",
                    "the official runs trained and were read on the malformed template: direction "
                    "unknown, likely small",
                )
            )
    return out


def _switches(cfg: CellConfig) -> list[Difference]:
    """The official code's switches that are settings here: training stops, the reward's text, the
    evaluation's double BOS."""
    out: list[Difference] = []
    name = cfg.prompt or families.FAMILIES[cfg.model].prompt
    stops = families.template(name).stop
    if stops and not cfg.train.template_stop:
        out.append(
            Difference(
                "training stop (train.template_stop)",
                "EOS only",
                f"{', '.join(stops)}, kept in the text the reward reads",
                "rollouts run on past the answer: longer responses, other rewards and loss weights",
            )
        )
    if cfg.train.reward_text != "raw":
        out.append(
            Difference(
                "reward text (train.reward_text)",
                "plain (special tokens skipped)",
                "raw (special tokens kept)",
                "unboxed 'the answer is X' responses score 1 here, 0 officially (37 of 1,231 held-out "
                "verdicts flip): higher rewards for unboxed answers",
            )
        )
    if not cfg.eval.double_bos and families.FAMILIES[cfg.model].kind == "instruct":
        out.append(
            Difference(
                "double BOS (eval.double_bos)",
                "one BOS",
                "two BOS (the official evaluation's quirk; Llama-3.1-8B-Instruct's published numbers)",
                "chat-templated prompts differ from the published evaluation: base and every point move, "
                "direction unknown",
            )
        )
    return out


def quirks(cfg: CellConfig) -> list[str]:
    """Official behaviours a cell reproduces on purpose although they are quirks, not choices."""
    out = []
    if cfg.eval.double_bos:
        out.append(
            "eval.double_bos: two BOS tokens before chat-templated prompts, as the official evaluation"
        )
    if (cfg.prompt or "") == "r1_paper_literal_newlines":
        out.append(
            "r1_paper_literal_newlines: the R1 prompt with literal backslash-n, as the training script"
        )
    if cfg.grader == "paper":
        out.append("grader paper: an empty gold label scores 1 against an empty box, as the official grader")
    return out


def _template_switches(t: families.Template) -> str:
    stop = ", ".join(t.stop) or "EOS only"
    return f"BOS {'yes' if t.add_bos else 'no'}; stop {stop}; answer tag {'yes' if t.answer_tag else 'no'}"


# the rewards the official code implements (the recipe file); later studies' rewards have no official number
OFFICIAL_REWARDS = frozenset(_OFFICIAL["rewards"])


def _reward(cfg: CellConfig) -> list[Difference]:
    from .. import rewards

    try:
        expr = rewards.parse(cfg.reward)
    except ValueError:
        return []
    outside = [b for b in expr.bases() if b not in OFFICIAL_REWARDS]
    if not outside and expr.op != "mix":
        return []
    what = "a weighted mixture" if expr.op == "mix" else "a reward"
    return [
        Difference(
            "reward",
            cfg.reward,
            "one of the paper's rewards",
            f"{what} the official code does not have ({', '.join(outside) or 'mixture'}): no official number to "
            "compare with",
        )
    ]


def _labels(cfg: CellConfig) -> list[Difference]:
    from .. import rewards

    try:
        bases = rewards.parse(cfg.reward).bases()
    except ValueError:
        return []
    if not any(rewards.REGISTRY[b].data in ("majority", "incorrect") for b in bases):
        return []
    d = cfg.data
    if d.labels:
        return [
            Difference(
                "labels",
                f"ready file {d.labels}",
                "made by the official labelling",
                "depends on how the file was made (a label file records it)",
            )
        ]
    effects = {
        "labelling": "equivalence grouping pools equivalent forms: labels right more often, a smaller and "
        "different incorrect-label set; majority-vote gains higher",
        "label_prompt": "labels from a prompted model: more boxed, more often correct labels",
        "label_holdout": "the first 100 prompts are trained on (held out officially): negligible",
        "label_samples": "fewer votes: noisier labels",
        "label_temperature": "another sampling temperature: labels sharper or noisier",
        "label_top_p": "truncated sampling: sharper labels",
    }
    out = [
        Difference(f"data.{k}", _fmt(getattr(d, k)), _fmt(v), effects[k])
        for k, v in OFFICIAL_LABELS.items()
        if getattr(d, k) != v
    ]
    out.append(
        Difference(
            "label samples",
            "drawn again by spurisweep (same procedure)",
            "the official label files",
            "another draw of 64 samples per prompt: a few labels differ, direction unknown, small",
        )
    )
    tokens = d.label_max_new_tokens or cfg.train.max_completion_length
    if tokens != OFFICIAL_LABEL_TOKENS:
        out.append(
            Difference(
                "data.label_max_new_tokens",
                str(tokens),
                str(OFFICIAL_LABEL_TOKENS),
                "shorter label samples: fewer answers reached, more empty votes"
                if tokens < OFFICIAL_LABEL_TOKENS
                else "longer label samples: more answers reached",
            )
        )
    return out


def _training(cfg: CellConfig) -> list[Difference]:
    t = cfg.train
    out: list[Difference] = []
    for key, official in OFFICIAL_TRAIN.items():
        ours = getattr(t, key)
        if ours != official:
            name, low, high = _TRAIN_EFFECTS.get(key, (key, "", ""))
            out.append(Difference(name, _fmt(ours), _fmt(official), _direction(ours, official, low, high)))
    upr = updates_per_rollout(cfg)
    if upr != OFFICIAL_UPDATES_PER_ROLLOUT:
        out.append(
            Difference(
                "updates per rollout",
                str(upr),
                str(OFFICIAL_UPDATES_PER_ROLLOUT),
                "less reuse of each rollout: the ratio clip acts less, weakening the clipping bias behind "
                "the random-reward gains"
                if upr < OFFICIAL_UPDATES_PER_ROLLOUT
                else "more reuse of each rollout: the ratio clip acts more, a stronger clipping bias",
            )
        )
    if cfg.clip != "standard" or (cfg.clip_params.eps_low, cfg.clip_params.eps_high) != (0.2, 0.2):
        out.append(
            Difference(
                "clip",
                f"{cfg.clip} ({_fmt(cfg.clip_params.eps_low)}, {_fmt(cfg.clip_params.eps_high)})",
                "standard (0.2, 0.2)",
                "an ablation of the clip: without the symmetric clip the paper finds no robust "
                "random-reward gain on Qwen2.5-Math",
            )
        )
    if t.scale_rewards != "group":
        out.append(
            Difference(
                "advantage scaling", t.scale_rewards, "group", "another advantage scale: direction unknown"
            )
        )
    if cfg.trl:
        out.append(
            Difference(
                "trl overrides",
                ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(cfg.trl.items())),
                "none",
                "raw GRPOConfig overrides: direction unknown",
            )
        )
    return out


def _data_and_eval(cfg: CellConfig) -> list[Difference]:
    out: list[Difference] = []
    d, e = cfg.data, cfg.eval
    if d.train.startswith("benchmark:"):  # data.test_set_training (the spec refuses it otherwise)
        name = d.train.split(":", 1)[1]
        out.append(
            Difference(
                "training data",
                f"{d.train} (test-set training: the benchmark's own prompts)",
                OFFICIAL_DATA,
                f"trains on the evaluation prompts: a gain on {name} is not generalisation",
            )
        )
    elif d.train != OFFICIAL_DATA:
        out.append(
            Difference("training data", d.train, OFFICIAL_DATA, "another training set: direction unknown")
        )
    if d.limit is not None:
        out.append(
            Difference("data.limit", str(d.limit), "all 40,315 problems", "a subset: problems repeat sooner")
        )
    if cfg.model_path:
        out.append(Difference("weights", cfg.model_path, "the family's hub weights", "other weights"))
    if e.eval_every != 1:
        out.append(
            Difference(
                "evaluation cadence",
                f"every {cfg.train.save_every} steps (at checkpoints)"
                if e.eval_every is None
                else f"every {e.eval_every}",
                "every step",
                "no effect on training; curves have fewer points and a best-step reading over fewer "
                "evaluations comes out no higher",
            )
        )
    if e.limit is not None:
        out.append(
            Difference(
                "eval.limit", str(e.limit), "whole benchmarks", "a subset of each benchmark: noisier numbers"
            )
        )
    overridden = sorted(b for b in e.protocols if b in OFFICIAL_PAPER_BENCHMARKS)
    if overridden:
        out.append(
            Difference(
                "evaluation protocol",
                "overridden for " + ", ".join(overridden),
                "MATH-500 greedy; AIME/AMC 8 samples at 0.6",
                "another protocol: direction unknown",
            )
        )
    return out


def differences(cfg: CellConfig) -> list[Difference]:
    """Every resolved setting of `cfg` that differs from the official code, with its expected effect."""
    return [
        *_grader(cfg),
        *_objective(cfg),
        *_prompt(cfg),
        *_switches(cfg),
        *_reward(cfg),
        *_labels(cfg),
        *_training(cfg),
        *_data_and_eval(cfg),
    ]


def seed_counts(cells: Iterable[Cell]) -> list[int]:
    """Seeds per setting: the number of cells sharing every axis value but the seed, per such group."""
    groups: dict[tuple[tuple[str, str], ...], int] = {}
    for c in cells:
        key = tuple(sorted((k, str(v)) for k, v in c.axes.items() if k != "seed"))
        groups[key] = groups.get(key, 0) + 1
    return sorted(set(groups.values()))


def sweep_report(cells: Sequence[Cell], title: str = "") -> Table:
    """One row per distinct difference, with the cells it applies to; a sweep-level row for seeds."""
    rows: dict[Difference, list[Cell]] = {}
    for c in cells:
        for d in differences(c.config):
            rows.setdefault(d, []).append(c)
    records = []
    for d, where in rows.items():
        applies = "all" if len(where) == len(cells) else _which(where, cells)
        records.append({**asdict(d), "cells": applies, "count": len(where)})
    counts = seed_counts(cells)
    if counts != [1]:
        records.append(
            {
                "setting": "seeds per setting",
                "ours": "/".join(map(str, counts)),
                "official": "1 run per setting (default seed 42; its random reward is unseeded)",
                "effect": "means over seeds with a spread; each of the paper's single runs carries run-to-run "
                "noise of a few points",
                "cells": "all",
                "count": len(cells),
            }
        )
    header = ["setting", "ours", "official", "expected effect", "cells"]
    keys = ["setting", "ours", "official", "effect", "cells"]
    notes = [f"{len(cells)} cells; {len(records)} differences from the paper's official code (RESEARCH.md)."]
    if not records:
        notes = [f"{len(cells)} cells; no difference from the paper's official code."]
    return Table(
        header=header,
        rows=[[str(r[k]) for k in keys] for r in records],
        title=title or "differences from the paper's official code",
        notes=notes,
        records=records,
    )


def _which(where: Sequence[Cell], cells: Sequence[Cell]) -> str:
    """The cells a difference applies to, as the axis values they share (else their count)."""
    shared = {k: {str(c.axes.get(k)) for c in where} for k in where[0].axes}
    everywhere = {k: {str(c.axes.get(k)) for c in cells} for k in where[0].axes}
    parts = [f"{k}={','.join(sorted(v))}" for k, v in shared.items() if v != everywhere[k]]
    where_text = "; ".join(parts) + " " if parts else ""
    return f"{where_text}({len(where)} of {len(cells)})"


def sweep_quirks(cells: Sequence[Cell]) -> list[str]:
    """The official quirks reproduced by any cell of the sweep, each once."""
    return list(dict.fromkeys(q for c in cells for q in quirks(c.config)))
