"""What `spurisweep report` was asked, checked, and its answer: the pivot table, the paper comparison or
the figures, counting one grader's verdicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import paper, plots, query, report


@dataclass
class Request:
    """What `spurisweep report` was asked for (its options, checked before anything is read)."""

    pivot: str
    metric: str
    benchmark: str | None
    step: str | None
    where: list[str]
    fmt: str
    spread: str
    paper: bool
    plot: str | None
    out: Path | None
    sweep: str | None
    paper_version: str = "v1"
    smooth: int | None = None
    results: Path | None = None  # the results folder: noise floors measured there are printed

    @property
    def dims(self) -> list[str]:
        return [p.strip() for p in self.pivot.split(",") if p.strip()]

    def check(self) -> None:
        from .. import artifacts

        if len(self.dims) != 2:
            raise ConfigError(f"expected two comma-separated dimensions, got {self.pivot!r}", field="--pivot")
        if self.spread not in ("std", "ci"):
            raise ConfigError(f"unknown spread {self.spread!r}; valid: std, ci", field="--spread")
        if self.plot is not None and self.out is None:
            raise ConfigError("--plot needs --out DIR (where the PNG and HTML files go)", field="--out")
        if self.plot is not None and self.out is not None:
            artifacts.check_folder(self.out, option="--out")
        if self.paper:
            paper.version_entry(self.paper_version)  # an unknown version: one line
        if self.smooth is not None and self.smooth > 1:
            if not isinstance(query.parse_step(self.step), int):
                raise ConfigError("--smooth needs --step N, the step the window ends at", field="--smooth")

    @property
    def reading(self) -> Any:
        """The step (or smoothed window) each run is read at."""
        step = query.parse_step(self.step)
        return query.window(step, self.smooth) if isinstance(step, int) and self.smooth else step


def answer(con: Any, req: Request, *, grader: str) -> Any:
    """The rendered answer to a report request: figures written (--plot), the paper comparison (--paper),
    or the pivot table, counting `grader`'s verdicts."""
    query.use_grader(con, grader)
    if req.plot is not None:
        written = plots.write_plots(
            con, req.plot, req.out, sweep=req.sweep, benchmark=req.benchmark, where=req.where
        )
        return "wrote " + ", ".join(str(w) for w in written)
    if req.paper:
        cmp = paper.compare(
            con,
            sweep=req.sweep,
            benchmark=req.benchmark,
            step=req.reading,
            spread=req.spread,
            where=req.where,
            version=req.paper_version,
        )
        cmp.notes += _noise_notes(req, cmp.benchmark, set(cmp.models))
        return paper.render(cmp, req.fmt)
    rows, cols = req.dims
    p = report.pivot(
        con,
        sweep=req.sweep,
        rows=rows,
        cols=cols,
        metric=req.metric,
        benchmark=req.benchmark,
        step=req.reading,
        where=req.where,
        spread=req.spread,
    )
    models = p.row_values if p.rows == "model" else p.col_values if p.cols == "model" else []
    p.notes += _noise_notes(req, p.benchmark, {str(m) for m in models})
    return report.render(p, req.fmt, req.spread)


def _noise_notes(req: Request, benchmark: str, models: set[str]) -> list[str]:
    """The noise floors measured for these models on this benchmark (`spurisweep noise-floor`)."""
    if req.results is None or not models:
        return []
    from ..evaluation import noise

    return noise.notes(req.results, benchmark, models)
