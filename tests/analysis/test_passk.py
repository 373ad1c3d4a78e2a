"""pass@k boundaries and the evaluation metrics of the follow-up studies, on real DuckDB stores built with
known per-problem counts: the report's SQL metrics (bayes, bayes_lo/hi, gpass@K_T, mgpass@K) against
spurisweep.metrics, `diagnose`'s crossover on constructed curves, and `report --plot passk`."""

from __future__ import annotations

import pytest

from spurisweep import metrics, store
from spurisweep.analysis import diagnostics as dg
from spurisweep.analysis import plots
from spurisweep.analysis import report as rep
from spurisweep.errors import ConfigError
from tests.storebuilder import StoreBuilder

N = 8
#: per-problem correct counts out of N: the trained model is sharp on the easy half and never right on the
#: hard half, the base model right now and then on both (its pass@k catches up at large k)
BASE = [3] * 6 + [1] * 6
TRAINED = [8] * 6 + [0] * 6


def _outcomes(counts: list[int], n: int = N) -> list[list[bool]]:
    return [[i < c for i in range(n)] for c in counts]


def _store(path, trained_runs=(TRAINED,)):
    with StoreBuilder(path) as b:
        b.baseline("m", "aime24", _outcomes(BASE))
        for seed, counts in enumerate(trained_runs):
            cid = b.cell("m", "random", seed=seed)
            b.evaluation(cid, 10, "aime24", _outcomes(counts))
    return path


def _value(con, metric: str) -> tuple[float, float]:
    p = rep.pivot(con, sweep="t", rows="model", cols="reward", metric=metric)
    cell = p.cells[("m", "random")]
    return cell["mean"], cell["base"]


def test_report_metrics_equal_the_python_definitions(tmp_path):
    path = _store(tmp_path / "s.duckdb")
    base = [(N, c) for c in BASE]
    trained = [(N, c) for c in TRAINED]
    with store.connect(path) as con:
        for name, attr in (("bayes", "mean"), ("bayes_lo", "lo"), ("bayes_hi", "hi")):
            got, got_base = _value(con, name)
            assert got == pytest.approx(100 * getattr(metrics.posterior(trained), attr)), name
            assert got_base == pytest.approx(100 * getattr(metrics.posterior(base), attr)), name
        for k, tau in ((4, 0.5), (4, 1.0), (3, 0.25), (8, 0.75)):
            got, got_base = _value(con, f"gpass@{k}_{tau}")
            want = sum(metrics.g_pass_at_k(N, c, k, tau) for c in TRAINED) / len(TRAINED)
            want_base = sum(metrics.g_pass_at_k(N, c, k, tau) for c in BASE) / len(BASE)
            assert got == pytest.approx(100 * want), (k, tau)
            assert got_base == pytest.approx(100 * want_base), (k, tau)
        for k in (2, 4, 8):
            _, got_base = _value(con, f"mgpass@{k}")
            assert got_base == pytest.approx(
                100 * sum(metrics.mg_pass_at_k(N, c, k) for c in BASE) / len(BASE)
            )
        too_big = rep.pivot(con, sweep="t", rows="model", cols="reward", metric="gpass@16_0.5")
        assert not too_big.cells  # 8 samples cannot give G-Pass@16


@pytest.mark.parametrize("bad", ["gpass@4_0", "gpass@4_1.5", "gpass@0_0.5", "mgpass@1", "gpass@4"])
def test_bad_g_pass_names_are_one_clear_error(tmp_path, bad):
    path = _store(tmp_path / "s.duckdb")
    with store.connect(path) as con, pytest.raises(ConfigError) as exc:
        rep.pivot(con, sweep="t", rows="model", cols="reward", metric=bad)
    assert "--metric" in str(exc.value)


def test_diagnose_finds_the_crossover_of_constructed_curves(tmp_path):
    path = _store(tmp_path / "s.duckdb", trained_runs=(TRAINED, TRAINED))
    mean_base = metrics.pass_at_k_curves([(N, c) for c in BASE])
    mean_trained = metrics.pass_at_k_curves([(N, c) for c in TRAINED])
    want = metrics.crossover(mean_base, mean_trained)
    assert want is not None and 1 < want <= N  # the construction crosses inside the budget
    with store.connect(path) as con:
        d = dg.diagnose(con, "t")
    (x,) = d.passk
    assert (x.model, x.reward, x.n, x.problems, x.runs) == ("m", "random", N, len(BASE), 2)
    assert x.k == want
    assert x.pass1_trained == pytest.approx(100 * mean_trained[0])
    assert x.passn_base == pytest.approx(100 * mean_base[-1])
    assert x.interval is not None and x.interval[0] <= x.k <= x.interval[1]
    text = dg.render(d, "markdown")
    assert "pass@k boundary on aime24" in text and f"catches up from k={want}" in text


def test_diagnose_says_when_there_is_no_crossover(tmp_path):
    path = _store(tmp_path / "s.duckdb", trained_runs=([8] * 6 + [2] * 6,))  # better everywhere
    with store.connect(path) as con:
        (x,) = dg.diagnose(con, "t").passk
    assert x.k is None and x.reading == f"trained ahead at every k up to {N}"


def test_plot_passk_writes_the_curves_and_the_crossover(tmp_path):
    path = _store(tmp_path / "s.duckdb")
    with store.connect(path) as con:
        written = plots.write_plots(con, "passk", tmp_path / "fig", sweep="t")
    names = sorted(p.name for p in written)
    assert names == ["passk.html", "passk.png"]
    assert (tmp_path / "fig" / "passk.png").stat().st_size > 1000
    page = (tmp_path / "fig" / "passk.html").read_text()
    want = metrics.crossover(
        metrics.pass_at_k_curves([(N, c) for c in BASE]), metrics.pass_at_k_curves([(N, c) for c in TRAINED])
    )
    assert f"m / random: crossover k={want}" in page
    assert "base model" in page and "trained" in page


def test_a_g_pass_above_the_samples_is_explained_not_an_empty_table(tmp_path):
    """gpass@16 on evaluations of 8 samples: nothing to count, and the table says why (as pass@k does)."""
    path = _store(tmp_path / "s.duckdb")
    with store.connect(path) as con:
        p = rep.pivot(con, sweep="t", rows="model", cols="reward", metric="gpass@16_0.5")
        assert any("needs >= 16 samples per problem" in n and "[8]" in n for n in p.notes), p.notes
        p = rep.pivot(con, sweep="t", rows="model", cols="reward", metric="gpass@8_0.5")
        assert not any("samples per problem" in n for n in p.notes)
