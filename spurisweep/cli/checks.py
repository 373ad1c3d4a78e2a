"""Commands that check graders and grade outputs: verify-rewards, grade."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from .common import (
    MAX_SECONDS,
    MAX_WORKERS,
    TABLE_FORMATS,
    TableFormatOpt,
    app,
    console,
    emit,
    exit_codes,
    number,
)


@app.command(name="verify-rewards", epilog=exit_codes("verify-rewards"))
def verify_rewards(
    reward: Annotated[
        list[str] | None,
        typer.Option(
            help="A reward or composition (repeatable; default: all but random, plus a few compositions)."
        ),
    ] = None,
    grader: Annotated[
        list[str] | None,
        typer.Option(
            help="Run the suite for this grader: math_verify or paper (repeatable; default: both). Each "
            "grader's rewards are the ones a cell with that `grader` trains on."
        ),
    ] = None,
    floor: Annotated[
        float,
        number(
            "Exit 1 if any checker's coverage (a share, 0 to 1), under any grader, is below this; above 1 "
            "always fails.",
            min=0.0,
        ),
    ] = 0.9,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the full result as JSON, one object per grader.")
    ] = False,
    fmt: TableFormatOpt = "table",
) -> None:
    """Run each grader and every reward against the adversarial suite; print coverage and failures."""
    from ..errors import suggest
    from ..rewards import coverage

    if fmt not in TABLE_FORMATS:
        raise ConfigError(suggest(fmt, list(TABLE_FORMATS)), field="--format")
    graders = list(dict.fromkeys(grader or coverage.GRADERS))
    for g in graders:
        if g not in coverage.GRADERS:
            raise ConfigError(suggest(g, list(coverage.GRADERS)), field="--grader")
    try:
        results = coverage.verify_graders(reward, graders)
    except ValueError as exc:
        raise ConfigError(str(exc), field="--reward") from None
    if as_json or fmt == "json":
        out = {g: r.to_dict() for g, r in results.items()}
        sys.stdout.write(json.dumps(out, indent=1, default=str) + "\n")
    else:
        from ..analysis.render import render

        for g, result in results.items():
            emit(render(_coverage_table(g, result, floor), fmt))
            for f in result.failures:
                line = f"FAIL {g}: {f.checker} {f.case_id}: expected {f.expected}, got {f.got}" + (
                    f" ({f.error})" if f.error else ""
                )
                console.print(line, markup=False, highlight=False, style="red")
    if any(c < floor for r in results.values() for c in r.coverage.values()):
        raise typer.Exit(1)


def _coverage_table(grader: str, result, floor: float):
    """One grader's coverage as a render.Table: green at 100%, yellow at or above the floor, red below."""
    from ..analysis.render import Table

    rows, styles = [], {}
    for i, (name, (ok, n)) in enumerate(result.counts.items()):
        cov = result.coverage[name]
        rows.append([name, f"{ok}/{n}", f"{100 * cov:.1f}%"])
        styles[(i, 2)] = "green" if cov >= 1.0 else ("yellow" if cov >= floor else "red")
    return Table(
        ["checker", "as expected", "coverage"],
        rows,
        f"verifier coverage on the adversarial suite, grader {grader}",
        justify=["left", "right", "right"],
        cell_styles=styles,
    )


@app.command(epilog=exit_codes("grade"))
def grade(
    file: Annotated[Path, typer.Argument(help="JSONL rows with a response and a reference answer.")],
    out: Annotated[
        Path | None, typer.Option(help="Where to write the verdicts (default FILE.graded.jsonl).")
    ] = None,
    response_field: Annotated[str, typer.Option(help="Field holding the model's response.")] = "response",
    answer_field: Annotated[str, typer.Option(help="Field holding the reference answer.")] = "answer",
    timeout: Annotated[
        float,
        number("Seconds per answer before it counts as ungradable (more than 0).", above=0, max=MAX_SECONDS),
    ] = 5.0,
    workers: Annotated[
        int | None,
        number("Grading processes (default: all cores; 0 grades in this process).", min=0, max=MAX_WORKERS),
    ] = None,
    grader: Annotated[
        str,
        typer.Option(
            help="math_verify (spurisweep's grader) or paper (the paper's official grader; paper_r1 reads "
            "the answer after the last <answer>, as for the r1_paper template)."
        ),
    ] = "math_verify",
) -> None:
    """Grade any model's outputs (another framework's, a released model's) with spurisweep's grader or
    the paper's; the verdict fields are the same for both."""
    from ..grading.files import grade_file

    result = grade_file(
        file,
        out,
        response_field=response_field,
        answer_field=answer_field,
        timeout=timeout,
        workers=workers,
        grader=grader,
    )
    console.print(str(result))
