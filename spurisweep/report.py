"""Pivots over stored results: mean over seeds with spread, and the change against each model's
untrained baseline. Everything is computed from the per-sample rows in the store.

Names of dimensions and filters are checked against the known ones before any SQL is built; values
are always bound as parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, suggest

#: fixed dimensions -> SQL expression over the joined tables (c: cells, e: evals, sc: sweep_cells)
DIMENSIONS: dict[str, str] = {
    "model": "c.model",
    "reward": "c.reward",
    "clip": "c.clip",
    "seed": "c.seed",
    "preset": "c.preset",
    "prompt": "c.prompt",
    "benchmark": "e.benchmark",
    "step": "e.step",
    "sweep": "sc.sweep",
    "cell": "c.cell_id",
}

#: metric -> SQL aggregate over samples `s` of one evaluation (a value in [0, 1] unless noted)
METRICS: dict[str, str] = {
    "pass@1": "avg(coalesce(s.correct, false)::DOUBLE)",
    "avg@n": "avg(coalesce(s.correct, false)::DOUBLE)",
    "code_frequency": "avg(s.has_python::DOUBLE)",
    "acc_with_code": "avg(CASE WHEN s.has_python THEN coalesce(s.correct, false)::DOUBLE END)",
    "acc_without_code": "avg(CASE WHEN NOT s.has_python THEN coalesce(s.correct, false)::DOUBLE END)",
    "mean_length": "avg(s.n_tokens::DOUBLE)",
    "truncated": "avg(s.truncated::DOUBLE)",
    "ungradable": "avg((s.correct IS NULL)::DOUBLE)",
}
PERCENT_METRICS = {"pass@1", "avg@n", "code_frequency", "acc_with_code", "acc_without_code", "truncated",
                   "ungradable"}


@dataclass
class Pivot:
    rows: str
    cols: str
    metric: str
    benchmark: str
    row_values: list[Any]
    col_values: list[Any]
    cells: dict[tuple[Any, Any], dict[str, Any]]  # (row, col) -> {mean, std, n, delta, base}
    baselines: dict[Any, float | None] = field(default_factory=dict)  # row -> baseline mean (if rows=model)
    notes: list[str] = field(default_factory=list)


def known_dimensions(con: Any) -> list[str]:
    keys = [r[0] for r in con.execute("SELECT DISTINCT key FROM cell_settings ORDER BY key").fetchall()]
    return list(DIMENSIONS) + [k for k in keys if k not in DIMENSIONS]


def check_dimension(con: Any, name: str, option: str) -> None:
    valid = known_dimensions(con)
    if name not in valid:
        raise ConfigError(suggest(name, valid), field=option)


def parse_where(con: Any, where: list[str]) -> list[tuple[str, str]]:
    """`key=value` filters; the key must be a known dimension, the value is bound as a parameter."""
    out = []
    for w in where:
        if "=" not in w:
            raise ConfigError(f"expected KEY=VALUE, got {w!r}", field="--where")
        key, value = (x.strip() for x in w.split("=", 1))
        check_dimension(con, key, "--where")
        out.append((key, value))
    return out


def dim_sql(name: str, params: list[Any]) -> str:
    """SQL for a checked dimension name; swept settings come from cell_settings (key bound)."""
    if name in DIMENSIONS:
        return DIMENSIONS[name]
    params.append(name)
    return "(SELECT cs.value FROM cell_settings cs WHERE cs.cell_id = c.cell_id AND cs.key = ?)"


def tidy(con: Any, *, sweep: str | None, dims: list[str], metric: str, benchmark: str | None,
         step: str = "final", where: list[tuple[str, str]] = ()) -> list[dict[str, Any]]:
    """One row per trained evaluation: the dimensions, its value, and its baseline's value."""
    if metric not in METRICS:
        raise ConfigError(suggest(metric, list(METRICS)), field="--metric")
    params: list[Any] = []
    select_dims = ", ".join(f"{dim_sql(d, params)} AS d{i}" for i, d in enumerate(dims))
    conds = ["NOT e.is_baseline"]
    if sweep:
        conds.append("sc.sweep = ?")
        params.append(sweep)
    if benchmark:
        conds.append("e.benchmark = ?")
        params.append(benchmark)
    for key, value in where:
        conds.append(f"CAST({dim_sql(key, params)} AS VARCHAR) = ?")
        params.append(value)
    if step == "final":
        conds.append("e.step = (SELECT max(e2.step) FROM evals e2 WHERE e2.cell_id = e.cell_id "
                     "AND e2.benchmark = e.benchmark)")
    elif step not in ("best", "all"):
        try:
            params.append(int(step))
        except ValueError:
            raise ConfigError(f"expected final, best, all or a step number, got {step!r}", field="--step") from None
        conds.append("e.step = ?")
    agg = METRICS[metric]
    sql = f"""
        WITH chosen AS (
            SELECT DISTINCT e.eval_id, e.baseline_eval_id, e.cell_id, e.step, {select_dims}
            FROM evals e JOIN cells c ON c.cell_id = e.cell_id
            JOIN sweep_cells sc ON sc.cell_id = c.cell_id
            WHERE {" AND ".join(conds)}
        ), vals AS (
            SELECT s.eval_id, {agg} AS v FROM samples s
            WHERE s.eval_id IN (SELECT eval_id FROM chosen UNION SELECT baseline_eval_id FROM chosen)
            GROUP BY s.eval_id
        )
        SELECT ch.*, v1.v AS value, v2.v AS base FROM chosen ch
        LEFT JOIN vals v1 ON v1.eval_id = ch.eval_id LEFT JOIN vals v2 ON v2.eval_id = ch.baseline_eval_id
    """
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if step == "best":  # the best step of each cell
        best: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r["value"] is not None and (r["cell_id"] not in best or r["value"] > best[r["cell_id"]]["value"]):
                best[r["cell_id"]] = r
        rows = list(best.values())
    return rows


def mean_std(xs: list[float]) -> tuple[float | None, float | None]:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def bootstrap_ci(xs: list[float], n: int = 2000, seed: int = 0) -> tuple[float, float] | None:
    import random

    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return None
    rng = random.Random(seed)
    means = sorted(sum(rng.choice(xs) for _ in xs) / len(xs) for _ in range(n))
    return means[int(0.025 * n)], means[int(0.975 * n) - 1]


def pivot(con: Any, *, sweep: str | None, rows: str, cols: str, metric: str = "pass@1",
          benchmark: str | None = None, step: str = "final", where: list[str] = (),
          spread: str = "std") -> Pivot:
    for name, opt in ((rows, "--pivot"), (cols, "--pivot")):
        check_dimension(con, name, opt)
    filters = parse_where(con, list(where))
    if benchmark is None:
        benches = [r[0] for r in con.execute(
            "SELECT DISTINCT benchmark FROM evals WHERE NOT is_baseline ORDER BY benchmark").fetchall()]
        if "benchmark" not in (rows, cols):
            benchmark = "math500" if "math500" in benches else (benches[0] if benches else None)
    data = tidy(con, sweep=sweep, dims=[rows, cols], metric=metric, benchmark=benchmark, step=step, where=filters)
    scale = 100.0 if metric in PERCENT_METRICS else 1.0
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for r in data:
        groups.setdefault((r["d0"], r["d1"]), []).append(r)
    out: dict[tuple[Any, Any], dict[str, Any]] = {}
    for key, rs in groups.items():
        vals = [r["value"] * scale for r in rs if r["value"] is not None]
        bases = [r["base"] * scale for r in rs if r["base"] is not None]
        m, sd = mean_std(vals)
        b, _ = mean_std(bases)
        cell = {"mean": m, "std": sd, "n": len(vals), "base": b,
                "delta": (m - b) if (m is not None and b is not None) else None}
        if spread == "ci":
            cell["ci"] = bootstrap_ci(vals)
        out[key] = cell
    row_values = sorted({k[0] for k in out}, key=_sort_key)
    col_values = sorted({k[1] for k in out}, key=_sort_key)
    baselines = {}
    for rv in row_values:
        bs = [c["base"] for (r, _), c in out.items() if r == rv and c["base"] is not None]
        baselines[rv] = sum(bs) / len(bs) if bs else None
    notes = []
    if not data:
        notes.append("no finished cells match (run `spurisweep status` to see where the sweep stands)")
    return Pivot(rows, cols, metric, benchmark or "all", row_values, col_values, out, baselines, notes)


def _sort_key(v: Any) -> tuple[int, Any]:
    try:
        return (0, float(v))
    except (TypeError, ValueError):
        return (1, str(v))


# ---------------------------------------------------------------------------------------------- rendering
def fmt_cell(c: dict[str, Any] | None, spread: str = "std") -> str:
    if not c or c["mean"] is None:
        return "-"
    s = f"{c['mean']:.1f}"
    if spread == "ci" and c.get("ci"):
        s += f" [{c['ci'][0]:.1f}, {c['ci'][1]:.1f}]"
    elif c.get("std") is not None:
        s += f" ± {c['std']:.1f}"
    s += f" (n={c['n']})"
    if c.get("delta") is not None:
        s += f" Δ{c['delta']:+.1f}"
    return s


def to_records(p: Pivot) -> list[dict[str, Any]]:
    recs = []
    for (r, c), cell in sorted(p.cells.items(), key=lambda kv: (_sort_key(kv[0][0]), _sort_key(kv[0][1]))):
        recs.append({p.rows: r, p.cols: c, "metric": p.metric, "benchmark": p.benchmark, **{
            k: v for k, v in cell.items() if k != "ci"}, **({"ci_low": cell["ci"][0], "ci_high": cell["ci"][1]}
                                                          if cell.get("ci") else {})})
    return recs


def header(p: Pivot) -> list[str]:
    return [p.rows, *(["base"] if p.rows == "model" else []), *[str(c) for c in p.col_values]]


def grid_rows(p: Pivot, spread: str = "std") -> list[list[str]]:
    out = []
    for r in p.row_values:
        row = [str(r)]
        if p.rows == "model":
            b = p.baselines.get(r)
            row.append("-" if b is None else f"{b:.1f}")
        row += [fmt_cell(p.cells.get((r, c)), spread) for c in p.col_values]
        out.append(row)
    return out


def render(p: Pivot, fmt: str = "table", spread: str = "std") -> str | Any:
    title = (f"{p.metric} on {p.benchmark} (%, mean ± std over runs (seeds), n = runs, Δ = change vs the untrained "
             f"model)" if p.metric in PERCENT_METRICS else f"{p.metric} on {p.benchmark}")
    if fmt == "json":
        return json.dumps({"title": title, "rows": p.rows, "cols": p.cols, "cells": to_records(p),
                           "notes": p.notes}, indent=1, default=str)
    if fmt == "csv":
        import csv
        import io

        recs = to_records(p)
        buf = io.StringIO()
        if recs:
            w = csv.DictWriter(buf, fieldnames=list(recs[0]))
            w.writeheader()
            w.writerows(recs)
        return buf.getvalue()
    hdr, body = header(p), grid_rows(p, spread)
    if fmt == "markdown":
        lines = [f"**{title}**", "", "| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines + [f"\n_{n}_" for n in p.notes])
    if fmt == "html":
        import html

        th = "".join(f"<th>{html.escape(h)}</th>" for h in hdr)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>" for r in body)
        return (f"<!doctype html><meta charset='utf-8'><title>spurisweep</title><h3>{html.escape(title)}</h3>"
                f"<table border=1 cellpadding=4><tr>{th}</tr>{trs}</table>")
    if fmt != "table":
        raise ConfigError(suggest(fmt, ["table", "markdown", "csv", "json", "html"]), field="--format")
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for h in hdr:
        t.add_column(h, justify="left" if h == hdr[0] else "right")
    for r in body:
        t.add_row(*r)
    if p.notes:
        t.caption = "; ".join(p.notes)
    return t
