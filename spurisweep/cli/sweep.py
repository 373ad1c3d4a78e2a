"""Commands over a sweep (its file, or the name of a sweep that ran in --results): plan, run, status, cancel,
fidelity."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import artifacts
from ..errors import ConfigError, suggest
from .common import (
    MAX_SECONDS,
    TABLE_FORMATS,
    ResultsOpt,
    SweepArg,
    SweepOpt,
    TableFormatOpt,
    app,
    console,
    count,
    emit,
    err,
    exit_codes,
    load_sweep,
    number,
    print_states,
    resolve_sweep_file,
    state_table,
    summary,
    sweep_given,
)

if TYPE_CHECKING:
    from ..launch import Plan, Prepared, Preview


@app.command(epilog=exit_codes("plan"))
def plan(
    sweep: SweepArg = None,
    sweep_option: SweepOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the cells as JSON (for scripts).")] = False,
    fmt: TableFormatOpt = "table",
    results: ResultsOpt = Path("results"),
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Validate every training setup with TRL afresh (as `run` does), not only those this "
            "installation has not validated before: each builds the GRPOConfig its cells train with, a "
            "sharded cell's FSDP arguments included (no GPU, no model weights).",
        ),
    ] = False,
    assume: Annotated[
        list[str] | None,
        typer.Option(
            "--assume",
            metavar="KEY=VALUE",
            help="A cost-model assumption for this look, over the sweep's `cost:` section (repeatable), e.g. "
            "decode_tokens_per_s=3000; the keys are listed under the cost block.",
        ),
    ] = None,
) -> None:
    """Expand a sweep into its cells and show each one's axes, id and whether it is already done, the
    memory planner's per-GPU estimate for each resource profile (a cell that cannot fit is an error), and
    the cost model's hours per cell beside the official layout's, with the assumptions behind them."""
    artifacts.check_results(results, write=False)
    path = resolve_sweep_file(sweep_given(sweep, sweep_option), results)
    fmt = _table_format(fmt, as_json)
    from .. import launch
    from ..analysis.render import render
    from ..plan import cost
    from ..plan import node as resources

    # --check: every training setup afresh, each with the GRPOConfig its cells train with (a sharded
    # cell's FSDP arguments included: grpo.validate); an error names the file, the cell and TRL's words
    sweep_, cells = load_sweep(path, cached=not check)
    assumed = cost.assumptions(sweep_.spec.cost, assume or [])
    estimates = resources.check_cells(cells, file=str(path))
    costs = cost.estimate(cells, assumed)
    states = launch.states(cells, results, live=False)
    if fmt == "json":
        payload = {
            "sweep": sweep_.name,
            "count": len(cells),
            "cost": {"assumptions": assumed.model_dump(), **cost.totals(costs)},
            "cells": [
                {
                    "id": s.cell.id,
                    "axes": s.cell.axes,
                    "state": s.state,
                    "config": s.cell.config.model_dump(mode="json"),
                    "node": resources.node_totals(s.cell.config).as_dict(),
                    "memory": (est.as_dict() if (est := estimates.get(s.cell.id)) is not None else None),
                    "cost": (c.as_dict() if (c := costs.get(s.cell.id)) is not None else None),
                }
                for s in states
            ],
        }
        sys.stdout.write(json.dumps(payload, indent=1, default=str) + "\n")
        return
    print_states(states, f"sweep {sweep_.name}: {len(cells)} cells", show_error=False, fmt=fmt)
    say(summary(states), fmt)
    emit(render(resources.planner_table(cells, estimates), fmt))
    for line in cost.summary_lines(cells, costs, assumed):
        say(line, fmt)


def _table_format(fmt: str, as_json: bool = False) -> str:
    """--format (table, markdown or json; --json is json)."""
    if as_json:
        return "json"
    if fmt not in TABLE_FORMATS:
        raise ConfigError(suggest(fmt, list(TABLE_FORMATS)), field="--format")
    return fmt


def say(line: str, fmt: str = "table") -> None:
    """A line below a table: wrapped between words at the terminal's width (markdown: a paragraph)."""
    if fmt == "markdown":
        sys.stdout.write(f"\n{line}\n\n")
    else:
        console.print(line, markup=False, highlight=False)


@app.command(epilog=exit_codes("run"))
def run(
    sweep: SweepArg = None,
    sweep_option: SweepOpt = None,
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
    max_parallel: Annotated[int | None, count("Local cells at once (default: GPUs, else cores).")] = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """Submit every cell of a sweep that is not done, queued or running; then ingest the results."""
    artifacts.check_results(results, write=not dry_run)
    sweep_file = sweep_file_of(sweep, sweep_option, results)
    from .. import launch

    backend = launch.get_backend(executor, field="--executor")
    sweep_, cells = load_sweep(sweep_file, check_trl=False)
    # the checks before anything is claimed or queued: TRL's rules only for the cells this run would submit
    # (a sweep with nothing left to submit never imports TRL), a dry run as `plan` does (launch/sweep.py)
    ready = launch.prepare(
        sweep_.name, sweep_file, cells, results, backend=backend, retry_failed=retry_failed, dry_run=dry_run
    )
    if dry_run:
        _show_preview(launch.preview(ready), len(cells), executor)
        return

    # Ctrl-C, a closed terminal (SIGHUP) or a kill (SIGTERM) from here on: this controller detaches with
    # 128 + the signal; the jobs run on (local ones in sessions of their own: launch/local.py), and a later
    # `run` or `status` picks them up
    from ..launch.submission import Detached, detachable

    try:
        with detachable():
            _submit_and_report(ready, executor=executor, max_parallel=max_parallel, wait=wait)
    except (Detached, OSError, SystemExit) as exc:
        # an error while unwinding from the signal (the progress bar drawn once more on a terminal that is
        # gone, or into a pipe whose reader Ctrl-C killed: rich exits 1 on a broken pipe) is its doing too
        signal_ = exc
        while signal_ is not None and not isinstance(signal_, Detached):
            signal_ = signal_.__context__
        if signal_ is None:
            raise
        text = f"detached ({signal_.name}): jobs keep running; `spurisweep status` follows them."
        try:  # cells this controller claimed and had not started yet (--max-parallel, labels): pending now
            mine = launch.unstarted_claims(cells, results)
        except Exception:  # a message only: never in the way of exiting
            mine = []
        if mine:
            text += f" {len(mine)} cell(s) not started yet are left pending: `spurisweep run` submits them."
        _detached(text)
        raise typer.Exit(signal_.exit_code) from None
    except KeyboardInterrupt:  # not the main thread: no handlers of ours
        _detached("detached: jobs keep running; `spurisweep status` follows them.")
        raise typer.Exit(130) from None


def _say_claims(cleared, verb: str) -> None:
    """Claims a plan takes over (stale ones, or with --retry-failed live ones of another host), one line each."""
    for cell, why in cleared:
        err.print(f"{verb} a claim on cell {cell.id} ({cell.label}): {why}", markup=False, highlight=False)


def _skipped(plan: Plan) -> str:
    return ", ".join(f"{len(v)} {k}" for k, v in plan.skipped.items())


def _show_preview(preview: Preview, total: int, executor: str) -> None:
    """run --dry-run: the claims it would clear, the cells it would submit, how, and what it skips."""
    _say_claims(preview.plan.cleared, "would clear")
    print_states(
        preview.states,
        f"would submit {len(preview.plan.to_submit)} of {total} cells ({executor})",
        show_error=False,
    )
    for line in preview.lines:
        console.print(line)
    console.print(f"skipped: {_skipped(preview.plan) or 'none'}")


def _submit_and_report(ready: Prepared, *, executor: str, max_parallel: int | None, wait: bool) -> None:
    """The run (launch.run_sweep) drawn as it goes: the claims cleared, what is submitted with a progress
    bar, then the summary and each cell that failed (exit 1)."""
    from .. import launch

    with _Progress() as prog:

        def claimed(plan: Plan) -> None:
            _say_claims(plan.cleared, "cleared")
            skipped = _skipped(plan)
            if not plan.to_submit:
                console.print(f"nothing to submit ({skipped}).")
                return
            console.print(
                f"submitting {len(plan.to_submit)} of {len(ready.cells)} cells via {executor}"
                + (f" (skipped: {skipped})" if skipped else "")
            )
            prog.start(len(plan.to_submit))

        outcome = launch.run_sweep(
            ready,
            max_parallel=max_parallel,
            wait=wait,
            on_claimed=claimed,
            on_update=prog.update,
            on_submitted=lambda _states: prog.stop(),
        )
    console.print(
        summary(outcome.states)
        + f"; ingested {outcome.ingested['cells']} new cell(s) into {outcome.database}"
    )
    for s in outcome.claimed_elsewhere:  # claimed by another live `run`, which submits them
        err.print(f"submitting {s.cell.id} ({s.cell.label}): {s.error}", markup=False, highlight=False)
    for s in outcome.bad:
        err.print(f"[red]{s.state}[/] {s.cell.id} ({s.cell.label}): {s.error or 'see ' + str(s.dir)}")
    if outcome.bad:
        raise typer.Exit(1)


def _detached(text: str) -> None:
    """The detach message. After a hang-up the terminal is gone (EIO), after Ctrl-C in a pipeline its reader
    may be (EPIPE): what cannot be written goes to /dev/null, so that exiting does not fail on it."""
    try:
        err.print(text, markup=False, highlight=False)
        sys.stderr.flush()
        sys.stdout.flush()
    except (OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            try:
                os.dup2(devnull, fd)
            except OSError:
                pass
        os.close(devnull)


class _Progress:
    """A live progress bar over the cells being submitted plus a per-state count line: drawn from `start`
    until `stop` (or the end of the `with` block, an exception's unwinding included)."""

    def __init__(self):
        self.progress = None
        self.task = None

    def start(self, total: int) -> None:
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
        self.progress.__enter__()

    def stop(self, *exc) -> None:
        progress, self.progress = self.progress, None
        if progress is not None:
            progress.__exit__(*(exc or (None, None, None)))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop(*exc)

    def update(self, states) -> None:
        if self.progress is None:
            return
        finished = sum(s.state in ("done", "failed", "killed", "cancelled") for s in states)
        self.progress.update(self.task, completed=finished, description=summary(states))


@app.command(epilog=exit_codes("status"))
def status(
    sweep: SweepArg = None,
    sweep_option: SweepOpt = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh live until no cell is queued or running.")
    ] = False,
    interval: Annotated[
        float, number("Seconds between refreshes with --watch (more than 0).", above=0, max=MAX_SECONDS)
    ] = 5.0,
    fmt: TableFormatOpt = "table",
    results: ResultsOpt = Path("results"),
) -> None:
    """Each cell's state (pending, queued, running, done, failed with its last error, requeues)."""
    # a read-only folder is shown as it stands, not ingested (store.ingest)
    artifacts.check_results(results, write=False)
    sweep_file = sweep_file_of(sweep, sweep_option, results)
    fmt = _table_format(fmt)
    import time

    from rich.live import Live

    from .. import launch, store

    # an input moved since (a data set, a model folder) does not stop a command that only looks
    sweep_, cells = load_sweep(sweep_file, check_trl=False, check_inputs=False)
    _refresh_manifest(sweep_.name, str(sweep_file.resolve()), cells, results)
    if not watch or fmt != "table":
        states = launch.states(cells, results, check_files=True)
        if fmt == "json":
            _status_json(sweep_.name, states, launch.label_states(cells, results))
        else:
            print_states(states, f"sweep {sweep_.name}", fmt=fmt)
            say(summary(states), fmt)
            for line in launch.label_states(cells, results):
                say(str(line), fmt)
        store.ingest(results)
        _say_earlier(sweep_.name, cells, results)
        return
    with Live(console=console, refresh_per_second=1) as live:
        while True:
            states = launch.states(cells, results, check_files=True)
            live.update(state_table(states, f"sweep {sweep_.name} — {summary(states)}"))
            if not any(s.state in launch.ACTIVE for s in states):
                break
            time.sleep(interval)
    store.ingest(results)
    _say_earlier(sweep_.name, cells, results)


def sweep_file_of(arg: str | None, option: str | None, results: Path) -> Path:
    """The sweep file SWEEP or --sweep names: a path, or the file a stored sweep last ran from."""
    return resolve_sweep_file(sweep_given(arg, option), results)


def _status_json(name: str, states, labels) -> None:
    from ..analysis.render import to_json
    from .common import state_records

    payload = {
        "sweep": name,
        "summary": summary(states),
        "cells": state_records(states),
        "labels": [str(x) for x in labels],
    }
    sys.stdout.write(to_json(payload) + "\n")


def _refresh_manifest(name: str, source: str, cells, results: Path) -> None:
    """The sweep's membership is its file as it is now: a sweep that has run here gets its manifest
    rewritten (a folder this user cannot write is left as it stands)."""
    from .. import launch

    folder = results / name
    if (folder / "sweep.json").exists() and os.access(folder, os.W_OK):
        try:
            launch.write_manifest(name, source, cells, results)
        except OSError:  # a full disk: the next `run` writes it
            pass


def _say_earlier(name: str, cells, results: Path) -> None:
    """One line: the cells of this sweep's folder its file no longer has (a setting edited since)."""
    from .. import launch

    if earlier := launch.earlier_cells(name, cells, results):
        err.print(
            f"{len(earlier)} earlier cell(s) of this sweep (other settings) are not shown; "
            f"`spurisweep report {name} --history` shows the finished ones",
            markup=False,
            highlight=False,
        )


@app.command(epilog=exit_codes("cancel"))
def cancel(
    sweep: SweepArg = None,
    sweep_option: SweepOpt = None,
    cell: Annotated[list[str] | None, typer.Option("--cell", help="Only this cell id (repeatable).")] = None,
    results: ResultsOpt = Path("results"),
) -> None:
    """Cancel the queued and running jobs of this sweep only (or of the given cells)."""
    artifacts.check_results(results)
    sweep_file = sweep_file_of(sweep, sweep_option, results)
    from .. import launch

    # an input moved since (a data set, a model folder) never stops a cancel
    _, cells = load_sweep(sweep_file, check_trl=False, check_inputs=False)
    if cell:
        unknown = [c for c in cell if c not in {x.id for x in cells}]
        if unknown:
            raise ConfigError(f"no cell {unknown[0]!r} in this sweep", file=str(sweep_file), field="--cell")
        cells = [c for c in cells if c.id in cell]
    done = launch.cancel(cells, results)
    jobs = [s for s in done if s.state != "submitting"]
    console.print(
        f"cancelled {len(jobs)} job(s)" + (": " + ", ".join(s.cell.id for s in jobs) if jobs else "")
    )
    for s in done:  # claimed by a controller that had not queued its job yet
        if s.state == "submitting":
            console.print(
                f"cleared the claim on cell {s.cell.id} by controller {s.holder}: the cell is cancelled "
                "(`run` submits it again)",
                markup=False,
                highlight=False,
            )


@app.command(epilog=exit_codes("fidelity"))
def fidelity(
    sweep: SweepArg = None,
    sweep_option: SweepOpt = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="auto (a table from 120 columns, a list below), table, list, markdown or json."
        ),
    ] = "auto",
    results: ResultsOpt = Path("results"),
) -> None:
    """List every resolved setting of a sweep that differs from the paper's official code (grader, objective
    switches, prompt, stops, reward text, labels, batch layout, evaluation cadence, seeds), each with its
    expected effect, and the official quirks the sweep reproduces on purpose."""
    from ..analysis.render import render
    from ..plan import fidelity as fid
    from ..plan import grid, spec

    if fmt not in ("auto", "table", "list", "markdown", "json"):
        raise ConfigError(f"unknown {fmt!r}; valid: auto, json, list, markdown, table", field="--format")
    path = sweep_file_of(sweep, sweep_option, results)
    sweep_ = spec.load_sweep(path)
    cells = grid.expand(sweep_)
    table = fid.sweep_report(cells, title=f"sweep {sweep_.name}: differences from the paper's code")
    # auto: the prose table is a list below 120 columns (render.py); table: a grid wherever one fits
    table.prose = fmt == "auto"
    if fmt in ("auto", "table", "list"):
        table.notes = [*table.notes, *(f"reproduced on purpose: {q}" for q in fid.sweep_quirks(cells))]
    emit(render(table, "table" if fmt == "auto" else fmt))
