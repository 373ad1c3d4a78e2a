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


def _evals(con: Any, cell_ids: list[str], benchmark: str, step: str | int) -> list[tuple[str, str | None]]:
    """(eval_id, baseline_eval_id) of each cell's evaluation at `step` on `benchmark`."""
    pick = "e.step = (SELECT max(e2.step) FROM evals e2 WHERE e2.cell_id = e.cell_id AND e2.benchmark = e.benchmark AND NOT e2.is_baseline)"
    params: dict[str, Any] = {"ids": cell_ids, "b": benchmark}
    if isinstance(step, int):
        pick, params["s"] = "e.step = $s", step
    rows = con.execute(
        "SELECT e.eval_id, e.baseline_eval_id FROM evals e WHERE list_contains($ids, e.cell_id) "
        f"AND e.benchmark = $b AND NOT e.is_baseline AND {pick} ORDER BY e.cell_id",
        params,
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


def _scores(con: Any, eval_id: str) -> stats.Scores:
    rows = con.execute(
        "SELECT problem_id, sample_idx, correct FROM samples WHERE eval_id = $e", {"e": eval_id}
    ).fetchall()
    return stats.scores_by_problem({"problem_id": p, "sample_idx": s, "correct": c} for p, s, c in rows)


def paired_gain(
    con: Any, cell_ids: list[str], benchmark: str, *, step: str | int = "final", seed: int = 0
) -> Paired | None:
    """The runs' paired change against their baseline (points), or None when no run has an evaluation
    there with a stored baseline."""
    found = [(e, b) for e, b in _evals(con, cell_ids, benchmark, step) if b]
    if not found:
        return None
    base_id, _ = Counter(b for _, b in found).most_common(1)[0]
    runs = [_scores(con, e) for e, b in found if b == base_id]
    baseline = _scores(con, base_id)
    if not baseline or not all(runs):
        return None
    try:
        delta = stats.paired_delta(baseline, runs, seed=seed)
    except ValueError:  # no problem in common
        return None
    return Paired(delta, base_id, len(found) - len(runs))
