"""Commands over a sweep (its file, or the name of a sweep that ran in --results): plan, run, status, cancel,
fidelity."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

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
    from .. import launch, store
    from ..plan import node as resources

    backend = launch.get_backend(executor, field="--executor")
    sweep_, cells = load_sweep(sweep_file, check_trl=False)
    backend.check(cells, file=str(sweep_file))  # e.g. several nodes on an executor of this machine only
    resources.check_cells(cells, file=str(sweep_file))  # node shape and GPU memory, before anything is queued
    # TRL's rules for the cells this run would submit, before anything is claimed or queued (a sweep with
    # nothing left to submit never imports TRL); a dry run previews, as `plan` does: setups this
    # installation validated before are not validated again (the real run validates every one afresh)
    validated = _validate_pending(
        cells,
        results,
        sweep_file,
        retry_failed=retry_failed,
        cached=dry_run,
        here=executor in ("local", "debug"),
    )

    def say_claims(cleared, verb: str) -> None:
        for cell, why in cleared:
            err.print(
                f"{verb} a claim on cell {cell.id} ({cell.label}): {why}", markup=False, highlight=False
            )

    if dry_run:
        plan_, states = launch.plan_submission(cells, results, retry_failed=retry_failed)
        say_claims(plan_.cleared, "would clear")
        chosen = {c.id for c in plan_.to_submit}
        skipped = ", ".join(f"{len(v)} {k}" for k, v in plan_.skipped.items())
        print_states(
            [s for s in states if s.cell.id in chosen],
            f"would submit {len(plan_.to_submit)} of {len(cells)} cells ({executor})",
            show_error=False,
        )
        labels = launch.pending_labels(plan_.to_submit, results, backend)
        for line in backend.describe(plan_.to_submit, labels):
            console.print(line)
        console.print(f"skipped: {skipped or 'none'}")
        return

    def submit_and_report() -> None:
        # under the sweep's lock, the chosen cells claimed: a second `run` leaves them alone
        plan_, _ = launch.plan_and_claim(cells, results, retry_failed=retry_failed)
        late = [c for c in plan_.to_submit if c.id not in validated]  # freed since the check above
        if late:
            _validate(late, sweep_file, cached=True)
        say_claims(plan_.cleared, "cleared")
        skipped = ", ".join(f"{len(v)} {k}" for k, v in plan_.skipped.items())
        launch.write_manifest(sweep_.name, str(sweep_file.resolve()), cells, results)
        if not plan_.to_submit:
            console.print(f"nothing to submit ({skipped}).")
        else:
            console.print(
                f"submitting {len(plan_.to_submit)} of {len(cells)} cells via {executor}"
                + (f" (skipped: {skipped})" if skipped else "")
            )
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
        counts = store.ingest(results)
        final = launch.states(cells, results)
        console.print(
            summary(final) + f"; ingested {counts['cells']} new cell(s) into {store.db_path(results)}"
        )
        for s in final:  # claimed by another live `run`, which submits them
            if s.state == "submitting":
                err.print(
                    f"submitting {s.cell.id} ({s.cell.label}): {s.error}", markup=False, highlight=False
                )
        bad = [s for s in final if s.state in ("failed", "killed")]
        for s in bad:
            err.print(f"[red]{s.state}[/] {s.cell.id} ({s.cell.label}): {s.error or 'see ' + str(s.dir)}")
        if bad:
            raise typer.Exit(1)

    def detached(text: str) -> None:
        # after a hang-up the terminal is gone (EIO), after Ctrl-C in a pipeline its reader may be (EPIPE):
        # what cannot be written goes to /dev/null, so that exiting does not fail on it
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

    # Ctrl-C, a closed terminal (SIGHUP) or a kill (SIGTERM) from here on: this controller detaches with
    # 128 + the signal; the jobs run on (local ones in sessions of their own: launch/local.py), and a later
    # `run` or `status` picks them up
    from ..launch.submission import Detached, detachable

    try:
        with detachable():
            submit_and_report()
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
            mine = [
                s
                for s in launch.states(cells, results, live=False)
                if s.state == "submitting"
                and (artifacts.CellDir(s.dir).status().get("claim") or {}).get("pid") == os.getpid()
            ]
        except Exception:  # a message only: never in the way of exiting
            mine = []
        if mine:
            text += f" {len(mine)} cell(s) not started yet are left pending: `spurisweep run` submits them."
        detached(text)
        raise typer.Exit(signal_.exit_code) from None
    except KeyboardInterrupt:  # not the main thread: no handlers of ours
        detached("detached: jobs keep running; `spurisweep status` follows them.")
        raise typer.Exit(130) from None


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
        self.progress.update(self.task, completed=finished, description=summary(states))


def _validate_pending(
    cells, results: Path, sweep_file: Path, *, retry_failed: bool, cached: bool, here: bool = False
) -> set[str]:
    """TRL's cross-field rules for the cells a run would submit now (read-only: nothing is claimed), and,
    for cells that run on this machine (`here`), that what they download can be reached; the ids of the
    cells checked."""
    from .. import launch

    pending = launch.plan_submission(cells, results, retry_failed=retry_failed)[0].to_submit
    if pending and here:
        _check_reachable(pending, sweep_file)
    if pending:
        _validate(pending, sweep_file, cached=cached)
    return {c.id for c in pending}


def _check_reachable(cells, sweep_file: Path) -> None:
    """Cells of a local or debug run must find their hub models, training sets and benchmarks here or on
    the hub: offline, one line naming each missing one before anything is claimed (not a failed job per
    cell after the libraries' retries). A cluster's nodes may see what the login node does not: a slurm run
    is not checked."""
    from ..errors import ConfigError, DataError
    from ..evaluation import reach
    from ..models import families

    models, sets, benches = [], [], []
    for c in cells:
        cfg = c.config
        fam = families.get(cfg.model)
        if cfg.model_path or fam.builder is None:
            models.append(cfg.model_path or fam.hub_id)
        if cfg.data.train.startswith("benchmark:"):
            benches.append((cfg.data.train.split(":", 1)[1], None))
        else:
            sets.append(cfg.data.train)
        for b in cfg.eval.benchmarks:
            over = cfg.eval.protocols.get(b)
            benches.append((b, getattr(over, "path", None)))
    try:
        reach.check(
            models=dict.fromkeys(models), benchmarks=dict.fromkeys(benches), datasets=dict.fromkeys(sets)
        )
    except DataError as exc:
        raise ConfigError(f"{exc} (the cells run on this machine)", file=str(sweep_file)) from None


def _validate(cells, sweep_file: Path, *, cached: bool) -> None:
    from .. import versions  # TRL: only when something will be submitted
    from ..plan import grpo

    versions.check()  # a library outside the tested set: refused before anything is queued
    grpo.validate_all(cells, file=str(sweep_file), cached=cached)


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
