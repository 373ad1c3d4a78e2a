"""Compression vs capability: with pass@1 and pass@k before and after training, compression = pass@1 gain /
(pass@k - pass@1 before), capability = pass@k gain; compression > COMPRESSION_THRESHOLD = mostly search
compression (the model learned to pick what it could already sample). Per run, per model and per model x
reward, on the benchmark with the most samples per problem (or the one asked for)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...metrics import mean_std
from .. import query as q
from .base import Analysis, Context, Diagnosis, Rows, Run, pct, per_cell, table

COMPRESSION_THRESHOLD = 0.7
MAX_RUN_ROWS = 40  # per-run rows shown in table/markdown output (json has all)


@dataclass
class Compression:
    scope: str  # "run", "model" or "model x reward"
    model: str
    label: str  # cell id (run) or model name (model)
    reward: str
    benchmark: str
    k: int
    p1_before: float | None
    p1_after: float | None
    pk_before: float | None
    pk_after: float | None
    compression: float | None
    capability: float | None
    reading: str
    runs: int = 1


class CompressionAnalysis(Analysis):
    name = "compression"

    def compute(self, ctx: Context) -> Rows:
        bench, k, notes = _benchmark(ctx.con, ctx.runs, ctx.asked_benchmark, ctx.k)
        if bench is None:
            return Rows(notes=notes)
        rows = _runs(ctx, bench, k)
        return Rows(_per_model(rows, bench, k) + rows)

    def tables(self, result: Rows, d: Diagnosis) -> list[Any]:
        shown = [c for c in result if c.scope != "run"]
        per_run = [c for c in result if c.scope == "run"]
        shown += per_run if len(per_run) <= MAX_RUN_ROWS else []
        rows = [
            [
                c.scope,
                c.label,
                c.reward,
                pct(c.p1_before),
                pct(c.p1_after),
                pct(c.pk_before),
                pct(c.pk_after),
                "-" if c.compression is None else f"{c.compression:.2f}",
                pct(c.capability, True),
                c.reading,
            ]
            for c in shown
        ]
        k = result[0].k if result else "k"
        bench = result[0].benchmark if result else "-"
        notes = []
        if result:
            notes.append(
                f"compression = pass@1 gain / (pass@{k} - pass@1 before); > {COMPRESSION_THRESHOLD} = mostly "
                f"search compression; capability = pass@{k} gain (points)"
            )
        if len(per_run) > MAX_RUN_ROWS:
            notes.append(f"{len(per_run)} per-run rows left out here (--format json lists them)")
        header = ["scope", "run / model", "reward", "pass@1 before", "pass@1 after"]
        header += [f"pass@{k} before", f"pass@{k} after", "compression", "capability", "reading"]
        title = f"compression vs capability on {bench} (pass@1 and pass@{k}, %, before -> after)"
        return [table(title, header, rows, notes)]


def _runs(ctx: Context, bench: str, k: int) -> list[Compression]:
    """One row per run with pass@1 and pass@k on `bench`; the runs' own pass@1 is reused when `bench` is
    the benchmark of their gains."""
    by = {r.cell_id: r for r in ctx.runs}
    ck = per_cell(
        q.tidy(ctx.con, sweep=ctx.sweep, dims=[], metric=f"pass@{k}", benchmark=bench, step="final")
    )
    if bench == ctx.benchmark:
        c1 = {r.cell_id: (r.base, r.value) for r in ctx.runs if r.value is not None}
    else:
        c1 = per_cell(
            q.tidy(ctx.con, sweep=ctx.sweep, dims=[], metric="pass@1", benchmark=bench, step="final")
        )
    cells = sorted(
        set(c1) & set(ck) & set(by), key=lambda c: (by[c].model, by[c].reward, by[c].clip, str(by[c].seed))
    )
    return [_row("run", by[c].model, c, by[c].reward, bench, k, *c1[c], *ck[c]) for c in cells]


def _benchmark(
    con: Any, runs: list[Run], benchmark: str | None, k: int | None
) -> tuple[str | None, int, list[str]]:
    """The benchmark for pass@k (the most samples per problem, or the one given) and k; with no usable
    benchmark, None and a note saying what to evaluate."""
    sql = (
        "SELECT benchmark, min(samples) FROM evals WHERE NOT is_baseline AND list_contains($ids, cell_id) "
        "GROUP BY benchmark"
    )
    avail = dict(con.execute(sql, {"ids": [r.cell_id for r in runs]}).fetchall())
    if benchmark is not None:
        avail = {b: n for b, n in avail.items() if b == benchmark}
    usable = {b: n for b, n in avail.items() if n is not None and n >= max(2, k or 2)}
    if not usable:
        need = f"{k}" if k else "2 or more"
        note = (
            f"compression vs capability needs pass@k: evaluate a benchmark with {need} samples per "
            "problem (e.g. aime24 or amc with 8)" + (f"; stored: {avail}" if avail else "")
        )
        return None, 0, [note]
    bench = max(sorted(usable), key=lambda b: usable[b])
    return bench, k or int(usable[bench]), []


def _reading(gain1: float | None, compression: float | None, capability: float | None) -> str:
    if gain1 is None or capability is None:
        return "-"
    if compression is not None and compression > COMPRESSION_THRESHOLD:
        return "mostly search compression"
    if capability > 0:
        return "capability gain (pass@k rose)"
    if gain1 > 0:
        return "some compression, no capability gain"
    return "no gain"


def _row(
    scope: str,
    model: str,
    label: str,
    reward: str,
    bench: str,
    k: int,
    p1b: float | None,
    p1a: float | None,
    pkb: float | None,
    pka: float | None,
    runs: int = 1,
) -> Compression:
    gain1 = None if p1a is None or p1b is None else p1a - p1b
    comp = None
    if gain1 is not None and pkb is not None and p1b is not None and pkb - p1b > 1e-9:
        comp = gain1 / (pkb - p1b)
    cap = None if pka is None or pkb is None else pka - pkb
    reading = _reading(gain1, comp, cap)
    return Compression(scope, model, label, reward, bench, k, p1b, p1a, pkb, pka, comp, cap, reading, runs)


def _per_model(rows: list[Compression], bench: str, k: int) -> list[Compression]:
    """Per model, and per model x reward: compression from the runs' mean pass@1 and pass@k."""

    def pooled(scope: str, model: str, reward: str, mine: list[Compression]) -> Compression:
        def avg(attr: str) -> float | None:
            return mean_std([getattr(r, attr) for r in mine])[0]

        p1b, p1a, pkb, pka = avg("p1_before"), avg("p1_after"), avg("pk_before"), avg("pk_after")
        return _row(scope, model, model, reward, bench, k, p1b, p1a, pkb, pka, len(mine))

    out = []
    for model in sorted({r.model for r in rows}):
        mine = [r for r in rows if r.model == model]
        out.append(pooled("model", model, "all", mine))
        for reward in sorted({r.reward for r in mine}):
            out.append(pooled("model x reward", model, reward, [r for r in mine if r.reward == reward]))
    return out
