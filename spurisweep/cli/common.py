"""What every command shares: the Typer app, the consoles, the options declared once, exit-code epilogs,
loading a sweep, and the cell-state table.

The `spurisweep` command line: each command wires options to one library call.

Library errors (SpurisweepError) become one line on stderr and their exit code in main(), and only there;
the codes (0 all well, 1 the work did not succeed, 2 bad input, 130 interrupted) are listed in errors.py.
Heavy imports (torch, trl) happen inside the commands that need them.
"""

from __future__ import annotations

import gc
import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

app = typer.Typer(
    help="Run spurious-reward RLVR studies (GRPO on math) across model families, and compare them.\n\n"
    "Typical use: `spurisweep plan SWEEP.yaml`, `spurisweep run SWEEP.yaml`, "
    "`spurisweep report --sweep NAME --pivot model,reward`.",
    epilog="Exit codes (every command): 0 all well; 1 the work did not succeed (a cell failed, a check fell "
    "short, a full disk); 2 bad input (nothing was done); 130 interrupted.",
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

# ---------------------------------------------------------------------------------------------- numbers
# Every numeric option has a range (tests/cli/test_option_ranges.py fails on one without): a value outside it is
# a usage error (exit 2, the option named), never a hang (`--max-parallel -1`) or a traceback further on.

#: the largest count any option takes: more is never meant, and overflows the C ints of the libraries below
MAX_COUNT = 2**31 - 1
#: seeds: numpy's seeding (vLLM's, transformers' set_seed) takes 32 bits
MAX_SEED = 2**32 - 1
#: grading processes: each holds a Python with sympy loaded; more than this is never meant
MAX_WORKERS = 1024
#: seconds: longer waits are never meant (and time.sleep overflows on a large enough float)
MAX_SECONDS = 3600.0


def _number_check(above: float | None) -> Any:
    """The callback of a numeric option: no inf (a float's range check lets it through; nan already fails
    it) and, with `above`, nothing at or below that open lower bound."""

    def check(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            raise typer.BadParameter(f"Input should be a finite number, not {value}")
        if above is not None and value is not None and value <= above:
            raise typer.BadParameter(f"Input should be greater than {above:g}")
        return value

    return check


def number(
    help: str,
    *decls: str,
    min: float | None = None,
    max: float | None = None,
    above: float | None = None,
    **kw: Any,
) -> Any:
    """A numeric option with its range: `min`/`max` inclusive, or `above` an exclusive lower bound, checked by
    the callback (--help shows only `max` then: the help text says 'more than')."""
    if above is not None and (min is not None or max is None):
        raise ValueError("an option with `above` takes `max` and no `min`")
    return typer.Option(*decls, help=help, min=min, max=max, callback=_number_check(above), **kw)


def count(help: str, *decls: str, min: int = 1, **kw: Any) -> Any:
    """A count option: from `min` (1 unless a zero means something) to MAX_COUNT."""
    return number(help, *decls, min=min, max=MAX_COUNT, **kw)


def seed_option() -> Any:
    return number("Sampling seed.", min=0, max=MAX_SEED)


def temperature_option(help: str) -> Any:
    return number(help, min=0.0)


def top_p_option(help: str) -> Any:
    return number(help + " More than 0, at most 1.", above=0.0, max=1.0)


#: what exit code 1 means for each command that has one (errors.py: 0 well, 1 failed, 2 bad input, 130 Ctrl-C;
#: run also 129 SIGHUP and 143 SIGTERM)
_FAILED_MEANS = {
    "run": "a cell failed or was killed",
    "verify-rewards": "a checker's coverage is below --floor",
}


def exit_codes(command: str) -> str:
    """The --help epilog: this command's exit codes."""
    failed = _FAILED_MEANS.get(command, "the machine refused (a full disk, an I/O error)")
    interrupted = (
        "interrupted (Ctrl-C); 129 the terminal closed (SIGHUP); 143 stopped (SIGTERM): run detaches and "
        "the jobs it started keep running"
        if command == "run"
        else "interrupted (Ctrl-C)"
    )
    return (
        f"Exit codes: 0 all well; 1 {failed}; 2 bad input (an unknown option, a missing argument, a missing "
        f"or unreadable file, an invalid setting; nothing was done); 130 {interrupted}."
    )


#: from this many cells on, `load_sweep` moves what exists to the collector's permanent generation
FREEZE_CELLS = 1000


def load_sweep(sweep_file: Path, *, check_trl: bool = True, cached: bool = False, check_inputs: bool = True):
    """The sweep and its cells. `check_inputs=False` (status, cancel: commands that submit nothing): the
    data sets and model folders the cells read are not checked, so an input moved since the cells were
    submitted never stops a command that looks at or stops them; only the commands that submit check."""
    from ..plan import grid, spec

    sweep = spec.load_sweep(sweep_file)
    cells = grid.expand(sweep, check_inputs=check_inputs)
    if len(cells) >= FREEZE_CELLS:
        # The cells live as long as the command: keep the cyclic collector from walking them again and again
        # while the states and plans of every cell are built (1.2 s of 9.8 for a 20,000-cell `plan`,
        # bench/submit.py). Reference counting still frees what is frozen; only cycle detection skips it.
        gc.freeze()
    if check_trl:  # TRL's cross-field rules, once per distinct training setup, before anything is queued
        from .. import versions  # TRL (when not remembered): only once the sweep itself is valid
        from ..plan import grpo

        versions.check()  # a library outside the tested set: refused before anything is queued

        grpo.validate_all(cells, file=str(sweep_file), cached=cached)
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


def state_rows(states, show_error: bool) -> tuple[list[str], list[list[str]]]:
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
        if s.shared:  # a cell another sweep runs or ran (one folder per cell)
            detail = (detail + " " + s.shared).strip()
        row = [s.cell.id, *[str(s.cell.axes.get(a, "")) for a in axes], s.state]
        if show_error:
            row.append(detail)
        rows.append(row)
    return header, rows


def state_table(states, title: str, show_error: bool = True):
    from rich.table import Table

    header, rows = state_rows(states, show_error)
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


def print_states(states, title: str, show_error: bool = True) -> None:
    """The state table: rich's below PLAIN_ROWS rows, plain aligned columns above (same columns)."""
    if len(states) <= PLAIN_ROWS:
        console.print(state_table(states, title, show_error))
        return
    header, rows = state_rows(states, show_error)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def summary(states) -> str:
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


def emit(rendered: object) -> None:
    """A rendered table to stdout: text formats as they are, rich tables through the console."""
    if isinstance(rendered, str):
        sys.stdout.write(rendered + ("\n" if not rendered.endswith("\n") else ""))
    else:
        console.print(rendered)
