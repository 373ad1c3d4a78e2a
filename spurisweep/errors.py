"""Typed errors raised at the library boundary; the CLI turns each into one readable line and its exit code.

Exit codes (the same for every command; README "Exit codes"):
    0    all well
    1    the work did not succeed: cells failed or were killed, a check fell short, the machine refused
         (a full disk, an I/O error)
    2    bad input: an unknown option, a missing argument, a file or folder that is missing, unreadable or
         not what it should be, an invalid setting; nothing was submitted
    130  interrupted (Ctrl-C / SIGINT)
    129  `run` only: the terminal closed (SIGHUP); it detaches, its jobs keep running
    143  `run` only: stopped by SIGTERM; it detaches the same way
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class SpurisweepError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(SpurisweepError):
    """A sweep file, setting or CLI option is invalid. Names the file, the field and what is valid."""

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file = file
        self.field = field
        self.detail = message
        where = ": ".join(p for p in (file, field) if p)
        super().__init__(f"{where}: {message}" if where else message)


class SubmissionError(SpurisweepError):
    """Jobs could not be submitted (nothing was submitted)."""


class GradingError(SpurisweepError):
    """A file to grade is malformed."""


class DataError(SpurisweepError):
    """A data set or model could not be found or read."""


class StoreError(SpurisweepError):
    """The results database could not be opened or queried."""


class ResourceError(SpurisweepError):
    """The machine refused mid-way (a full disk, an I/O error): not the input's fault, so exit code 1."""

    exit_code = EXIT_FAILED


class PathError(SpurisweepError):
    """A file or folder the command must read or write is missing, not a folder, or not writable."""


#: errno values that say the machine, not the user's input, stopped the command
_RESOURCE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM, errno.EMFILE, errno.ENFILE}
)


def from_os_error(exc: OSError) -> SpurisweepError:
    """One line for an OSError that escaped a command: what failed, on which file, and why."""
    target = exc.filename if exc.filename is not None else ""
    reason = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    line = f"{target}: {reason}" if target else reason
    if exc.errno in _RESOURCE_ERRNOS:
        return ResourceError(f"{line} (free space or fix the device, then run the command again)")
    return PathError(line)


class ShardingError(SpurisweepError):
    """A cell configured sharded (train.sharding: fsdp) would train unsharded, or cannot be sharded."""


def suggest(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """'unknown X; valid: a, b, c' with a close match first when there is one."""
    import difflib

    close = difflib.get_close_matches(str(name), list(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {name!r}{hint}; valid: {', '.join(sorted(valid))}"
