"""Name checks and value rows: the SQL side shared by report, diagnostics, paper and plots.

Safety: dimension, filter, sweep, benchmark and metric names are checked against the known ones before any
SQL is built, and the SQL only ever contains fixed fragments from this module and the metric registry plus
named placeholders; every value (filter values, setting keys, metric keys, k, step numbers) is bound as a
parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError, suggest
from .metric_registry import Metric, parse_metric

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
    "eval_seed": "e.eval_seed",
    "temperature": "e.temperature",
    "top_p": "e.top_p",
    "sweep": "sc.sweep",
    "cell": "c.cell_id",
}
#: an evaluation's sampling seed and decoding settings: a cell's eval.variants evaluate its checkpoints again
#: under other values. Rows read only a cell's default evaluations (no variant) unless one of these is
#: pivoted or filtered on: then every evaluation, each under its own values, so no table pools variants
VARIANT_DIMENSIONS = ("eval_seed", "temperature", "top_p")
#: dimensions that only exist for benchmark evaluations (training metrics have no benchmark)
EVAL_ONLY_DIMENSIONS = ("benchmark", *VARIANT_DIMENSIONS)
#: the dimensions of memorisation-probe metrics (p: probes). A probe belongs to a model, not to a cell:
#: `--sweep` keeps the probes of the sweep's models; checkpoint is "base" for the untrained weights
PROBE_DIMENSIONS: dict[str, str] = {
    "model": "p.model",
    "lineage": "p.lineage",
    "benchmark": "p.benchmark",
    "fraction": "p.fraction",
    "checkpoint": "coalesce(p.checkpoint, 'base')",
    "prompt": "p.prompt",
}
#: the fraction a probe pivot shows unless fraction is pivoted or filtered (the study's headline: 60%)
HEADLINE_FRACTION = 0.6


# ---------------------------------------------------------------------------------------------- names
GRADERS = ("math_verify", "paper")


def use_grader(con: Any, grader: str) -> None:
    """Make every query of this connection read `grader`'s verdicts. Samples keep both (`correct` is
    math-verify's, `correct_paper` the official grader's); for "paper" a temporary view named `samples`
    shadows the table with the paper columns in place of the default ones, so no query changes."""
    if grader not in GRADERS:
        raise ConfigError(suggest(grader, list(GRADERS)), field="--grader")
    if grader == "math_verify":
        con.execute("DROP VIEW IF EXISTS temp.samples")
        return
    db = con.execute("SELECT current_database()").fetchone()[0]
    con.execute(
        "CREATE OR REPLACE TEMP VIEW samples AS SELECT * REPLACE (correct_paper AS correct, "
        f'extracted_paper AS extracted) FROM "{db}".main.samples'
    )


def use_history(con: Any, sweep: str, earlier: dict[str, dict[str, Any]]) -> None:
    """Make every query of this connection count a sweep's earlier cells (`earlier`: cell id -> axes, from
    store.history) as its members: a temporary view named `sweep_cells` shadows the table with those rows
    added, so no query changes (the same way as use_grader)."""
    import json

    con.execute("CREATE OR REPLACE TEMP TABLE _earlier(sweep VARCHAR, cell_id VARCHAR, axes JSON)")
    if earlier:  # one statement for every row (bound lists, unnested)
        con.execute(
            "INSERT INTO _earlier SELECT $sweep, unnest($ids), unnest($axes)",
            {"sweep": sweep, "ids": list(earlier), "axes": [json.dumps(a) for a in earlier.values()]},
        )
    db = con.execute("SELECT current_database()").fetchone()[0]
    con.execute(
        f'CREATE OR REPLACE TEMP VIEW sweep_cells AS SELECT sweep, cell_id, axes FROM "{db}".main.sweep_cells '
        "UNION ALL SELECT sweep, cell_id, axes FROM _earlier"
    )


def known_dimensions(con: Any) -> list[str]:
    keys = [r[0] for r in con.execute("SELECT DISTINCT key FROM cell_settings ORDER BY key").fetchall()]
    return list(DIMENSIONS) + [k for k in keys if k not in DIMENSIONS]


def check_dimension(con: Any, name: str, option: str, valid: list[str] | None = None) -> None:
    valid = valid if valid is not None else known_dimensions(con)
    if name not in valid:
        raise ConfigError(suggest(name, valid), field=option)


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


def check_benchmark(con: Any, benchmark: str | None, *, probes: bool = False) -> None:
    """The benchmark must have stored evaluations (or, with `probes`, stored memorisation probes)."""
    if benchmark is None:
        return
    table = "probes" if probes else "evals"
    known = [
        r[0] for r in con.execute(f"SELECT DISTINCT benchmark FROM {table} ORDER BY benchmark").fetchall()
    ]
    if benchmark not in known:
        empty = "no memorisation probes are stored yet" if probes else "no evaluations are stored yet"
        raise ConfigError(suggest(benchmark, known) if known else empty, field="--benchmark")


def default_probe_benchmark(con: Any) -> str | None:
    """math500 when it was probed, else the first probed benchmark in alphabetical order."""
    benches = [r[0] for r in con.execute("SELECT DISTINCT benchmark FROM probes ORDER BY 1").fetchall()]
    if not benches:
        return None
    return "math500" if "math500" in benches else benches[0]


def probe_fractions(con: Any) -> list[float]:
    return [float(r[0]) for r in con.execute("SELECT DISTINCT fraction FROM probes ORDER BY 1").fetchall()]


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


@dataclass(frozen=True)
class Window:
    """A reading point smoothed over the evaluations before it: each run's value is the mean of its
    evaluations at steps step-smooth+1 .. step (the paper's v1 reads Figure 1 as the 10-step mean at 150)."""

    step: int
    smooth: int

    def __str__(self) -> str:
        return f"{self.step}, mean of steps {max(1, self.step - self.smooth + 1)}-{self.step}"


def window(step: int, smooth: int | None) -> int | Window:
    """`--step N --smooth K`: step N itself for K of 1 (or none), else the K-step window ending at N."""
    if smooth is not None and smooth < 1:
        raise ConfigError(f"a smoothing window is >= 1 evaluation, got {smooth}", field="--smooth")
    return step if not smooth or smooth == 1 else Window(step, smooth)


def parse_step(step: str | int | Window | None) -> str | int | Window | None:
    if step is None or step in ("final", "best", "all") or isinstance(step, Window):
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


_BASE_COLS = "c.cell_id, c.model AS _model, c.reward AS _reward, c.clip AS _clip, c.seed AS _seed"

# step 0 is the untrained model: each cell gets its baseline evaluation as a step-0 row (unless the cell
# evaluated a step-0 checkpoint of its own), so curves start where training started
# (a variant's step-0 row is its own baseline's, labelled with the trained evaluation's seed and settings)
_BASELINE_ROWS = """UNION ALL
            SELECT DISTINCT t.baseline_eval_id, t.cell_id, 0, t.benchmark, t.baseline_eval_id, 0, t.seed,
                   t.temperature, t.top_p, t.meta->>'variant' FROM evals t
            WHERE NOT t.is_baseline AND t.baseline_eval_id IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM evals t2 WHERE t2.cell_id = t.cell_id AND t2.benchmark = t.benchmark
                AND t2.step = 0 AND NOT t2.is_baseline
                AND (t2.meta->>'variant') IS NOT DISTINCT FROM (t.meta->>'variant'))"""


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
    id, model, reward, clip and seed, its value (a fraction for percent metrics) and its baseline's value;
    an evaluation's row names its eval.variants entry in `_variant` (None: the cell's default evaluation,
    the only ones read unless a VARIANT_DIMENSIONS one is pivoted or filtered on).

    Dimension and filter names must already be checked (report.pivot does it); this builds SQL from the
    fixed fragments in DIMENSIONS and binds everything else.
    """
    m = metric if isinstance(metric, Metric) else parse_metric(con, metric)
    if m.kind == "probe":
        return _probe_tidy(con, m, sweep=sweep, dims=dims, benchmark=benchmark, where=where)
    step = parse_step(step)
    if step is None:
        step = "final"
    p = _Params()
    bench = benchmark if m.kind != "train" else None
    joins, conds, select_dims = _selection(p, sweep=sweep, dims=dims, where=where, benchmark=bench, step=step)
    if m.kind == "train":
        sql = _train_sql(p, m, joins, conds, select_dims)
    else:
        sql = _eval_sql(p, m, joins, conds, select_dims, with_base=step == "all" or step == 0)
    cur = con.execute(sql, p.values)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    if step == "best":
        rows = _best_per_run(rows, len(dims))
    return rows


def _selection(
    p: _Params,
    *,
    sweep: str | None,
    dims: list[str],
    where: list[tuple[str, str]] | tuple[()],
    benchmark: str | None,
    step: str | int,
) -> tuple[str, str, str]:
    """The joins (swept settings, the sweep), the WHERE conditions and the dimension columns d0, d1, ..."""
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
    if benchmark is not None:
        conds.append(f"e.benchmark = {p.add(benchmark)}")
    by_key: dict[str, list[str]] = {}
    for key, value in where:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():  # the same key repeated: any of its values
        conds.append("(" + " OR ".join(_equals(expr[key], p.add(v)) for v in values) + ")")
    if not set(used) & set(VARIANT_DIMENSIONS):  # a cell's default evaluations only (see VARIANT_DIMENSIONS)
        conds.append("e.variant IS NULL")
    if step == "final":
        conds.append("e.step = e.last_step")
    elif isinstance(step, int):
        conds.append(f"e.step = {p.add(step)}")
    elif isinstance(step, Window):  # the run's evaluations in the window; the pivot takes their mean
        conds.append(
            f"e.step > {p.add(step.step - step.smooth)} AND e.step <= {p.add(step.step)} AND e.step > 0"
        )
    elif step == "best":
        conds.append("e.step > 0")
    select_dims = "".join(f", {expr[d]} AS d{i}" for i, d in enumerate(dims))
    return " ".join(joins), " AND ".join(conds), select_dims


def _train_sql(p: _Params, m: Metric, joins: str, conds: str, select_dims: str) -> str:
    """Per cell and step: the mean of one logged training key over that step's updates."""
    ev = f"""ev AS (
            SELECT cell_id, step, NULL::VARCHAR AS benchmark, NULL::VARCHAR AS variant, avg(value) AS v,
                   max(step) OVER (PARTITION BY cell_id) AS last_step
            FROM metrics WHERE key = {p.add(m.key)} GROUP BY cell_id, step)"""
    return f"""WITH {ev}
            SELECT DISTINCT {_BASE_COLS}, e.step AS _step, e.v AS value, NULL::DOUBLE AS base{select_dims}
            FROM ev e JOIN cells c ON c.cell_id = e.cell_id {joins}
            WHERE {conds}"""


def _values_sql(p: _Params, m: Metric) -> str:
    """The `vals` CTE: per needed evaluation, the metric's value (and for pass@k the fewest samples)."""
    if m.kind == "passk":
        k = p.add(m.k)
        return f"""pp AS (
                SELECT s.eval_id, count(*) AS n, count_if(coalesce(s.correct, false)) AS c FROM samples s
                WHERE s.eval_id IN (SELECT eval_id FROM need) GROUP BY s.eval_id, s.problem_id
            ), vals AS (
                SELECT eval_id, CASE WHEN min(n) >= {k} THEN avg(CASE WHEN n - c < {k} THEN 1.0 ELSE
                    1.0 - exp(lgamma(n - c + 1) - lgamma(n - c - {k} + 1) - lgamma(n + 1) + lgamma(n - {k} + 1))
                    END) END AS v, min(n) AS nmin
                FROM pp GROUP BY eval_id)"""
    if m.kind == "problems":  # metric_registry's per-problem aggregates: {k} and {tau} bound here
        k = p.add(m.k or 1)
        agg = (m.sql or "").replace("{k}", k)
        if "{tau}" in agg:  # bound only where used: DuckDB refuses an unused parameter
            agg = agg.replace("{tau}", p.add(m.tau or 1.0))
        return f"""pp AS (
                SELECT s.eval_id, count(*) AS n, count_if(coalesce(s.correct, false)) AS c FROM samples s
                WHERE s.eval_id IN (SELECT eval_id FROM need) GROUP BY s.eval_id, s.problem_id
            ), vals AS (
                SELECT eval_id, CASE WHEN min(n) >= {k} THEN {agg} END AS v, min(n) AS nmin
                FROM pp GROUP BY eval_id)"""
    return f"""vals AS (
                SELECT s.eval_id, {m.sql} AS v, NULL::BIGINT AS nmin FROM samples s
                WHERE s.eval_id IN (SELECT eval_id FROM need) GROUP BY s.eval_id)"""


def _eval_sql(p: _Params, m: Metric, joins: str, conds: str, select_dims: str, with_base: bool) -> str:
    """Per chosen evaluation: its value and its baseline evaluation's value."""
    base_rows = _BASELINE_ROWS if with_base else ""
    chosen = f"""chosen AS (
                SELECT DISTINCT e.eval_id, e.baseline_eval_id, {_BASE_COLS}, e.step AS _step,
                       e.variant AS _variant{select_dims}
                FROM ev e JOIN cells c ON c.cell_id = e.cell_id {joins}
                WHERE {conds}
            )"""
    vals = _values_sql(p, m)
    return f"""WITH ev AS (
                SELECT eval_id, cell_id, step, benchmark, baseline_eval_id,
                       max(step) OVER (PARTITION BY cell_id, benchmark) AS last_step, seed AS eval_seed,
                       temperature, top_p, meta->>'variant' AS variant
                FROM evals WHERE NOT is_baseline AND cell_id IS NOT NULL
                {base_rows}
            ), {chosen}, need AS (
                SELECT eval_id FROM chosen UNION SELECT baseline_eval_id FROM chosen WHERE baseline_eval_id IS NOT NULL
            ), {vals}
            SELECT ch.*, v1.v AS value, v2.v AS base, v1.nmin AS nmin FROM chosen ch
            LEFT JOIN vals v1 ON v1.eval_id = ch.eval_id LEFT JOIN vals v2 ON v2.eval_id = ch.baseline_eval_id"""


def _probe_tidy(
    con: Any,
    m: Metric,
    *,
    sweep: str | None,
    dims: list[str],
    benchmark: str | None,
    where: list[tuple[str, str]] | tuple[()],
) -> list[dict[str, Any]]:
    """One row per matching memorisation probe, shaped like the evaluation rows (its probe id as cell_id,
    no baseline): a probe is of the untrained model (or one checkpoint), so step does not apply."""
    p = _Params()
    conds = ["TRUE"]
    if sweep is not None:
        conds.append(
            "p.model IN (SELECT c.model FROM cells c JOIN sweep_cells sc ON sc.cell_id = c.cell_id "
            f"WHERE sc.sweep = {p.add(sweep)})"
        )
    if benchmark is not None:
        conds.append(f"p.benchmark = {p.add(benchmark)}")
    by_key: dict[str, list[str]] = {}
    for key, value in where:
        by_key.setdefault(key, []).append(value)
    for key, values in by_key.items():
        conds.append("(" + " OR ".join(_equals(PROBE_DIMENSIONS[key], p.add(v)) for v in values) + ")")
    select_dims = "".join(f", {PROBE_DIMENSIONS[d]} AS d{i}" for i, d in enumerate(dims))
    sql = f"""WITH vals AS (
                SELECT ps.probe_id, {m.sql} AS v FROM probe_samples ps
                WHERE NOT coalesce(ps.skipped, false) GROUP BY ps.probe_id)
            SELECT p.probe_id AS cell_id, p.model AS _model, NULL AS _reward, NULL AS _clip, NULL AS _seed,
                   0 AS _step, v.v AS value, NULL::DOUBLE AS base, NULL::BIGINT AS nmin{select_dims}
            FROM probes p LEFT JOIN vals v ON v.probe_id = p.probe_id
            WHERE {" AND ".join(conds)}"""
    cur = con.execute(sql, p.values)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _best_per_run(rows: list[dict[str, Any]], ndims: int) -> list[dict[str, Any]]:
    """Each cell's best step on this metric (an optimistic choice: say so where shown)."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = (r["cell_id"], *(r[f"d{i}"] for i in range(ndims)))
        if r["value"] is not None and (key not in best or r["value"] > best[key]["value"]):
            best[key] = r
    return list(best.values())
