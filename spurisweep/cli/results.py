"""Commands over the results: ingest, report, diagnose."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from .. import artifacts
from ..analysis.metric_registry import metric_help
from .common import (
    GraderOpt,
    ResultsOpt,
    SweepArg,
    SweepOpt,
    app,
    console,
    count,
    emit,
    err,
    exit_codes,
    sweep_given,
    sweep_name,
)


@app.command(epilog=exit_codes("ingest"))
def ingest(
    rebuild: Annotated[
        bool,
        typer.Option(
            "--rebuild", help="Rebuild the database from the cell folders (after an upgrade or damage)."
        ),
    ] = False,
    results: ResultsOpt = Path("results"),
) -> None:
    """Load finished cells' files into the DuckDB store (idempotent; run by run/status/report too)."""
    artifacts.check_results(results)
    from .. import store
    from ..errors import PathError

    db = store.db_path(results)
    if not rebuild and not store.writable(db):  # reading commands read it as it stands; ingest must write
        raise PathError(f"{db}: is not writable by this user, so nothing can be ingested into it")
    counts = store.rebuild(results) if rebuild else store.ingest(results)
    console.print(
        f"ingested {counts['cells']} cell(s) and {counts['baselines']} baseline evaluation(s) "
        f"into {store.db_path(results)}"
    )


@app.command(epilog=exit_codes("report"))
def report(
    sweep_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="SWEEP",
            help="Only cells of this sweep: its YAML file or its name (default: every stored cell).",
            show_default=False,
        ),
    ] = None,
    sweep_option: SweepOpt = None,
    pivot: Annotated[
        str,
        typer.Option(
            help="ROWS,COLS: two dimensions (model, reward, clip, seed, benchmark, step, any swept setting, "
            "or an evaluation variant's eval_seed, temperature, top_p: eval.variants)."
        ),
    ] = "model,reward",
    metric: Annotated[
        str,
        typer.Option(help=metric_help()),
    ] = "pass@1",
    benchmark: Annotated[str | None, typer.Option(help="Benchmark (default: math500 if present).")] = None,
    step: Annotated[
        str | None,
        typer.Option(
            help="final, best, all, or a step number (0 = untrained); default: "
            "all when step is pivoted, else final."
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            help="KEY=VALUE filter on a dimension (repeatable; a repeated KEY means any of its values)."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown, csv, json or html.")] = "table",
    spread: Annotated[str, typer.Option(help="std, or ci (bootstrap 95% interval).")] = "std",
    paper: Annotated[
        bool,
        typer.Option(
            "--paper",
            help="The paper's Figure 1 layout (models x rewards, "
            "MATH-500 change) next to its published numbers.",
        ),
    ] = False,
    paper_version: Annotated[
        str,
        typer.Option(
            "--paper-version",
            help="With --paper: v1 (the PDF the official repository shipped: step 150, 10-step mean) or v2 "
            "(arXiv: step 300); ours are read at the same point unless --step says otherwise.",
        ),
    ] = "v1",
    smooth: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=10_000,
            help="With --step N: each run's value is the mean of its evaluations at steps N-K+1..N.",
        ),
    ] = None,
    plot: Annotated[
        str | None,
        typer.Option(help="Write figures instead: curves, code, clip or passk (PNG + HTML, into --out)."),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for --plot output.")] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="With --sweep: also the sweep's earlier cells (run with settings its file has changed "
            "since), which are kept but not shown by default.",
        ),
    ] = False,
    grader: GraderOpt = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """The comparison table: mean over seeds, spread, and the change against each model's baseline. With
    a sweep, the sweep as its file is now: its current cells (--history adds its earlier ones)."""
    artifacts.check_results(results, write=False)  # a folder this user cannot write is read as it stands
    sweep = sweep_name(sweep_given(sweep_arg, sweep_option, required=False))
    from .. import store
    from ..analysis import query
    from ..analysis import request as rep
    from ..errors import ConfigError

    if history and sweep is None:
        raise ConfigError(
            "--history shows a sweep's earlier cells: give the sweep (SWEEP or --sweep NAME)",
            field="--history",
        )

    req = rep.Request(
        pivot,
        metric,
        benchmark,
        step,
        where or [],
        fmt,
        spread,
        paper,
        plot,
        out,
        sweep,
        paper_version,
        smooth,
        results,
    )
    req.check()
    with store.reading(results) as con:
        _warn_incomplete(results, sweep)
        earlier = store.history(results, sweep, axes=history) if sweep else {}
        if history:
            query.use_history(con, str(sweep), earlier)
        rendered = rep.answer(con, req, grader=grader or ("paper" if paper else "math_verify"))
    emit(rendered)
    if earlier and not history:
        err.print(
            f"{len(earlier)} earlier cell(s) of sweep {sweep} (other settings) are not shown; --history shows them",
            markup=False,
            highlight=False,
        )


def _warn_incomplete(results: Path, sweep: str | None) -> None:
    """Finished cells whose files are partly missing or damaged load partly or not at all: say which."""
    from .. import artifacts

    seen: set[str] = set()
    for d, what in artifacts.incomplete_cells(results, sweep=sweep).items():
        real = os.path.realpath(d)  # a sweep sharing the cell links to its one folder: named once
        if real in seen:
            continue
        seen.add(real)
        err.print(
            f"[yellow]incomplete[/] {d.parent.name}/{d.name}: {'; '.join(what)} (its rows are partial or absent)",
            highlight=False,
        )


@app.command(epilog=exit_codes("diagnose"))
def diagnose(
    sweep: SweepArg = None,
    sweep_option: SweepOpt = None,
    benchmark: Annotated[
        str | None, typer.Option(help="Benchmark for gains (default: math500 if present).")
    ] = None,
    k: Annotated[
        int | None,
        count(
            "k of pass@k for compression (default: samples per problem of the benchmark with the most).",
            "--k",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown or json.")] = "table",
    grader: GraderOpt = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """Is the gain from the reward? Spurious-reward sensitivity, compression vs capability, training health,
    the clip 2x2 reading, and a warning when conclusions rest on one model family."""
    artifacts.check_results(results, write=False)  # a folder this user cannot write is read as it stands
    from .. import store
    from ..analysis import diagnostics, query

    name = sweep_name(sweep_given(sweep, sweep_option))
    with store.reading(results) as con:
        query.use_grader(con, grader or "math_verify")
        d = diagnostics.diagnose(con, name, benchmark=benchmark, k=k)
    rendered = diagnostics.render(d, fmt)
    emit(rendered)
