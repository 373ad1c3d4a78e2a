"""The noise floor of a greedy benchmark: the same weights evaluated twice with different generation batch
sizes. Greedy decoding is deterministic in exact arithmetic, not on hardware: batch composition changes the
kernels' reduction order (and bf16 rounding), so some problems flip. A greedy delta smaller than this floor
says nothing about training.

`measure` runs both evaluations (evaluation.run, transformers, in this process; stored under
results/_noise/evals/, so a rerun reads them back), compares them problem by problem (stats.noise_floor)
and writes one record to results/_noise/<id>.json; `floors` reads them back for
`report`, which prints the floor next to greedy deltas of that model and benchmark.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from .. import artifacts, stats
from ..errors import ConfigError
from ..ids import short_hash

NOISE_DIR = "_noise"


def noise_dir(results: Path) -> Path:
    return Path(results) / NOISE_DIR


def measure(
    *,
    model: str,
    model_path: str | None,
    checkpoint: str | None,
    benchmark: str,
    batch_sizes: tuple[int, int],
    limit: int | None,
    results: Path,
) -> dict[str, Any]:
    """Evaluate the weights greedily at two batch sizes and record how far the two agree."""
    from ..models import families
    from ..plan.spec import EvalSettings
    from . import reach
    from . import run as evaluate

    proto = evaluate.protocol_for(EvalSettings(benchmarks=[benchmark], limit=limit), benchmark)
    if proto.temperature > 0:
        raise ConfigError(
            f"{benchmark}'s protocol samples at temperature {proto.temperature:g}: a noise floor is "
            "measured on greedy benchmarks (math500)",
            field="--benchmark",
        )
    source = checkpoint or families.model_source(model, model_path)
    template = families.FAMILIES[model].prompt if model in families.FAMILIES else "chat"
    jobs = [
        _job(model, model_path, checkpoint, source, template, proto, size, results) for size in batch_sizes
    ]
    if not all(
        j.stored() for j in jobs
    ):  # one load for both batch sizes (their Weights differ by batch size)
        reach.check(
            models=[source], benchmarks=[(benchmark, None)]
        )  # offline: one line, not the hub's retries
        mdl, tok = families.load_model_and_tokenizer(source)
        jobs = [j.placed(evaluate.SINGLE, model=mdl, tokenizer=tok) for j in jobs]
    metas = [evaluate.run(j) for j in jobs]
    rows = [artifacts.read_jsonl(artifacts.eval_files(j.folder, j.eval_id)[0]) for j in jobs]
    floor = stats.noise_floor(*(stats.scores_by_problem(r) for r in rows))
    record = {
        "model": model,
        "model_path": model_path,
        "checkpoint": checkpoint,
        "benchmark": benchmark,
        "batch_sizes": list(batch_sizes),
        "points": floor.points,
        "flipped": floor.flipped,
        "n_problems": floor.n_problems,
        "limit": limit,
        "evaluations": [m["eval_id"] for m in metas],  # their rows: results/_noise/evals/<eval_id>.jsonl
        "created": time.time(),
    }
    key = short_hash({k: record[k] for k in ("model", "model_path", "checkpoint", "benchmark", "limit")})
    artifacts.atomic_write_json(noise_dir(results) / f"{key}.json", record)
    return record


def _job(
    model: str,
    model_path: str | None,
    checkpoint: str | None,
    source: str,
    template: str,
    proto: Any,
    batch_size: int,
    results: Path,
) -> Any:
    """One of the two evaluations, a stored evaluation like any other (results/_noise/evals/, which the store
    does not ingest): its id names the weights, prompt, protocol and batch size, so a rerun reads it back."""
    from . import run as evaluate

    ident = evaluate.external_eval_id(checkpoint or model_path or f"family:{model}", model, template, proto)
    meta = {"model": model, "model_path": model_path, "checkpoint": checkpoint, "batch_size": batch_size}
    weights = evaluate.Weights(source, batch_size=batch_size)
    return evaluate.EvalJob(
        f"noise-{ident[4:]}-b{batch_size}", noise_dir(results) / "evals", proto, template, 0, weights, meta
    )


def floors(results: Path) -> list[dict[str, Any]]:
    """Every noise floor recorded under `results` (damaged records skipped)."""
    folder = noise_dir(results)
    if not folder.is_dir():
        return []
    out = []
    for p in sorted(folder.glob("*.json")):
        rec = artifacts.read_json(p, None)
        if isinstance(rec, dict) and {"model", "benchmark", "points", "flipped", "n_problems"} <= set(rec):
            out.append(rec)
    return out


def notes(results: Path, benchmark: str | None, models: set[str]) -> list[str]:
    """One line per measured floor of these models on this benchmark (the untrained weights' first)."""
    lines = []
    for r in floors(results):
        if r["benchmark"] != benchmark or r["model"] not in models:
            continue
        what = "untrained weights" if not r.get("checkpoint") else f"checkpoint {r['checkpoint']}"
        sizes = " and ".join(str(b) for b in r.get("batch_sizes", []))
        lines.append(
            f"noise floor on {benchmark}, {r['model']} ({what}): {r['points']:.1f} points, "
            f"{r['flipped']}/{r['n_problems']} problems flipped between batch sizes {sizes}: greedy deltas "
            "within it say nothing"
        )
    return lines
