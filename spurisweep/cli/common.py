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
    "`spurisweep report SWEEP --pivot model,reward`. Every sweep command takes SWEEP, a sweep file or the "
    "name of a sweep that ran in --results (or --sweep NAME).",
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
SweepArg = Annotated[
    str | None,
    typer.Argument(
        metavar="SWEEP",
        help="The sweep: its YAML file (see sweeps/), or the name of a sweep that ran in --results.",
        show_default=False,
    ),
]
SweepOpt = Annotated[
    str | None,
    typer.Option(
        "--sweep",
        metavar="NAME",
        help="The sweep, as SWEEP (a file or a stored sweep's name).",
        show_default=False,
    ),
]
#: what --format takes on a command that prints tables of its own
TABLE_FORMATS = ("table", "markdown", "json")
TableFormatOpt = Annotated[
    str, typer.Option("--format", help="table (a list where a terminal is too narrow), markdown or json.")
]

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


# ---------------------------------------------------------------------------------------------- the sweep
# Every sweep command takes the sweep one way: SWEEP, its file or the name of a sweep that ran in the
# results folder (`--sweep NAME` says the same). A name resolves to the file its manifest
# (results/NAME/sweep.json) says it last ran from, for the commands that need the file.

#: a SWEEP with one of these endings, or with a folder in it, is a file's path (never a sweep's name)
SWEEP_SUFFIXES = (".yaml", ".yml", ".json")


def sweep_given(arg: str | None, option: str | None, *, required: bool = True) -> str | None:
    """SWEEP or --sweep (the same one when both are given); with `required`, one of them must be."""
    from ..errors import ConfigError

    if arg is not None and option is not None and arg != option:
        raise ConfigError(f"SWEEP is {arg!r} but --sweep is {option!r}: give one sweep", field="--sweep")
    given = arg if arg is not None else option
    if given is None and required:
        raise ConfigError(
            "Missing argument 'SWEEP': a sweep file, or the name of a sweep that ran in --results (--sweep NAME)"
        )
    return given


def _is_path(given: str) -> bool:
    p = Path(given)
    return p.is_file() or p.suffix in SWEEP_SUFFIXES or "/" in given or "\\" in given


def stored_sweeps(results: Path) -> dict[str, dict[str, Any]]:
    """The sweeps that ran in `results`, by name: each one's manifest (results/NAME/sweep.json)."""
    from .. import artifacts

    out = {}
    for m in sorted(Path(results).glob("*/sweep.json")):
        man = artifacts.read_json(m)
        if isinstance(man, dict) and man.get("sweep", m.parent.name) == m.parent.name:
            out[m.parent.name] = man
    return out


def resolve_sweep_file(given: str, results: Path) -> Path:
    """SWEEP as a sweep file: the path given, or the file a stored sweep's manifest says it ran from. A
    name no sweep in `results` has, and a stored sweep whose file is gone, are one line (exit 2)."""
    from ..errors import ConfigError

    if _is_path(given):
        return Path(given)
    stored = stored_sweeps(results)
    if given not in stored:
        if Path(given).exists():  # a folder named like no sweep: spec.load_sweep says what it is
            return Path(given)
        raise ConfigError(_unknown_sweep(given, list(stored), results), field="SWEEP")
    source = stored[given].get("file")
    for candidate in _candidates(source, results):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"sweep {given!r} ran from {source or 'a file its manifest does not name'}, which is not there any "
        "more: give the sweep file",
        field="SWEEP",
    )


def _candidates(source: Any, results: Path) -> list[Path]:
    """Where a manifest's file may be: as written (absolute, or relative to here), or relative to the
    folder that holds the results folder (a relative path written by a `run` started there)."""
    if not isinstance(source, str) or not source:
        return []
    p = Path(source)
    return [p] if p.is_absolute() else [p, Path(results).resolve().parent / p]


def _unknown_sweep(given: str, names: list[str], results: Path) -> str:
    import difflib

    close = difflib.get_close_matches(given, names, n=3)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    listed = f"; sweeps that ran there: {', '.join(names)}" if names else "; no sweep has run there yet"
    return f"{given!r} is no sweep file, nor a sweep that ran in {results}{hint}{listed}"


def sweep_name(given: str | None) -> str | None:
    """SWEEP as a sweep's name (report, diagnose): a file's `name:`, or the name given (the store checks it)."""
    if given is None or not _is_path(given):
        return given
    from ..plan import spec

    return spec.load_sweep(given).name


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
    """The state table's header and rows (the state without colour markup); the detail column only where
    a cell has one."""
    axes = list(states[0].cell.axes) if states else []
    details = [_detail(s) for s in states] if show_error else []
    show_error = any(details)
    header = ["cell", *axes, "state"] + (["detail"] if show_error else [])
    rows = []
    for i, s in enumerate(states):
        row = [s.cell.id, *[str(s.cell.axes.get(a, "")) for a in axes], s.state]
        if show_error:
            row.append(details[i])
        rows.append(row)
    return header, rows


def _detail(s) -> str:
    """A cell's detail: its error or step, requeues, health flags, missing files, the sweep it shares with."""
    detail = s.error or ""
    if s.state in ("running", "requeued") and s.step is not None:
        detail = f"step {s.step}"
    if s.requeues:
        detail = (detail + f" (requeued {s.requeues}x)").strip()
    if s.health:
        detail = (detail + " health: " + ", ".join(s.health)).strip()
    if s.incomplete:
        detail = (detail + " incomplete: " + "; ".join(s.incomplete)).strip()
    if s.shared:  # a cell another sweep runs or ran (one folder per cell)
        detail = (detail + " " + s.shared).strip()
    return detail


def state_records(states) -> list[dict[str, Any]]:
    """The long form of the state table (json): one record per cell."""
    return [
        {
            "cell": s.cell.id,
            "axes": s.cell.axes,
            "state": s.state,
            "detail": _detail(s),
            "error": s.error,
            "step": s.step,
            "requeues": s.requeues,
            "health": list(s.health or []),
            "incomplete": list(s.incomplete or []),
        }
        for s in states
    ]


def states_table(states, title: str, show_error: bool = True):
    """The state table as a render.Table: the detail column is prose (a list below 120 columns)."""
    from ..analysis.render import Table

    header, rows = state_rows(states, show_error)
    col = header.index("state")
    return Table(
        header,
        rows,
        title,
        records=state_records(states),
        prose="detail" in header,
        heading_columns=col + 1,
        cell_styles={(i, col): STATE_COLORS.get(r[col], "white") for i, r in enumerate(rows)},
        empty=f"{title}: no cells",
    )


def state_table(states, title: str, show_error: bool = True):
    """The state table as a renderable laid out at the terminal's width."""
    from ..analysis.render import rich_table

    return rich_table(states_table(states, title, show_error))


def print_states(states, title: str, show_error: bool = True, fmt: str = "table") -> None:
    """The state table: rich's below PLAIN_ROWS rows, plain aligned columns above (same columns; a list
    where they would not fit); markdown or json with `fmt`."""
    from ..analysis import render as rnd

    t = states_table(states, title, show_error)
    if fmt != "table" or len(states) <= PLAIN_ROWS:
        emit(rnd.render(t, fmt) if fmt != "table" or not t.rows else rnd.rich_table(t))
        return
    width = console.width
    if rnd.as_list_layout(t, width):
        sys.stdout.write(rnd.to_list(t, width) + "\n")
        sys.stdout.flush()
        return
    widths = [max(len(r[i]) for r in [t.header, *t.rows]) for i in range(len(t.header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(t.header, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in t.rows]
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
