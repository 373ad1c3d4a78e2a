"""Training health: the flags each cell recorded while training (reward std or entropy collapse, KL
exploding, ...: training/health.py), read from the store's `cells.health`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .base import Analysis, Context, Diagnosis, Rows, table


@dataclass
class HealthRow:
    cell_id: str
    model: str
    reward: str
    clip: str
    seed: int | None
    flags: list[dict[str, Any]]


class HealthAnalysis(Analysis):
    name = "health"

    def compute(self, ctx: Context) -> Rows:
        sql = "SELECT cell_id, model, reward, clip, seed, health FROM cells"
        params: dict[str, Any] = {}
        if ctx.sweep:
            sql += " WHERE cell_id IN (SELECT cell_id FROM sweep_cells WHERE sweep = $s)"
            params["s"] = ctx.sweep
        out = Rows()
        for cid, model, reward, clip, seed, raw in ctx.con.execute(
            sql + " ORDER BY model, reward, clip, seed", params
        ).fetchall():
            flags = _flags(raw)
            if flags:
                out.append(HealthRow(cid, model, reward, clip, seed, flags))
        return out

    def tables(self, result: Rows, d: Diagnosis) -> list[Any]:
        rows = [[h.cell_id, h.model, h.reward, h.clip, str(h.seed), _text(h.flags)] for h in result]
        notes = [] if rows else ["no cell raised a health flag"]
        return [
            table("training-health flags", ["cell", "model", "reward", "clip", "seed", "flags"], rows, notes)
        ]


def _flags(raw: Any) -> list[dict[str, Any]]:
    """The stored health JSON as a list of flag dicts (an unreadable one is itself a flag)."""
    try:
        flags = json.loads(raw) if isinstance(raw, str) else (raw or [])
    except json.JSONDecodeError:
        flags = [{"flag": "unreadable_health", "detail": str(raw)[:80]}]
    return [f if isinstance(f, dict) else {"flag": str(f)} for f in flags or []]


def _text(flags: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{f.get('flag')}" + (f" @step {f['step']}" if f.get("step") is not None else "") for f in flags
    )
