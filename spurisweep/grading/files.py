"""Grading a JSONL file of any model's outputs (`spurisweep grade`): read, grade in the pool, write the
verdicts next to each row, summarise. Bad input is one GradingError naming the file and the line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import artifacts
from ..errors import ConfigError, GradingError, suggest
from .pool import GRADERS, grade_batch


@dataclass(frozen=True)
class FileGrade:
    dest: Path
    n: int
    correct: int
    ungradable: int
    code: int

    def __str__(self) -> str:
        acc = f"{100 * self.correct / self.n:.1f}%" if self.n else "-"
        return (
            f"graded {self.n} responses: {self.correct} correct ({acc}), {self.ungradable} ungradable, "
            f"{self.code} with code reasoning -> {self.dest}"
        )


def read_rows(file: Path, response_field: str, answer_field: str) -> list[dict[str, Any]]:
    text = artifacts.read_input_text(file, what="JSONL file of responses", error=GradingError)
    rows = []
    for i, line in enumerate(text.splitlines(), 1):
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
    return rows


def grade_file(
    file: Path,
    out: Path | None = None,
    *,
    response_field: str = "response",
    answer_field: str = "answer",
    timeout: float = 5.0,
    workers: int | None = None,
    grader: str = "math_verify",
) -> FileGrade:
    """Grade every row of `file` and write the rows with their verdict fields to `out`
    (default FILE.graded.jsonl), atomically."""
    if grader not in GRADERS:
        raise ConfigError(suggest(grader, list(GRADERS)), field="--grader")
    dest = out or file.with_name(file.name.removesuffix(".jsonl") + ".graded.jsonl")
    if dest.is_dir():
        raise GradingError(f"{dest}: is a folder; --out names the file to write")
    artifacts.check_folder(dest.parent, option="--out")
    rows = read_rows(file, response_field, answer_field)
    pairs = [(str(r[response_field]), str(r[answer_field])) for r in rows]
    verdicts = grade_batch(pairs, workers=workers, timeout=timeout, grader=grader)
    artifacts.atomic_write_jsonl(dest, [{**r, **v.to_dict()} for r, v in zip(rows, verdicts, strict=True)])
    return FileGrade(
        dest,
        len(rows),
        sum(v.correct is True for v in verdicts),
        sum(v.correct is None for v in verdicts),
        sum(v.has_python for v in verdicts),
    )
