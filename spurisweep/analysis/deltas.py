"""Paired deltas read from the store: a group of trained runs (the seeds of one pivot cell) against their
untrained baseline, on the same problems and samples, with stats.paired_delta's interval (problems
resampled, seeds through a t-scaled term). Used by `report --spread ci` and by `diagnose`, which calls a
spurious-reward gain only when this interval excludes 0.

Each run is read at its evaluation closest to the requested step (`final`: its last; a step number: that
one), on one benchmark; the baseline is the evaluation its cells name (`baseline_eval_id`). Runs whose
evaluations name different baselines (another prompt or protocol) are paired with the most common one only
and the rest are left out, which the caller is told through `Paired.left_out`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from .. import stats


@dataclass(frozen=True)
class Paired:
    delta: stats.Delta
    baseline_eval_id: str
    left_out: int  # runs whose baseline differs from the one used


def _evals(
    con: Any, cell_ids: list[str], benchmark: str, step: Any
) -> dict[str, list[tuple[str, str | None]]]:
    """cell -> (eval_id, baseline_eval_id) of its evaluations at `step` on `benchmark`: the last one
    ("final"), that step's, or every one in a query.Window (the run is then their mean)."""
    from .query import Window

    pick = "e.step = (SELECT max(e2.step) FROM evals e2 WHERE e2.cell_id = e.cell_id AND e2.benchmark = e.benchmark AND NOT e2.is_baseline)"
    params: dict[str, Any] = {"ids": cell_ids, "b": benchmark}
    if isinstance(step, int):
        pick, params["s"] = "e.step = $s", step
    elif isinstance(step, Window):
        pick, params["lo"], params["hi"] = (
            "e.step > $lo AND e.step <= $hi",
            step.step - step.smooth,
            step.step,
        )
    rows = con.execute(
        "SELECT e.cell_id, e.eval_id, e.baseline_eval_id FROM evals e WHERE list_contains($ids, e.cell_id) "
        f"AND e.benchmark = $b AND NOT e.is_baseline AND {pick} "
        "AND (e.meta->>'variant') IS NULL ORDER BY e.cell_id, e.step",  # default evaluations (no eval.variants)
        params,
    ).fetchall()
    out: dict[str, list[tuple[str, str | None]]] = {}
    for cell, eid, base in rows:
        out.setdefault(cell, []).append((eid, base))
    return out


def _run_scores(con: Any, evals: list[tuple[str, str | None]]) -> stats.Scores:
    """One run's per-problem scores: its evaluation's, or the samples of all its evaluations in a window
    pooled (each problem's mean over the window)."""
    pooled: dict[Any, list[float]] = {}
    for eid, _ in evals:
        for problem, scores in _scores(con, eid).items():
            pooled.setdefault(problem, []).extend(scores)
    return pooled


def _scores(con: Any, eval_id: str) -> stats.Scores:
    rows = con.execute(
        "SELECT problem_id, sample_idx, correct FROM samples WHERE eval_id = $e", {"e": eval_id}
    ).fetchall()
    return stats.scores_by_problem({"problem_id": p, "sample_idx": s, "correct": c} for p, s, c in rows)


def paired_gain(
    con: Any, cell_ids: list[str], benchmark: str, *, step: Any = "final", seed: int = 0
) -> Paired | None:
    """The runs' paired change against their baseline (points), or None when no run has an evaluation
    there with a stored baseline."""
    found = {c: evs for c, evs in _evals(con, cell_ids, benchmark, step).items() if evs[0][1]}
    if not found:
        return None
    base_id, _ = Counter(evs[0][1] for evs in found.values()).most_common(1)[0]
    runs = [_run_scores(con, evs) for evs in found.values() if evs[0][1] == base_id]
    baseline = _scores(con, base_id)
    if not baseline or not all(runs):
        return None
    try:
        delta = stats.paired_delta(baseline, runs, seed=seed)
    except ValueError:  # no problem in common
        return None
    return Paired(delta, base_id, len(found) - len(runs))
