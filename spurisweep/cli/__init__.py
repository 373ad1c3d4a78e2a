"""The `spurisweep` command line: a Typer app whose commands live in this package's modules, one module
per group (sweep, results, models, checks, toy), each command a thin skin over a library call; options
shared by several commands are declared once in common.py.

Library errors (SpurisweepError) become one line on stderr and their exit code in main(), and only there;
the codes (0 all well, 1 the work did not succeed, 2 bad input, 130 interrupted) are listed in errors.py.
Heavy imports (torch, trl) happen inside the commands that need them.
"""

from __future__ import annotations

import importlib
import sys

import typer

from ..errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, SpurisweepError, from_os_error
from .common import app, err

# each module registers its commands on `app`, in this order (the order `spurisweep --help` lists them)
for _module in ("sweep", "results", "models", "checks", "toy"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["app", "main"]


def _usage_error_type() -> type[Exception]:
    # typer >= 0.22 vendors its own click (typer._click), whose exceptions are not click's
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # older typer: plain click
        from click.exceptions import ClickException
    return ClickException


def main() -> None:
    """The console script: every outcome becomes one of the exit codes that errors.py documents."""
    usage_error = _usage_error_type()
    try:
        code = app(standalone_mode=False)
    except SpurisweepError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err.print("interrupted", highlight=False)
        sys.exit(EXIT_INTERRUPTED)
    except typer.Exit as exc:  # raised outside a command's own context (typer returns it otherwise)
        sys.exit(exc.exit_code)
    except usage_error as exc:  # a mistyped option, a missing argument: the usage line and the problem
        exc.show()
        sys.exit(EXIT_BAD_INPUT if exc.exit_code == 1 else exc.exit_code)
    except OSError as exc:  # a full disk, a folder that cannot be written: the machine, not the input
        fault = from_os_error(exc)
        err.print(f"[bold red]error:[/] {fault}", highlight=False, soft_wrap=True)
        sys.exit(fault.exit_code)
    # in non-standalone mode click returns the code of a typer.Exit raised inside a command
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
