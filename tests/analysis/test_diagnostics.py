"""Diagnostics on hand-built stores with known gains (the 2x2 arithmetic, sensitivity at the matched hit
rate, compression vs capability, health flags, the single-family warning) and on the smoke sweep's store;
the registry of analyses, the stored columns they read (lineage, reward parameters, algorithm) and the
reward registry's spurious flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spurisweep import metrics, store
from spurisweep.analysis import diagnostics as dg
from spurisweep.errors import ConfigError
from spurisweep.plan import grid, spec
from tests.storebuilder import ROOT, StoreBuilder, outcomes, run_cli

PROBLEMS = 100  # 1 problem = 1 point of accuracy


def build_2x2(
    path: Path,
    gains: dict[tuple[str, str], list[float]],
    model: str = "qwen2.5-math-7b",
    base: float = 0.5,
    builder: StoreBuilder | None = None,
    sweep: str = "clip",
    algorithm: str | None = None,
) -> Path:
    """One cell per (clip, reward, seed) whose final math500 gain over the 50 % baseline is given (points);
    with `algorithm`, the cells' stored config names it (train.algorithm)."""
    b = builder or StoreBuilder(path, sweep=sweep)
    if (model, "math500") not in b._baselines:
        b.baseline(model, "math500", outcomes(base, PROBLEMS))
    for (clip, reward), values in gains.items():
        for seed, g in enumerate(values):
            label = "random(gamma=0.5)" if reward == "random" else reward
            settings = {"reward_params.random.gamma": 0.5} if reward == "random" else {}
            if algorithm:
                settings["train.algorithm"] = algorithm
            cid = b.cell(model, label, clip, seed, reward_name=reward, sweep=sweep, settings=settings)
            b.evaluation(cid, 100, "math500", outcomes(base + g / 100, PROBLEMS))
    if builder is None:
        b.close()
    return path


BIAS = {
    ("standard", "random"): [20, 22, 24],
    ("clip_higher", "random"): [10, 12, 14],
    ("standard", "ground_truth"): [30, 31, 32],
    ("clip_higher", "ground_truth"): [31, 32, 33],
}


def diagnose(path: Path, sweep: str | None = "clip", **kw) -> dg.Diagnosis:
    with store.connect(path) as con:
        return dg.diagnose(con, sweep, **kw)


def test_2x2_arithmetic_and_the_clipping_bias_reading(tmp_path):
    d = diagnose(build_2x2(tmp_path / "s.duckdb", BIAS))
    (x,) = d.clip2x2
    assert x.model == "qwen2.5-math-7b" and x.benchmark == "math500"
    assert x.cells["standard|random"].mean == pytest.approx(22.0)
    assert x.cells["clip_higher|random"].mean == pytest.approx(12.0)
    assert x.cells["standard|ground_truth"].mean == pytest.approx(31.0)
    assert x.cells["clip_higher|ground_truth"].mean == pytest.approx(32.0)
    assert all(c.n == 3 for c in x.cells.values())
    lo, hi = x.cells["standard|random"].low, x.cells["standard|random"].high
    assert 20.0 <= lo < 22.0 < hi <= 24.0
    assert x.effect_random.mean == pytest.approx(-10.0)
    assert x.effect_ground_truth.mean == pytest.approx(1.0)
    assert x.interaction.mean == pytest.approx(11.0)
    # every bootstrap draw of the random effect lies in [10-24, 14-20] = [-14, -6]
    assert -14.0 <= x.effect_random.low <= x.effect_random.high <= -6.0
    assert x.effect_random.p_negative == 1.0
    assert x.clipping_bias == "supported" and x.rare_exploration != "supported"
    assert x.reading == "clipping bias" and x.confidence == "moderate"  # 3 seeds: supported, but few
    assert "clipping bias supported" in x.statement
    assert any("only 3 seeds" in n for n in x.notes)
    assert any("single model family" in w and "qwen2.5-math" in w for w in d.warnings)


def test_2x2_rare_exploration_and_neither(tmp_path):
    explore = {
        ("standard", "random"): [1, 2, 3, 2, 1],
        ("clip_higher", "random"): [2, 1, 3, 2, 2],
        ("standard", "ground_truth"): [20, 21, 22, 21, 20],
        ("clip_higher", "ground_truth"): [28, 29, 30, 29, 28],
    }
    (x,) = diagnose(build_2x2(tmp_path / "e.duckdb", explore)).clip2x2
    assert x.effect_ground_truth.mean == pytest.approx(8.0)
    assert x.rare_exploration == "supported" and x.clipping_bias in ("not supported", "suggested")
    assert x.reading == "rare exploration" and x.confidence == "high"  # 5 seeds per cell
    flat = {k: [5, 6, 7, 5, 6, 7] for k in BIAS}
    (y,) = diagnose(build_2x2(tmp_path / "n.duckdb", flat)).clip2x2
    assert y.effect_random.mean == pytest.approx(0.0) and y.interaction.mean == pytest.approx(0.0)
    assert y.reading == "neither" and y.clipping_bias == "not supported"
    assert "no effect" in y.statement
    # identical runs everywhere (a model that never moves): every bootstrap draw is 0, neither sign counts
    same = {k: [0, 0, 0] for k in BIAS}
    (z,) = diagnose(build_2x2(tmp_path / "z.duckdb", same)).clip2x2
    assert z.effect_ground_truth.p_positive == 0.0 and z.effect_random.p_negative == 0.0
    assert z.clipping_bias == z.rare_exploration == "not supported" and z.reading == "neither"


def test_2x2_with_one_seed_has_no_interval_and_incomplete_grids_are_named(tmp_path):
    one = {k: v[:1] for k, v in BIAS.items()}
    (x,) = diagnose(build_2x2(tmp_path / "o.duckdb", one)).clip2x2
    assert x.effect_random.mean == pytest.approx(-10.0) and x.effect_random.low is None
    assert x.confidence == "none" and "guess" in x.statement
    partial = {k: v for k, v in BIAS.items() if k != ("clip_higher", "random")}
    d = diagnose(build_2x2(tmp_path / "p.duckdb", partial))
    assert d.clip2x2 == []
    assert any("incomplete" in n and "clip_higher x random" in n for n in d.notes)


def test_2x2_across_two_families_warns_only_about_the_2x2(tmp_path):
    with StoreBuilder(tmp_path / "two.duckdb", sweep="clip") as b:
        build_2x2(tmp_path, BIAS, builder=b)
        build_2x2(
            tmp_path,
            {("standard", "random"): [0, 1], ("standard", "ground_truth"): [10, 12]},
            model="llama3.1-8b-instruct",
            base=0.4,
            builder=b,
        )
    d = diagnose(tmp_path / "two.duckdb")
    assert [x.model for x in d.clip2x2] == ["qwen2.5-math-7b"]
    assert not any("single model family" in w for w in d.warnings)
    assert any("2x2 reading rests on one model family (qwen2.5-math)" in w for w in d.warnings)


def test_sensitivity_matches_the_ground_truth_hit_rate_and_flags_over_5_points(tmp_path):
    with StoreBuilder(tmp_path / "sens.duckdb", sweep="s") as b:
        for model, base, gt_gain, gains_by_gamma in (
            ("qwen2.5-math-7b", 0.5, 30, {0.1: [12, 14], 0.5: [2, 3]}),
            ("olmo2-7b", 0.1, 15, {0.1: [1, 0], 0.5: [20, 20]}),
        ):
            b.baseline(model, "math500", outcomes(base, PROBLEMS))
            for seed in range(2):
                cid = b.cell(model, "ground_truth", seed=seed)
                b.evaluation(cid, 50, "math500", outcomes(base + gt_gain / 100, PROBLEMS))
                b.metrics(
                    cid, "reward", {1: 0.1, 2: 0.14 + 0.02 * seed}
                )  # hit rate ~0.125: gamma 0.1 is closest
            for gamma, gains in gains_by_gamma.items():
                for seed, g in enumerate(gains):
                    cid = b.cell(
                        model,
                        f"random(gamma={gamma})",
                        seed=seed,
                        reward_name="random",
                        settings={"reward_params.random.gamma": gamma},
                    )
                    b.evaluation(cid, 50, "math500", outcomes(base + g / 100, PROBLEMS))
    d = diagnose(tmp_path / "sens.duckdb", "s")
    by = {s.model: s for s in d.sensitivity}
    q, o = by["qwen2.5-math-7b"], by["olmo2-7b"]
    assert q.hit_rate == pytest.approx(0.125) and q.gamma == 0.1
    assert q.random.mean == pytest.approx(13.0) and q.random.n == 2
    assert q.ground_truth.mean == pytest.approx(30.0)
    assert q.flagged and not o.flagged and o.random.mean == pytest.approx(0.5)
    assert any(w.startswith("qwen2.5-math-7b: the random reward gains +13.0") for w in d.warnings)
    assert not any("single model family" in w for w in d.warnings)


@pytest.mark.parametrize("with_math500", [False, True])
def test_compression_and_capability_follow_the_formula(tmp_path, with_math500):
    # aime24, 4 problems x 8 samples. before: correct counts 0, 1, 4, 8; after: 0, 6, 8, 8. With a math500
    # evaluation too (1 sample: no pass@k), gains are on math500 and compression still on aime24.
    before, after = [0, 1, 4, 8], [0, 6, 8, 8]
    with StoreBuilder(tmp_path / "c.duckdb", sweep="c") as b:
        b.baseline("qwen2.5-math-7b", "aime24", [[i < c for i in range(8)] for c in before])
        if with_math500:
            b.baseline("qwen2.5-math-7b", "math500", outcomes(0.5, 10))
        cid = b.cell("qwen2.5-math-7b", "ground_truth")
        b.evaluation(cid, 50, "aime24", [[i < c for i in range(8)] for c in after])
        if with_math500:
            b.evaluation(cid, 50, "math500", outcomes(0.9, 10))
    d = diagnose(tmp_path / "c.duckdb", "c")
    assert d.benchmark == ("math500" if with_math500 else "aime24")

    def p(counts: list[int], k: int) -> float:
        return 100 * sum(metrics.pass_at_k(8, c, k) for c in counts) / len(counts)

    run = next(c for c in d.compression if c.scope == "run")
    model = next(c for c in d.compression if c.scope == "model")
    assert run.k == 8 and run.benchmark == "aime24"
    assert run.p1_before == pytest.approx(p(before, 1)) and run.pk_after == pytest.approx(p(after, 8))
    want = (p(after, 1) - p(before, 1)) / (p(before, 8) - p(before, 1))
    assert run.compression == pytest.approx(want)
    assert run.capability == pytest.approx(p(after, 8) - p(before, 8))  # 0: no new problem solved
    assert want > 0.7 and run.reading == "mostly search compression"
    assert model.compression == pytest.approx(want) and model.runs == 1
    d4 = diagnose(tmp_path / "c.duckdb", "c", k=4)
    run4 = next(c for c in d4.compression if c.scope == "run")
    assert run4.k == 4 and run4.pk_before == pytest.approx(p(before, 4))
    with pytest.raises(ConfigError, match="--k"):
        diagnose(tmp_path / "c.duckdb", "c", k=1)


def test_compression_needs_several_samples_and_health_is_gathered(tmp_path):
    with StoreBuilder(tmp_path / "h.duckdb", sweep="h") as b:
        b.baseline("tiny", "math500", outcomes(0.2, 10))
        cid = b.cell("tiny", "random", health=[{"flag": "entropy_collapse", "step": 7, "detail": "x"}])
        b.evaluation(cid, 10, "math500", outcomes(0.3, 10))
        cid = b.cell("tiny", "ground_truth")
        b.evaluation(cid, 10, "math500", outcomes(0.4, 10))
    d = diagnose(tmp_path / "h.duckdb", "h")
    assert d.compression == []
    assert any("needs pass@k" in n for n in d.notes)
    assert [(h.reward, [f["flag"] for f in h.flags]) for h in d.health] == [("random", ["entropy_collapse"])]
    md = dg.render(d, "markdown")
    assert "entropy_collapse @step 7" in md and "single model family" in md
    data = json.loads(dg.render(d, "json"))
    assert data["health"][0]["flags"][0]["flag"] == "entropy_collapse"
    assert data["sensitivity"][0]["random"]["mean"] == pytest.approx(10.0)


def test_family_names_are_the_stored_lineage(tmp_path):
    """Ingest stores each model's lineage (store.lineage); diagnose reads that column and derives none."""
    assert store.lineage("qwen2.5-math-7b") == store.lineage("qwen2.5-math-1.5b") == "qwen2.5-math"
    assert store.lineage("qwen2.5-7b") == "qwen2.5"
    assert store.lineage("llama3.1-8b-instruct") == store.lineage("llama3.2-3b-instruct") == "llama3"
    assert store.lineage("olmo2-7b-sft") == "olmo2"
    assert store.lineage("tiny") == "tiny"
    assert store.lineage("foo-7b-sft") == "foo"  # not registered: the name without size and variant
    with StoreBuilder(tmp_path / "f.duckdb", sweep="clip") as b:
        build_2x2(tmp_path, BIAS, builder=b)
        build_2x2(tmp_path, BIAS, model="qwen2.5-math-1.5b", builder=b)
    d = diagnose(tmp_path / "f.duckdb")
    assert [(f.lineage, f.models) for f in d.families] == [
        ("qwen2.5-math", ["qwen2.5-math-1.5b", "qwen2.5-math-7b"])
    ]
    assert any("single model family" in w and "qwen2.5-math-1.5b" in w for w in d.warnings)
    with store.connect(tmp_path / "f.duckdb") as con:
        con.execute("UPDATE cells SET lineage = 'elsewhere' WHERE model = 'qwen2.5-math-1.5b'")
    d = diagnose(tmp_path / "f.duckdb")
    assert [f.lineage for f in d.families] == ["elsewhere", "qwen2.5-math"]
    assert not any("single model family" in w for w in d.warnings)


def test_unknown_sweep_lists_the_stored_ones(tmp_path):
    build_2x2(tmp_path / "u.duckdb", BIAS)
    with pytest.raises(ConfigError, match="SWEEP.*valid: clip"):
        diagnose(tmp_path / "u.duckdb", "clip_2x2")


@pytest.mark.parametrize(
    "name, model, preset, seeds",
    [("clip_2x2", "qwen2.5-math-7b", "paper", 4), ("clip_2x2_tiny", "tiny", "smoke", 3)],
)
def test_clip_2x2_sweeps_expand_to_the_four_conditions(name, model, preset, seeds):
    cells = grid.expand(spec.load_sweep(ROOT / "sweeps" / f"{name}.yaml"))
    assert len(cells) == 4 * seeds
    conds = {(c.config.clip, c.config.reward) for c in cells}
    assert conds == {
        ("standard", "random"),
        ("clip_higher", "random"),
        ("standard", "ground_truth"),
        ("clip_higher", "ground_truth"),
    }
    assert {c.config.model for c in cells} == {model} and {c.config.preset for c in cells} == {preset}
    assert {c.config.clip_params.eps_high for c in cells if c.config.clip == "clip_higher"} == {0.28}
    # clipping only acts with several updates per rollout
    t = cells[0].config.train
    assert t.prompts_per_step * t.samples_per_prompt > t.mini_batch or t.epochs_per_rollout > 1


def test_cli_diagnose_on_the_smoke_store(smoke_results):
    res = str(smoke_results)
    out = run_cli(
        "diagnose", str(ROOT / "sweeps" / "smoke.yaml"), "--results", res, "--format", "markdown"
    ).stdout
    assert "diagnosis of sweep smoke: 4 runs" in out
    assert "single model family" in out and "training-health flags" in out
    data = json.loads(run_cli("diagnose", "smoke", "--results", res, "--format", "json").stdout)
    assert data["runs"] == 4 and data["sensitivity"][0]["model"] == "tiny"
    assert data["sensitivity"][0]["clip"] == "standard"
    missing = run_cli("diagnose", str(ROOT / "sweeps" / "clip_2x2_tiny.yaml"), "--results", res, check=False)
    assert missing.returncode == 2 and "unknown 'clip_2x2_tiny'" in missing.stderr


def test_a_random_reward_gain_is_called_only_when_its_paired_interval_excludes_zero(tmp_path):
    """Two families with random-reward gains above the sensitivity threshold: one of +10 points on 10
    problems (one problem flipped: the paired interval over problems reaches 0), one of +20 on 200
    problems (its interval excludes 0). Only the second is called sensitive; the first says why not."""
    from spurisweep.analysis import diagnostics as dg

    with StoreBuilder(tmp_path / "s.duckdb") as b:
        for model, problems, acc in (("few", 10, 0.6), ("many", 200, 0.7)):
            b.baseline(model, "math500", outcomes(0.5, problems))
            cid = b.cell(model, "random", reward_name="random")
            b.evaluation(cid, 2, "math500", outcomes(acc, problems))
    with store.connect(tmp_path / "s.duckdb") as con:
        d = dg.diagnose(con, "t")
    by_model = {s.model: s for s in d.sensitivity}
    few, many = by_model["few"], by_model["many"]
    assert few.random.mean == pytest.approx(10.0) and not few.flagged
    assert "does not exclude 0" in few.note and not few.paired.delta.distinguishable
    assert many.flagged and many.paired.delta.low > 0 and many.paired.delta.n_problems == 200
    text = dg.render(d, "markdown")
    assert "paired bootstrap" in text and "≈+10.0" in text


# ---------------------------------------------------------------------------------------------- stored columns
def test_gamma_is_the_stored_reward_parameter_not_the_label(tmp_path):
    """The random reward's gamma comes from cells.reward_params (the resolved parameters); a label that
    says otherwise is only a label, and a cell stored without the parameter has the registry's default."""
    from spurisweep.rewards import REGISTRY

    with StoreBuilder(tmp_path / "g.duckdb") as b:
        b.baseline("m", "math500", outcomes(0.5, PROBLEMS))
        cid = b.cell(
            "m", "random(gamma=0.9)", reward_name="random", settings={"reward_params.random.gamma": 0.2}
        )
        b.evaluation(cid, 10, "math500", outcomes(0.6, PROBLEMS))
        b.baseline("n", "math500", outcomes(0.5, PROBLEMS))
        cid = b.cell("n", "random(gamma=0.9)", reward_name="random")
        b.con.execute("UPDATE cells SET reward_params = '{}' WHERE cell_id = ?", [cid])
        b.evaluation(cid, 10, "math500", outcomes(0.6, PROBLEMS))
    by_model = {s.model: s for s in diagnose(tmp_path / "g.duckdb", "t").sensitivity}
    assert by_model["m"].gamma == 0.2
    assert by_model["n"].gamma == REGISTRY["random"].params["gamma"]


def test_an_algorithm_axis_is_not_pooled(tmp_path):
    """The same model trained with two algorithms (the stored config's train.algorithm; a cell without it is
    grpo): the 2x2 and the sensitivity give one result per algorithm, each from its own runs."""
    explore = {
        ("standard", "random"): [1, 2, 3],
        ("clip_higher", "random"): [2, 1, 3],
        ("standard", "ground_truth"): [20, 21, 22],
        ("clip_higher", "ground_truth"): [28, 29, 30],
    }
    with StoreBuilder(tmp_path / "a.duckdb", sweep="clip") as b:
        build_2x2(tmp_path, BIAS, builder=b)  # no train.algorithm stored: grpo
        build_2x2(tmp_path, explore, builder=b, algorithm="rloo")
    d = diagnose(tmp_path / "a.duckdb")
    by_alg = {x.algorithm: x for x in d.clip2x2}
    assert set(by_alg) == {"grpo", "rloo"}
    assert by_alg["grpo"].reading == "clipping bias" and by_alg["rloo"].reading == "rare exploration"
    assert by_alg["rloo"].cells["standard|random"].mean == pytest.approx(2.0)
    sens = {s.algorithm: s for s in d.sensitivity}
    assert sens["grpo"].random.mean == pytest.approx(22.0) and sens["rloo"].random.mean == pytest.approx(2.0)
    assert sens["grpo"].flagged and not sens["rloo"].flagged
    md = dg.render(d, "markdown")
    assert "### clip 2x2 on qwen2.5-math-7b (rloo) (math500 gain" in md
    assert "| model | algorithm | clip |" in md
    assert any(w.startswith("qwen2.5-math-7b: the random reward gains +22.0") for w in d.warnings)


# ---------------------------------------------------------------------------------------------- registries
class RunCount(dg.Analysis):
    """A made-up analysis: the number of runs per reward."""

    name = "run_count"

    def compute(self, ctx):
        counts = {}
        for r in ctx.runs:
            counts[r.reward_name] = counts.get(r.reward_name, 0) + 1
        return dg.Rows([{"reward": k, "runs": v} for k, v in sorted(counts.items())], notes=["counted runs"])

    def tables(self, result, d):
        from spurisweep.analysis import render

        return [
            render.Table(
                ["reward", "runs"], [[x["reward"], str(x["runs"])] for x in result], "runs per reward"
            )
        ]

    def warnings(self, result, d):
        return [f"{sum(x['runs'] for x in result)} runs counted"]


def test_an_analysis_added_to_the_registry_is_in_the_output(tmp_path, monkeypatch):
    monkeypatch.setattr(dg, "ANALYSES", [*dg.ANALYSES, RunCount()])
    d = diagnose(build_2x2(tmp_path / "r.duckdb", BIAS))
    assert d.run_count == [{"reward": "ground_truth", "runs": 6}, {"reward": "random", "runs": 6}]
    md = dg.render(d, "markdown")
    assert "### runs per reward" in md and "| random | 6 |" in md
    assert "_counted runs_" in md and "> **warning:** 12 runs counted" in md
    assert md.index("### clip 2x2") < md.index("### runs per reward")  # registry order
    assert json.loads(dg.render(d, "json"))["run_count"][1] == {"reward": "random", "runs": 6}


def test_a_reward_registered_spurious_is_diagnosed_as_one(tmp_path, monkeypatch):
    """A new reward registered with spurious=True gets a sensitivity row (and is flagged for a large gain)
    with no other list edited; registered without the flag, it gets none."""
    from spurisweep import rewards

    with StoreBuilder(tmp_path / "l.duckdb") as b:
        b.baseline("many", "math500", outcomes(0.5, 200))
        for seed in range(2):
            cid = b.cell("many", "ground_truth", seed=seed)
            b.evaluation(cid, 2, "math500", outcomes(0.8, 200))
            cid = b.cell("many", "lucky", seed=seed)
            b.evaluation(cid, 2, "math500", outcomes(0.7, 200))

    def lucky(params, ctx):
        return lambda completions, **kw: [1.0] * len(completions)

    for spurious in (True, False):
        monkeypatch.setitem(rewards.REGISTRY, "lucky", rewards.RewardDef("lucky", lucky, spurious=spurious))
        d = diagnose(tmp_path / "l.duckdb", "t")
        if not spurious:
            assert d.sensitivity == [] and any("needs a `random` reward run" in n for n in d.notes)
            continue
        (s,) = d.sensitivity
        assert (s.reward, s.gamma) == ("lucky", None)
        assert s.random.mean == pytest.approx(20.0) and s.ground_truth.mean == pytest.approx(30.0)
        assert s.flagged and s.paired.delta.low > 0
        assert any(w.startswith("many: the lucky reward gains +20.0") for w in d.warnings)
        md = dg.render(d, "markdown")
        assert (
            "| model | reward | clip |" in md
            and "spurious gain" in md
            and "| many | lucky | standard |" in md
        )


@pytest.mark.parametrize(
    "name, spurious",
    [
        ("random", True),
        ("ground_truth", False),
        ("format_AND_inverse_python", True),  # every part carries no information about correctness
        ("format_AND_ground_truth", False),  # one informative part makes the whole informative
        ("inverse_ground_truth", False),
        ("no_such_reward", False),  # unknown to the registry: not called spurious
    ],
)
def test_a_composition_is_spurious_when_every_part_is(name, spurious):
    assert dg.is_spurious(name) is spurious


# ---------------------------------------------------------------------------------------------- test-set training
def test_runs_trained_on_the_diagnosed_benchmark_are_named_and_kept_out(tmp_path, monkeypatch):
    """A TTRL-style run trains on math500's own prompts (data.train: benchmark:math500): diagnose warns that
    its math500 gain is test-set fitting and keeps it out of the other analyses (here: a +40 online-majority
    gain that would otherwise sit in the runs); a run trained on another benchmark's prompts stays in."""
    with StoreBuilder(tmp_path / "a.duckdb", sweep="clip") as b:
        build_2x2(tmp_path, BIAS, builder=b)
        own = {"data.train": "benchmark:math500", "data.test_set_training": True}
        cid = b.cell("qwen2.5-math-7b", "online_majority", seed=0, sweep="clip", settings=own)
        b.evaluation(cid, 100, "math500", outcomes(0.9, PROBLEMS))
        other = {"data.train": "benchmark:aime24", "data.test_set_training": True}
        kept = b.cell("qwen2.5-math-7b", "online_majority", seed=1, sweep="clip", settings=other)
        b.evaluation(kept, 100, "math500", outcomes(0.6, PROBLEMS))
    monkeypatch.setattr(dg, "ANALYSES", [*dg.ANALYSES, RunCount()])  # what every analysis is given
    d = diagnose(tmp_path / "a.duckdb")
    assert d.run_count == [
        {"reward": "ground_truth", "runs": 6},
        {"reward": "online_majority", "runs": 1},  # the aime24-trained run only
        {"reward": "random", "runs": 6},
    ]
    rows = d.results["test_set_training"]
    assert {(r.cell_id, r.trained_on, r.held_out) for r in rows} == {
        (cid, "math500", True),
        (kept, "aime24", False),
    }
    warned = [w for w in d.warnings if w.startswith("test-set training")]
    assert len(warned) == 2 and "left out of every analysis below" in next(
        w for w in warned if "math500's" in w
    )
    assert d.runs == 14  # the header counts every run
    md = dg.render(d, "markdown")
    assert "test-set training: 1 run(s) trained on math500's own prompts (online_majority)" in md
