"""Model families: a warning whenever the conclusions rest on one family, and when the clip 2x2's reading
does. A family is a pretraining lineage as the store holds it (`cells.lineage`, set at ingest from the
family registry: Llama-3.1-8B-Instruct and Llama-3.2-3B-Instruct are one family)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import Analysis, Context, Diagnosis, Rows


@dataclass
class Family:
    lineage: str
    models: list[str]


class FamiliesAnalysis(Analysis):
    name = "families"

    def compute(self, ctx: Context) -> Rows:
        lineages = sorted({r.lineage for r in ctx.runs})
        return Rows(Family(f, sorted({r.model for r in ctx.runs if r.lineage == f})) for f in lineages)

    def warnings(self, result: Rows, d: Diagnosis) -> list[str]:
        out = []
        if len(result) == 1:
            out.append(
                f"single model family: every conclusion here rests on {result[0].lineage} "
                f"({', '.join(result[0].models)}). The paper finds spurious-reward gains on Qwen2.5-Math but not "
                "on Llama or OLMo: repeat on another family before generalising."
            )
        lineage = {m: f.lineage for f in result for m in f.models}
        two_by_two = sorted({lineage[x.model] for x in d.results.get("clip2x2", [])})
        if len(two_by_two) == 1 and len(result) > 1:
            out.append(
                f"the clip 2x2 reading rests on one model family ({two_by_two[0]}): run "
                "the 2x2 on another family before generalising"
            )
        return out
