"""Test-set training (data.train: benchmark:NAME with data.test_set_training, as TTRL trains on the
benchmark's own prompts): a gain measured on the benchmark a run trained on says nothing about
generalisation, so `diagnose` names those runs and keeps them out of every other analysis on that benchmark
(they stay in the store and in `report`)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Analysis, Context, Diagnosis, Rows, Run, test_set


@dataclass
class OwnPromptsRun:
    cell_id: str
    model: str
    reward: str
    trained_on: str
    held_out: bool  # True: the run was left out of the other analyses (its benchmark is the one diagnosed)


def split(runs: list[Run], benchmark: str | None) -> tuple[list[Run], list[Run]]:
    """(runs the other analyses use, runs trained on `benchmark`'s own prompts)."""
    own = [r for r in runs if benchmark is not None and test_set(r) == benchmark]
    return [r for r in runs if r not in own], own


class OwnPromptsAnalysis(Analysis):
    name = "test_set_training"

    def compute(self, ctx: Context) -> Rows:
        rows = [
            OwnPromptsRun(r.cell_id, r.model, r.reward, name, name == ctx.benchmark)
            for r in ctx.all_runs
            if (name := test_set(r))
        ]
        return Rows(rows)

    def warnings(self, result: Rows, d: Diagnosis) -> list[str]:
        out = []
        for bench in sorted({r.trained_on for r in result}):
            runs = [r for r in result if r.trained_on == bench]
            left = " and are left out of every analysis below" if runs[0].held_out else ""
            out.append(
                f"test-set training: {len(runs)} run(s) trained on {bench}'s own prompts "
                f"({', '.join(sorted({r.reward for r in runs}))}): their gains on {bench} measure fitting the "
                f"test set, not generalisation{left}"
            )
        return out
