"""`spurisweep diagnose`: is a sweep's gain from the reward? (RESEARCH.md, "Diagnostics worth computing")

One module per analysis, each an `Analysis` (base.py): `compute(ctx)` reads the store through a Context
(the request and the runs, read once) and returns its rows; `tables`, `notes` and `warnings` turn those rows
into rendered tables and lines. `ANALYSES` lists them in the order they print:

  families       a warning whenever the conclusions (or the clip 2x2's reading) rest on one model family
  sensitivity    per model and algorithm, each spurious reward's gain against ground truth's (random at
                 the gamma matched to the ground-truth hit rate); over 5 points with an interval off 0: flagged
  compression    compression vs capability from pass@1 and pass@k before and after training
  health         the training-health flags each cell recorded
  clip2x2        {standard, clip_higher} x {random, ground_truth} per model and algorithm, and its reading
  contamination  gains on the diagnosed and a fresh benchmark next to the family's memorisation probe
  passk          the pass@k curves of trained runs against their base model's and where they cross
  testset        runs trained on a benchmark's own prompts (data.test_set_training): named, and kept out
                 of every other analysis on that benchmark

Gains are changes in pass@1 (percentage points) at each run's final evaluation against its model's
untrained baseline, computed from the stored samples through query.tidy; their statistics are
spurisweep.stats's. Adding an analysis is one module with an `Analysis` subclass and its line in ANALYSES.
"""

from __future__ import annotations

from typing import Any

from ...errors import ConfigError, suggest
from .. import query as q
from .. import render as rnd
from .base import Analysis, Context, Diagnosis, Rows, Run, is_spurious, load_runs, plain
from .clip2x2 import ClipTwoByTwo, ClipTwoByTwoAnalysis
from .compression import Compression, CompressionAnalysis
from .contamination import Contamination, ContaminationAnalysis, probe_rates
from .families import FamiliesAnalysis, Family
from .health import HealthAnalysis, HealthRow
from .passk import Crossover, PasskAnalysis
from .sensitivity import Sensitivity, SensitivityAnalysis
from .testset import OwnPromptsAnalysis, OwnPromptsRun, split

__all__ = [
    "ANALYSES",
    "Analysis",
    "ClipTwoByTwo",
    "Compression",
    "Contamination",
    "Context",
    "Crossover",
    "Diagnosis",
    "Family",
    "HealthRow",
    "Rows",
    "Run",
    "Sensitivity",
    "OwnPromptsRun",
    "diagnose",
    "is_spurious",
    "probe_rates",
    "render",
    "sections",
    "to_dict",
]

#: the analyses `diagnose` runs, in the order their warnings, notes and tables print
ANALYSES: list[Analysis] = [
    OwnPromptsAnalysis(),
    FamiliesAnalysis(),
    SensitivityAnalysis(),
    CompressionAnalysis(),
    HealthAnalysis(),
    ClipTwoByTwoAnalysis(),
    ContaminationAnalysis(),
    PasskAnalysis(),
]
FORMATS = ("table", "markdown", "json")


def diagnose(con: Any, sweep: str | None, *, benchmark: str | None = None, k: int | None = None) -> Diagnosis:
    """Every analysis in ANALYSES for the cells of one sweep (or the whole store when sweep is None)."""
    q.check_sweep(con, sweep, "SWEEP")
    q.check_benchmark(con, benchmark)
    if k is not None and k < 2:
        raise ConfigError(f"pass@k for compression needs k >= 2, got {k}", field="--k")
    bench = benchmark or q.default_benchmark(con, sweep)
    runs = load_runs(con, sweep, bench)
    analyses = list(ANALYSES)
    d = Diagnosis(sweep, bench, len(runs), sorted({r.model for r in runs}), analyses=analyses)
    if not runs:
        d.results = {a.name: a.empty() for a in analyses}
        d.notes.append("no finished cells in the store for this sweep")
        return d
    if bench is None:
        d.notes.append("no benchmark evaluations stored: gains cannot be computed")
    kept, _ = split(runs, bench)
    ctx = Context(con, sweep, bench, benchmark, k, kept, all_runs=runs)
    d.results = {a.name: a.compute(ctx) for a in analyses}
    for a in analyses:
        d.warnings += a.warnings(d.results[a.name], d)
        d.notes += a.notes(d.results[a.name], d)
    return d


def sections(d: Diagnosis) -> list[rnd.Table]:
    """The tables of the report, shared by every format, in ANALYSES order."""
    return [t for a in d.analyses for t in a.tables(d.results[a.name], d)]


def to_dict(d: Diagnosis) -> dict[str, Any]:
    """The json output: the header, each analysis's rows under its name, the warnings and the notes."""
    head = {"sweep": d.sweep, "benchmark": d.benchmark, "runs": d.runs, "models": d.models}
    return {**head, **{k: plain(v) for k, v in d.results.items()}, "warnings": d.warnings, "notes": d.notes}


def render(d: Diagnosis, fmt: str = "table") -> str | Any:
    if fmt not in FORMATS:
        raise ConfigError(suggest(fmt, list(FORMATS)), field="--format")
    head = (
        f"diagnosis of {'sweep ' + d.sweep if d.sweep else 'all stored cells'}: {d.runs} runs, "
        f"models {', '.join(d.models) or 'none'}"
    )
    if fmt == "json":
        return rnd.to_json(to_dict(d))
    secs = sections(d)
    if fmt == "markdown":
        lines = [f"## {head}", ""]
        lines += [f"> **warning:** {w}" for w in d.warnings]
        lines += [f"_{n}_" for n in d.notes]
        for t in secs:
            lines += ["", rnd.to_markdown(t, heading="### {}", note="\n{}", empty_grid=False)]
        return "\n".join(lines) + "\n"
    from rich.console import Group
    from rich.text import Text

    parts: list[Any] = [Text(head, style="bold")]
    parts += [Text(f"warning: {w}", style="bold yellow") for w in d.warnings]
    parts += [Text(n, style="italic") for n in d.notes]
    for t in secs:
        if t.rows:
            parts.append(rnd.rich_table(t, title_justify="left", overflow="fold"))
        else:
            parts.append(Text(f"{t.title}: nothing to show", style="dim"))
        parts += [Text(n) for n in t.notes]
    return Group(*parts)
