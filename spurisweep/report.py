"""Pivots over stored results: mean over seeds with spread, and the change against each model's
untrained baseline. Everything is computed from the rows in the store (per-sample rows for benchmark
metrics, per-update rows for training metrics), never from summaries written by the jobs.

One pivot cell pools the runs (cells) that share its row and column values. Each run contributes one
value (its evaluation at the chosen step; the mean of its evaluations when several match), so `n` counts
runs, which are seeds when the other axes are fixed; a note says when a cell also pools other axes.

Safety: pivot, filter and metric names are checked against the known ones before any SQL is built, and
the SQL only ever contains fixed fragments from this module plus named placeholders; every value
(filter values, setting keys, metric keys, k, step numbers) is bound as a parameter.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError, suggest

log = logging.getLogger(__name__)

#: fixed dimensions -> SQL over the joined rows (c: cells, e: the evaluation or training step, sc: sweep_cells)
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
#: dimensions that only exist for benchmark evaluations (training metrics have no benchmark)
EVAL_ONLY_DIMENSIONS = ("benchmark",)

#: metric -> SQL aggregate over the samples `s` of one evaluation (a fraction in [0, 1] unless noted)
SAMPLE_METRICS: dict[str, str] = {
    "pass@1": "avg(coalesce(s.correct, false)::DOUBLE)",
    "avg@n": "avg(coalesce(s.correct, false)::DOUBLE)",
    "code_frequency": "avg(coalesce(s.has_python, false)::DOUBLE)",
    "code_block_frequency": "avg(coalesce(s.has_code_block, false)::DOUBLE)",
    "acc_with_code": "avg(CASE WHEN s.has_python THEN coalesce(s.correct, false)::DOUBLE END)",
    "acc_without_code": "avg(CASE WHEN NOT coalesce(s.has_python, false) THEN coalesce(s.correct, false)::DOUBLE END)",
    "mean_length": "avg(s.n_tokens::DOUBLE)",
    "truncated": "avg(coalesce(s.truncated, false)::DOUBLE)",
    "ungradable": "avg((s.correct IS NULL)::DOUBLE)",
}
#: metrics read from the training log (metrics table): name -> logged key
TRAIN_METRICS: dict[str, str] = {"final_reward": "reward"}
PERCENT_METRICS = {
    "pass@1",
    "avg@n",
    "code_frequency",
    "code_block_frequency",
    "acc_with_code",
    "acc_without_code",
    "truncated",
    "ungradable",
}
METRIC_HELP = (
    "pass@1 (default), avg@n, pass@K (K <= samples per problem, unbiased estimator), code_frequency, "
    "code_block_frequency, acc_with_code, acc_without_code, mean_length, truncated, ungradable, "
    "final_reward, train:KEY (any logged training metric, e.g. train:entropy)"
)
FORMATS = ("table", "markdown", "csv", "json", "html")
SPREADS = ("std", "ci")
BOOTSTRAP = 2000


@dataclass(frozen=True)
class Metric:
    """A checked metric: where its value comes from and how it is shown."""

    name: str
    kind: str  # "samples" (per-eval aggregate), "passk" (per-problem counts), "train" (metrics table)
    sql: str | None = None
    k: int | None = None
    key: str | None = None
    percent: bool = False

    @property
    def unit(self) -> str:
        if self.percent:
            return "%"
        return "tokens" if self.name == "mean_length" else ""


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


# ---------------------------------------------------------------------------------------------- names
def known_dimensions(con: Any) -> list[str]:
    keys = [r[0] for r in con.execute("SELECT DISTINCT key FROM cell_settings ORDER BY key").fetchall()]
    return list(DIMENSIONS) + [k for k in keys if k not in DIMENSIONS]


def check_dimension(con: Any, name: str, option: str, valid: list[str] | None = None) -> None:
    valid = valid if valid is not None else known_dimensions(con)
    if name not in valid:
        raise ConfigError(suggest(name, valid), field=option)


def parse_metric(con: Any, name: str) -> Metric:
    """A metric name -> Metric, or a ConfigError listing the valid names."""
    name = name.strip()
    if name in SAMPLE_METRICS:
        return Metric(name, "samples", sql=SAMPLE_METRICS[name], percent=name in PERCENT_METRICS)
    if m := re.fullmatch(r"pass@([0-9]{1,4})", name):
        k = int(m.group(1))
        if k < 1:
            raise ConfigError(f"pass@k needs k >= 1, got {name!r}", field="--metric")
        if k == 1:
            return Metric(name, "samples", sql=SAMPLE_METRICS["pass@1"], percent=True)
        return Metric(name, "passk", k=k, percent=True)
    if name in TRAIN_METRICS:
        return Metric(name, "train", key=TRAIN_METRICS[name])
    if name.startswith("train:"):
        key = name.removeprefix("train:")
        keys = [r[0] for r in con.execute("SELECT DISTINCT key FROM metrics ORDER BY key").fetchall()]
        if key not in keys:
            msg = f"training metric {suggest(key, keys)}" if keys else "no training metrics are stored yet"
            raise ConfigError(msg, field="--metric")
        return Metric(name, "train", key=key)
    raise ConfigError(
        suggest(name, [*SAMPLE_METRICS, "pass@K", *TRAIN_METRICS, "train:KEY"]), field="--metric"
    )


def parse_where(
    con: Any, where: list[str] | tuple[str, ...], valid: list[str] | None = None
) -> list[tuple[str, str]]:
    """`KEY=VALUE` filters (repeat a key for OR); the key must be a known dimension, the value is bound."""
    valid = valid if valid is not None else known_dimensions(con)
    out = []
    for w in where:
        if "=" not in w:
            raise ConfigError(f"expected KEY=VALUE, got {w!r}", field="--where")
        key, value = (x.strip() for x in w.split("=", 1))
        check_dimension(con, key, "--where", valid)
        out.append((key, value))
    return out


def check_sweep(con: Any, sweep: str | None, option: str = "--sweep") -> None:
    if sweep is None:
        return
    known = [r[0] for r in con.execute("SELECT DISTINCT sweep FROM sweep_cells ORDER BY sweep").fetchall()]
    if sweep not in known:
        raise ConfigError(
            suggest(sweep, known) if known else f"no sweep {sweep!r}: the store holds no sweeps yet",
            field=option,
        )


def check_benchmark(con: Any, benchmark: str | None) -> None:
    if benchmark is None:
        return
    known = [r[0] for r in con.execute("SELECT DISTINCT benchmark FROM evals ORDER BY benchmark").fetchall()]
    if benchmark not in known:
        raise ConfigError(
            suggest(benchmark, known) if known else "no evaluations are stored yet", field="--benchmark"
        )


def default_benchmark(con: Any, sweep: str | None = None) -> str | None:
    """math500 when it was evaluated, else the first benchmark in alphabetical order."""
    sql = "SELECT DISTINCT e.benchmark FROM evals e WHERE NOT e.is_baseline AND e.cell_id IS NOT NULL"
    params: dict[str, Any] = {}
    if sweep:
        sql += " AND e.cell_id IN (SELECT cell_id FROM sweep_cells WHERE sweep = $sweep)"
        params["sweep"] = sweep
    benches = sorted(r[0] for r in con.execute(sql, params).fetchall() if r[0] is not None)
    if not benches:
        return None
    return "math500" if "math500" in benches else benches[0]


def parse_step(step: str | int | None) -> str | int | None:
    if step is None or step in ("final", "best", "all"):
        return step
    try:
        n = int(step)
    except (TypeError, ValueError):
        raise ConfigError(
            f"expected final, best, all or a step number, got {step!r}", field="--step"
        ) from None
    if n < 0:
        raise ConfigError(f"a step number is >= 0 (0 = the untrained baseline), got {n}", field="--step")
    return n


# ---------------------------------------------------------------------------------------------- the query
class _Params:
    """Named placeholders: every value reaches DuckDB as a bound parameter, never as SQL text."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def add(self, value: Any) -> str:
        name = f"p{len(self.values)}"
        self.values[name] = value
        return f"${name}"


def _equals(expr: str, placeholder: str) -> str:
    """Text equality, or numeric equality when both sides are numbers (5e-4 matches a stored 0.0005)."""
    text = f"CAST({expr} AS VARCHAR)"
    return f"({text} = {placeholder} OR TRY_CAST({text} AS DOUBLE) = TRY_CAST({placeholder} AS DOUBLE))"


def tidy(
    con: Any,
    *,
    sweep: str | None,
    dims: list[str],
    metric: str | Metric = "pass@1",
    benchmark: str | None = None,
    step: str | int | None = "final",
    where: list[tuple[str, str]] | tuple[()] = (),
) -> list[dict[str, Any]]:
    """One row per matching evaluation (or training step): the dimensions as d0, d1, ..., the cell's
    id, model, reward, clip and seed, its value (a fraction for percent metrics) and its baseline's value.

    Dimension and filter names must already be checked (pivot() does it); this builds SQL from the fixed
    fragments in DIMENSIONS and binds everything else.
    """
    m = metric if isinstance(metric, Metric) else parse_metric(con, metric)
    step = parse_step(step)
    if step is None:
        step = "final"
    p = _Params()
    used = list(dict.fromkeys([*dims, *(k for k, _ in where)]))
    joins, expr = [], {}
    for i, d in enumerate(used):
        if d in DIMENSIONS:
            expr[d] = DIMENSIONS[d]
        else:  # a swept setting: its key is bound, never interpolated
            joins.append(
                f"LEFT JOIN cell_settings cs{i} ON cs{i}.cell_id = c.cell_id AND cs{i}.key = {p.add(d)}"
            )
            expr[d] = f"cs{i}.value"
    if sweep is not None or "sweep" in used:
        joins.insert(0, "JOIN sweep_cells sc ON sc.cell_id = c.cell_id")
    conds = ["TRUE"]
    if sweep is not None:
        conds.append(f"sc.sweep = {p.add(sweep)}")
    if m.kind != "train" and benchmark is not None:
        conds.append(f"e.benchmark = {p.add(benchmark)}")
    by_key: dict[str, list[str]] = {}
    for key, value in where:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():  # the same key repeated: any of its values
        conds.append("(" + " OR ".join(_equals(expr[key], p.add(v)) for v in values) + ")")
    if step == "final":
        conds.append("e.step = e.last_step")
    elif isinstance(step, int):
        conds.append(f"e.step = {p.add(step)}")
    elif step == "best":
        conds.append("e.step > 0")
    select_dims = "".join(f", {expr[d]} AS d{i}" for i, d in enumerate(dims))
    base_cols = "c.cell_id, c.model AS _model, c.reward AS _reward, c.clip AS _clip, c.seed AS _seed"
    if m.kind == "train":
        ev = f"""ev AS (
            SELECT cell_id, step, NULL::VARCHAR AS benchmark, avg(value) AS v,
                   max(step) OVER (PARTITION BY cell_id) AS last_step
            FROM metrics WHERE key = {p.add(m.key)} GROUP BY cell_id, step)"""
        sql = f"""WITH {ev}
            SELECT DISTINCT {base_cols}, e.step AS _step, e.v AS value, NULL::DOUBLE AS base{select_dims}
            FROM ev e JOIN cells c ON c.cell_id = e.cell_id {" ".join(joins)}
            WHERE {" AND ".join(conds)}"""
    else:
        # step 0 is the untrained model: each cell gets its baseline evaluation as a step-0 row (unless the
        # cell evaluated a step-0 checkpoint of its own), so curves start where training started
        with_base = step == "all" or step == 0
        base_rows = (
            """UNION ALL
            SELECT DISTINCT t.baseline_eval_id, t.cell_id, 0, t.benchmark, t.baseline_eval_id, 0 FROM evals t
            WHERE NOT t.is_baseline AND t.baseline_eval_id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM evals t2 WHERE t2.cell_id = t.cell_id AND t2.benchmark = t.benchmark
                AND t2.step = 0 AND NOT t2.is_baseline)"""
            if with_base
            else ""
        )
        if m.kind == "passk":
            k = p.add(m.k)
            vals = f"""pp AS (
                SELECT s.eval_id, count(*) AS n, count_if(coalesce(s.correct, false)) AS c FROM samples s
                WHERE s.eval_id IN (SELECT eval_id FROM need) GROUP BY s.eval_id, s.problem_id
            ), vals AS (
                SELECT eval_id, CASE WHEN min(n) >= {k} THEN avg(CASE WHEN n - c < {k} THEN 1.0 ELSE
                    1.0 - exp(lgamma(n - c + 1) - lgamma(n - c - {k} + 1) - lgamma(n + 1) + lgamma(n - {k} + 1))
                    END) END AS v, min(n) AS nmin
                FROM pp GROUP BY eval_id)"""
        else:
            vals = f"""vals AS (
                SELECT s.eval_id, {m.sql} AS v, NULL::BIGINT AS nmin FROM samples s
                WHERE s.eval_id IN (SELECT eval_id FROM need) GROUP BY s.eval_id)"""
        sql = f"""WITH ev AS (
                SELECT eval_id, cell_id, step, benchmark, baseline_eval_id,
                       max(step) OVER (PARTITION BY cell_id, benchmark) AS last_step
                FROM evals WHERE NOT is_baseline AND cell_id IS NOT NULL
                {base_rows}
            ), chosen AS (
                SELECT DISTINCT e.eval_id, e.baseline_eval_id, {base_cols}, e.step AS _step{select_dims}
                FROM ev e JOIN cells c ON c.cell_id = e.cell_id {" ".join(joins)}
                WHERE {" AND ".join(conds)}
            ), need AS (
                SELECT eval_id FROM chosen UNION SELECT baseline_eval_id FROM chosen WHERE baseline_eval_id IS NOT NULL
            ), {vals}
            SELECT ch.*, v1.v AS value, v2.v AS base, v1.nmin AS nmin FROM chosen ch
            LEFT JOIN vals v1 ON v1.eval_id = ch.eval_id LEFT JOIN vals v2 ON v2.eval_id = ch.baseline_eval_id"""
    cur = con.execute(sql, p.values)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if step == "best":  # each cell's best step on this metric (an optimistic choice: say so where shown)
        best: dict[tuple[Any, ...], dict[str, Any]] = {}
        for r in rows:
            key = (r["cell_id"], *(r[f"d{i}"] for i in range(len(dims))))
            if r["value"] is not None and (key not in best or r["value"] > best[key]["value"]):
                best[key] = r
        rows = list(best.values())
    return rows


# ---------------------------------------------------------------------------------------------- statistics
def _clean(xs: list[float | None]) -> list[float]:
    return [float(x) for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]


def mean_std(xs: list[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None with fewer than 2 values)."""
    xs = _clean(xs)
    if not xs:
        return None, None
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, None
    return m, math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def bootstrap_means(xs: list[float | None], n: int = BOOTSTRAP, seed: int = 0) -> Any:
    """`n` bootstrap means of xs (resampling runs with replacement), as a numpy array; None if empty."""
    import numpy as np

    arr = np.asarray(_clean(xs), dtype=float)
    if arr.size == 0:
        return None
    rng = np.random.default_rng(seed)
    return arr[rng.integers(0, arr.size, size=(n, arr.size))].mean(axis=1)


def bootstrap_ci(
    xs: list[float | None], n: int = BOOTSTRAP, seed: int = 0, level: float = 0.95
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of the mean over runs; None with fewer than 2 values."""
    import numpy as np

    if len(_clean(xs)) < 2:
        return None
    means = bootstrap_means(xs, n, seed)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def summarize_runs(rows: list[dict[str, Any]], scale: float = 1.0, spread: str = "std") -> dict[str, Any]:
    """Pool rows into one pivot cell: one value per run (its rows averaged), then mean, spread, delta."""
    per_run: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        per_run.setdefault(r["cell_id"], []).append(r)
    vals, bases, deltas, seeds = [], [], [], set()
    for rs in per_run.values():
        v, _ = mean_std([r["value"] for r in rs])
        b, _ = mean_std([r.get("base") for r in rs])
        if v is None:
            continue
        vals.append(v * scale)
        seeds.add(rs[0].get("_seed"))
        if b is not None:
            bases.append(b * scale)
            deltas.append((v - b) * scale)
    m, sd = mean_std(vals)
    b, _ = mean_std(bases)
    d, _ = mean_std(deltas)
    cell = {"mean": m, "std": sd, "n": len(vals), "seeds": len(seeds), "base": b, "delta": d, "values": vals}
    if spread == "ci":
        cell["ci"] = bootstrap_ci(vals)
    return cell


def _sort_key(v: Any) -> tuple[int, Any]:
    try:
        return (0, float(v))
    except (TypeError, ValueError):
        return (1, str(v))


def _pooled_axes(con: Any, rows: list[dict[str, Any]], fixed: set[str]) -> dict[str, list[str]]:
    """Sweep axes (other than seed and the pivoted ones) whose values differ between runs of one cell."""
    groups: dict[tuple[Any, Any], set[str]] = {}
    for r in rows:
        groups.setdefault((r["d0"], r["d1"]), set()).add(r["cell_id"])
    ids = sorted({c for g in groups.values() for c in g})
    if not ids or all(len(g) < 2 for g in groups.values()):
        return {}
    axes: dict[str, dict[str, Any]] = {}
    for cid, raw in con.execute(
        "SELECT cell_id, axes FROM sweep_cells WHERE list_contains($ids, cell_id)", {"ids": ids}
    ).fetchall():
        axes.setdefault(cid, {}).update(json.loads(raw) if isinstance(raw, str) else (raw or {}))
    for r in rows:  # cells ingested without a sweep manifest: fall back to the named columns
        axes.setdefault(r["cell_id"], {"model": r["_model"], "reward": r["_reward"], "clip": r["_clip"]})
    pooled: dict[str, set[str]] = {}
    for members in groups.values():
        keys = {k for c in members for k in axes.get(c, {})} - fixed - {"seed"}
        for k in keys:
            values = {str(axes.get(c, {}).get(k)) for c in members}
            if len(values) > 1:
                pooled.setdefault(k, set()).update(values)
    return {k: sorted(v) for k, v in sorted(pooled.items())}


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
    if spread not in SPREADS:
        raise ConfigError(suggest(spread, list(SPREADS)), field="--spread")
    m = parse_metric(con, metric)
    valid = known_dimensions(con)
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
    check_benchmark(con, benchmark)
    step = parse_step(step)
    if step is None:
        step = "all" if "step" in (rows, cols) or any(k == "step" for k, _ in filters) else "final"
    notes: list[str] = []
    if (
        m.kind != "train"
        and benchmark is None
        and "benchmark" not in (rows, cols)
        and not any(k == "benchmark" for k, _ in filters)
    ):
        benchmark = default_benchmark(con, sweep)
    data = tidy(con, sweep=sweep, dims=[rows, cols], metric=m, benchmark=benchmark, step=step, where=filters)
    if m.kind == "passk":
        short = sorted({r["nmin"] for r in data if r["nmin"] is not None and r["nmin"] < (m.k or 0)})
        if short:
            notes.append(
                f"{m.name} needs >= {m.k} samples per problem; evaluations with {short} samples "
                "are left out (evaluate with more samples, e.g. aime24's 8)"
            )
    scale = 100.0 if m.percent else 1.0
    groups: dict[tuple[Any, Any], list[dict[str, Any]]] = {}
    for r in data:
        groups.setdefault((r["d0"], r["d1"]), []).append(r)
    out = {key: summarize_runs(rs, scale, spread) for key, rs in groups.items()}
    out = {k: v for k, v in out.items() if v["n"]}
    row_values = sorted({k[0] for k in out}, key=_sort_key)
    col_values = sorted({k[1] for k in out}, key=_sort_key)
    baselines: dict[Any, float | None] = {}
    for rv in row_values:
        bs = [c["base"] for (r, _), c in out.items() if r == rv and c["base"] is not None]
        baselines[rv] = sum(bs) / len(bs) if bs else None
    if not data:
        notes.append("no finished cells match (run `spurisweep status` to see where the sweep stands)")
    pooled = _pooled_axes(con, data, {rows, cols, *(k for k, _ in filters)})
    if pooled:
        notes.append(
            "each cell pools runs that differ in "
            + "; ".join(f"{k} ({', '.join(v)})" for k, v in pooled.items())
            + ": n counts runs, not only seeds "
            "(pivot or --where on those to separate them)"
        )
    if step == "best":
        notes.append("step=best picks each run's best checkpoint on this metric: an optimistic estimate")
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
    step = {"final": "final step", "best": "best step", "all": "all steps"}.get(p.step, f"step {p.step}")
    return f"{p.metric}{unit} on {p.benchmark}, {step}: mean over runs {spread}, n = runs{delta}"


def to_records(p: Pivot) -> list[dict[str, Any]]:
    recs = []
    for (r, c), cell in sorted(p.cells.items(), key=lambda kv: (_sort_key(kv[0][0]), _sort_key(kv[0][1]))):
        rec = {p.rows: r, p.cols: c}
        for k, v in (("metric", p.metric), ("benchmark", p.benchmark), ("step", p.step)):
            rec.setdefault(k, v)  # a pivoted dimension keeps its own value
        rec.update({k: v for k, v in cell.items() if k not in ("ci", "values")})
        if cell.get("ci"):
            rec["ci_low"], rec["ci_high"] = cell["ci"]
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
    """The pivot as a rich Table (fmt=table) or a string (markdown, csv, json, html)."""
    spread = spread or p.spread
    head = title(p)
    if fmt == "json":
        return json.dumps(
            {
                "title": head,
                "rows": p.rows,
                "cols": p.cols,
                "metric": p.metric,
                "benchmark": p.benchmark,
                "step": p.step,
                "cells": to_records(p),
                "notes": p.notes,
            },
            indent=1,
            default=str,
        )
    if fmt == "csv":
        import csv
        import io

        recs = to_records(p)
        buf = io.StringIO()
        if recs:
            names = list(dict.fromkeys(k for rec in recs for k in rec))
            w = csv.DictWriter(buf, fieldnames=names)
            w.writeheader()
            w.writerows(recs)
        return buf.getvalue()
    hdr, body = header(p), grid_rows(p, spread)
    if fmt == "markdown":
        lines = [f"**{head}**", "", "| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines + [f"\n_{n}_" for n in p.notes])
    if fmt == "html":
        return html_page("spurisweep report", html_table(head, hdr, body, p.notes))
    if fmt != "table":
        raise ConfigError(suggest(fmt, list(FORMATS)), field="--format")
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    t = Table(title=Text(head), show_lines=False)
    for h in hdr:
        t.add_column(Text(h), justify="left" if h == hdr[0] else "right")
    for r in body:
        t.add_row(*map(Text, r))
    return Group(t, *[Text(n, style="italic") for n in p.notes])


def html_table(caption: str, hdr: list[str], body: list[list[str]], notes: list[str] = ()) -> str:
    import html

    th = "".join(f"<th>{html.escape(h)}</th>" for h in hdr)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(x)}</td>" for x in r) + "</tr>\n" for r in body)
    foot = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in notes)
    return f"<h3>{html.escape(caption)}</h3>\n<table>\n<tr>{th}</tr>\n{trs}</table>\n{foot}\n"


def html_page(title_text: str, body: str) -> str:
    import html

    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1400px} table{border-collapse:collapse}"
        "td,th{border:1px solid #bbb;padding:4px 8px;text-align:right} td:first-child,th:first-child"
        "{text-align:left} th{background:#eee} .note{color:#555;font-style:italic} img{max-width:100%}"
    )
    return (
        f"<!doctype html>\n<html><head><meta charset='utf-8'><title>{html.escape(title_text)}</title>"
        f"<style>{style}</style></head>\n<body>\n{body}</body></html>\n"
    )
