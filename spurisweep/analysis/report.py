"""Pivots over stored results: mean over seeds with spread, and the change against each model's
untrained baseline. Everything is computed from the rows in the store (per-sample rows for benchmark
metrics, per-update rows for training metrics), never from summaries written by the jobs.

One pivot cell pools the runs (cells) that share its row and column values. Each run contributes one
value (its evaluation at the chosen step; the mean of its evaluations when several match), so `n` counts
runs, which are seeds when the other axes are fixed; a note says when a cell also pools other axes.

Names are checked and values bound by query.py; the statistics are metrics.py's; render.py draws the table.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, suggest
from ..metrics import mean_std, summarize_runs
from . import render as rnd
from .metric_registry import Metric, parse_metric
from .query import (
    EVAL_ONLY_DIMENSIONS,
    HEADLINE_FRACTION,
    PROBE_DIMENSIONS,
    VARIANT_DIMENSIONS,
    check_benchmark,
    check_dimension,
    check_sweep,
    default_benchmark,
    default_probe_benchmark,
    known_dimensions,
    parse_step,
    parse_where,
    probe_fractions,
    tidy,
)

log = logging.getLogger(__name__)

FORMATS = rnd.FORMATS
SPREADS = ("std", "ci")


@dataclass
class Pivot:
    rows: str
    cols: str
    metric: str
    benchmark: str
    row_values: list[Any]
    col_values: list[Any]
    cells: dict[tuple[Any, Any], dict[str, Any]]  # (row, col) -> {mean, std, ci, n, seeds, delta, base}
    baselines: dict[Any, float | None] = field(default_factory=dict)  # row -> baseline mean
    notes: list[str] = field(default_factory=list)
    step: str = "final"
    spread: str = "std"
    percent: bool = True
    unit: str = "%"


def _sort_key(v: Any) -> tuple[int, Any]:
    try:
        return (0, float(v))
    except (TypeError, ValueError):
        return (1, str(v))


def _groups(rows: list[dict[str, Any]]) -> dict[tuple[Any, Any], set[str]]:
    """Pivot cell -> the runs (cell ids) it pools."""
    groups: dict[tuple[Any, Any], set[str]] = {}
    for r in rows:
        groups.setdefault((r["d0"], r["d1"]), set()).add(r["cell_id"])
    return groups


def _run_axes(con: Any, rows: list[dict[str, Any]], ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each run's sweep axes (merged over the sweeps that have it); cells ingested without a sweep manifest
    fall back to the named columns."""
    axes: dict[str, dict[str, Any]] = {}
    for cid, raw in con.execute(
        "SELECT cell_id, axes FROM sweep_cells WHERE list_contains($ids, cell_id)", {"ids": ids}
    ).fetchall():
        axes.setdefault(cid, {}).update(json.loads(raw) if isinstance(raw, str) else (raw or {}))
    for r in rows:
        axes.setdefault(r["cell_id"], {"model": r["_model"], "reward": r["_reward"], "clip": r["_clip"]})
    return axes


def _pooled(
    con: Any, rows: list[dict[str, Any]], fixed: set[str]
) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """What the runs of one pivot cell differ in besides their seed: sweep axes (other than the pivoted and
    filtered ones), and settings that are no axis (runs with the same axis values but other configurations:
    a setting edited between two runs of a sweep, or two sweeps' cells)."""
    groups = [g for g in _groups(rows).values() if len(g) > 1]
    if not groups:
        return {}, {}
    ids = sorted({c for g in groups for c in g})
    axes = _run_axes(con, rows, ids)
    pooled: dict[str, set[str]] = {}
    for members in groups:
        keys = {k for c in members for k in axes.get(c, {})} - fixed - {"seed"}
        for k in keys:
            values = {str(axes.get(c, {}).get(k)) for c in members}
            if len(values) > 1:
                pooled.setdefault(k, set()).update(values)
    settings = _pooled_settings(con, groups, axes, ids, fixed)
    return {k: sorted(v) for k, v in sorted(pooled.items())}, settings


def _pooled_settings(
    con: Any, groups: list[set[str]], axes: dict[str, dict[str, Any]], ids: list[str], fixed: set[str]
) -> dict[str, list[str]]:
    """Settings whose values differ between runs of one pivot cell that have the same axis values (other
    than seed). Launch resources and settings that change nothing a run computes are left out."""
    settings: dict[str, dict[str, str]] = {}
    for cid, key, value in con.execute(
        "SELECT cell_id, key, value FROM cell_settings WHERE list_contains($ids, cell_id)", {"ids": ids}
    ).fetchall():
        if not _ignored_setting(key) and key not in fixed:
            settings.setdefault(cid, {})[key] = value
    out: dict[str, set[str]] = {}
    for members in groups:
        alike: dict[str, list[str]] = {}
        for c in members:
            same = json.dumps({k: str(v) for k, v in axes.get(c, {}).items() if k != "seed"}, sort_keys=True)
            alike.setdefault(same, []).append(c)
        for runs in alike.values():
            for k in {k for c in runs for k in settings.get(c, {})}:
                values = {str(settings.get(c, {}).get(k)) for c in runs}
                if len(values) > 1:
                    out.setdefault(k, set()).update(values)
    return {k: sorted(v) for k, v in sorted(out.items())}


def _ignored_setting(key: str) -> bool:
    """The seed, launch resources and settings outside a cell's identity (grid.identity)."""
    from ..plan.grid import NON_IDENTITY_EVAL_KEYS
    from ..plan.spec import NON_IDENTITY_KEYS, NON_IDENTITY_SETTINGS

    if key == "seed" or key in NON_IDENTITY_SETTINGS:
        return True
    return key.split(".")[0] in NON_IDENTITY_KEYS or key in {f"eval.{k}" for k in NON_IDENTITY_EVAL_KEYS}


def _listed(pooled: dict[str, list[str]], keys: int = 6, values: int = 3) -> str:
    """`key (v1, v2)` for the first keys, each value cut to 40 characters."""
    cut = [
        f"{k} ({', '.join(v[:40] for v in vs[:values])}{', ...' if len(vs) > values else ''})"
        for k, vs in list(pooled.items())[:keys]
    ]
    return "; ".join(cut) + (f"; and {len(pooled) - keys} more settings" if len(pooled) > keys else "")


def pivot(
    con: Any,
    *,
    sweep: str | None,
    rows: str,
    cols: str,
    metric: str = "pass@1",
    benchmark: str | None = None,
    step: str | int | None = None,
    where: list[str] | tuple[str, ...] = (),
    spread: str = "std",
) -> Pivot:
    """The comparison table: for each (row, col) pair, the runs' mean, spread, count and change.

    step: final (each run's last evaluation), best (each run's best step: optimistic), N (that step,
    0 = the untrained model), all; None picks all when `step` is pivoted, else final.
    """
    m, filters = _check_pivot(
        con, sweep=sweep, rows=rows, cols=cols, metric=metric, benchmark=benchmark, where=where, spread=spread
    )
    step = parse_step(step)
    if step is None:
        step = "all" if "step" in (rows, cols) or any(k == "step" for k, _ in filters) else "final"
    probe_notes: list[str] = []
    if m.kind == "probe":
        step = 0  # a probe is of the untrained weights (or of one named checkpoint)
        benchmark, probe_notes = _probe_defaults(con, rows, cols, benchmark, filters)
    elif (
        m.kind != "train"
        and benchmark is None
        and "benchmark" not in (rows, cols)
        and not any(k == "benchmark" for k, _ in filters)
    ):
        benchmark = default_benchmark(con, sweep)
    data = tidy(con, sweep=sweep, dims=[rows, cols], metric=m, benchmark=benchmark, step=step, where=filters)
    scale = 100.0 if m.percent else 1.0
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for r in data:
        groups.setdefault((r["d0"], r["d1"]), []).append(r)
    out = {key: summarize_runs(rs, scale, spread) for key, rs in groups.items()}
    out = {k: v for k, v in out.items() if v["n"]}
    if m.name == "pass@1":
        _add_paired(con, out, groups, (rows, cols), benchmark, step)
    row_values = sorted({k[0] for k in out}, key=_sort_key)
    col_values = sorted({k[1] for k in out}, key=_sort_key)
    baselines: dict[Any, float | None] = {}
    for rv in row_values:
        baselines[rv] = mean_std(
            [c["base"] for (r, _), c in out.items() if r == rv and c["base"] is not None]
        )[0]
    notes = probe_notes + _pivot_notes(con, m, data, step, {rows, cols, *(k for k, _ in filters)})
    bench_label = "training log" if m.kind == "train" else (benchmark or "all benchmarks")
    return Pivot(
        rows,
        cols,
        m.name,
        bench_label,
        row_values,
        col_values,
        out,
        baselines,
        notes,
        step=str(step),
        spread=spread,
        percent=m.percent,
        unit=m.unit,
    )


def _add_paired(
    con: Any,
    cells: dict[tuple[Any, Any], dict[str, Any]],
    groups: dict[tuple[Any, Any], list[dict[str, Any]]],
    dims: tuple[str, str],
    benchmark: str | None,
    step: Any,
) -> None:
    """Each cell's change against its baseline as a paired difference with its 95% interval over problems
    and seeds (analysis/deltas.py), in cell["paired"]: at the final step or a step number, on one
    benchmark (fixed, or a pivoted dimension)."""
    from .deltas import paired_gain
    from .query import Window

    if not (step == "final" or (isinstance(step, int) and step > 0) or isinstance(step, Window)):
        return
    for key, cell in cells.items():
        bench = (
            benchmark
            if benchmark is not None
            else next((v for d, v in zip(dims, key, strict=True) if d == "benchmark"), None)
        )
        if cell.get("delta") is None or bench is None:
            continue
        if any(r.get("_variant") for r in groups[key]):  # paired intervals: default evaluations only
            continue
        ids = sorted({r["cell_id"] for r in groups[key]})
        paired = paired_gain(con, ids, str(bench), step=step)
        if paired is not None:
            cell["paired"] = paired.delta


def _probe_defaults(
    con: Any, rows: str, cols: str, benchmark: str | None, filters: list[tuple[str, str]]
) -> tuple[str | None, list[str]]:
    """A probe pivot shows one benchmark, the headline fraction and the untrained weights unless those are
    pivoted or filtered (appends the filters); returns the benchmark and the notes that say so."""
    fixed = {rows, cols, *(k for k, _ in filters)}
    notes = []
    if benchmark is None and "benchmark" not in fixed:
        benchmark = default_probe_benchmark(con)
    if "fraction" not in fixed:
        stored = probe_fractions(con)
        if HEADLINE_FRACTION in stored:
            filters.append(("fraction", f"{HEADLINE_FRACTION:g}"))
            notes.append(
                f"the first {HEADLINE_FRACTION:.0%} of each problem shown (the study's headline); "
                "pivot or --where on fraction for the others"
            )
        elif len(stored) > 1:
            notes.append(f"each cell pools fractions {', '.join(f'{f:g}' for f in stored)}")
    if "checkpoint" not in fixed:
        filters.append(("checkpoint", "base"))
    notes.append("memorisation probe: n counts probes (one per model, benchmark and fraction), not seeds")
    return benchmark, notes


def _check_pivot(
    con: Any,
    *,
    sweep: str | None,
    rows: str,
    cols: str,
    metric: str,
    benchmark: str | None,
    where: list[str] | tuple[str, ...],
    spread: str,
) -> tuple[Metric, list[tuple[str, str]]]:
    """Every name of a pivot checked against the store: the metric and the parsed filters."""
    if spread not in SPREADS:
        raise ConfigError(suggest(spread, list(SPREADS)), field="--spread")
    m = parse_metric(con, metric)
    valid = known_dimensions(con) if m.kind != "probe" else list(PROBE_DIMENSIONS)
    if m.kind == "train":
        valid = [d for d in valid if d not in EVAL_ONLY_DIMENSIONS]
    for name in (rows, cols):
        check_dimension(con, name, "--pivot", valid)
    if rows == cols:
        raise ConfigError(
            f"rows and columns must be two different dimensions, got {rows!r} twice", field="--pivot"
        )
    filters = parse_where(con, list(where), valid)
    check_sweep(con, sweep)
    check_benchmark(con, benchmark, probes=m.kind == "probe")
    return m, filters


def _pivot_notes(
    con: Any, m: Metric, data: list[dict[str, Any]], step: str | int, fixed: set[str]
) -> list[str]:
    """What a reader must know about the pooled values: short evaluations, empty selections, pooled axes."""
    notes: list[str] = []
    if m.kind in ("passk", "problems") and m.k:  # pass@k, G-Pass@k: k samples per problem at least
        short = sorted({r["nmin"] for r in data if r["nmin"] is not None and r["nmin"] < m.k})
        if short:
            notes.append(
                f"{m.name} needs >= {m.k} samples per problem; evaluations with {short} samples "
                "are left out (evaluate with more samples, e.g. aime24's 8)"
            )
    if m.kind == "probe":
        if not data:
            notes.append("no memorisation probes match (`spurisweep probe`, or eval.probe: true in a sweep)")
        return notes
    if not data:
        notes.append("no finished cells match (run `spurisweep status` to see where the sweep stands)")
    loose = [d for d in VARIANT_DIMENSIONS if d not in fixed]
    if any(r.get("_variant") for r in data) and loose:
        notes.append(
            "each run's value is the mean of its evaluations this table does not tell apart (its "
            f"{', '.join(loose)}: pivot or --where on those to separate them); Δ of an evaluation variant "
            "is against its own baseline, without a paired interval"
        )
    pooled, settings = _pooled(con, data, fixed)
    if pooled:
        notes.append(
            "each cell pools runs that differ in "
            + "; ".join(f"{k} ({', '.join(v)})" for k, v in pooled.items())
            + ": n counts runs, not only seeds "
            "(pivot or --where on those to separate them)"
        )
    if settings:
        notes.append(
            "each cell pools runs of the same axes whose settings differ: "
            + _listed(settings)
            + ": other configurations averaged as if they were seeds (pivot or --where on those; "
            "`--sweep NAME` shows a sweep's current cells only)"
        )
    if step == "best":
        notes.append("step=best picks each run's best checkpoint on this metric: an optimistic estimate")
    return notes


# ---------------------------------------------------------------------------------------------- rendering
def _num(x: float, p: Pivot | None = None) -> str:
    if p is not None and not p.percent and p.unit != "tokens":
        return f"{x:.3g}"
    return f"{x:.1f}"


def fmt_cell(c: dict[str, Any] | None, spread: str = "std", p: Pivot | None = None) -> str:
    if not c or c["mean"] is None:
        return "-"
    s = _num(c["mean"], p)
    if spread == "ci" and c.get("ci"):
        s += f" [{_num(c['ci'][0], p)}, {_num(c['ci'][1], p)}]"
    elif spread == "std" and c.get("std") is not None:
        s += f" ± {_num(c['std'], p)}"
    s += f" (n={c['n']})"
    paired = c.get("paired")
    if paired is not None:
        from .. import stats

        if spread == "ci":
            return s + f" Δ{stats.format_delta(paired)}"
        return s + f" Δ{'' if paired.distinguishable else '≈'}{stats.signed(c['delta'])}"
    if c.get("delta") is not None:
        s += (
            f" Δ{c['delta']:+.1f}"
            if (p is None or p.percent or p.unit == "tokens")
            else f" Δ{c['delta']:+.3g}"
        )
    return s


def title(p: Pivot) -> str:
    spread = "[bootstrap 95% interval]" if p.spread == "ci" else "± std"
    unit = f" ({p.unit})" if p.unit else ""
    delta = (
        ", Δ = change vs the untrained model"
        if any(c.get("delta") is not None for c in p.cells.values())
        else ""
    )
    if any(c.get("paired") is not None for c in p.cells.values()):
        delta += (
            " [paired 95% interval]; ≈: not distinguishable from no change"
            if p.spread == "ci"
            else "; ≈: its paired 95% interval contains 0 (--spread ci shows it)"
        )
    step = {"final": "final step", "best": "best step", "all": "all steps"}.get(p.step, f"step {p.step}")
    return f"{p.metric}{unit} on {p.benchmark}, {step}: mean over runs {spread}, n = runs{delta}"


def to_records(p: Pivot) -> list[dict[str, Any]]:
    recs = []
    for (r, c), cell in sorted(p.cells.items(), key=lambda kv: (_sort_key(kv[0][0]), _sort_key(kv[0][1]))):
        rec = {p.rows: r, p.cols: c}
        for k, v in (("metric", p.metric), ("benchmark", p.benchmark), ("step", p.step)):
            rec.setdefault(k, v)  # a pivoted dimension keeps its own value
        rec.update({k: v for k, v in cell.items() if k not in ("ci", "values", "paired")})
        if cell.get("ci"):
            rec["ci_low"], rec["ci_high"] = cell["ci"]
        if cell.get("paired") is not None:
            d = cell["paired"]
            rec.update(
                delta_low=d.low,
                delta_high=d.high,
                delta_distinguishable=d.distinguishable,
                delta_problems=d.n_problems,
                delta_method=d.method,
            )
        recs.append(rec)
    return recs


def header(p: Pivot) -> list[str]:
    return [p.rows, *(["base"] if _show_base(p) else []), *[str(c) for c in p.col_values]]


def _show_base(p: Pivot) -> bool:
    return p.rows == "model" and any(b is not None for b in p.baselines.values())


def grid_rows(p: Pivot, spread: str = "std") -> list[list[str]]:
    out = []
    for r in p.row_values:
        row = [str(r)]
        if _show_base(p):
            b = p.baselines.get(r)
            row.append("-" if b is None else _num(b, p))
        row += [fmt_cell(p.cells.get((r, c)), spread, p) for c in p.col_values]
        out.append(row)
    return out


def render(p: Pivot, fmt: str = "table", spread: str | None = None) -> str | Any:
    """The pivot as a rich renderable (fmt=table) or a string (markdown, csv, json, html)."""
    return rnd.render(table(p, spread or p.spread), fmt)


def table(p: Pivot, spread: str = "std") -> rnd.Table:
    """The pivot as a render.Table: the grid as shown, and one record per cell for csv and json."""
    hdr = header(p)
    return rnd.Table(
        hdr,
        grid_rows(p, spread),
        title(p),
        p.notes,
        records=to_records(p),
        meta={"rows": p.rows, "cols": p.cols, "metric": p.metric, "benchmark": p.benchmark, "step": p.step},
        justify=["left" if h == hdr[0] else "right" for h in hdr],
        empty=_empty_reason(p),
    )


def _empty_reason(p: Pivot) -> str:
    """The one line an empty pivot prints: why nothing matched (too few samples for pass@k, no finished
    cell), else what was asked."""
    for start in (f"{p.metric} needs", "no "):
        reason = next((n for n in p.notes if n.startswith(start)), None)
        if reason:
            return reason
    return f"{p.metric} on {p.benchmark}: nothing to show"
