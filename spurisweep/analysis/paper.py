"""`report --paper`: the paper's Figure 1 layout (models x rewards, MATH-500 change) for the stored
results, side by side with the published numbers.

The published numbers ship as package data (spurisweep/resources/paper_results.json, from RESEARCH.md's
"The paper's numbers"), one entry per version of the paper with its source and its reading rule: v1 (the
PDF the official repository shipped) reads Figure 1 after 150 steps as a 10-step mean; v2 (arXiv) after 300
steps. A number no source confirms is absent, never estimated. Our cells are read where the chosen version
reads (`version`), and the paper's number is printed only where that version has one. Stored rewards
match a paper column by name; a reward with parameters (e.g. `random(gamma=0.3)`) matches only when the
parameters are the paper's (random: gamma 0.5).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from ..errors import ConfigError, suggest
from . import render as rnd
from . import report as rep

PAPER_PARAMS: dict[str, dict[str, float]] = {"random": {"gamma": 0.5}}


@dataclass(frozen=True)
class PaperValue:
    value: float
    approx: bool = False
    bound: str | None = None  # "upper": the paper only says <= value

    def __str__(self) -> str:
        if self.bound == "upper":
            return f"<={self.value:+.1f}".replace("+0.0", "0")
        return ("~" if self.approx else "") + f"{self.value:+.1f}"


@dataclass
class Comparison:
    benchmark: str
    step: str
    rewards: list[str]  # column order: the paper's rewards, then other stored ones
    models: list[str]  # row order: the paper's models, then other stored ones
    ours: dict[tuple[str, str], dict[str, Any]]  # (model, reward) -> pivot cell (mean, std, n, delta, ...)
    ours_base: dict[str, float | None]
    paper: dict[tuple[str, str], PaperValue]
    paper_base: dict[str, float]
    paper_names: dict[str, str]
    spread: str = "std"
    notes: list[str] = field(default_factory=list)
    version: str = "v1"


@lru_cache(maxsize=1)
def load_paper_results() -> dict[str, Any]:
    """The published headline numbers (package data)."""
    text = resources.files("spurisweep").joinpath("resources/paper_results.json").read_text()
    return json.loads(text)


VERSIONS = ("v1", "v2")


def version_entry(version: str = "v1") -> dict[str, Any]:
    """One version's numbers, source and reading rule (step, smoothing window)."""
    versions = load_paper_results()["versions"]
    if version not in versions:
        raise ConfigError(suggest(version, list(versions)), field="--paper-version")
    return versions[version]


def reading_step(version: str = "v1") -> Any:
    """Where `version` reads each run: step 150 smoothed over 10 steps (v1), step 300 (v2)."""
    from .query import window

    r = version_entry(version)["reading"]
    return window(int(r["step"]), int(r.get("smooth") or 1))


def paper_values(
    version: str = "v1",
) -> tuple[dict[tuple[str, str], PaperValue], dict[str, float], dict[str, str], list[str]]:
    """(model, reward) -> the published change, model -> its published base (where the version has one),
    model -> the paper's name for it, and the paper's reward columns."""
    raw = load_paper_results()
    values, bases, names = {}, {}, {}
    for model, entry in version_entry(version)["models"].items():
        if entry.get("base") is not None:
            bases[model] = float(entry["base"])
        names[model] = entry["paper_name"]
        for reward, v in entry["deltas"].items():
            values[(model, reward)] = PaperValue(float(v))
    return values, bases, names, list(raw["rewards"])


def paper_key(label: str) -> str | None:
    """A stored reward label -> the paper's reward name, or None when its parameters differ from the paper's."""
    m = re.fullmatch(r"([^()]+)(?:\((.*)\))?", str(label).strip())
    if not m:
        return None
    name, args = m.group(1), m.group(2)
    if not args:
        return name
    params = dict(a.split("=", 1) for a in args.split(",") if "=" in a)
    want = PAPER_PARAMS.get(name)
    if want is None or set(params) - set(want):
        return None
    try:
        return name if all(float(params[k]) == v for k, v in want.items() if k in params) else None
    except ValueError:
        return None


def compare(
    con: Any,
    *,
    sweep: str | None = None,
    benchmark: str | None = None,
    step: str | None = None,
    spread: str = "std",
    where: list[str] | tuple[str, ...] = (),
    version: str = "v1",
) -> Comparison:
    """Our models x rewards change on MATH-500 (or `benchmark`), next to the paper's `version`, read where
    that version reads (unless `step` says otherwise)."""
    paper, paper_base, names, paper_rewards = paper_values(version)
    raw = load_paper_results()
    entry = version_entry(version)
    notes: list[str] = []
    bench = benchmark or raw["benchmark"]
    stored = [r[0] for r in con.execute("SELECT DISTINCT benchmark FROM evals").fetchall()]
    if bench not in stored:
        if benchmark is not None:
            raise ConfigError(
                suggest(bench, stored) if stored else "no evaluations are stored yet", field="--benchmark"
            )
        notes.append(
            f"no {bench} evaluations are stored: only the paper's numbers are shown "
            f"(--benchmark picks another benchmark: {', '.join(sorted(stored)) or 'none stored'})"
        )
    if bench != raw["benchmark"]:
        notes.append(f"ours are on {bench}; the paper's numbers are on {raw['benchmark']}")
    p = None
    if bench in stored:
        p = rep.pivot(
            con,
            sweep=sweep,
            rows="model",
            cols="reward",
            metric="pass@1",
            benchmark=bench,
            step=step or reading_step(version),
            where=where,
            spread=spread,
        )
        notes += p.notes
    if p is not None and not p.cells:
        notes.append(
            f"no stored run has an evaluation at step {p.step}: --step final reads each run's last one"
        )
    ours: dict[tuple[str, str], dict[str, Any]] = {}
    extra_rewards: list[str] = []
    if p is not None:
        for (model, label), cell in p.cells.items():
            key = paper_key(label)
            col = key if key in paper_rewards else str(label)
            if col not in paper_rewards and col not in extra_rewards:
                extra_rewards.append(col)
            if (model, col) in ours:
                notes.append(f"{model}: several stored rewards map to the paper's {col!r}; showing {label!r}")
            ours[(str(model), col)] = cell
    paper_models = list(entry["models"])
    models = paper_models + sorted({m for m, _ in ours} - set(paper_models))
    ours_base = {str(m): b for m, b in (p.baselines.items() if p else [])}
    notes.append(f"paper {version}: {entry['reading']['rule']} ({entry['source']}); blank: no sourced number")
    return Comparison(
        bench,
        str(p.step if p else (step or reading_step(version))),
        paper_rewards + sorted(extra_rewards),
        models,
        ours,
        ours_base,
        paper,
        paper_base,
        names,
        spread,
        notes,
        version,
    )


# ---------------------------------------------------------------------------------------------- rendering
def _ours_text(cell: dict[str, Any] | None, spread: str) -> str:
    if not cell or cell.get("delta") is None:
        return "-" if not cell else f"{cell['mean']:.1f} (no base)"
    if cell.get("paired") is not None:  # the paired change with its interval over problems and seeds
        from .. import stats

        return f"{stats.format_delta(cell['paired'])} (n={cell['n']})"
    s = f"{cell['delta']:+.1f}"
    if spread == "ci" and cell.get("ci"):
        lo, hi = cell["ci"][0] - cell["mean"] + cell["delta"], cell["ci"][1] - cell["mean"] + cell["delta"]
        s += f" [{lo:+.1f}, {hi:+.1f}]"
    elif cell.get("std") is not None:
        s += f" ± {cell['std']:.1f}"
    return s + f" (n={cell['n']})"


def table_rows(c: Comparison) -> tuple[list[str], list[list[str]]]:
    """Two rows per model: ours (change, spread, runs) and the paper's published change."""
    hdr = ["model", "source", "base", *c.rewards]
    body = []
    for m in c.models:
        has_paper = m in c.paper_names
        has_ours = any((m, r) in c.ours for r in c.rewards) or c.ours_base.get(m) is not None
        if has_ours or has_paper:
            b = c.ours_base.get(m)
            body.append(
                [
                    m,
                    "ours",
                    "-" if b is None else f"{b:.1f}",
                    *[_ours_text(c.ours.get((m, r)), c.spread) for r in c.rewards],
                ]
            )
        if has_paper:
            body.append(
                [
                    c.paper_names[m],
                    "paper",
                    f"{c.paper_base[m]:.1f}" if m in c.paper_base else "",
                    *[str(c.paper[(m, r)]) if (m, r) in c.paper else "" for r in c.rewards],
                ]
            )
    return hdr, body


def to_records(c: Comparison) -> list[dict[str, Any]]:
    recs = []
    for m in c.models:
        for r in c.rewards:
            cell, pv = c.ours.get((m, r)), c.paper.get((m, r))
            if cell is None and pv is None:
                continue
            rec: dict[str, Any] = {"model": m, "reward": r, "benchmark": c.benchmark, "step": c.step}
            if cell is not None:
                rec.update(
                    {
                        "ours_delta": cell.get("delta"),
                        "ours_mean": cell.get("mean"),
                        "ours_std": cell.get("std"),
                        "ours_n": cell.get("n"),
                        "ours_base": cell.get("base"),
                    }
                )
                if cell.get("ci"):
                    rec["ours_ci_low"], rec["ours_ci_high"] = cell["ci"]
            if pv is not None:
                rec.update(
                    {
                        "paper_delta": pv.value,
                        "paper_approx": pv.approx,
                        "paper_bound": pv.bound,
                        "paper_base": c.paper_base.get(m),
                    }
                )
            if cell is not None and pv is not None and cell.get("delta") is not None and pv.bound is None:
                rec["ours_minus_paper"] = cell["delta"] - pv.value
            recs.append(rec)
    return recs


def render(c: Comparison, fmt: str = "table") -> str | Any:
    head = (
        f"Figure 1 layout: change in {c.benchmark} pass@1 (points) "
        f"{f'at the {c.step} step' if c.step in ('final', 'best') else f'at step {c.step}'}, "
        f"ours (paired change [95% interval over problems and seeds]; ≈: contains 0) vs the paper's {c.version}"
    )
    hdr, body = table_rows(c)
    t = rnd.Table(
        hdr,
        body,
        head,
        c.notes,
        records=to_records(c),
        meta={"benchmark": c.benchmark},
        justify=["left" if h in ("model", "source") else "right" for h in hdr],
        row_styles=["dim" if r[1] == "paper" else None for r in body],
        end_sections=[r[1] == "paper" for r in body],
        page_title="spurisweep vs the paper",
        prose=True,  # intervals in every cell: a list, one block per model and source, below 120 columns
        heading_columns=2,
    )
    return rnd.render(t, fmt)
