"""The `spurisweep` command line: each command wires options to one library call.

Library errors (SpurisweepError) become one line on stderr and exit code 2 here, and only here.
Heavy imports (torch, trl) happen inside the commands that need them.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from .analysis.metric_registry import metric_help
from .errors import ConfigError, SpurisweepError

app = typer.Typer(
    help="Run spurious-reward RLVR studies (GRPO on math) across model families, and compare them.\n\n"
    "Typical use: `spurisweep plan SWEEP.yaml`, `spurisweep run SWEEP.yaml`, "
    "`spurisweep report --sweep NAME --pivot model,reward`.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
console = Console()
err = Console(stderr=True)

ResultsOpt = Annotated[
    Path,
    typer.Option(
        "--results", envvar="SPURISWEEP_RESULTS", help="Results folder (cell folders + the DuckDB file)."
    ),
]
GraderOpt = Annotated[
    str | None,
    typer.Option(
        help="Whose verdicts to count: math_verify (default) or paper (the paper's official grader; the "
        "default with --paper). Every sample keeps both.",
    ),
]
SweepArg = Annotated[Path, typer.Argument(help="A sweep YAML file (see sweeps/).", show_default=False)]


def _load(sweep_file: Path, *, check_trl: bool = True, cached: bool = False):
    from . import grid, spec, training

    sweep = spec.load_sweep(sweep_file)
    cells = grid.expand(sweep)
    if check_trl:  # TRL's cross-field rules, once per distinct training setup, before anything is queued
        training.validate_all((c.config for c in cells), file=str(sweep_file), cached=cached)
    return sweep, cells


#: a state table longer than this is printed as plain aligned columns: rich lays out every cell of a table
#: (about 10 ms a row on 2 cores), which for a 20,000-cell sweep took minutes
PLAIN_ROWS = 500
STATE_COLORS = {
    "done": "green",
    "failed": "red",
    "killed": "red",
    "running": "cyan",
    "queued": "yellow",
    "requeued": "yellow",
    "cancelled": "magenta",
    "submitting": "yellow",
}


def _state_rows(states, show_error: bool) -> tuple[list[str], list[list[str]]]:
    """The state table's header and rows (the state without colour markup)."""
    axes = list(states[0].cell.axes) if states else []
    header = ["cell", *axes, "state"] + (["detail"] if show_error else [])
    rows = []
    for s in states:
        detail = s.error or ""
        if s.state in ("running", "requeued") and s.step is not None:
            detail = f"step {s.step}"
        if s.requeues:
            detail = (detail + f" (requeued {s.requeues}x)").strip()
        if s.health:
            detail = (detail + " health: " + ",".join(s.health)).strip()
        if s.incomplete:
            detail = (detail + " incomplete: " + "; ".join(s.incomplete)).strip()
        row = [s.cell.id, *[str(s.cell.axes.get(a, "")) for a in axes], s.state]
        if show_error:
            row.append(detail)
        rows.append(row)
    return header, rows


def _state_table(states, title: str, show_error: bool = True):
    from rich.table import Table

    header, rows = _state_rows(states, show_error)
    t = Table(title=title)
    for name in header:
        if name == "detail":
            t.add_column(name, overflow="fold", max_width=60)
        else:
            t.add_column(name)
    col = header.index("state")
    for row in rows:
        row[col] = f"[{STATE_COLORS.get(row[col], 'white')}]{row[col]}[/]"
        t.add_row(*row)
    return t


def _print_states(states, title: str, show_error: bool = True) -> None:
    """The state table: rich's below PLAIN_ROWS rows, plain aligned columns above (same columns)."""
    if len(states) <= PLAIN_ROWS:
        console.print(_state_table(states, title, show_error))
        return
    header, rows = _state_rows(states, show_error)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _summary(states) -> str:
    from collections import Counter

    c = Counter(s.state for s in states)
    order = [
        "done",
        "running",
        "submitting",
        "queued",
        "requeued",
        "pending",
        "failed",
        "killed",
        "cancelled",
    ]
    text = f"{len(states)} cells: " + ", ".join(f"{c[k]} {k}" for k in order if c[k])
    incomplete = sum(bool(s.incomplete) for s in states)
    return text + (f"; {incomplete} incomplete" if incomplete else "")


@app.command()
def plan(
    sweep_file: SweepArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cells as JSON (for scripts).")] = False,
    results: ResultsOpt = Path("results"),
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Validate every training setup with TRL afresh (as `run` does), not only those this "
            "installation has not validated before.",
        ),
    ] = False,
) -> None:
    """Expand a sweep into its cells and show each one's axes, id and whether it is already done, and the
    memory planner's per-GPU estimate for each resource profile (a cell that cannot fit is an error)."""
    from . import launch, resources
    from .analysis.render import render

    sweep, cells = _load(sweep_file, cached=not check)
    estimates = resources.check_cells(cells, file=str(sweep_file))
    states = launch.states(cells, results, live=False)
    if as_json:
        payload = {
            "sweep": sweep.name,
            "count": len(cells),
            "cells": [
                {
                    "id": s.cell.id,
                    "axes": s.cell.axes,
                    "state": s.state,
                    "config": s.cell.config.model_dump(mode="json"),
                    "node": resources.node_totals(s.cell.config).as_dict(),
                    "memory": (est.as_dict() if (est := estimates.get(s.cell.id)) is not None else None),
                }
                for s in states
            ],
        }
        sys.stdout.write(json.dumps(payload, indent=1, default=str) + "\n")
        return
    _print_states(states, f"sweep {sweep.name}: {len(cells)} cells", show_error=False)
    console.print(_summary(states))
    console.print(render(resources.planner_table(cells, estimates), "table"))


@app.command()
def run(
    sweep_file: SweepArg,
    executor: Annotated[
        str, typer.Option(help="local (processes here), debug (in this process) or slurm.")
    ] = "local",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be submitted; submit nothing.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Also resubmit cells that failed.")
    ] = False,
    wait: Annotated[bool, typer.Option(help="Follow the jobs until they end (Ctrl-C detaches).")] = True,
    max_parallel: Annotated[
        int | None, typer.Option(help="Local cells at once (default: GPUs, else cores).")
    ] = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """Submit every cell of a sweep that is not done, queued or running; then ingest the results."""
    from . import launch, resources, store

    backend = launch.get_backend(executor, field="--executor")
    # a dry run previews, as `plan` does: setups this installation validated before are not validated
    # again (the real run validates every one afresh)
    sweep, cells = _load(sweep_file, cached=dry_run)
    resources.check_cells(cells, file=str(sweep_file))  # node shape and GPU memory, before anything is queued
    if dry_run:
        plan_, states = launch.plan_submission(cells, results, retry_failed=retry_failed)
    else:  # under the sweep's lock, the chosen cells claimed: a second `run` leaves them alone
        plan_, states = launch.plan_and_claim(cells, results, retry_failed=retry_failed)
    skipped = ", ".join(f"{len(v)} {k}" for k, v in plan_.skipped.items())
    if dry_run:
        chosen = {c.id for c in plan_.to_submit}
        _print_states(
            [s for s in states if s.cell.id in chosen],
            f"would submit {len(plan_.to_submit)} of {len(cells)} cells ({executor})",
            show_error=False,
        )
        for line in backend.describe(plan_.to_submit):
            console.print(line)
        console.print(f"skipped: {skipped or 'none'}")
        return
    launch.write_manifest(sweep.name, str(sweep_file), cells, results)
    if not plan_.to_submit:
        console.print(f"nothing to submit ({skipped}).")
    else:
        console.print(
            f"submitting {len(plan_.to_submit)} of {len(cells)} cells via {executor}"
            + (f" (skipped: {skipped})" if skipped else "")
        )
        try:
            with _Progress(len(plan_.to_submit)) as prog:
                launch.submit(
                    plan_.to_submit,
                    results,
                    executor=executor,
                    max_parallel=max_parallel,
                    on_update=prog.update,
                    wait=wait,
                    claimed=True,
                )
        except KeyboardInterrupt:
            err.print("detached: jobs keep running; `spurisweep status` follows them.")
            raise typer.Exit(130) from None
    counts = store.ingest(results)
    final = launch.states(cells, results)
    console.print(_summary(final) + f"; ingested {counts['cells']} new cell(s) into {store.db_path(results)}")
    bad = [s for s in final if s.state in ("failed", "killed")]
    for s in bad:
        err.print(f"[red]{s.state}[/] {s.cell.id} ({s.cell.label}): {s.error or 'see ' + str(s.dir)}")
    if bad:
        raise typer.Exit(1)


class _Progress:
    """A live progress bar over cells plus a per-state count line."""

    def __init__(self, total: int):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("[bold]cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
            disable=not console.is_terminal and "CI" in os.environ,
        )
        self.task = self.progress.add_task("", total=total)

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        return self.progress.__exit__(*exc)

    def update(self, states) -> None:
        finished = sum(s.state in ("done", "failed", "killed", "cancelled") for s in states)
        self.progress.update(self.task, completed=finished, description=_summary(states))


@app.command()
def status(
    sweep_file: SweepArg,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh live until no cell is queued or running.")
    ] = False,
    interval: Annotated[float, typer.Option(help="Seconds between refreshes with --watch.")] = 5.0,
    results: ResultsOpt = Path("results"),
) -> None:
    """Each cell's state (pending, queued, running, done, failed with its last error, requeues)."""
    import time

    from rich.live import Live

    from . import launch, store

    sweep, cells = _load(sweep_file, check_trl=False)
    if not watch:
        states = launch.states(cells, results, check_files=True)
        _print_states(states, f"sweep {sweep.name}")
        console.print(_summary(states))
        store.ingest(results)
        return
    with Live(console=console, refresh_per_second=1) as live:
        while True:
            states = launch.states(cells, results, check_files=True)
            live.update(_state_table(states, f"sweep {sweep.name} — {_summary(states)}"))
            if not any(s.state in launch.ACTIVE for s in states):
                break
            time.sleep(interval)
    store.ingest(results)


@app.command()
def cancel(
    sweep_file: SweepArg,
    cell: Annotated[list[str] | None, typer.Option("--cell", help="Only this cell id (repeatable).")] = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """Cancel the queued and running jobs of this sweep only (or of the given cells)."""
    from . import launch

    _, cells = _load(sweep_file, check_trl=False)
    if cell:
        unknown = [c for c in cell if c not in {x.id for x in cells}]
        if unknown:
            raise ConfigError(f"no cell {unknown[0]!r} in this sweep", file=str(sweep_file), field="--cell")
        cells = [c for c in cells if c.id in cell]
    done = launch.cancel(cells, results)
    console.print(
        f"cancelled {len(done)} job(s)" + (": " + ", ".join(s.cell.id for s in done) if done else "")
    )


@app.command()
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
    from . import store

    counts = store.rebuild(results) if rebuild else store.ingest(results)
    console.print(
        f"ingested {counts['cells']} cell(s) and {counts['baselines']} baseline evaluation(s) "
        f"into {store.db_path(results)}"
    )


@app.command()
def report(
    sweep: Annotated[str | None, typer.Option(help="Only cells of this sweep (its name).")] = None,
    pivot: Annotated[
        str,
        typer.Option(
            help="ROWS,COLS: two dimensions (model, reward, clip, seed, "
            "benchmark, step, or any swept setting)."
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
    plot: Annotated[
        str | None, typer.Option(help="Write figures instead: curves, code or clip (PNG + HTML, into --out).")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Folder for --plot output.")] = None,
    grader: GraderOpt = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """The comparison table: mean over seeds, spread, and the change against each model's baseline."""
    from . import store
    from .analysis import query
    from .analysis import report as rep

    parts = [p.strip() for p in pivot.split(",") if p.strip()]
    if len(parts) != 2:
        raise ConfigError(f"expected two comma-separated dimensions, got {pivot!r}", field="--pivot")
    if spread not in ("std", "ci"):
        raise ConfigError(f"unknown spread {spread!r}; valid: std, ci", field="--spread")
    if plot is not None and out is None:
        raise ConfigError("--plot needs --out DIR (where the PNG and HTML files go)", field="--out")
    store.ingest(results)
    _warn_incomplete(results, sweep)
    with store.connect(store.db_path(results)) as con:
        query.use_grader(con, grader or ("paper" if paper else "math_verify"))
        if plot is not None:
            from .analysis import plots

            written = plots.write_plots(con, plot, out, sweep=sweep, benchmark=benchmark, where=where or [])
            console.print("wrote " + ", ".join(str(w) for w in written))
            return
        if paper:
            from .analysis import paper as paper_mod

            cmp = paper_mod.compare(
                con, sweep=sweep, benchmark=benchmark, step=step, spread=spread, where=where or []
            )
            rendered = paper_mod.render(cmp, fmt)
        else:
            p = rep.pivot(
                con,
                sweep=sweep,
                rows=parts[0],
                cols=parts[1],
                metric=metric,
                benchmark=benchmark,
                step=step,
                where=where or [],
                spread=spread,
            )
            rendered = rep.render(p, fmt, spread)
    if isinstance(rendered, str):
        sys.stdout.write(rendered + ("\n" if not rendered.endswith("\n") else ""))
    else:
        console.print(rendered)


def _warn_incomplete(results: Path, sweep: str | None) -> None:
    """Finished cells whose files are partly missing or damaged load partly or not at all: say which."""
    from . import artifacts

    for d, what in artifacts.incomplete_cells(results, sweep=sweep).items():
        err.print(
            f"[yellow]incomplete[/] {d.parent.name}/{d.name}: {'; '.join(what)} (its rows are partial or absent)",
            highlight=False,
        )


@app.command()
def diagnose(
    sweep: Annotated[str, typer.Argument(help="A sweep YAML file or a sweep name.", show_default=False)],
    benchmark: Annotated[
        str | None, typer.Option(help="Benchmark for gains (default: math500 if present).")
    ] = None,
    k: Annotated[
        int | None,
        typer.Option(
            "--k",
            help="k of pass@k for compression (default: samples per problem of the benchmark with the most).",
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown or json.")] = "table",
    grader: GraderOpt = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """Is the gain from the reward? Spurious-reward sensitivity, compression vs capability, training health,
    the clip 2x2 reading, and a warning when conclusions rest on one model family."""
    from . import store
    from .analysis import diagnostics, query

    name = sweep
    if sweep.endswith((".yaml", ".yml")) or Path(sweep).is_file():
        from . import spec

        name = spec.load_sweep(sweep).name
    store.ingest(results)
    with store.connect(store.db_path(results)) as con:
        query.use_grader(con, grader or "math_verify")
        d = diagnostics.diagnose(con, name, benchmark=benchmark, k=k)
    rendered = diagnostics.render(d, fmt)
    if isinstance(rendered, str):
        sys.stdout.write(rendered + ("\n" if not rendered.endswith("\n") else ""))
    else:
        console.print(rendered)


@app.command(name="eval")
def eval_cmd(
    model: Annotated[str, typer.Option(help="Model family (its prompt template and defaults).")],
    checkpoint: Annotated[
        str | None, typer.Option(help="Weights to evaluate instead of the family's.")
    ] = None,
    model_path: Annotated[
        str | None, typer.Option(help="Local folder or hub id for the family's weights.")
    ] = None,
    benchmarks: Annotated[str, typer.Option(help="Comma-separated benchmarks.")] = "math500",
    limit: Annotated[int | None, typer.Option(help="Only the first N problems of each benchmark.")] = None,
    prompt: Annotated[str | None, typer.Option(help="Prompt template (default: the family's).")] = None,
    backend: Annotated[str, typer.Option(help="auto, vllm or transformers.")] = "auto",
    protocol: Annotated[
        list[str] | None,
        typer.Option(
            help="Protocol override BENCH.FIELD=VALUE, or FIELD=VALUE for all (samples, temperature, top_p, "
            "max_new_tokens, prompt, path, limit); repeatable. Match a sweep's eval.protocols to share its baseline."
        ),
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option(help="Sequences per generate() call (default: by memory).")
    ] = None,
    seed: int = 0,
    results: ResultsOpt = Path("results"),
) -> None:
    """Evaluate a base model or any checkpoint and record it in the same store."""
    from . import data, evaluate, store
    from .spec import EvalSettings

    names = [b.strip() for b in benchmarks.split(",") if b.strip()]
    for b in names:
        if b not in data.BENCHMARKS:
            from .errors import suggest

            raise ConfigError(suggest(b, list(data.BENCHMARKS)), field="--benchmarks")
    metas = evaluate.evaluate_standalone(
        model=model,
        model_path=model_path,
        checkpoint=checkpoint,
        benchmarks=names,
        settings=EvalSettings(
            benchmarks=names,
            limit=limit,
            batch_size=batch_size,
            protocols=evaluate.parse_protocol_options(protocol, names),
        ),
        prompt=prompt,
        results=results,
        seed=seed,
        backend=backend,
    )
    store.ingest(results)
    for m in metas:
        s = m["summary"]
        ks = " ".join(f"{k}={s[k]:.3f}" for k in m.get("headline", ["pass@1"]) if k in s)
        ks += f" (stderr {s.get('stderr', 0):.3f}, code {s.get('code_frequency') or 0:.1%})"
        console.print(
            f"{m['benchmark']}: {s.get('problems')} problems x {s.get('samples')} samples  {ks}  "
            f"(eval {m['eval_id']})"
        )


@app.command()
def label(
    model: Annotated[str, typer.Option(help="Model family whose majority answers become the labels.")],
    dataset: Annotated[
        str, typer.Option(help="Training set: hub id, local JSON/JSONL/parquet or builtin:arith.")
    ],
    n: Annotated[int, typer.Option("--n", help="Samples per prompt (the paper: 64).")] = 64,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (the paper: 1.0).")] = 1.0,
    top_p: float = 1.0,
    max_new_tokens: Annotated[int, typer.Option(help="Max tokens per sample.")] = 3072,
    limit: Annotated[int | None, typer.Option(help="Only the first N prompts.")] = None,
    prompt: Annotated[
        str, typer.Option(help="Prompt template (the paper: plain, no chat template).")
    ] = "plain",
    model_path: Annotated[str | None, typer.Option(help="Local weights for the family.")] = None,
    seed: int = 0,
    force: Annotated[bool, typer.Option("--force", help="Make them again even if they exist.")] = False,
    results: ResultsOpt = Path("results"),
) -> None:
    """Make majority-vote labels (for the majority_vote and incorrect_label rewards) with the base model."""
    from . import families, labels
    from .errors import suggest

    if model not in families.FAMILIES:
        raise ConfigError(suggest(model, list(families.FAMILIES)), field="--model")
    if prompt not in families.PROMPTS:
        raise ConfigError(suggest(prompt, list(families.PROMPTS)), field="--prompt")
    spec = labels.LabelSpec(
        model=model,
        model_path=model_path,
        dataset=dataset,
        limit=limit,
        samples=n,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
        prompt=prompt,
        seed=seed,
    )
    out = labels.labels_path(results, spec)
    if force or not out.with_suffix(".json").exists():
        from rich.progress import Progress

        out.parent.mkdir(parents=True, exist_ok=True)
        with Progress(console=console) as prog:
            task = prog.add_task(f"labelling with {model}", total=None)
            labels.make_labels(spec, out, progress=lambda k: prog.advance(task, k))
    meta = json.loads(out.with_suffix(".json").read_text())
    console.print(
        f"{meta['problems']} prompts, {meta['labelled']} with a majority answer, "
        f"{meta['majority_correct']} of them correct -> {out}"
    )


@app.command(name="verify-rewards")
def verify_rewards(
    reward: Annotated[
        list[str] | None,
        typer.Option(
            help="A reward or composition (repeatable; default: all but random, plus a few compositions)."
        ),
    ] = None,
    floor: Annotated[float, typer.Option(help="Exit 1 if any checker's coverage is below this.")] = 0.9,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result as JSON.")] = False,
) -> None:
    """Run the grader and every reward against the adversarial suite; print coverage and failures."""
    from rich.table import Table

    from .rewards import coverage

    try:
        result = coverage.verify(reward)
    except ValueError as exc:
        raise ConfigError(str(exc), field="--reward") from None
    if as_json:
        sys.stdout.write(json.dumps(result.to_dict(), indent=1, default=str) + "\n")
    else:
        t = Table(title="verifier coverage on the adversarial suite")
        for col in ("checker", "as expected", "coverage"):
            t.add_column(col, justify="left" if col == "checker" else "right")
        for name, (ok, n) in result.counts.items():
            cov = result.coverage[name]
            color = "green" if cov >= 1.0 else ("yellow" if cov >= floor else "red")
            t.add_row(name, f"{ok}/{n}", f"[{color}]{100 * cov:.1f}%[/]")
        console.print(t)
        for f in result.failures:
            console.print(
                f"[red]FAIL[/] {f.checker} {f.case_id}: expected {f.expected}, got {f.got}"
                + (f" ({f.error})" if f.error else ""),
                highlight=False,
            )
    if any(c < floor for c in result.coverage.values()):
        raise typer.Exit(1)


@app.command()
def grade(
    file: Annotated[Path, typer.Argument(help="JSONL rows with a response and a reference answer.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the verdicts (default FILE.graded.jsonl).")
    ] = None,
    response_field: Annotated[str, typer.Option(help="Field holding the model's response.")] = "response",
    answer_field: Annotated[str, typer.Option(help="Field holding the reference answer.")] = "answer",
    timeout: Annotated[float, typer.Option(help="Seconds per answer before it counts as ungradable.")] = 5.0,
    workers: Annotated[int | None, typer.Option(help="Grading processes (default: all cores).")] = None,
) -> None:
    """Grade any model's outputs (another framework's, a released model's) with spurisweep's grader."""
    from . import artifacts
    from .errors import GradingError
    from .grading import grade_batch

    if not file.is_file():
        raise GradingError(f"{file}: file not found")
    rows = []
    for i, line in enumerate(file.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise GradingError(f"{file}: line {i}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or response_field not in row or answer_field not in row:
            raise GradingError(
                f"{file}: line {i}: expected an object with {response_field!r} and {answer_field!r}"
            )
        rows.append(row)
    verdicts = grade_batch(
        [(str(r[response_field]), str(r[answer_field])) for r in rows], workers=workers, timeout=timeout
    )
    graded = [{**r, **v.to_dict()} for r, v in zip(rows, verdicts, strict=True)]
    dest = out or file.with_name(file.name.removesuffix(".jsonl") + ".graded.jsonl")
    artifacts.atomic_write_jsonl(dest, graded)
    n = len(graded)
    correct = sum(v.correct is True for v in verdicts)
    ungradable = sum(v.correct is None for v in verdicts)
    code = sum(v.has_python for v in verdicts)
    acc = f"{100 * correct / n:.1f}%" if n else "-"
    console.print(
        f"graded {n} responses: {correct} correct ({acc}), {ungradable} ungradable, "
        f"{code} with code reasoning -> {dest}"
    )


toy_app = typer.Typer(
    help="The toy laboratory: two tiny model families pretrained on this CPU (docs/toy.md).",
    no_args_is_help=True,
)
app.add_typer(toy_app, name="toy")


@toy_app.command("build")
def toy_build(
    family: Annotated[
        list[str] | None, typer.Option("--family", help="Only this toy family (repeatable).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Pretrain again even if the model is cached.")
    ] = False,
) -> None:
    """Pretrain toy-coder and toy-prose (cached after the first time) and show their priors: accuracy, code
    frequency and accuracy with / without code on the held-out problems, sampled at temperature 1 and greedy."""
    from rich.table import Table

    from .toy import build as toy

    names = family or list(toy.FAMILY_CONFIGS)
    t = Table(title="toy families: the prior on 200 held-out problems (sampled = 4 samples at temperature 1)")
    for col in (
        "family",
        "decoding",
        "accuracy",
        "code freq.",
        "acc. with code",
        "acc. without code",
        "build s",
    ):
        t.add_column(col)
    for name in names:
        with console.status(f"building {name} (pretraining on this CPU; a few minutes the first time)"):
            path, stats = toy.ensure(name, force=force)
        for mode in ("sampled", "greedy"):
            p = stats.get("prior", {}).get(mode, {})
            t.add_row(
                name,
                mode,
                *(
                    f"{100 * p[k]:.1f}%" if p.get(k) is not None else "-"
                    for k in ("accuracy", "code_frequency", "acc_with_code", "acc_without_code")
                ),
                str(stats.get("seconds", "")),
            )
        console.print(f"{name}: {path}", highlight=False)
    console.print(t)


@app.command()
def fidelity(
    sweep_file: SweepArg,
    fmt: Annotated[str, typer.Option("--format", help="table, markdown or json.")] = "table",
) -> None:
    """List every resolved setting of a sweep that differs from the paper's official code (grader, objective
    switches, prompt, labels, batch layout, evaluation cadence, seeds), each with its expected effect."""
    from . import fidelity as fid
    from . import grid, spec
    from .analysis.render import render

    if fmt not in ("table", "markdown", "json"):
        raise ConfigError(f"unknown {fmt!r}; valid: json, markdown, table", field="--format")
    sweep = spec.load_sweep(sweep_file)
    table = fid.sweep_report(
        grid.expand(sweep), title=f"sweep {sweep.name}: differences from the paper's code"
    )
    rendered = render(table, fmt)
    if isinstance(rendered, str):
        sys.stdout.write(rendered + "\n")
    else:
        console.print(rendered)


def main() -> None:
    try:
        app(standalone_mode=False)
    except SpurisweepError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        raise


if __name__ == "__main__":
    main()
