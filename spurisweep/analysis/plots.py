"""`report --plot curves|code|clip|passk --out DIR`: figures as PNG plus one HTML page each.

  curves  accuracy (pass@1) against training step, one line per reward, one panel per model
  code    code-reasoning frequency against step; accuracy with vs without code against step
  clip    clip ratios (region, low, high) and mean token probability against step, per reward x clip mode
  passk   unbiased pass@k against k (log scale) at the final step, base model (dashed) vs trained, one panel
          per model (family) and reward, with the crossover k that `diagnose` reports

Every line is the mean over runs (seeds) with a band of ± one standard deviation where there are at
least two runs. Step 0 of the benchmark curves is the untrained model (each run's baseline evaluation).
Data comes from query.tidy, so filters and names are checked the same way as for tables. matplotlib runs
on the Agg backend (no display needed), imported only here.
"""

from __future__ import annotations

import html
import logging
import math
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.sets import BENCHMARKS
from ..errors import ConfigError, suggest
from ..metrics import summarize_runs
from . import query as q
from .render import html_page, html_table

log = logging.getLogger(__name__)

KINDS = ("curves", "code", "clip", "passk")
CLIP_KEYS = ("clip_ratio/region_mean", "clip_ratio/low_mean", "clip_ratio/high_mean", "token_prob/mean")


@dataclass
class Series:
    """One line: a label, and per step the mean and std over runs and the number of runs."""

    label: str
    steps: list[int]
    mean: list[float]
    std: list[float | None]
    n: list[int]


def _series(
    rows: list[dict[str, Any]], panel_dim: int, series_dims: list[int], step_dim: int, scale: float
) -> dict[str, dict[str, Series]]:
    """tidy rows -> panel -> series label -> Series (runs pooled per step by metrics.summarize_runs)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        label = " / ".join(str(r[f"d{i}"]) for i in series_dims)
        groups.setdefault((str(r[f"d{panel_dim}"]), label, int(r[f"d{step_dim}"])), []).append(r)
    out: dict[str, dict[str, Series]] = {}
    for (panel, label, step), rs in sorted(groups.items(), key=lambda kv: kv[0]):
        cell = summarize_runs(rs, scale)
        if cell["mean"] is None:
            continue
        s = out.setdefault(panel, {}).setdefault(label, Series(label, [], [], [], []))
        s.steps.append(step)
        s.mean.append(cell["mean"])
        s.std.append(cell["std"])
        s.n.append(cell["n"])
    return out


def _figure(
    panels: dict[str, dict[str, Series]],
    *,
    title: str,
    ylabel: str,
    path: Path,
    styles: Callable[[str], dict[str, Any]] | None = None,
    ylim: tuple[float, float] | None = None,
    panel_title: Callable[[str], str] = str,
    xlabel: str = "training step (0 = untrained model)",
    color_key: Callable[[str], str] = str,
    log_x: bool = False,
) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    names = sorted(panels)
    ncols = min(3, max(1, len(names)))
    nrows = math.ceil(len(names) / ncols) if names else 1
    width = max(8.0, 5.2 * ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, 3.9 * nrows + 1.2), squeeze=False)
    labels = sorted({lab for p in panels.values() for lab in p})
    palette = plt.get_cmap("tab10")
    keys = list(dict.fromkeys(color_key(lab) for lab in labels))
    color = {lab: palette(keys.index(color_key(lab)) % 10) for lab in labels}
    handles: dict[str, Any] = {}
    for ax, name in zip(axes.flat, names, strict=False):
        for lab in sorted(panels[name]):
            s = panels[name][lab]
            style = {"color": color[lab], "marker": "o", "markersize": 3.5, "linewidth": 1.8}
            style.update(styles(lab) if styles else {})
            if len(s.steps) > 30:  # per-update training curves: markers would only add clutter
                style.update(marker=None, linewidth=1.2)
            (line,) = ax.plot(s.steps, s.mean, label=lab, **style)
            handles.setdefault(lab, line)
            if any(sd is not None for sd in s.std):
                lo = [m - (sd or 0.0) for m, sd in zip(s.mean, s.std, strict=True)]
                hi = [m + (sd or 0.0) for m, sd in zip(s.mean, s.std, strict=True)]
                ax.fill_between(s.steps, lo, hi, color=style["color"], alpha=0.18, linewidth=0)
        ax.set_title(panel_title(name), fontsize=12)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if log_x:
            ax.set_xscale("log", base=2)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ylim:
            ax.set_ylim(*ylim)
    for ax in list(axes.flat)[len(names) :]:
        ax.set_visible(False)
    if not names:
        axes.flat[0].text(0.5, 0.5, "no data matches", ha="center", va="center", fontsize=14)
        axes.flat[0].set_axis_off()
    fig.suptitle(textwrap.fill(title, int(width * 9)), fontsize=13)
    per_row = max(1, min(len(handles), int(width // 2.6)))
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles),
            loc="lower center",
            ncol=per_row,
            fontsize=10,
            frameon=False,
        )
    legend_in = 0.3 * math.ceil(len(handles) / per_row) + 0.15 if handles else 0.0
    height = fig.get_figheight()
    fig.tight_layout(rect=(0, legend_in / height, 1, 1))  # the suptitle is laid out by tight_layout
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _data_table(panels: dict[str, dict[str, Series]], value: str, decimals: int = 1) -> str:
    body = []
    for panel in sorted(panels):
        for lab, s in sorted(panels[panel].items()):
            for st, m, sd, n in zip(s.steps, s.mean, s.std, s.n, strict=True):
                body.append(
                    [
                        panel,
                        lab,
                        str(st),
                        f"{m:.{decimals}f}",
                        "-" if sd is None else f"{sd:.{decimals}f}",
                        str(n),
                    ]
                )
    return html_table(f"data: {value}", ["panel", "series", "step", "mean", "std", "runs"], body)


def _page(
    out: Path, kind: str, heading: str, figures: list[tuple[Path, str]], tables: list[str], notes: list[str]
) -> Path:
    parts = [f"<h2>{html.escape(heading)}</h2>"]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in notes]
    for path, caption in figures:
        parts.append(
            f"<figure><img src='{html.escape(path.name)}' alt='{html.escape(caption)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    parts += tables
    page = out / f"{kind}.html"
    page.write_text(html_page(f"spurisweep {kind}", "\n".join(parts)))
    return page


def write_plots(
    con: Any,
    kind: str,
    out: Path,
    *,
    sweep: str | None = None,
    benchmark: str | None = None,
    where: list[str] | tuple[str, ...] = (),
) -> list[Path]:
    """Write the figures of one kind (PNG) and an HTML page showing them with their data; returns the paths."""
    if kind not in KINDS:
        raise ConfigError(suggest(kind, list(KINDS)), field="--plot")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    q.check_sweep(con, sweep)
    q.check_benchmark(con, benchmark)
    valid = q.known_dimensions(con)
    filters = q.parse_where(con, list(where), valid)
    scope = f"sweep {sweep}" if sweep else "all sweeps"
    notes = [f"{scope}; lines: mean over runs (seeds), bands: ± 1 std where there are >= 2 runs"]
    if filters:
        notes.append("filters: " + ", ".join(f"{k}={v}" for k, v in filters))
    if kind == "clip":
        return _clip(con, out, sweep, filters, notes)
    if kind == "passk":
        return _passk(con, out, sweep, benchmark, filters, notes[1:])
    bench = benchmark or q.default_benchmark(con, sweep)

    def rows(metric: str) -> dict[str, dict[str, Series]]:
        data = q.tidy(
            con,
            sweep=sweep,
            dims=["model", "reward", "step"],
            metric=metric,
            benchmark=bench,
            step="all",
            where=filters,
        )
        return _series(data, 0, [1], 2, 100.0)

    bname = bench_title(bench)
    if kind == "curves":
        return _curves(rows, out, bname, notes)
    return _code(rows, out, bname, notes)


def bench_title(bench: str | None) -> str:
    """A benchmark's display name from its BENCHMARKS entry (a name no entry has prints as it is)."""
    if not bench:
        return "no benchmark"
    entry = BENCHMARKS.get(bench)
    return entry.display_name if entry else bench


def _model_title(model: str) -> str:
    return f"model: {model}"


def _curves(
    rows: Callable[[str], dict[str, dict[str, Series]]], out: Path, bname: str, notes: list[str]
) -> list[Path]:
    """Accuracy against training step, one line per reward, one panel per model."""
    acc = rows("pass@1")
    fig = _figure(
        acc,
        title=f"{bname} accuracy during training, per reward",
        ylabel="pass@1 (%)",
        path=out / "curves.png",
        ylim=(0, 100),
        panel_title=_model_title,
    )
    page = _page(
        out,
        "curves",
        f"{bname} accuracy against training step",
        [(fig, "pass@1 per reward")],
        [_data_table(acc, "pass@1 (%)")],
        notes,
    )
    return [fig, page]


def _code(
    rows: Callable[[str], dict[str, dict[str, Series]]], out: Path, bname: str, notes: list[str]
) -> list[Path]:
    """Code-reasoning frequency, and accuracy with vs without code, against training step."""
    freq = rows("code_frequency")
    f1 = _figure(
        freq,
        title=f"code reasoning on {bname}: share of responses mentioning 'python'",
        ylabel="code frequency (%)",
        path=out / "code_frequency.png",
        ylim=(0, 100),
        panel_title=_model_title,
    )
    both: dict[str, dict[str, Series]] = {}
    for tag, src in (("with code", rows("acc_with_code")), ("without code", rows("acc_without_code"))):
        for panel, series in src.items():
            for lab, s in series.items():
                s.label = f"{lab}, {tag}"
                both.setdefault(panel, {})[s.label] = s
    f2 = _figure(
        both,
        title=f"{bname} accuracy of responses with vs without code reasoning",
        ylabel="pass@1 (%)",
        path=out / "code_accuracy.png",
        ylim=(0, 100),
        panel_title=_model_title,
        color_key=lambda lab: lab.rsplit(", with", 1)[0],
        styles=lambda lab: {
            "linestyle": "--" if lab.endswith("without code") else "-",
            "marker": "s" if lab.endswith("without code") else "o",
        },
    )
    page = _page(
        out,
        "code",
        f"code reasoning on {bname}",
        [
            (f1, "code-reasoning frequency per reward"),
            (f2, "accuracy with code (solid) vs without code (dashed)"),
        ],
        [_data_table(freq, "code frequency (%)"), _data_table(both, "accuracy (%)")],
        notes,
    )
    return [f1, f2, page]


def _clip(
    con: Any, out: Path, sweep: str | None, filters: list[tuple[str, str]], notes: list[str]
) -> list[Path]:
    keys = {r[0] for r in con.execute("SELECT DISTINCT key FROM metrics").fetchall()}
    present = [k for k in CLIP_KEYS if k in keys]
    figures, tables = [], []
    for key in present:
        data = q.tidy(
            con,
            sweep=sweep,
            dims=["model", "reward", "clip", "step"],
            metric=f"train:{key}",
            step="all",
            where=filters,
        )
        panels = _series(data, 0, [1, 2], 3, 1.0)
        is_prob = key.startswith("token_prob")
        what = (
            "mean token probability" if is_prob else f"clip ratio ({key.split('/')[1].removesuffix('_mean')})"
        )
        fname = key.replace("/", "_") + ".png"
        fig = _figure(
            panels,
            title=f"{what} during training, per reward / clip mode",
            ylabel=what,
            path=out / fname,
            panel_title=_model_title,
            xlabel="training step",
            styles=lambda lab: {"linestyle": "--" if lab.endswith("no_clip") else "-"},
        )
        figures.append((fig, what))
        tables.append(_data_table(panels, key, 4))
    if not present:
        notes.append("no clip-ratio or token-probability metrics are stored (TRL logs them while training)")
    page = _page(
        out,
        "clip",
        "clipping and token probability against training step",
        figures,
        tables,
        notes
        + [
            "clip ratios are the share of tokens whose ratio was clipped; they are 0 when each "
            "rollout batch is used for a single update (RESEARCH.md, Clip modes)"
        ],
    )
    return [f for f, _ in figures] + [page]


def _passk(
    con: Any,
    out: Path,
    sweep: str | None,
    benchmark: str | None,
    filters: list[tuple[str, str]],
    notes: list[str],
) -> list[Path]:
    """pass@k against k, base vs trained, per model x reward (diagnostics.passk's curves and crossovers)."""
    from .diagnostics import passk

    bench = passk.pick_benchmark(con, sweep, benchmark)
    groups = passk.curves(con, sweep, bench, filters) if bench else []
    panels: dict[str, dict[str, Series]] = {}
    crossings = []
    for c in groups:
        ks = list(range(1, c.n + 1))
        panel = f"{c.model} | {c.reward}"
        panels[panel] = {
            "base model": Series("base model", ks, [100 * v for v in c.base], [None] * c.n, [1] * c.n),
            "trained": Series("trained", ks, [100 * v for v in c.trained], [None] * c.n, [c.runs] * c.n),
        }
        x = passk.analyse(c)
        where = "none" if x.k is None else f"k={x.k}"
        if x.interval:
            where += f" (95% interval {x.interval[0]:g}-{x.interval[1]:g})"
        crossings.append(f"{c.model} / {c.reward}: crossover {where}; {x.reading}")
    bname = bench_title(bench)
    fig = _figure(
        panels,
        title=f"pass@k on {bname}: base model vs trained, per model and reward",
        ylabel="pass@k (%)",
        path=out / "passk.png",
        ylim=(0, 100),
        xlabel="k (samples drawn per problem)",
        styles=lambda lab: {"linestyle": "--" if lab == "base model" else "-", "marker": None},
        log_x=True,
    )
    if not groups:
        notes.append(
            "no trained evaluation with >= 2 samples per problem and a baseline: evaluate with "
            "eval.protocols.<bench>.samples (e.g. 256 on limit: 100)"
        )
    notes.append("trained: mean over runs (seeds) of each problem's unbiased pass@k; k on a log scale")
    page = _page(
        out,
        "passk",
        f"pass@k boundaries on {bname}",
        [(fig, "pass@k against k; dashed: the untrained model")],
        [_data_table(panels, "pass@k (%)", 2)],
        notes + crossings,
    )
    return [fig, page]
