"""The follow-up studies in sweeps/studies/: each plans with its cost, each has a CPU twin
(tests/studies/twins/<same name>.yaml) with the study's design on the tiny model, and each twin runs end to
end (TRL trains the tiny model on CPU through the debug executor) into a report; the pass@k twin into
`report --plot passk` and `diagnose`'s crossover table, the variance twin into the Bayesian and G-Pass@k
metrics."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.storebuilder import ROOT, run_cli

STUDIES = sorted((ROOT / "sweeps" / "studies").glob("*.yaml"))
TWINS = Path(__file__).resolve().parent / "twins"
#: the axes a twin shrinks to CPU size; every other axis keeps a subset of the study's own values
SHRUNK = ("model", "seed")


def _grid(path: Path) -> dict:
    return yaml.safe_load(path.read_text())["grid"]


def test_every_study_has_a_twin_and_there_are_seven():
    assert len(STUDIES) == 7
    assert sorted(p.name for p in TWINS.glob("*.yaml")) == [p.name for p in STUDIES]


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_study_plans_with_its_cost(study):
    out = run_cli("plan", str(study)).stdout
    assert "cost per cell" in out
    total = next(line for line in out.splitlines() if line.startswith("sweep:"))
    assert "GPU-h" in total and float(total.split()[1].replace(",", "")) > 0


@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_twin_has_the_studys_design(study):
    """Same axes; model tiny; every other axis a subset of the study's values (the design, smaller)."""
    grid, twin = _grid(study), _grid(TWINS / study.name)
    assert set(twin) == set(grid)
    assert twin["model"] == ["tiny"]
    for axis in set(twin) - set(SHRUNK):
        values = [json.dumps(v, sort_keys=True) for v in grid[axis]]
        assert all(json.dumps(v, sort_keys=True) in values for v in twin[axis]), axis


def _report(results: Path, sweep: str, *args: str) -> dict:
    out = run_cli("report", sweep, "--results", str(results), "--format", "json", *args).stdout
    return json.loads(out)


@pytest.mark.slow
@pytest.mark.parametrize("study", STUDIES, ids=lambda p: p.stem)
def test_twin_runs_end_to_end_into_a_report(study, tmp_path):
    twin = TWINS / study.name
    spec = yaml.safe_load(twin.read_text())
    results = tmp_path / "results"
    run_cli("run", str(twin), "--executor", "debug", "--results", str(results))
    state = re.search(
        r"(\d+) cells: (\d+) done", run_cli("plan", str(twin), "--results", str(results)).stdout
    )
    assert state and state.group(1) == state.group(2)  # every cell of the twin finished
    cells = int(state.group(1))
    report = _report(results, spec["name"], "--pivot", "model,cell")
    assert len(report["cells"]) == cells > 0
    assert all(c["mean"] is not None for c in report["cells"])
    if study.stem == "passk_boundary":
        _check_passk(results, spec["name"], tmp_path / "fig")
    if study.stem == "eval_variance":
        _check_metrics(results, spec["name"])
        _check_variants(results, spec["name"], cells)


def _check_passk(results: Path, sweep: str, out: Path) -> None:
    run_cli("report", sweep, "--results", str(results), "--plot", "passk", "--out", str(out))
    assert (out / "passk.png").is_file() and "crossover" in (out / "passk.html").read_text()
    diag = json.loads(run_cli("diagnose", sweep, "--results", str(results), "--format", "json").stdout)
    assert {(x["reward"], x["n"], x["problems"]) for x in diag["passk"]} == {
        ("ground_truth", 8, 6),
        ("random", 8, 6),
    }


def _check_metrics(results: Path, sweep: str) -> None:
    """The posterior mean lies inside its interval; G-Pass@k at tau 1/k is pass@k (the definition)."""
    get = {m: _report(results, sweep, "--metric", m)["cells"] for m in ("bayes", "bayes_lo", "bayes_hi")}
    for lo, mid, hi in zip(get["bayes_lo"], get["bayes"], get["bayes_hi"], strict=True):
        assert lo["mean"] <= mid["mean"] <= hi["mean"] and lo["n"] == 2
    gp = _report(results, sweep, "--metric", "gpass@4_0.25")["cells"]
    pk = _report(results, sweep, "--metric", "pass@4")["cells"]
    assert [c["mean"] for c in gp] == pytest.approx([c["mean"] for c in pk])
    assert len(_report(results, sweep, "--metric", "mgpass@4")["cells"]) == 2


def _check_variants(results: Path, sweep: str, cells: int) -> None:
    """eval.variants: each cell's final checkpoint evaluated three times (its own seed, 100, 101), each with
    its own id, read only when eval_seed is asked for."""
    import duckdb

    by_seed = _report(results, sweep, "--pivot", "eval_seed,reward")["cells"]
    assert sorted({c["eval_seed"] for c in by_seed}) == [0, 1, 100, 101]
    assert {c["n"] for c in by_seed if c["eval_seed"] == 100} == {cells // 2}  # per reward
    with duckdb.connect(str(results / "spurisweep.duckdb"), read_only=True) as con:
        rows = con.execute(
            "SELECT cell_id, count(*), count(DISTINCT seed) FROM evals WHERE NOT is_baseline GROUP BY 1"
        ).fetchall()
        responses = con.execute(
            "SELECT e.seed, string_agg(s.response, '|' ORDER BY s.problem_id, s.sample_idx) FROM evals e "
            "JOIN samples s USING (eval_id) WHERE e.cell_id = $c AND e.seed IN (100, 101) GROUP BY 1",
            {"c": rows[0][0]},
        ).fetchall()
    assert len(rows) == cells and all(n == 3 and seeds == 3 for _, n, seeds in rows)
    assert len(responses) == 2 and responses[0][1] != responses[1][1]
    default = _report(results, sweep, "--pivot", "model,reward")["cells"]
    assert sum(c["n"] for c in default) == cells  # one (default) evaluation per run
