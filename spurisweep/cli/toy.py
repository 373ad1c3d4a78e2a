"""The toy laboratory's commands."""

from __future__ import annotations

from typing import Annotated

import typer

from .common import app, console, exit_codes

toy_app = typer.Typer(
    help="The toy laboratory: two tiny model families pretrained on this CPU (docs/toy.md).",
    no_args_is_help=True,
)
app.add_typer(toy_app, name="toy")


@toy_app.command("build", epilog=exit_codes("toy build"))
def toy_build(
    family: Annotated[
        list[str] | None, typer.Option("--family", help="Only this toy family (repeatable).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Pretrain again even if the model is cached.")
    ] = False,
) -> None:
    """Pretrain toy-coder and toy-prose (cached after the first time) and show their priors: accuracy, code
    frequency and accuracy with / without code on the held-out problems, sampled at temperature 1 and greedy."""
    from rich.table import Table

    from ..models import toy

    names = family or list(toy.FAMILY_CONFIGS)
    t = Table(title="toy families: the prior on 200 held-out problems (sampled = 4 samples at temperature 1)")
    for col in (
        "family",
        "decoding",
        "accuracy",
        "code freq.",
        "acc. with code",
        "acc. without code",
        "build s",
    ):
        t.add_column(col)
    for name in names:
        with console.status(f"building {name} (pretraining on this CPU; a few minutes the first time)"):
            path, stats = toy.ensure(name, force=force)
        for mode in ("sampled", "greedy"):
            p = stats.get("prior", {}).get(mode, {})
            t.add_row(
                name,
                mode,
                *(
                    f"{100 * p[k]:.1f}%" if p.get(k) is not None else "-"
                    for k in ("accuracy", "code_frequency", "acc_with_code", "acc_without_code")
                ),
                str(stats.get("seconds", "")),
            )
        console.print(f"{name}: {path}", highlight=False)
    console.print(t)
