"""Result stores for report, diagnostics and plot tests.

A `StoreBuilder` writes rows straight into a fresh DuckDB file created with `store.init_schema`, so a test
knows every mean, spread and delta in advance. The rows have the shapes ingest writes (cells, sweep_cells,
cell_settings, evals with a shared baseline, samples, metrics); only the generated text is left out.
`smoke_results` is the real thing: the smoke sweep run end to end once per test session.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from spurisweep import store

ROOT = Path(__file__).resolve().parent.parent


def outcomes(accuracy: float, problems: int = 10, samples: int = 1) -> list[list[bool]]:
    """Per-problem sample outcomes whose mean is exactly `accuracy` (rounded to problems x samples)."""
    total = problems * samples
    hits = round(accuracy * total)
    flat = [i < hits for i in range(total)]
    return [flat[p * samples : (p + 1) * samples] for p in range(problems)]


class StoreBuilder:
    """Insert cells, evaluations, samples and training metrics into a store file, then close it."""

    def __init__(self, path: Path, sweep: str = "t"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = duckdb.connect(str(self.path))
        store.init_schema(self.con)
        self.sweep = sweep
        self._baselines: dict[tuple[str, str], str] = {}
        self._n = 0

    # ------------------------------------------------------------------------------------------ rows
    def baseline(self, model: str, benchmark: str, correct: list[list[bool]], **sample_kw: Any) -> str:
        """The untrained model's evaluation on a benchmark (shared by every cell of that model)."""
        eval_id = f"base-{model}-{benchmark}"
        self._eval(eval_id, None, model, 0, benchmark, True, None, correct, **sample_kw)
        self._baselines[(model, benchmark)] = eval_id
        return eval_id

    def cell(
        self,
        model: str,
        reward: str,
        clip: str = "standard",
        seed: int = 0,
        *,
        sweep: str | None = None,
        reward_name: str | None = None,
        settings: dict[str, Any] | None = None,
        health: list[dict[str, Any]] | None = None,
        cell_id: str | None = None,
    ) -> str:
        """A finished cell, its rows as ingest writes them. `reward` is the stored label; `reward_name` the
        raw name (default: the label). `settings` are dotted config keys (train.learning_rate,
        reward_params.random.gamma, train.algorithm, ...) merged into the stored config, so they reach
        `cell_settings` and `cells.config`; `reward_params` is the registry's defaults for the reward,
        overridden by the settings' reward_params.*, as planning resolves them. The lineage is the one
        ingest stores (store.lineage)."""
        self._n += 1
        cid = cell_id or f"c{self._n:04d}"
        raw = reward_name or reward
        cfg: dict[str, Any] = {"model": model, "reward": raw, "clip": clip, "seed": seed, "preset": "smoke"}
        cfg["prompt"] = "chat"
        for key, value in (settings or {}).items():
            _set_dotted(cfg, key, value)
        cfg["reward_params"] = _resolved(raw, cfg.get("reward_params") or {})
        self.con.execute(
            "INSERT INTO cells (cell_id, model, lineage, reward, reward_name, reward_params, clip, seed, preset, "
            "prompt, config, summary, health, done_mtime, ingested_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                cid,
                model,
                store.lineage(model),
                reward,
                raw,
                json.dumps(cfg["reward_params"]),
                clip,
                seed,
                "smoke",
                "chat",
                json.dumps(cfg),
                json.dumps({}),
                json.dumps(health or []),
                1.0,
                1.0,
            ],
        )
        axes = {"model": model, "reward": reward, "clip": clip, "seed": seed}
        for k, v in (settings or {}).items():
            axes.setdefault(k, v)
        self.con.execute(
            "INSERT INTO sweep_cells VALUES (?, ?, ?)", [sweep or self.sweep, cid, json.dumps(axes)]
        )
        flat = store.flatten(cfg)
        self._bulk("cell_settings", [(cid, k, v) for k, v in flat.items()], ["cell_id", "key", "value"])
        return cid

    def evaluation(
        self, cell_id: str, step: int, benchmark: str, correct: list[list[bool]], **sample_kw: Any
    ) -> str:
        """A trained checkpoint's evaluation, linked to its model's baseline on the same benchmark."""
        model = self.con.execute("SELECT model FROM cells WHERE cell_id = ?", [cell_id]).fetchone()[0]
        eval_id = f"{cell_id}-s{step}-{benchmark}"
        self._eval(
            eval_id,
            cell_id,
            model,
            step,
            benchmark,
            False,
            self._baselines.get((model, benchmark)),
            correct,
            **sample_kw,
        )
        return eval_id

    def metrics(self, cell_id: str, key: str, values_by_step: dict[int, float | list[float]]) -> None:
        """Training-log rows: one per update (a list gives several updates in one rollout step)."""
        rows, update = [], 0
        for step, vals in sorted(values_by_step.items()):
            for v in vals if isinstance(vals, list) else [vals]:
                update += 1
                rows.append((cell_id, update, step, key, float(v)))
        self._bulk("metrics", rows, ["cell_id", "update_idx", "step", "key", "value"])

    def probe(
        self,
        model: str,
        benchmark: str,
        fraction: float,
        exact: list[bool],
        *,
        correct: list[bool | None] | None = None,
        rouge: list[float] | None = None,
        skipped: int = 0,
        checkpoint: str | None = None,
    ) -> str:
        """A memorisation probe: one row per problem (`exact` match each), plus `skipped` too-short rows."""
        probe_id = f"probe-{model}-{benchmark}-{fraction}-{checkpoint or 'base'}"
        self.con.execute(
            "INSERT INTO probes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [probe_id, model, model, None, checkpoint, benchmark, fraction, "qa", 64, "transformers",
             len(exact) + skipped, skipped, 1.0, "{}"],
        )  # fmt: skip
        rows = []
        for i, em in enumerate(exact):
            ok = correct[i] if correct is not None else em
            rl = rouge[i] if rouge is not None else float(em)
            rows.append(
                (probe_id, f"{benchmark}-{i}", False, "p", "r", "1", "r", em, rl, "1", ok, "ok", 8, False)
            )
        for i in range(skipped):
            rows.append(
                (
                    probe_id,
                    f"{benchmark}-s{i}",
                    True,
                    None,
                    None,
                    "1",
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                )
            )
        self._bulk("probe_samples", rows, list(store.schema.PROBE_SAMPLE_COLUMNS))
        return probe_id

    def _eval(
        self,
        eval_id: str,
        cell_id: str | None,
        model: str,
        step: int,
        benchmark: str,
        is_baseline: bool,
        baseline_id: str | None,
        correct: list[list[bool]],
        *,
        has_python: list[list[bool]] | None = None,
        correct_paper: list[list[bool]] | None = None,
        n_tokens: int | list[list[int]] = 100,
    ) -> None:
        samples = max((len(s) for s in correct), default=0)
        self.con.execute(
            "INSERT INTO evals VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                eval_id,
                cell_id,
                model,
                None,
                None,
                step,
                benchmark,
                "chat",
                is_baseline,
                baseline_id,
                samples,
                0.0 if samples == 1 else 0.6,
                1.0,
                64,
                "transformers",
                0,
                len(correct),
                1.0,
                "{}",
            ],
        )
        rows = []
        for p, outs in enumerate(correct):
            for i, ok in enumerate(outs):
                py = bool(has_python[p][i]) if has_python is not None else False
                toks = n_tokens if isinstance(n_tokens, int) else n_tokens[p][i]
                rows.append(
                    (
                        eval_id,
                        f"{benchmark}-{p}",
                        i,
                        "prompt",
                        "1",
                        "response",
                        "1" if ok else "2",
                        ok,
                        "ok",
                        toks,
                        False,
                        py,
                        False,
                        bool(correct_paper[p][i]) if correct_paper is not None else ok,
                        "1" if ok else "2",
                    )
                )
        self._bulk("samples", rows, list(store.SAMPLE_COLUMNS))

    def _bulk(self, table: str, rows: list[tuple[Any, ...]], columns: list[str]) -> None:
        """One INSERT for many rows (DuckDB's executemany runs a statement per row, which is slow)."""
        if not rows:
            return
        import pandas as pd

        frame = pd.DataFrame(rows, columns=columns)
        self.con.register("_rows", frame)
        self.con.execute(f"INSERT INTO {table} SELECT * FROM _rows")
        self.con.unregister("_rows")

    def close(self) -> Path:
        self.con.close()
        return self.path

    def __enter__(self) -> StoreBuilder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.con.close()


def _set_dotted(cfg: dict[str, Any], key: str, value: Any) -> None:
    *parents, last = key.split(".")
    for p in parents:
        cfg = cfg.setdefault(p, {})
    cfg[last] = value


def _resolved(reward: str, given: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The reward's parameters as planning stores them (rewards.resolve_params); a name the registry does
    not know keeps what was given."""
    from spurisweep import rewards

    try:
        return rewards.resolve_params(rewards.parse(reward), given)
    except ValueError:
        return given


# ---------------------------------------------------------------------------------------------- real store
_SMOKE: dict[str, Path] = {}


def run_cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """`spurisweep ARGS` in a subprocess (the real entry point: errors become one line and exit code 2)."""
    proc = subprocess.run(
        [sys.executable, "-m", "spurisweep.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"spurisweep {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="session")
def smoke_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real results folder: `spurisweep run sweeps/smoke.yaml --executor debug`, once per test session
    (TRL trains the tiny model on CPU, ~15 s), shared by every test module that imports this fixture."""
    if "path" not in _SMOKE:
        results = tmp_path_factory.mktemp("smoke_results")
        run_cli("run", str(ROOT / "sweeps" / "smoke.yaml"), "--executor", "debug", "--results", str(results))
        _SMOKE["path"] = results
    return _SMOKE["path"]
