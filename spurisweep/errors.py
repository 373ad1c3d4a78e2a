"""Typed errors raised at the library boundary; the CLI turns each into one readable line and exit code 2."""

from __future__ import annotations


class SpurisweepError(Exception):
    """Base class: a problem the user can fix, with a message that says how."""

    exit_code = 2


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


class ShardingError(SpurisweepError):
    """A cell configured sharded (train.sharding: fsdp) would train unsharded, or cannot be sharded."""


def suggest(name: str, valid: list[str] | tuple[str, ...]) -> str:
    """'unknown X; valid: a, b, c' with a close match first when there is one."""
    import difflib

    close = difflib.get_close_matches(str(name), list(valid), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {name!r}{hint}; valid: {', '.join(sorted(valid))}"
