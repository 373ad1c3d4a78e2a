"""The toy laboratory: the task generator (graded by the project's real grader), the corpus mixture and
its error rates, the held-out splits, a deterministic micro build of a toy family loaded through the same
from_pretrained path as any family, the `toy build` command, and the toy sweeps' expansion.

Nothing is mocked: the micro build is the real pretraining and measurement code at a reduced size (a
1-layer, 32-wide model for a few dozen steps), so it takes seconds."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from spurisweep.data import sets as data
from spurisweep.data import toy as task
from spurisweep.grading import grade_batch
from spurisweep.models import families
from spurisweep.models import toy as build
from spurisweep.plan import grid, spec

ROOT = Path(__file__).resolve().parents[2]
MICRO_KW = dict(
    hidden=32,
    layers=1,
    heads=2,
    vocab_size=400,
    steps=12,
    batch=8,
    warmup=4,
    measure_problems=6,
    measure_samples=2,
    threads=1,
)
MICRO = build.ToyConfig(**MICRO_KW)


# ---------------------------------------------------------------------------------------------- task
def test_both_styles_are_graded_right_by_the_grader_and_only_code_says_python():
    probs = task.test_problems()[:40]
    clean = task.StyleSpec()
    rng = random.Random(0)
    sols = [task.solve(p, style, clean, rng) for p in probs for style in task.STYLES]
    verdicts = grade_batch([(s.completion, str(s.problem.answer)) for s in sols], workers=0)
    assert all(s.correct for s in sols)
    assert all(v.correct for v in verdicts), [
        s.completion for s, v in zip(sols, verdicts, strict=True) if not v.correct
    ]
    for s, v in zip(sols, verdicts, strict=True):
        assert v.extracted == str(s.problem.answer)
        assert v.has_python == (s.style == task.CODE)
        assert v.has_code_block == (s.style == task.CODE)
        assert "python" not in s.prompt.lower()


def test_answers_are_the_arithmetic_of_the_problem_text():
    for p in task.test_problems()[:50]:
        value = p.start
        words = p.text.split(". ")
        assert words[0] == f"{p.name} has {p.start} {p.item}"
        for s in p.steps:
            value = value + s.n if s.op == "+" else value - s.n
            assert value >= 0
        assert p.answer == value and 2 <= len(p.steps) <= 3


def test_errors_are_wrong_answers_that_the_grader_rejects():
    p = next(q for q in task.test_problems() if len(q.steps) == 3)
    rng = random.Random(1)
    skipped = task.solve(p, task.PROSE, task.StyleSpec(skip_last=1.0), rng)
    slipped = task.solve(p, task.CODE, task.StyleSpec(slip=1.0), rng)
    assert not skipped.correct and skipped.boxed == p.values[2]
    assert not slipped.correct
    verdicts = grade_batch(
        [(skipped.completion, str(p.answer)), (slipped.completion, str(p.answer))], workers=0
    )
    assert [v.correct for v in verdicts] == [False, False]


def test_corpus_mixture_and_error_rates_match_the_spec():
    cs = task.CorpusSpec()
    rows = task.corpus(cs, 6000, seed=3)
    code = [r for r in rows if r.style == task.CODE]
    prose = [r for r in rows if r.style == task.PROSE]
    assert len(code) / len(rows) == pytest.approx(cs.code_share, abs=0.02)
    t = cs.three_step

    def expected(st: task.StyleSpec) -> float:  # ignoring slips that cancel out (rare)
        ok = 1 - st.slip
        return (1 - t) * ok**2 + t * (1 - st.skip_last) * ok**3

    code_acc = sum(r.correct for r in code) / len(code)
    prose_acc = sum(r.correct for r in prose) / len(prose)
    assert code_acc == pytest.approx(expected(cs.code), abs=0.03)
    assert prose_acc == pytest.approx(expected(cs.prose), abs=0.03)
    assert code_acc - prose_acc > 0.3  # the paper's gap: code right more often than prose
    assert all(r.correct == (r.boxed == r.problem.answer) for r in rows)
    assert all(("python" in r.completion.lower()) == (r.style == task.CODE) for r in rows)
    prose_only = task.corpus(dataclasses.replace(cs, code_share=0.0), 500, seed=3)
    assert {r.style for r in prose_only} == {task.PROSE}


def test_splits_are_deterministic_disjoint_and_held_out_of_pretraining():
    test, train = task.test_problems(), task.train_problems()
    assert len(test) == task.TEST_SIZE and len(train) == task.TRAIN_SIZE
    assert task.test_problems() == test  # deterministic
    assert not {p.key for p in test} & {p.key for p in train}
    held = {p.key for p in task.held_out()}
    rows = task.corpus(task.CorpusSpec(), 3000, seed=5, exclude=task.held_out())
    assert not {r.problem.key for r in rows} & held
    assert [r.completion for r in rows[:50]] == [
        r.completion for r in task.corpus(task.CorpusSpec(), 50, seed=5, exclude=task.held_out())
    ]


def test_builtin_data_sets_and_the_toy_benchmark():
    train = data.load_problems("builtin:toy")
    test = data.load_benchmark("toy")
    assert len(train) == 512 and len(test) == 200
    assert len({p.id for p in train + test}) == 712
    assert test[0].problem == task.test_problems()[0].text and test[0].answer == str(
        task.test_problems()[0].answer
    )
    proto = data.get_benchmark("toy").protocol
    assert proto.temperature == 1.0 and proto.samples >= 2 and proto.max_new_tokens >= 60


# ---------------------------------------------------------------------------------------------- families
def test_toy_families_are_registered_with_their_prompt_and_the_registry_stays_light():
    for name in ("toy-coder", "toy-prose"):
        fam = families.get(name)
        assert fam.prompt == "qa" and fam.builder is not None
        assert families.PROMPTS["qa"] == task.PROMPT
    code = "import sys, spurisweep.models.families as f; f.get('toy-coder'); print(any(m.startswith('torch') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"
    assert build.FAMILY_CONFIGS["toy-coder"].code_share == pytest.approx(0.65)
    assert build.FAMILY_CONFIGS["toy-prose"].code_share == 0.0


@pytest.fixture(scope="module")
def micro_builds(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    a, b = root / "a", root / "b"
    return (a, build.build(a, MICRO)), (b, build.build(b, MICRO))


def test_micro_build_is_deterministic_and_loads_like_any_family(micro_builds):
    from safetensors.torch import load_file

    (a, stats_a), (b, stats_b) = micro_builds
    wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)
    assert stats_a["loss"] == stats_b["loss"] and stats_a["loss"][-1] < stats_a["loss"][0]
    assert stats_a["prior"] == stats_b["prior"]
    model, tok = families.load_model_and_tokenizer(str(a))
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    ex = task.corpus(task.CorpusSpec(), 1, seed=0)[0]
    ids = tok(ex.prompt + ex.completion, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == ex.prompt + ex.completion  # byte-level BPE round-trips the task's text
    assert build.read_stats(a)["config"]["steps"] == MICRO.steps


def test_micro_build_measures_the_prior_per_style(micro_builds):
    (_, stats), _ = micro_builds
    prior = stats["prior"]
    assert prior["problems"] == MICRO.measure_problems
    for mode, n in (("sampled", MICRO.measure_samples), ("greedy", 1)):
        p = prior[mode]
        assert p["samples"] == n
        assert 0.0 <= p["accuracy"] <= 1.0 and 0.0 <= p["code_frequency"] <= 1.0
        assert set(p) >= {"acc_with_code", "acc_without_code", "truncated"}


def test_toy_build_command_builds_into_the_cache_and_shows_the_prior(tmp_path, monkeypatch):
    """`spurisweep toy build` in a subprocess, with the family's recipe shrunk to the micro size through
    a sitecustomize shim (the real command, the real families cache, a few seconds of pretraining)."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import dataclasses\nfrom spurisweep.models import toy as build\n"
        "build.FAMILY_CONFIGS['toy-prose'] = dataclasses.replace(build.FAMILY_CONFIGS['toy-prose'], "
        f"**{MICRO_KW!r})\n"
    )
    env = {
        **os.environ,
        "SPURISWEEP_CACHE": str(tmp_path / "cache"),
        "COLUMNS": "200",
        "PYTHONPATH": os.pathsep.join([str(shim), str(ROOT)]),
    }
    run = [sys.executable, "-m", "spurisweep.cli", "toy", "build", "--family", "toy-prose"]
    proc = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    folder = tmp_path / "cache" / "models" / "toy-prose-v1"
    assert (folder / "config.json").exists() and (folder / build.STATS_FILE).exists()
    assert build.read_stats(folder)["config"]["steps"] == MICRO.steps  # the shim took: a micro build
    assert "toy-prose" in proc.stdout and "sampled" in proc.stdout and "greedy" in proc.stdout
    stamp = (folder / "config.json").stat().st_mtime_ns
    again = subprocess.run(run, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert again.returncode == 0 and (folder / "config.json").stat().st_mtime_ns == stamp  # cached
    forced = subprocess.run([*run, "--force"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert forced.returncode == 0 and (folder / "config.json").stat().st_mtime_ns != stamp  # built again
    bad = subprocess.run([*run[:-1], "nope"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert bad.returncode == 2 and "nope" in bad.stderr


# ---------------------------------------------------------------------------------------------- shipped
def test_toy_demo_is_toy_prose_shipped_pinned_and_installed_through_the_cache(tmp_path, monkeypatch):
    """toy-demo's package data is toy-prose's recipe (on one thread), pretrained: ensure_built copies it into
    the cache, checks the pinned sha256, and it loads like any family with a prior the demo can improve on."""
    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path))
    fam = families.get("toy-demo")
    assert fam.prompt == "qa" and fam.lineage == "toy-prose" and len(fam.sha256) == 64
    folder = families.ensure_built(fam)
    assert folder.parent == tmp_path / "models"
    assert families.file_sha256(folder / families.WEIGHTS_FILE) == fam.sha256
    stats = build.read_stats(folder)
    recipe = build.SHIPPED["toy-demo"]
    assert stats["config"] == dataclasses.asdict(recipe)
    assert (
        dataclasses.replace(recipe, threads=2) == build.FAMILY_CONFIGS["toy-prose"]
    )  # toy-prose, one thread
    assert 0.15 <= stats["prior"]["sampled"]["accuracy"] <= 0.5  # room to gain, and something to build on
    model, tok = families.load_model_and_tokenizer(str(folder), device="cpu")
    assert model.config.hidden_size == build.ToyConfig().hidden and tok.eos_token == "</s>"
    assert families.context_length("toy-demo") == build.MAX_POSITIONS


def test_a_pinned_family_refuses_weights_that_differ_from_its_pin(tmp_path, monkeypatch):
    """A wrong pin fails the build before anything reaches the cache; a cached copy damaged later is named
    with the fix (delete it) instead of being loaded."""
    from spurisweep.errors import DataError

    monkeypatch.setenv("SPURISWEEP_CACHE", str(tmp_path))
    wrong = dataclasses.replace(families.get("toy-demo"), name="toy-demo-wrong-pin", sha256="0" * 64)
    with pytest.raises(DataError, match="shipped weights are damaged"):
        families.ensure_built(wrong)
    assert not (tmp_path / "models" / "toy-demo-wrong-pin-v1").exists()
    folder = families.ensure_built(families.get("toy-demo"))
    with open(folder / families.WEIGHTS_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(DataError, match=f"delete {folder}"):
        families.ensure_built(families.get("toy-demo"))


def test_ship_pretrains_by_the_recipe_and_returns_the_sha256_to_pin(tmp_path, monkeypatch, micro_builds):
    """`toy ship` at the micro size: the recipe it names is what it builds (the same weights as a plain build
    of that recipe, so the pin is reproducible), and an unknown family is one ConfigError."""
    from spurisweep.errors import ConfigError

    (a, _), _ = micro_builds
    monkeypatch.setitem(build.SHIPPED, "toy-demo", MICRO)
    folder, digest, stats = build.ship("toy-demo", tmp_path / "shipped")
    assert folder == tmp_path / "shipped" and (folder / "config.json").is_file()
    assert digest == families.file_sha256(folder / families.WEIGHTS_FILE)
    assert digest == families.file_sha256(a / families.WEIGHTS_FILE)
    assert stats["config"]["steps"] == MICRO.steps
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no build folder left behind
    with pytest.raises(ConfigError):
        build.ship("toy-coder", tmp_path / "other")


# ---------------------------------------------------------------------------------------------- sweeps
def _cells(name: str):
    return grid.expand(spec.load_sweep(ROOT / "sweeps" / name))


def test_toy_table_expands_to_the_full_design():
    cells = _cells("toy_table.yaml")
    assert len(cells) == 2 * 5 * 2 * 5
    axes = {k: {c.axes[k] for c in cells} for k in ("model", "reward", "clip", "seed")}
    assert axes == {
        "model": {"toy-coder", "toy-prose"},
        "reward": {"ground_truth", "random", "format", "incorrect_label", "majority_vote"},
        "clip": {"standard", "no_clip"},
        "seed": {0, 1, 2, 3, 4},
    }
    for c in cells:
        cfg = c.config
        assert cfg.prompt == "qa" and cfg.eval.benchmarks == ["toy"] and cfg.eval.limit == 200
        assert cfg.data.train == "builtin:toy" and cfg.data.label_prompt == "qa"
        rollout = cfg.train.prompts_per_step * cfg.train.samples_per_prompt
        assert rollout // cfg.train.mini_batch > 1  # several updates per rollout, so the clip can act


def test_toy_2x2_expands_and_shares_its_standard_cells_with_the_table():
    cells = _cells("toy_2x2.yaml")
    assert len(cells) == 2 * 2 * 2 * 5
    assert {c.axes["clip"] for c in cells} == {"standard", "clip_higher"}
    assert {c.axes["reward"] for c in cells} == {"random", "ground_truth"}
    high = next(c for c in cells if c.axes["clip"] == "clip_higher").config.clip_params
    assert (high.eps_low, high.eps_high) == (0.2, 0.28)
    shared = {c.id for c in cells} & {c.id for c in _cells("toy_table.yaml")}
    assert len(shared) == 2 * 2 * 5  # standard x {random, ground_truth} x both families x 5 seeds


def test_demo_sweep_is_one_seed_of_ground_truth_against_random_on_the_shipped_family():
    cells = _cells("demo.yaml")
    assert len(cells) == 2
    assert {c.axes["reward"] for c in cells} == {"ground_truth", "random"}
    for c in cells:
        cfg = c.config
        assert cfg.model == "toy-demo" and cfg.seed == 0 and cfg.eval.benchmarks == ["toy"]
        assert cfg.data.train == "builtin:toy" and cfg.eval.limit == 200
        assert cfg.train.save_every == cfg.train.steps  # evaluated at the end only (and the shared baseline)
