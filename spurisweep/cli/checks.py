"""Commands that check graders and grade outputs: verify-rewards, grade."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import ConfigError
from .common import MAX_SECONDS, MAX_WORKERS, app, console, exit_codes, number


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
) -> None:
    """Run each grader and every reward against the adversarial suite; print coverage and failures."""
    from rich.table import Table

    from ..errors import suggest
    from ..rewards import coverage

    graders = list(dict.fromkeys(grader or coverage.GRADERS))
    for g in graders:
        if g not in coverage.GRADERS:
            raise ConfigError(suggest(g, list(coverage.GRADERS)), field="--grader")
    try:
        results = coverage.verify_graders(reward, graders)
    except ValueError as exc:
        raise ConfigError(str(exc), field="--reward") from None
    if as_json:
        out = {g: r.to_dict() for g, r in results.items()}
        sys.stdout.write(json.dumps(out, indent=1, default=str) + "\n")
    else:
        for g, result in results.items():
            t = Table(title=f"verifier coverage on the adversarial suite, grader {g}")
            for col in ("checker", "as expected", "coverage"):
                t.add_column(col, justify="left" if col == "checker" else "right")
            for name, (ok, n) in result.counts.items():
                cov = result.coverage[name]
                color = "green" if cov >= 1.0 else ("yellow" if cov >= floor else "red")
                t.add_row(name, f"{ok}/{n}", f"[{color}]{100 * cov:.1f}%[/]")
            console.print(t)
            for f in result.failures:
                console.print(
                    f"[red]FAIL[/] {g}: {f.checker} {f.case_id}: expected {f.expected}, got {f.got}"
                    + (f" ({f.error})" if f.error else ""),
                    highlight=False,
                )
    if any(c < floor for r in results.values() for c in r.coverage.values()):
        raise typer.Exit(1)


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
