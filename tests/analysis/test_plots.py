"""`report --plot`: PNG files and HTML pages written from real stores (hand-built and the smoke sweep's)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from spurisweep import store
from spurisweep.analysis import plots
from spurisweep.errors import ConfigError
from tests.storebuilder import StoreBuilder, outcomes, run_cli

PNG = b"\x89PNG\r\n\x1a\n"


def build(path: Path) -> Path:
    """2 models x 2 rewards x 2 seeds, checkpoints 10 and 20 on math500, code use, clip metrics."""
    with StoreBuilder(path) as b:
        for model, base in (("qwen2.5-math-7b", 0.5), ("llama3.1-8b-instruct", 0.3)):
            b.baseline(model, "math500", outcomes(base, 20), has_python=[[p < 10] for p in range(20)])
            for reward, gain in (("ground_truth", 0.2), ("random", 0.1)):
                for seed in range(2):
                    cid = b.cell(model, reward, seed=seed)
                    for step in (10, 20):
                        acc = base + gain * step / 20 + 0.05 * seed
                        b.evaluation(
                            cid,
                            step,
                            "math500",
                            outcomes(acc, 20),
                            has_python=[[p < 10 + step // 2] for p in range(20)],
                        )
                    for key, v in (
                        ("clip_ratio/region_mean", 0.01),
                        ("clip_ratio/low_mean", 0.004),
                        ("clip_ratio/high_mean", 0.006),
                        ("token_prob/mean", 0.85),
                    ):
                        b.metrics(cid, key, {s: v + s / 1000 for s in range(1, 21)})
    return path


def pngs_ok(paths: list[Path]) -> None:
    for p in paths:
        assert p.exists() and p.stat().st_size > 5000, p
        assert p.read_bytes()[:8] == PNG, p


@pytest.mark.parametrize(
    "kind, files",
    [
        ("curves", ["curves.png"]),
        ("code", ["code_frequency.png", "code_accuracy.png"]),
        (
            "clip",
            [
                "clip_ratio_region_mean.png",
                "clip_ratio_low_mean.png",
                "clip_ratio_high_mean.png",
                "token_prob_mean.png",
            ],
        ),
    ],
)
def test_each_kind_writes_pngs_and_a_page_with_its_data(tmp_path, kind, files):
    db = build(tmp_path / "p.duckdb")
    with store.connect(db) as con:
        written = plots.write_plots(con, kind, tmp_path / "out", sweep="t")
    assert [p.name for p in written] == files + [f"{kind}.html"]
    pngs_ok(written[:-1])
    page = written[-1].read_text()
    for f in files:
        assert f"src='{f}'" in page
    assert "qwen2.5-math-7b" in page and "llama3.1-8b-instruct" in page
    if kind == "curves":
        assert "MATH-500 accuracy against training step" in page  # the benchmark entry's display name
        # qwen, ground_truth, step 20: seeds at 70 % and 75 % -> 72.5; step 0 is the 50 % baseline
        assert re.search(r"<td>qwen2.5-math-7b</td><td>ground_truth</td><td>20</td><td>72.5</td>", page)
        assert re.search(r"<td>qwen2.5-math-7b</td><td>ground_truth</td><td>0</td><td>50.0</td>", page)
    if kind == "code":
        assert re.search(r"<td>random</td><td>20</td><td>100.0</td>", page)  # all 20 responses use python
    if kind == "clip":
        assert re.search(r"<td>ground_truth / standard</td><td>20</td><td>0.8700</td>", page)


def test_filters_and_bad_kinds(tmp_path):
    db = build(tmp_path / "p.duckdb")
    with store.connect(db) as con:
        written = plots.write_plots(con, "curves", tmp_path / "f", where=["model=llama3.1-8b-instruct"])
        with pytest.raises(ConfigError, match="--plot.*valid: clip, code, curves"):
            plots.write_plots(con, "loss", tmp_path / "g")
        with pytest.raises(ConfigError, match="--where"):
            plots.write_plots(con, "curves", tmp_path / "g", where=["model'; DROP TABLE cells=1"])
    page = written[-1].read_text()
    assert "llama3.1-8b-instruct" in page and "qwen2.5-math-7b" not in page


def test_empty_selection_still_writes_a_labelled_figure(tmp_path):
    db = build(tmp_path / "p.duckdb")
    with store.connect(db) as con:
        written = plots.write_plots(con, "curves", tmp_path / "e", where=["model=nobody"])
    pngs_ok(written[:1])


def test_cli_plots_on_the_smoke_store(smoke_results, tmp_path):
    out = tmp_path / "figs"
    for kind in plots.KINDS:
        run_cli(
            "report", "--sweep", "smoke", "--results", str(smoke_results), "--plot", kind, "--out", str(out)
        )
    pngs_ok(sorted(out.glob("*.png")))
    assert {p.name for p in out.glob("*.html")} == {"curves.html", "code.html", "clip.html", "passk.html"}
    # passk draws one (empty) figure: the smoke sweep's greedy arith has one sample per problem
    assert len(list(out.glob("*.png"))) == 8
    bad = run_cli("report", "--results", str(smoke_results), "--plot", "curves", check=False)
    assert bad.returncode == 2 and "--out" in bad.stderr
