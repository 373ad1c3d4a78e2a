"""Pivots over real stores: hand-built ones with known means, spreads and deltas, and the smoke sweep's.

Covers the metrics (pass@1, pass@k from per-problem counts, code, length, training-log metrics), the step
choices, swept settings as dimensions, filters, the output formats, the paper comparison, and
SQL-injection attempts in every name and value a user can type.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import duckdb
import pytest

from spurisweep import metrics, store
from spurisweep.analysis import paper
from spurisweep.analysis import report as rep
from spurisweep.errors import ConfigError
from tests.storebuilder import StoreBuilder, outcomes, run_cli


def build_known(path: Path) -> Path:
    """Two models x two rewards x three seeds on math500 (20 problems, 1 sample), checkpoints at 2 and 4.

    Final-step accuracies (%): m1/gt 50, 60, 70; m1/random 30, 30, 30; m2/gt 20, 25, 30; m2/random 10, 20, 30.
    Baselines: m1 20 %, m2 10 %. Step 2 is always 5 points below the final step.
    """
    final = {
        ("m1", "ground_truth"): [0.5, 0.6, 0.7],
        ("m1", "random"): [0.3, 0.3, 0.3],
        ("m2", "ground_truth"): [0.2, 0.25, 0.3],
        ("m2", "random"): [0.1, 0.2, 0.3],
    }
    with StoreBuilder(path) as b:
        b.baseline("m1", "math500", outcomes(0.2, 20))
        b.baseline("m2", "math500", outcomes(0.1, 20))
        for (model, reward), accs in final.items():
            for seed, acc in enumerate(accs):
                lr = "1e-4" if seed < 2 else "5e-4"
                cid = b.cell(model, reward, seed=seed, settings={"train.learning_rate": lr})
                b.evaluation(cid, 2, "math500", outcomes(acc - 0.05, 20))
                b.evaluation(cid, 4, "math500", outcomes(acc, 20))
                b.metrics(cid, "reward", {1: [0.1, 0.3], 4: [0.4, 0.6 + seed / 10]})
    return path


@pytest.fixture
def known(tmp_path: Path):
    db = build_known(tmp_path / "known.duckdb")
    with store.connect(db) as con:
        yield con


def cell(p: rep.Pivot, r, c) -> dict:
    return p.cells[(r, c)]


# ---------------------------------------------------------------------------------------------- statistics
def test_pivot_means_spreads_counts_and_deltas_are_exact(known):
    p = rep.pivot(known, sweep="t", rows="model", cols="reward")
    assert p.row_values == ["m1", "m2"] and p.col_values == ["ground_truth", "random"]
    assert p.benchmark == "math500" and p.step == "final"
    c = cell(p, "m1", "ground_truth")
    assert c["mean"] == pytest.approx(60.0) and c["std"] == pytest.approx(10.0)
    assert c["n"] == 3 and c["seeds"] == 3
    assert c["base"] == pytest.approx(20.0) and c["delta"] == pytest.approx(40.0)
    c = cell(p, "m1", "random")
    assert (
        c["mean"] == pytest.approx(30.0)
        and c["std"] == pytest.approx(0.0)
        and c["delta"] == pytest.approx(10.0)
    )
    c = cell(p, "m2", "random")
    assert (
        c["mean"] == pytest.approx(20.0)
        and c["std"] == pytest.approx(10.0)
        and c["delta"] == pytest.approx(10.0)
    )
    assert p.baselines == {"m1": pytest.approx(20.0), "m2": pytest.approx(10.0)}
    # the learning rate was swept alongside the seeds: the cells pool it, and the note says so
    assert p.notes == [
        "each cell pools runs that differ in train.learning_rate (1e-4, 5e-4): n counts runs, "
        "not only seeds (pivot or --where on those to separate them)"
    ]
    fixed = rep.pivot(known, sweep="t", rows="model", cols="reward", where=["train.learning_rate=1e-4"])
    assert not fixed.notes and cell(fixed, "m1", "ground_truth")["n"] == 2


def test_bootstrap_interval_brackets_the_mean_within_the_runs(known):
    p = rep.pivot(known, sweep=None, rows="model", cols="reward", spread="ci")
    lo, hi = cell(p, "m1", "ground_truth")["ci"]
    assert 50.0 <= lo < 60.0 < hi <= 70.0
    assert cell(p, "m1", "random")["ci"] == pytest.approx((30.0, 30.0))
    assert metrics.bootstrap_ci([1.0]) is None
    assert metrics.bootstrap_ci([1.0, 3.0], seed=1) == metrics.bootstrap_ci([1.0, 3.0], seed=1)  # seeded


def test_step_choices_final_number_best_and_step_pivot(known):
    at2 = rep.pivot(known, sweep="t", rows="model", cols="reward", step="2")
    assert cell(at2, "m1", "ground_truth")["mean"] == pytest.approx(55.0)
    best = rep.pivot(known, sweep="t", rows="model", cols="reward", step="best")
    assert cell(best, "m1", "ground_truth")["mean"] == pytest.approx(60.0)
    assert any("optimistic" in n for n in best.notes)
    # pivoting on step shows every checkpoint, and step 0 is the untrained model (delta 0)
    curve = rep.pivot(known, sweep="t", rows="reward", cols="step", where=["model=m1"])
    assert curve.col_values == [0, 2, 4]
    assert cell(curve, "ground_truth", 0)["mean"] == pytest.approx(20.0)
    assert cell(curve, "ground_truth", 0)["delta"] == pytest.approx(0.0)
    assert cell(curve, "ground_truth", 2)["mean"] == pytest.approx(55.0)
    assert cell(curve, "ground_truth", 4)["n"] == 3
    base_only = rep.pivot(known, sweep="t", rows="model", cols="reward", step=0)
    assert cell(base_only, "m2", "random")["mean"] == pytest.approx(10.0)
    with pytest.raises(ConfigError, match="--step"):
        rep.pivot(known, sweep="t", rows="model", cols="reward", step="last")


def test_swept_setting_is_a_dimension_and_filters_combine(known):
    p = rep.pivot(known, sweep="t", rows="train.learning_rate", cols="reward", where=["model=m1"])
    assert p.row_values == ["1e-4", "5e-4"]
    assert cell(p, "1e-4", "ground_truth")["mean"] == pytest.approx(55.0)
    assert cell(p, "5e-4", "ground_truth")["n"] == 1
    # a repeated key means any of its values; different keys must all hold
    p = rep.pivot(
        known, sweep="t", rows="model", cols="reward", where=["seed=0", "seed=2", "reward=ground_truth"]
    )
    assert p.col_values == ["ground_truth"]
    assert (
        cell(p, "m1", "ground_truth")["mean"] == pytest.approx(60.0)
        and cell(p, "m1", "ground_truth")["n"] == 2
    )
    p = rep.pivot(known, sweep="t", rows="model", cols="reward", where=["train.learning_rate=5e-4"])
    assert cell(p, "m2", "ground_truth")["mean"] == pytest.approx(30.0)
    # numbers match numerically, however they were written
    same = rep.pivot(known, sweep="t", rows="model", cols="reward", where=["train.learning_rate=0.0005"])
    assert same.cells == p.cells
    assert (
        rep.pivot(known, sweep="t", rows="model", cols="reward", where=["seed=1.0"]).cells[("m1", "random")][
            "n"
        ]
        == 1
    )


def test_pooled_axes_are_reported(known):
    p = rep.pivot(known, sweep="t", rows="model", cols="train.learning_rate")
    assert cell(p, "m1", "1e-4")["n"] == 4  # 2 rewards x 2 seeds
    assert any("reward (ground_truth, random)" in n for n in p.notes)


def test_pass_at_k_uses_the_unbiased_estimator_on_per_problem_counts(tmp_path):
    # 3 problems x 8 samples: 0, 2 and 8 correct; a baseline with 1 correct each
    counts = [0, 2, 8]
    correct = [[i < c for i in range(8)] for c in counts]
    with StoreBuilder(tmp_path / "k.duckdb") as b:
        b.baseline("m", "aime24", [[i < 1 for i in range(8)] for _ in range(3)])
        cid = b.cell("m", "ground_truth")
        b.evaluation(cid, 5, "aime24", correct)
    with store.connect(tmp_path / "k.duckdb") as con:
        for k in (1, 2, 4, 8):
            p = rep.pivot(con, sweep="t", rows="model", cols="reward", metric=f"pass@{k}")
            want = 100 * sum(metrics.pass_at_k(8, c, k) for c in counts) / 3
            base = 100 * metrics.pass_at_k(8, 1, k)
            got = cell(p, "m", "ground_truth")
            assert got["mean"] == pytest.approx(want, abs=1e-9), k
            assert got["delta"] == pytest.approx(want - base, abs=1e-9), k
        avg = rep.pivot(con, sweep="t", rows="model", cols="reward", metric="avg@n")
        assert cell(avg, "m", "ground_truth")["mean"] == pytest.approx(100 * 10 / 24)
        too_big = rep.pivot(con, sweep="t", rows="model", cols="reward", metric="pass@16")
        assert not too_big.cells and any("needs >= 16 samples" in n for n in too_big.notes)


def test_code_and_length_metrics(tmp_path):
    # 4 problems x 1 sample; responses 0 and 1 use python (1 correct), 2 and 3 do not (1 correct)
    correct = [[True], [False], [True], [False]]
    python = [[True], [True], [False], [False]]
    with StoreBuilder(tmp_path / "c.duckdb") as b:
        b.baseline("m", "math500", [[False]] * 4, has_python=[[False]] * 4)
        cid = b.cell("m", "random")
        b.evaluation(cid, 1, "math500", correct, has_python=python, n_tokens=[[10], [20], [30], [40]])
    with store.connect(tmp_path / "c.duckdb") as con:

        def one(metric: str) -> dict:
            return cell(rep.pivot(con, sweep="t", rows="model", cols="reward", metric=metric), "m", "random")

        assert one("code_frequency")["mean"] == pytest.approx(50.0)
        assert one("code_frequency")["delta"] == pytest.approx(50.0)
        assert one("acc_with_code")["mean"] == pytest.approx(50.0)
        assert one("acc_without_code")["mean"] == pytest.approx(50.0)
        assert one("mean_length")["mean"] == pytest.approx(25.0)
        assert one("ungradable")["mean"] == pytest.approx(0.0)


def test_training_log_metrics(known):
    p = rep.pivot(known, sweep="t", rows="model", cols="reward", metric="final_reward")
    # last step's updates 0.4 and 0.6 + seed/10, averaged, then over seeds 0..2
    assert cell(p, "m1", "ground_truth")["mean"] == pytest.approx(0.55)
    assert cell(p, "m1", "ground_truth")["delta"] is None
    curve = rep.pivot(known, sweep="t", rows="reward", cols="step", metric="train:reward", where=["model=m2"])
    assert curve.col_values == [1, 4]
    assert cell(curve, "random", 1)["mean"] == pytest.approx(0.2)
    with pytest.raises(ConfigError, match="training metric"):
        rep.pivot(known, sweep="t", rows="model", cols="reward", metric="train:nope")
    with pytest.raises(ConfigError, match="--pivot"):  # training metrics have no benchmark
        rep.pivot(known, sweep="t", rows="model", cols="benchmark", metric="final_reward")


# ---------------------------------------------------------------------------------------------- errors, safety
def test_unknown_names_list_the_valid_ones(known):
    with pytest.raises(ConfigError) as e:
        rep.pivot(known, sweep="t", rows="modle", cols="reward")
    assert e.value.field == "--pivot" and "did you mean 'model'" in str(e.value)
    assert "train.learning_rate" in str(e.value) and "benchmark" in str(e.value)
    with pytest.raises(ConfigError, match="--metric.*valid: .*pass@1"):
        rep.pivot(known, sweep="t", rows="model", cols="reward", metric="accuracy")
    with pytest.raises(ConfigError, match="--where.*KEY=VALUE"):
        rep.pivot(known, sweep="t", rows="model", cols="reward", where=["model"])
    with pytest.raises(ConfigError, match="--sweep.*valid: t"):
        rep.pivot(known, sweep="nope", rows="model", cols="reward")
    with pytest.raises(ConfigError, match="--benchmark.*valid: math500"):
        rep.pivot(known, sweep="t", rows="model", cols="reward", benchmark="gsm8k")
    with pytest.raises(ConfigError, match="two different"):
        rep.pivot(known, sweep="t", rows="model", cols="model")


INJECTIONS = [
    "model; DROP TABLE cells",
    "reward' OR '1'='1",
    "model) UNION SELECT * FROM samples --",
    "c.model",
    "1=1",
    "cells",
]


def test_injection_attempts_are_rejected_or_harmless(tmp_path):
    db = build_known(tmp_path / "inj.duckdb")
    with store.connect(db) as con:
        before = rep.render(rep.pivot(con, sweep="t", rows="model", cols="reward"), "json")
        for bad in INJECTIONS:
            with pytest.raises(ConfigError):
                rep.pivot(con, sweep="t", rows=bad, cols="reward")
            with pytest.raises(ConfigError):
                rep.pivot(con, sweep="t", rows="model", cols="reward", where=[f"{bad}=x"])
            with pytest.raises(ConfigError):
                rep.pivot(con, sweep="t", rows="model", cols="reward", metric=bad)
            with pytest.raises(ConfigError):
                rep.pivot(con, sweep=bad, rows="model", cols="reward")
            with pytest.raises(ConfigError):
                rep.pivot(con, sweep="t", rows="model", cols="reward", step=bad)
            # values are bound: an injection in a value matches nothing and runs nothing
            p = rep.pivot(con, sweep="t", rows="model", cols="reward", where=[f"reward={bad}"])
            assert not p.cells
            p = rep.pivot(con, sweep="t", rows="model", cols="reward", where=[f"train.learning_rate={bad}"])
            assert not p.cells
        with pytest.raises(ConfigError):
            rep.pivot(con, sweep="t", rows="model", cols="reward", metric="pass@2; DROP TABLE samples")
        with pytest.raises(ConfigError):
            rep.pivot(con, sweep="t", rows="model", cols="reward", metric="train:reward' OR '1'='1")
        after = rep.render(rep.pivot(con, sweep="t", rows="model", cols="reward"), "json")
    assert after == before
    con = duckdb.connect(str(db), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"cells", "sweep_cells", "cell_settings", "evals", "samples", "metrics"} <= tables
    assert con.execute("SELECT count(*) FROM cells").fetchone()[0] == 12
    con.close()


def test_cli_rejects_injection_with_one_line_and_exit_2(tmp_path):
    results = tmp_path / "res"
    build_known(store.db_path(results))
    bad = run_cli(
        "report", "--results", str(results), "--pivot", "model; DROP TABLE cells,reward", check=False
    )
    assert bad.returncode == 2
    assert "--pivot" in bad.stderr and "valid:" in bad.stderr and "Traceback" not in bad.stderr
    ok = run_cli("report", "--results", str(results), "--where", "reward=x' OR '1'='1", "--format", "json")
    assert json.loads(ok.stdout)["cells"] == []
    again = run_cli("report", "--results", str(results), "--format", "json")
    assert len(json.loads(again.stdout)["cells"]) == 4


# ---------------------------------------------------------------------------------------------- formats
def test_formats(known):
    p = rep.pivot(known, sweep="t", rows="model", cols="reward", spread="ci")
    md = rep.render(p, "markdown")
    assert "| model | base | ground_truth | random |" in md and "60.0 [" in md and "Δ+40.0" in md
    recs = list(csv.DictReader(io.StringIO(rep.render(p, "csv"))))
    assert len(recs) == 4
    m1gt = next(r for r in recs if r["model"] == "m1" and r["reward"] == "ground_truth")
    assert float(m1gt["mean"]) == pytest.approx(60.0) and float(m1gt["delta"]) == pytest.approx(40.0)
    assert float(m1gt["ci_low"]) <= 60.0 <= float(m1gt["ci_high"])
    data = json.loads(rep.render(p, "json"))
    assert data["metric"] == "pass@1" and len(data["cells"]) == 4
    page = rep.render(p, "html")
    assert page.startswith("<!doctype html>") and "<th>ground_truth</th>" in page and "Δ+40.0" in page
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(rep.render(rep.pivot(known, sweep="t", rows="model", cols="reward"), "table"))
    text = console.export_text()
    assert "60.0 ± 10.0 (n=3) Δ+40.0" in text and "m2" in text
    console = Console(width=200, record=True)
    console.print(rep.render(p, "table"))  # brackets in titles and cells are text, not rich markup
    text = console.export_text()
    assert "[bootstrap 95% interval]" in text and "60.0 [5" in text
    with pytest.raises(ConfigError, match="--format"):
        rep.render(p, "xlsx")


def test_html_escapes_stored_text(tmp_path):
    with StoreBuilder(tmp_path / "x.duckdb") as b:
        b.baseline("m", "math500", outcomes(0.5, 2))
        cid = b.cell("m", "<script>alert(1)</script>")
        b.evaluation(cid, 1, "math500", outcomes(0.5, 2))
    with store.connect(tmp_path / "x.duckdb") as con:
        page = rep.render(rep.pivot(con, sweep="t", rows="model", cols="reward"), "html")
    assert "<script>" not in page and "&lt;script&gt;" in page


# ---------------------------------------------------------------------------------------------- paper
def test_paper_numbers_ship_per_version_with_their_source_and_reading_rule():
    values, bases, names, rewards = paper.paper_values("v1")
    assert set(bases) == {"qwen2.5-math-7b", "qwen2.5-7b", "llama3.1-8b-instruct", "olmo2-7b"}
    assert bases["qwen2.5-math-7b"] == 49.4 and bases["olmo2-7b"] == 9.0
    assert rewards == ["ground_truth", "majority_vote", "one_shot", "incorrect_label", "random", "format"]
    assert values[("qwen2.5-math-7b", "random")] == paper.PaperValue(21.4)
    assert values[("qwen2.5-7b", "random")] == paper.PaperValue(7.7)
    assert values[("llama3.1-8b-instruct", "incorrect_label")] == paper.PaperValue(1.3)
    assert values[("olmo2-7b", "format")] == paper.PaperValue(0.0)
    assert len(values) == 24 and not any(v.approx or v.bound for v in values.values())
    v2, v2_bases, _, _ = paper.paper_values("v2")
    assert set(v2) == {("qwen2.5-math-7b", r) for r in rewards}  # the other families: no source, absent
    assert v2[("qwen2.5-math-7b", "ground_truth")].value == 29.1 and v2_bases == {}
    for version in paper.VERSIONS:
        entry = paper.version_entry(version)
        assert entry["source"] and entry["reading"]["rule"]
    assert str(paper.reading_step("v1")) == "150, mean of steps 141-150" and paper.reading_step("v2") == 300


def test_paper_numbers_match_research_md():
    doc = Path(__file__).resolve().parents[3] / "shared" / "RESEARCH.md"
    if not doc.exists():
        pytest.skip("../shared/RESEARCH.md is not on this machine")
    section = doc.read_text().split("## The paper's numbers", 1)[1].split("\n## ", 1)[0]
    values, bases, names, _ = paper.paper_values("v1")
    for model, name in names.items():
        (line,) = [ln for ln in section.splitlines() if ln.startswith(f"| {name} (")]
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert float(cells[0].split("(")[1].rstrip(")")) == bases[model]
        order = ["ground_truth", "majority_vote", "one_shot", "format", "incorrect_label", "random"]
        assert [float(c) for c in cells[1:]] == [values[(model, r)].value for r in order], model
    for reward, value in ((r, v.value) for (m, r), v in paper.paper_values("v2")[0].items()):
        assert f"+{value}" in section, (reward, value)


def test_v1_reads_each_run_as_the_10_step_mean_at_step_150(tmp_path):
    """A stored curve: the v1 reading is each run's mean over steps 141-150 (not step 150 alone, not the
    final step), v2's the value at 300."""
    with StoreBuilder(tmp_path / "v.duckdb") as b:
        b.baseline("qwen2.5-math-7b", "math500", outcomes(0.5, 100))
        cid = b.cell("qwen2.5-math-7b", "random", reward_name="random")
        for step in range(131, 151):
            b.evaluation(
                cid, step, "math500", outcomes(0.60 if step <= 140 else (0.70 + (step % 2) * 0.02), 100)
            )
        b.evaluation(cid, 300, "math500", outcomes(0.90, 100))
    with store.connect(tmp_path / "v.duckdb") as con:
        v1 = paper.compare(con, version="v1")
        v2 = paper.compare(con, version="v2")
        one_step = paper.compare(con, version="v1", step=150)
    assert v1.ours[("qwen2.5-math-7b", "random")]["delta"] == pytest.approx(21.0)  # mean of .70/.72 - .50
    assert one_step.ours[("qwen2.5-math-7b", "random")]["delta"] == pytest.approx(20.0)
    assert v2.ours[("qwen2.5-math-7b", "random")]["delta"] == pytest.approx(40.0)
    text = paper.render(v1, "markdown")
    assert "step 150, mean of steps 141-150" in text and "v1" in text
    paired = v1.ours[("qwen2.5-math-7b", "random")]["paired"]  # over the window's pooled samples
    assert paired.estimate == pytest.approx(21.0) and paired.low < 21.0 < paired.high
    assert f"{paired.estimate:+.1f} [" in text
    assert ("qwen2.5-7b", "random") not in v2.paper  # no sourced v2 number: nothing printed


def test_paper_reward_matching():
    assert paper.paper_key("random") == "random"
    assert paper.paper_key("random(gamma=0.5)") == "random"
    assert paper.paper_key("random(gamma=0.3)") is None
    assert paper.paper_key("format_AND_python") == "format_AND_python"


def test_paper_comparison_sits_next_to_stored_results(tmp_path):
    with StoreBuilder(tmp_path / "p.duckdb") as b:
        b.baseline("qwen2.5-math-7b", "math500", outcomes(0.5, 100))
        for seed, acc in enumerate([0.70, 0.72]):
            cid = b.cell("qwen2.5-math-7b", "random(gamma=0.5)", seed=seed, reward_name="random")
            b.evaluation(cid, 300, "math500", outcomes(acc, 100))
        cid = b.cell("qwen2.5-math-7b", "random(gamma=0.3)", reward_name="random")
        b.evaluation(cid, 300, "math500", outcomes(0.6, 100))
    with store.connect(tmp_path / "p.duckdb") as con:
        c = paper.compare(con, version="v2")
    ours = c.ours[("qwen2.5-math-7b", "random")]
    assert ours["delta"] == pytest.approx(21.0) and ours["n"] == 2
    assert c.ours_base["qwen2.5-math-7b"] == pytest.approx(50.0)
    assert "random(gamma=0.3)" in c.rewards  # a non-paper setting gets its own column
    recs = {(r["model"], r["reward"]): r for r in paper.to_records(c)}
    assert recs[("qwen2.5-math-7b", "random")]["paper_delta"] == 21.4
    assert recs[("qwen2.5-math-7b", "random")]["ours_minus_paper"] == pytest.approx(-0.4)
    assert ("olmo2-7b", "random") not in recs  # v2 has no sourced OLMo number: no row, no estimate
    md = paper.render(c, "markdown")
    # the paired change with its interval over problems and seeds (2 seeds: wide, t-scaled)
    assert "| qwen2.5-math-7b | ours | 50.0 | - | - | - | - | +21.0 [+9.8, +33.1] (n=2) | - |" in md
    assert "| Qwen2.5-Math-7B | paper |  | +29.1 | +27.1 | +26.0 | +24.1 | +21.4 | +13.8 |" in md
    assert "OLMo2-7B" not in md


# ---------------------------------------------------------------------------------------------- the smoke store
def test_pivot_on_the_smoke_store_matches_the_samples(smoke_results):
    with store.connect(store.db_path(smoke_results)) as con:
        p = rep.pivot(con, sweep="smoke", rows="clip", cols="reward")
        truth = con.execute("""
            SELECT c.clip, c.reward, avg(s.correct::DOUBLE) * 100, e.baseline_eval_id FROM samples s
            JOIN evals e ON e.eval_id = s.eval_id JOIN cells c ON c.cell_id = e.cell_id
            WHERE e.step = (SELECT max(step) FROM evals x WHERE x.cell_id = e.cell_id)
            GROUP BY ALL""").fetchall()
        bases = dict(
            con.execute(
                "SELECT eval_id, avg(correct::DOUBLE) * 100 FROM samples s GROUP BY eval_id"
            ).fetchall()
        )
        curve = rep.pivot(con, sweep="smoke", rows="reward", cols="step", where=["clip=standard"])
        clip = rep.pivot(
            con, sweep="smoke", rows="clip", cols="reward", metric="train:clip_ratio/region_mean"
        )
    assert p.benchmark == "arith" and len(truth) == 4
    for clip_mode, reward, acc, base_id in truth:
        got = cell(p, clip_mode, reward)
        assert got["n"] == 1 and got["mean"] == pytest.approx(acc)
        assert got["delta"] == pytest.approx(acc - bases[base_id])
    assert curve.col_values == [0, 2, 4]
    assert all(cell(curve, r, 0)["delta"] == pytest.approx(0.0) for r in curve.row_values)
    assert set(clip.row_values) == {"no_clip", "standard"}
    # no_clip never clips; the value is a real fraction either way
    assert cell(clip, "no_clip", "random")["mean"] == pytest.approx(0.0)
    assert 0.0 <= cell(clip, "standard", "random")["mean"] <= 1.0


def test_cli_report_formats_and_paper_on_the_smoke_store(smoke_results):
    res = str(smoke_results)
    table = run_cli("report", "--sweep", "smoke", "--results", res, "--pivot", "reward,clip")
    assert "pass@1 (%) on arith" in table.stdout and "ground_truth" in table.stdout
    data = json.loads(
        run_cli(
            "report",
            "--sweep",
            "smoke",
            "--results",
            res,
            "--format",
            "json",
            "--pivot",
            "seed,step",
            "--metric",
            "mean_length",
        ).stdout
    )
    assert {c["step"] for c in data["cells"]} == {0, 2, 4}
    assert all(c["n"] == 4 and math.isfinite(c["mean"]) for c in data["cells"])
    md = run_cli(
        "report",
        "--paper",
        "--benchmark",
        "arith",
        "--step",
        "final",
        "--results",
        res,
        "--format",
        "markdown",
    ).stdout
    assert "| tiny | ours |" in md and "| Qwen2.5-Math-7B | paper | 49.4 |" in md
    assert "ours are on arith" in md


def test_one_store_reports_either_grader(tmp_path):
    """Every sample keeps both verdicts; --grader picks whose are counted, --paper defaults to the paper's."""
    res = tmp_path / "results"
    with StoreBuilder(res / "spurisweep.duckdb") as b:
        cid = b.cell("qwen2.5-math-7b", "random", seed=0)
        b.evaluation(
            cid,
            300,
            "math500",
            [[True], [True], [True], [False]],
            correct_paper=[[True], [False], [False], [False]],
        )
    out = {}
    for g in ("math_verify", "paper"):
        proc = run_cli(
            "report", "--pivot", "model,reward", "--format", "json", "--grader", g, "--results", str(res)
        )
        out[g] = json.loads(proc.stdout)["cells"][0]["mean"]
    assert out == {"math_verify": pytest.approx(75.0), "paper": pytest.approx(25.0)}
    bad = run_cli("report", "--grader", "nosuch", "--results", str(res), check=False)
    assert bad.returncode == 2 and "--grader" in bad.stderr


def test_any_report_reads_a_smoothed_window(tmp_path):
    """`--step N --smooth K`: each run's value is the mean of its evaluations at steps N-K+1..N; --smooth
    without a step number is one line naming --smooth."""
    from spurisweep.analysis import query
    from spurisweep.analysis.request import Request
    from spurisweep.errors import ConfigError

    with StoreBuilder(tmp_path / "w.duckdb") as b:
        b.baseline("m", "math500", outcomes(0.5, 10))
        cid = b.cell("m", "random")
        for step, acc in ((1, 0.1), (2, 0.6), (3, 0.8), (4, 0.2)):
            b.evaluation(cid, step, "math500", outcomes(acc, 10))
    with store.connect(tmp_path / "w.duckdb") as con:
        win = rep.pivot(con, sweep="t", rows="model", cols="reward", step=query.window(3, 2))
        one = rep.pivot(con, sweep="t", rows="model", cols="reward", step=query.window(3, 1))
    assert win.cells[("m", "random")]["mean"] == pytest.approx(70.0)  # steps 2 and 3
    assert one.cells[("m", "random")]["mean"] == pytest.approx(80.0)
    assert "mean of steps 2-3" in rep.render(win, "markdown")
    req = Request("model,reward", "pass@1", None, None, [], "table", "std", False, None, None, None, smooth=5)
    with pytest.raises(ConfigError, match="--smooth needs --step N") as info:
        req.check()
    assert info.value.field == "--smooth"
    with pytest.raises(ConfigError) as info:
        Request(
            "model,reward", "pass@1", None, None, [], "table", "std", True, None, None, None, "v3"
        ).check()
    assert info.value.field == "--paper-version"


def test_every_delta_is_paired_with_an_interval_and_a_mark_when_it_contains_zero(tmp_path):
    """Pass@1 deltas: the paired difference over the same problems and samples, with stats.paired_delta's
    interval (problems and seeds); a cell whose interval contains 0 is marked ≈; --spread ci prints the
    interval; JSON records carry it."""
    from spurisweep import stats

    with StoreBuilder(tmp_path / "d.duckdb") as b:
        base = b.baseline("m", "math500", outcomes(0.5, 200))
        ids = {}
        for reward, accs in (("big", (0.70, 0.72, 0.68)), ("tiny", (0.505, 0.5, 0.51))):
            for seed, acc in enumerate(accs):
                cid = b.cell("m", reward, seed=seed)
                ids.setdefault(reward, []).append(cid)
                b.evaluation(cid, 3, "math500", outcomes(acc, 200))
    with store.connect(tmp_path / "d.duckdb") as con:
        p = rep.pivot(con, sweep="t", rows="model", cols="reward")
        ci = rep.pivot(con, sweep="t", rows="model", cols="reward", spread="ci")
    big, tiny = p.cells[("m", "big")]["paired"], p.cells[("m", "tiny")]["paired"]
    assert big.distinguishable and big.estimate == pytest.approx(20.0) and big.n_runs == 3
    assert not tiny.distinguishable and tiny.low < 0 < tiny.high
    as_rows = {f"math500-{i}": [float(i < 100)] for i in range(200)}
    runs = [{f"math500-{i}": [float(i < round(a * 200))] for i in range(200)} for a in (0.70, 0.72, 0.68)]
    want = stats.paired_delta(as_rows, runs, seed=0)
    assert (big.low, big.high) == pytest.approx((want.low, want.high))
    md = rep.render(p, "markdown")
    assert "Δ+20.0" in md and "Δ≈+0.5" in md and "≈: its paired 95% interval contains 0" in md
    md_ci = rep.render(ci, "markdown")
    assert f"Δ{stats.format_delta(big)}" in md_ci and "[paired 95% interval]" in md_ci
    rec = {r["reward"]: r for r in json.loads(rep.render(p, "json"))["cells"]}
    assert rec["big"]["delta_distinguishable"] is True and rec["tiny"]["delta_distinguishable"] is False
    assert rec["big"]["delta_problems"] == 200 and "paired bootstrap" in rec["big"]["delta_method"]
    assert base


# ---------------------------------------------------------------------------------------------- widths
def test_columns_are_never_narrower_than_their_longest_word_else_a_list():
    """render.py: a grid keeps every word whole (each column at least its longest word) where one fits;
    where none fits, the list layout breaks lines between words only, a hyphenated name staying whole."""
    from spurisweep.analysis import render as rnd

    t = rnd.Table(["model", "gain"], [["llama3.1-8b-instruct", "+1.0 [+0.2, +1.8] (n=2) Δ≈+1.0"]], "gains")
    widths = rnd.column_widths(t, 40)
    assert widths is not None and widths[0] == len("llama3.1-8b-instruct") and rnd.table_width(widths) <= 40
    assert widths[1] >= len("Δ≈+1.0")
    assert rnd.column_widths(t, 30) is None and rnd.as_list_layout(t, 30)
    text = rnd.to_list(t, 16)
    assert "- llama3.1-8b-instruct" in text.splitlines() and "gain: +1.0" in text
    assert not rnd.as_list_layout(t, 119) and rnd.as_list_layout(rnd.Table(**{**vars(t), "prose": True}), 119)
    empty = rnd.Table(["model"], [], "pass@1 on math500: mean over runs")
    assert rnd.to_list(empty, 80) == "pass@1 on math500: nothing to show"


# ---------------------------------------------------------------------------------------------- eval variants
def build_variants(path: Path, *, variants: bool) -> Path:
    """Two rewards x two seeds on math500 (200 problems), final step 4, pass@1 (%): gt 60/70, random 30/40,
    baselines 20 %. With `variants`, each checkpoint (and the baseline) evaluated again under eval seeds 100
    (gt 10 points higher, random 10 lower) and 101 (5 higher for both), as eval.variants would store them."""
    with StoreBuilder(path) as b:
        base = b.baseline("m", "math500", outcomes(0.2, 200))
        for reward, accs, shift in (("gt", (0.6, 0.7), 0.1), ("random", (0.3, 0.4), -0.1)):
            for seed, acc in enumerate(accs):
                cid = b.cell("m", reward, seed=seed)
                default = b.evaluation(cid, 4, "math500", outcomes(acc, 200))
                b.con.execute("UPDATE evals SET seed = ? WHERE eval_id = ?", [seed, default])  # the cell's
                if not variants:
                    continue
                for eval_seed, d in ((100, shift), (101, 0.05)):
                    vb = f"base-v{eval_seed}"
                    if seed == 0 and reward == "gt":
                        b._eval(vb, None, "m", 0, "math500", True, None, outcomes(0.2 + d / 2, 200))
                    eid = f"{cid}-s4-v{eval_seed}"
                    b._eval(eid, cid, "m", 4, "math500", False, vb, outcomes(acc + d, 200))
                    meta = json.dumps({"variant": f"seed={eval_seed}"})
                    b.con.execute(
                        "UPDATE evals SET seed = ?, meta = ? WHERE eval_id = ?", [eval_seed, meta, eid]
                    )
        b.con.execute("UPDATE evals SET seed = 0 WHERE eval_id = ?", [base])
    return path


def test_variants_are_read_only_when_asked_and_never_pooled_into_the_default_table(tmp_path):
    plain = build_variants(tmp_path / "plain.duckdb", variants=False)
    varied = build_variants(tmp_path / "varied.duckdb", variants=True)
    tables = []
    for db in (plain, varied):
        with store.connect(db) as con:
            p = rep.pivot(con, sweep="t", rows="model", cols="reward")
            tables.append({k: (c["mean"], c["n"], c["delta"], c["paired"]) for k, c in p.cells.items()})
    assert tables[0] == tables[1]  # the default report is the store without variants'
    assert tables[0][("m", "gt")][:2] == (pytest.approx(65.0), 2)
    with store.connect(varied) as con:
        by_seed = rep.pivot(con, sweep="t", rows="eval_seed", cols="reward")
        only = rep.pivot(con, sweep="t", rows="model", cols="reward", where=["eval_seed=100"])
        temps = rep.pivot(con, sweep="t", rows="temperature", cols="reward")
    means = {k: (c["mean"], c["n"]) for k, c in by_seed.cells.items()}
    assert means[(0, "gt")] == (pytest.approx(60.0), 1) and means[(1, "random")] == (pytest.approx(40.0), 1)
    assert means[(100, "gt")] == (pytest.approx(75.0), 2) and means[(100, "random")] == (
        pytest.approx(25.0),
        2,
    )
    assert means[(101, "gt")] == (pytest.approx(70.0), 2)
    assert by_seed.cells[(100, "gt")]["delta"] == pytest.approx(75.0 - 25.0)  # against its own baseline
    assert only.cells[("m", "random")]["mean"] == pytest.approx(25.0)
    # a variant dimension asked for reads every evaluation; the ones it does not tell apart (the seeds here)
    # are each run's mean, as a smoothing window's: gt (60 + 70 + 65) / 3 and (70 + 80 + 75) / 3
    assert (temps.cells[(0.0, "gt")]["mean"], temps.cells[(0.0, "gt")]["n"]) == (pytest.approx(70.0), 2)


def test_a_variant_column_has_no_paired_interval_of_the_default_evaluations_and_says_what_it_pools(tmp_path):
    """The paired interval (deltas.py) reads default evaluations only: a variant's column must not show it
    (it would belong to other samples); a variant pivot that pools seeds says so in a note."""
    varied = build_variants(tmp_path / "varied.duckdb", variants=True)
    with store.connect(varied) as con:
        by_seed = rep.pivot(con, sweep="t", rows="eval_seed", cols="reward")
        temps = rep.pivot(con, sweep="t", rows="temperature", cols="reward")
        default = rep.pivot(con, sweep="t", rows="model", cols="reward")
    assert (
        by_seed.cells[(100, "gt")]["delta"] is not None and by_seed.cells[(100, "gt")].get("paired") is None
    )
    assert default.cells[("m", "gt")].get("paired") is not None  # the default table keeps its interval
    assert any(
        "mean of its evaluations this table does not tell apart" in n and "eval_seed" in n
        for n in temps.notes
    )
    assert not any("does not tell apart" in n for n in default.notes)
