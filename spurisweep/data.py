"""Training sets and benchmarks: hub ids by default, local JSON/JSONL/parquet files on request, and an
offline built-in arithmetic set (`builtin:arith`) so a sweep can run with no network at all.

Every loader returns `Problem` rows with a stable string id. Field names are mapped per data set: the
problem text is the first of `problem`, `prompt`, `question`; the answer the first of `answer`,
`final_answer`; the id the first of `id`, `unique_id` (else the row index).
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DataError

PROBLEM_FIELDS = ("problem", "prompt", "question")
ANSWER_FIELDS = ("answer", "final_answer", "expected_answer")
ID_FIELDS = ("id", "unique_id", "problem_id")


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class Protocol:
    """How a benchmark is evaluated (RESEARCH.md, "Evaluation protocol")."""

    samples: int = 1
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 3072


@dataclass(frozen=True)
class Benchmark:
    name: str
    hub_id: str
    split: str
    protocol: Protocol
    config: str | None = None
    local_name: str | None = None  # file name looked up in $SPURISWEEP_DATA_DIR


SAMPLED = Protocol(samples=8, temperature=0.6, top_p=1.0, max_new_tokens=3072)
BENCHMARKS: dict[str, Benchmark] = {
    "math500": Benchmark("math500", "HuggingFaceH4/MATH-500", "test", Protocol(), local_name="math500.json"),
    "aime24": Benchmark("aime24", "HuggingFaceH4/aime_2024", "train", SAMPLED, local_name="aime24.json"),
    "aime25": Benchmark("aime25", "math-ai/aime25", "test", SAMPLED, local_name="aime25.json"),
    "amc": Benchmark("amc", "AI-MO/aimo-validation-amc", "train", SAMPLED, local_name="amc.json"),
    "arith": Benchmark("arith", "builtin:arith-test", "test", Protocol(max_new_tokens=64)),
}

#: the One-Shot RLVR "pi1" example (answer 12.8)
PI1 = Problem(
    id="pi1",
    problem=(
        "The pressure $P$ exerted by wind on a sail varies jointly as the area $A$ of the sail and the cube "
        "of the wind's velocity $V$. When the velocity is 8 miles per hour, the pressure on a sail of 2 "
        "square feet is 4 pounds. Find the wind velocity when the pressure on 4 square feet of sail is 32 "
        "pounds."
    ),
    answer="12.8",
)


def data_dir() -> Path | None:
    d = os.environ.get("SPURISWEEP_DATA_DIR")
    return Path(d) if d else None


def load_problems(
    source: str,
    *,
    split: str = "train",
    limit: int | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
    config: str | None = None,
) -> list[Problem]:
    """Rows of a data set from `builtin:NAME`, a local file, or a hub id."""
    if source.startswith("builtin:"):
        rows = builtin(source.split(":", 1)[1])
        return rows[:limit] if limit else rows
    path = Path(source).expanduser()
    if path.suffix in (".json", ".jsonl", ".parquet") or path.exists():
        records = read_records(path)
    else:
        records = read_hub(source, split, config)
    out = [to_problem(r, i, source, problem_field, answer_field) for i, r in enumerate(records)]
    return out[:limit] if limit else out


def load_benchmark(name: str, *, path: str | None = None, limit: int | None = None) -> list[Problem]:
    bench = BENCHMARKS[name]
    if path is None and bench.local_name and data_dir() is not None:
        candidate = data_dir() / bench.local_name  # type: ignore[operator]
        if candidate.exists():
            path = str(candidate)
    return load_problems(path or bench.hub_id, split=bench.split, limit=limit, config=bench.config)


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if path.suffix == ".parquet":
            import pandas as pd

            return pd.read_parquet(path).to_dict(orient="records")
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if isinstance(data, dict):
        for key in ("data", "rows", "train", "test"):
            if isinstance(data.get(key), list):
                return data[key]
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of objects")
    return data


def read_hub(hub_id: str, split: str, config: str | None) -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_id, config, split=split)
    except Exception as exc:  # network errors, missing data sets: all end the same way for the user
        raise DataError(
            f"cannot load data set {hub_id!r} (split {split!r}) from the hub: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Offline? Pass a local JSON/JSONL/parquet path "
            "or set SPURISWEEP_DATA_DIR"
        ) from None
    return [dict(r) for r in ds]


def to_problem(
    r: dict[str, Any], index: int, source: str, problem_field: str | None, answer_field: str | None
) -> Problem:
    def pick(names: tuple[str, ...], explicit: str | None, what: str) -> Any:
        if explicit:
            if explicit not in r:
                raise DataError(f"{source}: row {index} has no field {explicit!r} ({what})")
            return r[explicit]
        for n in names:
            if n in r and r[n] is not None:
                return r[n]
        raise DataError(f"{source}: row {index} has none of the {what} fields {', '.join(names)}")

    problem = pick(PROBLEM_FIELDS, problem_field, "problem")
    answer = pick(ANSWER_FIELDS, answer_field, "answer")
    pid = next((r[n] for n in ID_FIELDS if n in r and r[n] is not None), index)
    return Problem(id=str(pid), problem=str(problem), answer=_answer_str(answer))


def _answer_str(a: Any) -> str:
    if isinstance(a, float) and a.is_integer():
        return str(int(a))
    return str(a)


# ---------------------------------------------------------------------------------------------- builtin
def builtin(name: str) -> list[Problem]:
    if name in ("arith", "arith-train"):
        return arith_problems(seed=1234, n=512)
    if name == "arith-test":
        return arith_problems(seed=4321, n=200)
    raise DataError(f"unknown built-in data set {name!r}; valid: builtin:arith, builtin:arith-test")


def arith_problems(seed: int, n: int) -> list[Problem]:
    """Small two-operation arithmetic problems with integer answers (deterministic)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b, c = rng.randint(2, 30), rng.randint(2, 30), rng.randint(1, 9)
        op = rng.choice(["+", "-", "*"])
        value = {"+": a + b, "-": a - b, "*": a * b}[op] + c
        out.append(Problem(id=f"arith-{seed}-{i}", problem=f"What is {a} {op} {b} + {c}?", answer=str(value)))
    return out
