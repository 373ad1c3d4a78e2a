"""diagnose's contamination section on hand-built stores with known gains and probe rates (a real DuckDB
through tests/storebuilder.py), and, marked slow, the toy check: toy-memo (pretrained on the toy benchmark's
problems and answers) completes the benchmark, toy-coder does not, and diagnose flags only toy-memo."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from spurisweep import store
from spurisweep.analysis import diagnostics as dg
from spurisweep.analysis import report
from tests.storebuilder import ROOT, StoreBuilder, outcomes

PROBLEMS = 100  # 1 problem = 1 point


def build(
    path: Path,
    *,
    memo_rate: float = 0.8,
    gains: dict[tuple[str, str], tuple[list[float], list[float]]] | None = None,
    fresh: str | None = "toy-fresh",
    probe_fraction: float = 0.6,
) -> Path:
    """toy-memo and toy-coder; per (model, reward) the gains on `toy` and on `fresh` (points, one per seed).
    toy-memo's probe completes `memo_rate` of toy, toy-coder's none."""
    gains = gains or {
        ("toy-memo", "random"): ([10, 12, 14], [0, 1, -1]),
        ("toy-memo", "ground_truth"): ([20, 21, 22], [15, 16, 17]),
        ("toy-coder", "random"): ([10, 12, 14], [0, 1, -1]),
        ("toy-coder", "ground_truth"): ([20, 21, 22], [15, 16, 17]),
    }
    with StoreBuilder(path, sweep="contam") as b:
        for model in ("toy-memo", "toy-coder"):
            b.baseline(model, "toy", outcomes(0.4, PROBLEMS))
            if fresh:
                b.baseline(model, fresh, outcomes(0.4, PROBLEMS))
        for (model, reward), (on_toy, on_fresh) in gains.items():
            for seed, (g, gf) in enumerate(zip(on_toy, on_fresh, strict=True)):
                cid = b.cell(model, reward, seed=seed, sweep="contam")
                b.evaluation(cid, 20, "toy", outcomes(0.4 + g / 100, PROBLEMS))
                if fresh:
                    b.evaluation(cid, 20, fresh, outcomes(0.4 + gf / 100, PROBLEMS))
        n_memo = round(memo_rate * 10)
        b.probe("toy-memo", "toy", probe_fraction, [i < n_memo for i in range(10)], skipped=2)
        b.probe("toy-memo", "toy", 0.4, [i < 3 for i in range(10)])
        b.probe("toy-coder", "toy", probe_fraction, [False] * 10)
        b.probe("toy-memo", "toy-fresh", probe_fraction, [False] * 10)
    return path


def diagnose(path: Path, **kw) -> dg.Diagnosis:
    with store.connect(path) as con:
        return dg.diagnose(con, "contam", **kw)


def _row(d: dg.Diagnosis, model: str, reward: str) -> dg.Contamination:
    (row,) = [c for c in d.contamination if c.model == model and c.reward == reward]
    return row


def test_a_spurious_gain_where_the_family_can_complete_but_not_on_fresh_data_is_flagged(tmp_path):
    d = diagnose(build(tmp_path / "s.duckdb"))
    assert d.benchmark == "toy"
    memo = _row(d, "toy-memo", "random")
    assert memo.fresh == "toy-fresh" and memo.fraction == 0.6
    assert memo.gain.mean == pytest.approx(12.0) and memo.gain_fresh.mean == pytest.approx(0.0)
    assert memo.completion == pytest.approx(80.0)  # skipped rows do not count
    assert memo.completion_fresh == pytest.approx(0.0)
    assert memo.can_complete and memo.flagged
    assert memo.text().startswith("gain on toy +12.0 [") and memo.text().endswith("completion rate 80.0%")
    assert "on toy-fresh +0.0" in memo.text()
    # the same gains without memorisation, and an accurate reward with memorisation: not flagged
    assert not _row(d, "toy-coder", "random").flagged and not _row(d, "toy-coder", "random").can_complete
    assert _row(d, "toy-coder", "random").completion == pytest.approx(0.0)
    assert not _row(d, "toy-memo", "ground_truth").flagged
    assert any(w.startswith("toy-memo completes 80.0% of toy") for w in d.warnings)
    assert any("toy-memo: the spurious reward random" in w for w in d.warnings)
    assert not any(w.startswith(("toy-coder completes", "toy-coder: the spurious")) for w in d.warnings)
    table = dg.render(d, "markdown")
    assert "MEMORY?" in table and "completion rate (toy)" in table


def test_no_flag_when_the_gain_holds_on_fresh_data_or_completion_is_rare(tmp_path):
    holds = {("toy-memo", "random"): ([10, 12, 14], [9, 11, 13])}
    row = _row(diagnose(build(tmp_path / "h.duckdb", gains=holds)), "toy-memo", "random")
    assert row.can_complete and not row.flagged
    rare = {("toy-memo", "random"): ([10, 12, 14], [0, 1, -1])}
    row = _row(diagnose(build(tmp_path / "r.duckdb", gains=rare, memo_rate=0.1)), "toy-memo", "random")
    assert row.completion == pytest.approx(10.0) and not row.can_complete and not row.flagged


@pytest.mark.parametrize(
    "reward, flagged", [("format_AND_inverse_python", True), ("format_AND_ground_truth", False)]
)
def test_spurious_is_the_reward_registrys_flag_for_compositions_too(tmp_path, reward, flagged):
    """The same memory-like gains under a composition: flagged when every part is registered spurious,
    not when one part (ground_truth) carries the answer."""
    gains = {("toy-memo", reward): ([10, 12, 14], [0, 1, -1])}
    row = _row(diagnose(build(tmp_path / "c.duckdb", gains=gains)), "toy-memo", reward)
    assert row.can_complete and row.gain.mean == pytest.approx(12.0)
    assert row.flagged is flagged


def test_without_a_fresh_benchmark_or_a_probe_a_note_says_what_to_run(tmp_path):
    d = diagnose(build(tmp_path / "n.duckdb", fresh=None))
    assert not any(c.flagged for c in d.contamination)
    assert any("no fresh benchmark" in n and "randcalc" in n for n in d.notes)
    d = diagnose(build(tmp_path / "p.duckdb", probe_fraction=0.8))  # the closest stored fraction is shown
    assert _row(d, "toy-memo", "random").fraction == 0.8
    assert not any("no probe of" in n for n in d.notes)


def test_probe_metrics_pivot_with_known_values(tmp_path):
    path = build(tmp_path / "k.duckdb")
    with store.connect(path) as con:
        p = report.pivot(con, sweep="contam", rows="model", cols="benchmark", metric="probe_exact_match")
        assert p.cells[("toy-memo", "toy")]["mean"] == pytest.approx(80.0)
        assert p.cells[("toy-memo", "toy-fresh")]["mean"] == pytest.approx(0.0)
        assert p.cells[("toy-coder", "toy")]["mean"] == pytest.approx(0.0)
        by = report.pivot(
            con, sweep=None, rows="model", cols="fraction", metric="probe_exact_match", benchmark="toy"
        )
        assert by.cells[("toy-memo", 0.4)]["mean"] == pytest.approx(30.0)
        assert by.cells[("toy-memo", 0.6)]["mean"] == pytest.approx(80.0)
        text = report.render(p, "markdown")
        assert "probe_exact_match (%)" in text and "80.0 (n=1)" in text
        with pytest.raises(Exception, match="reward"):
            report.pivot(con, sweep=None, rows="model", cols="reward", metric="probe_rouge_l")


# ---------------------------------------------------------------------------------------------- the toy check
@pytest.mark.slow
@pytest.mark.toy
def test_toy_memo_completes_its_benchmark_and_is_flagged_toy_coder_is_not(tmp_path):
    """Builds toy-memo and toy-coder (minutes on 2 cores the first time; set SPURISWEEP_TEST_CACHE to a
    cache that has them to reuse it), probes both on the toy benchmark, then diagnoses a store holding
    those probes and hand-made gains: only toy-memo can complete the benchmark and only it is flagged."""
    from spurisweep.evaluation import probe_run

    results = tmp_path / "results"
    rates = {}
    for model in ("toy-memo", "toy-coder"):
        metas = probe_run.run_probes(
            model=model, benchmarks=["toy"], fractions=[0.6], results=results, limit=100
        )
        rates[model] = metas[0]["summary"]
    assert rates["toy-memo"]["exact_match"] >= 0.5 and rates["toy-memo"]["accuracy"] >= 0.5
    assert rates["toy-coder"]["exact_match"] <= 0.05
    assert store.ingest(results)["probes"] == 2
    # the toy sweep's diagnose path: the ingested probes next to gains on toy and toy-fresh
    db = store.db_path(results)
    with store.connect(db) as con:
        probes = con.execute("SELECT * FROM probes").fetchall()
        samples = con.execute("SELECT * FROM probe_samples").fetchall()
    path = tmp_path / "d.duckdb"
    with StoreBuilder(path, sweep="contam") as b:
        for model in ("toy-memo", "toy-coder"):
            for bench in ("toy", "toy-fresh"):
                b.baseline(model, bench, outcomes(0.4, PROBLEMS))
            for seed in range(3):
                cid = b.cell(model, "random", seed=seed, sweep="contam")
                b.evaluation(cid, 20, "toy", outcomes(0.5 + seed / 100, PROBLEMS))
                b.evaluation(cid, 20, "toy-fresh", outcomes(0.4, PROBLEMS))
        b._bulk("probes", probes, list(store.schema.PROBE_COLUMNS))
        b._bulk("probe_samples", samples, list(store.schema.PROBE_SAMPLE_COLUMNS))
    d = diagnose(path)
    assert _row(d, "toy-memo", "random").flagged and _row(d, "toy-memo", "random").can_complete
    assert not _row(d, "toy-coder", "random").flagged and not _row(d, "toy-coder", "random").can_complete


def test_the_toy_contamination_sweep_asks_for_the_probe_and_a_fresh_benchmark():
    from spurisweep.plan import grid, spec

    cells = grid.expand(spec.load_sweep(ROOT / "sweeps" / "toy_contamination.yaml"))
    assert {c.config.model for c in cells} == {"toy-memo", "toy-coder"}
    ev = cells[0].config.eval
    assert ev.probe and ev.benchmarks == ["toy", "toy-fresh"]
    assert os.path.exists(ROOT / "sweeps" / "toy_contamination.yaml")
