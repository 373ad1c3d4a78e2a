"""The toy laboratory's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .common import ResultsOpt, SweepArg, SweepOpt, app, console, exit_codes, sweep_given, sweep_name

toy_app = typer.Typer(
    help="The toy laboratory: tiny families pretrained on this CPU, and the demo's (docs/toy.md).",
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
    """Pretrain toy-coder, toy-prose and toy-memo (cached after the first time; --family toy-demo installs the
    shipped one) and show their priors: accuracy, code frequency and accuracy with / without code on the
    held-out problems, sampled at temperature 1 and greedy."""
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


@toy_app.command("ship", epilog=exit_codes("toy ship"))
def toy_ship(
    family: Annotated[str, typer.Option("--family", help="The shipped toy family.")] = "toy-demo",
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write it here instead of the package data (spurisweep/resources/demo)."),
    ] = None,
) -> None:
    """Pretrain a shipped toy family again by its recipe (toy-demo: toy-prose's on one thread, 10-30 minutes on
    2 cores) into the package data `make demo` installs from, and print the sha256 families.py must pin."""
    from ..models import families, toy

    with console.status(f"pretraining {family} on this CPU (10-30 minutes)"):
        folder, digest, stats = toy.ship(family, out)
    pinned = families.get(family).sha256
    console.print(f"{family}: {folder} ({stats.get('seconds')} s)", highlight=False)
    console.print(f"sha256 of {families.WEIGHTS_FILE}: {digest}", highlight=False)
    if digest != pinned:
        console.print(
            f"families.py pins {pinned or 'nothing'}: put the sha256 above in {family}'s Family(sha256=...) "
            "and bump its version, so cached copies of the old weights are not reused",
            highlight=False,
        )


@toy_app.command("reading", epilog=exit_codes("toy reading"))
def toy_reading(
    sweep_arg: SweepArg = None,
    sweep_option: SweepOpt = None,
    benchmark: Annotated[str, typer.Option(help="The benchmark the gains are read on.")] = "toy",
    results: ResultsOpt = Path("results"),
) -> None:
    """One line to print under a toy sweep's table (`make demo`): what its ground-truth and random cells'
    change against the untrained model shows, computed from the stored results, and what it does not."""
    from .. import store
    from ..analysis import query, report

    sweep = sweep_name(sweep_given(sweep_arg, sweep_option))
    with store.reading(results) as con:
        query.use_grader(con, "math_verify")
        p = report.pivot(con, sweep=sweep, rows="model", cols="reward", benchmark=benchmark, step="final")
    console.print(reading(p), highlight=False, markup=False, soft_wrap=True)  # one line, however wide


def _change(cell: dict[str, Any]) -> str:
    """A cell's change in points, with its paired 95% interval when there is one."""
    d = cell.get("paired")
    if d is None:
        return f"{cell['delta']:+.1f} points"
    return f"{cell['delta']:+.1f} points [{d.low:+.1f}, {d.high:+.1f}]"


def reading(p: Any) -> str:
    """The sentence under a model x reward pivot of pass@1 (report.Pivot): per model, where ground truth
    took it against its untrained baseline and where random reward did, whether each change's paired 95%
    interval excludes 0, what that says about the training loop, and the limit of what one toy run shows."""
    parts = []
    for model in p.row_values:
        gt, rnd = p.cells.get((model, "ground_truth")), p.cells.get((model, "random"))
        if not gt or gt.get("delta") is None:
            parts.append(f"{model}: no finished ground-truth cell with a baseline, nothing to read")
            continue
        seeds = gt.get("seeds") or gt["n"]
        problems = gt["paired"].n_problems if gt.get("paired") else None
        size = f"{problems} problems, " if problems else ""
        text = (
            f"ground truth took {model} from {gt['base']:.1f}% to {gt['mean']:.1f}% on {p.benchmark} "
            f"({_change(gt)}; {size}{seeds} seed{'s' if seeds != 1 else ''})"
        )
        if rnd and rnd.get("delta") is not None:
            text += f", random reward to {rnd['mean']:.1f}% ({_change(rnd)})"
        parts.append(f"{text}: {_verdict(gt, rnd)}")
    return (
        "Reading: "
        + "; ".join(parts)
        + ". It does not show whether spurious rewards help real models: that takes the paper's models, "
        "many seeds and the full table (docs/toy.md reads the toy table)."
    )


def _verdict(gt: dict[str, Any], rnd: dict[str, Any] | None) -> str:
    """What the two changes say, from their paired intervals (the sign of the estimate without one)."""

    def direction(cell: dict[str, Any]) -> int:
        d = cell.get("paired")
        if d is not None and not d.distinguishable:
            return 0
        return (cell["delta"] > 0) - (cell["delta"] < 0)

    learned = direction(gt)
    if learned <= 0:
        return (
            "ground truth did not raise accuracy beyond noise, so this run does not show the loop learning "
            "(see `spurisweep diagnose`)"
            if learned == 0
            else "ground truth lowered accuracy: the loop is not learning (see `spurisweep diagnose`)"
        )
    if rnd is None or rnd.get("delta") is None:
        return "the training loop learns from a reward that carries the answer"
    if direction(rnd) > 0 and rnd["delta"] >= gt["delta"]:
        return "the loop learns, and random reward, which carries no answer, gained as much (see diagnose)"
    rnd_says = "gained less" if direction(rnd) > 0 else "did not gain" if direction(rnd) == 0 else "lost"
    return f"the loop learns from a reward that carries the answer; random reward, carrying none, {rnd_says}"
