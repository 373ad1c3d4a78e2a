"""Evaluation: pass@k / avg@n / standard error against hand-computed values, protocol resolution and
overrides, eval ids, the tiny model evaluated on real problems from ../shared/data (complete rows, right
counts, summary recomputable from the rows), no regeneration of a stored evaluation, the `spurisweep eval`
CLI recording into the DuckDB store, and a training cell reusing the CLI's baseline.

Grading is the real math-verify grader in worker processes. vLLM cannot run here (no GPU): its path
through run(job) uses a fake `vllm` module (see test_generate.FakeVLLM)."""

from __future__ import annotations

import json
import math
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spurisweep import artifacts, metrics, store
from spurisweep.cli import app
from spurisweep.data import sets as data
from spurisweep.errors import ConfigError
from spurisweep.evaluation import generate
from spurisweep.evaluation import run as evaluate
from spurisweep.models import families
from spurisweep.plan.spec import EvalSettings, ProtocolOverride
from tests.fakes import FakeVLLM


# ---------------------------------------------------------------------------------------------- metrics
@pytest.mark.parametrize(
    ("n", "c", "k", "want"),
    [
        (8, 0, 1, 0.0),  # c = 0
        (8, 0, 8, 0.0),
        (8, 8, 1, 1.0),  # c = n
        (8, 8, 8, 1.0),
        (8, 1, 8, 1.0),  # k = n: any correct sample counts
        (8, 2, 1, 0.25),  # pass@1 = c/n
        (8, 2, 2, 1 - 15 / 28),  # 1 - C(6,2)/C(8,2)
        (5, 1, 3, 0.6),  # 1 - C(4,3)/C(5,3) = 1 - 4/10
        (8, 3, 4, 1 - 5 / 70),  # 1 - C(5,4)/C(8,4)
        (4, 2, 3, 1.0),  # n - c < k
        (1, 0, 1, 0.0),
        (1, 1, 1, 1.0),
    ],
)
def test_pass_at_k_hand_values(n, c, k, want):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


@pytest.mark.parametrize(("n", "c", "k"), [(8, 9, 1), (8, -1, 1), (8, 2, 0), (8, 2, 9)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        metrics.pass_at_k(n, c, k)


def _row(pid: str, s: int, correct: bool | None, python: bool = False, **kw):
    return {
        "problem_id": pid,
        "sample_idx": s,
        "correct": correct,
        "has_python": python,
        "has_code_block": False,
        "n_tokens": kw.get("n_tokens", 10),
        "truncated": kw.get("truncated", False),
    }


def test_summarize_hand_computed():
    """Problem a: 1 of 4 correct (one ungradable); b: 4 of 4. avg@4 = (0.25 + 1) / 2; its standard error
    over problems = std([0.25, 1]) / sqrt(2) = 0.375."""
    rows = [
        _row("a", 0, True, python=True),
        _row("a", 1, False),
        _row("a", 2, None),
        _row("a", 3, False, True),
    ]
    rows += [_row("b", i, True, python=i < 2, truncated=i == 0, n_tokens=20) for i in range(4)]
    s = metrics.summarize(rows)
    assert (s["problems"], s["samples"]) == (2, 4)
    assert s["avg@4"] == s["avg@n"] == s["pass@1"] == pytest.approx(0.625)
    assert s["stderr"] == pytest.approx(0.375)
    assert s["pass@2"] == pytest.approx((0.5 + 1) / 2)  # a: 1 - C(3,2)/C(4,2) = 1/2
    assert s["pass@3"] == pytest.approx((0.75 + 1) / 2)  # a: 1 - C(3,3)/C(4,3) = 3/4
    assert s["pass@4"] == 1.0 and s["stderr_pass@4"] == 0.0
    assert s["stderr_pass@2"] == pytest.approx(0.25)  # std([0.5, 1]) / sqrt(2)
    assert "pass@5" not in s
    assert s["ungradable"] == pytest.approx(1 / 8) and s["truncated"] == pytest.approx(1 / 8)
    assert s["mean_length"] == pytest.approx(15.0)
    # code reasoning: with python: a0 (T), a3 (F), b0, b1 (T) -> 3/4; without: a1 F, a2 None, b2 T, b3 T -> 2/4
    assert s["code_frequency"] == pytest.approx(0.5)
    assert s["acc_with_code"] == pytest.approx(0.75) and s["acc_without_code"] == pytest.approx(0.5)


def test_summarize_greedy_and_empty():
    s = metrics.summarize([_row("a", 0, True), _row("b", 0, False), _row("c", 0, False)])
    assert s["samples"] == 1 and s["pass@1"] == pytest.approx(1 / 3)
    assert s["stderr"] == pytest.approx(math.sqrt((1 / 3) * (2 / 3) * 3 / 2 / 3))  # sample std / sqrt(3)
    assert metrics.summarize([]) == {"problems": 0, "samples": 0}
    assert metrics.code_reasoning([_row("a", 0, True)])["acc_with_code"] is None  # empty group: None, not 0


# ---------------------------------------------------------------------------------------------- protocols and ids
def test_protocol_defaults_and_overrides():
    p = evaluate.protocol_for(EvalSettings(), "aime24")
    assert (p.samples, p.temperature, p.top_p, p.max_new_tokens, p.limit) == (8, 0.6, 1.0, 3072, None)
    settings = EvalSettings(
        limit=5,
        protocols={
            "aime24": ProtocolOverride(
                samples=16,
                temperature=1.0,
                top_p=0.95,
                max_new_tokens=100,
                prompt="qa",
                path="x.json",
                limit=3,
            )
        },
    )
    p = evaluate.protocol_for(settings, "aime24")
    assert (p.samples, p.temperature, p.top_p, p.max_new_tokens, p.prompt, p.path, p.limit) == (
        16,
        1.0,
        0.95,
        100,
        "qa",
        "x.json",
        3,
    )
    m = evaluate.protocol_for(settings, "math500")  # the override is per benchmark
    assert (m.samples, m.temperature, m.max_new_tokens, m.limit) == (1, 0.0, 3072, 5)
    assert p.sampling(seed=4) == generate.Sampling(16, 1.0, 0.95, 100, 4)
    bad = EvalSettings(protocols={"amc": ProtocolOverride(prompt="chatty")})
    with pytest.raises(
        ConfigError, match=r"eval.protocols.amc.prompt: unknown 'chatty' \(did you mean 'chat'"
    ):
        evaluate.protocol_for(bad, "amc")
    with pytest.raises(ConfigError, match="unknown 'aime2'.*valid: aime24, aime25"):
        evaluate.protocol_for(EvalSettings(), "aime2")


def test_parse_protocol_options():
    ov = evaluate.parse_protocol_options(
        ["max_new_tokens=64", "aime24.samples=4", "aime24.temperature=1"], ["math500", "aime24"]
    )
    assert ov["math500"] == ProtocolOverride(max_new_tokens=64)
    assert ov["aime24"] == ProtocolOverride(max_new_tokens=64, samples=4, temperature=1.0)
    with pytest.raises(ConfigError, match="--protocol: expected BENCH.FIELD=VALUE"):
        evaluate.parse_protocol_options(["samples"], ["math500"])
    with pytest.raises(ConfigError, match="did you mean 'samples'"):
        evaluate.parse_protocol_options(["math500.sample=3"], ["math500"])
    with pytest.raises(ConfigError, match="did you mean 'math500'"):
        evaluate.parse_protocol_options(["math50.samples=3"], ["math500"])
    with pytest.raises(ConfigError, match=r"--protocol math500.samples: .*greater than or equal to 1"):
        evaluate.parse_protocol_options(["math500.samples=0"], ["math500"])


def test_eval_ids():
    p = evaluate.protocol_for(EvalSettings(limit=2), "math500")
    base = evaluate.baseline_eval_id("tiny", None, "chat", p)
    assert base.startswith("base-") and base == evaluate.baseline_eval_id("tiny", None, "chat", p)
    others = {
        evaluate.baseline_eval_id("tiny", "/w", "chat", p),
        evaluate.baseline_eval_id("tiny", None, "qa", p),
        evaluate.baseline_eval_id("qwen2.5-math-7b", None, "chat", p),
        evaluate.baseline_eval_id(
            "tiny", None, "chat", evaluate.protocol_for(EvalSettings(limit=3), "math500")
        ),
    }
    assert base not in others and len(others) == 4
    # the template actually used decides, whichever way it was set
    qa = evaluate.protocol_for(
        EvalSettings(limit=2, protocols={"math500": ProtocolOverride(prompt="qa")}), "math500"
    )
    assert evaluate.baseline_eval_id("tiny", None, "chat", qa) == evaluate.baseline_eval_id(
        "tiny", None, "qa", p
    )
    ck = evaluate.checkpoint_eval_id("abc123", 50, "chat", p)
    assert ck.startswith("abc123-s50-") and ck != evaluate.checkpoint_eval_id("abc123", 100, "chat", p)
    assert evaluate.external_eval_id("org/model", "tiny", "chat", p).startswith("ext-")


# ---------------------------------------------------------------------------------------------- running on the tiny model
@pytest.fixture(scope="module")
def tiny():
    return families.load_model_and_tokenizer(families.model_source("tiny"), device="cpu")


def _run(
    tiny,
    folder: Path,
    bench: str,
    settings: EvalSettings,
    *,
    seed: int = 0,
    batch_size: int | None = None,
    backend: str = "transformers",
):
    model, tok = tiny
    proto = evaluate.protocol_for(settings, bench)
    eid = evaluate.baseline_eval_id("tiny", None, "chat", proto)
    weights = evaluate.Weights(
        families.model_source("tiny"),
        backend,
        model=model if backend == "transformers" else None,
        tokenizer=tok,
        batch_size=batch_size,
    )
    meta = evaluate.run(
        evaluate.EvalJob(eid, folder, proto, "chat", seed, weights, {"model": "tiny", "is_baseline": True})
    )
    return proto, eid, meta


def test_tiny_model_eval_writes_complete_rows(tiny, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    settings = EvalSettings(
        protocols={
            "math500": ProtocolOverride(max_new_tokens=10, limit=3),
            "amc": ProtocolOverride(max_new_tokens=8, limit=2, samples=3),
        }
    )
    _, tok = tiny
    for bench, problems, samples in (("math500", 3, 1), ("amc", 2, 3)):
        proto, eid, meta = _run(tiny, tmp_path, bench, settings, seed=5, batch_size=2)
        rows = artifacts.read_jsonl(tmp_path / f"{eid}.jsonl")
        assert len(rows) == problems * samples
        assert all(set(r) == set(evaluate.ROW_FIELDS) for r in rows)
        assert sorted((r["problem_id"], r["sample_idx"]) for r in rows) == sorted(
            (p.id, s) for p in data.load_benchmark(bench, limit=problems) for s in range(samples)
        )
        raw = {str(r["id"]): r for r in json.loads((shared_data / f"{bench}.json").read_text())}
        for r in rows:
            assert r["eval_id"] == eid and r["answer"] == raw[r["problem_id"]]["answer"]
            assert r["prompt"] == families.render_prompt(tok, "chat", raw[r["problem_id"]]["prompt"])
            assert isinstance(r["response"], str) and 1 <= r["n_tokens"] <= proto.max_new_tokens
            assert r["truncated"] == (r["n_tokens"] == proto.max_new_tokens)  # no EOS from this model
            assert r["correct"] in (True, False, None) and isinstance(r["reason"], (str, type(None)))
            assert isinstance(r["has_python"], bool) and isinstance(r["has_code_block"], bool)
            assert r["has_python"] == ("python" in r["response"].lower())
        assert meta["summary"] == metrics.summarize(rows)
        assert (meta["summary"]["problems"], meta["summary"]["samples"]) == (problems, samples)
        assert meta["n_samples"] == len(rows) and meta["generated_tokens"] == sum(r["n_tokens"] for r in rows)
        assert (meta["benchmark"], meta["seed"], meta["backend"], meta["prompt"]) == (
            bench,
            5,
            "transformers",
            "chat",
        )
        assert meta["protocol"]["samples"] == samples and meta["data_source"] == str(
            shared_data / f"{bench}.json"
        )
        assert meta == artifacts.read_json(tmp_path / f"{eid}.json")


def test_grading_follows_each_row(tiny, shared_data, tmp_path, monkeypatch):
    """Batches are graded in the background while the next one generates: every verdict must land on its
    own row (checked against grading the stored responses again, in one call)."""
    from spurisweep.grading import grade_batch

    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    settings = EvalSettings(
        protocols={"aime25": ProtocolOverride(max_new_tokens=12, limit=4, samples=2, temperature=1.5)}
    )
    _, eid, _ = _run(tiny, tmp_path, "aime25", settings, batch_size=2)
    rows = artifacts.read_jsonl(tmp_path / f"{eid}.jsonl")
    again = grade_batch([(r["response"], r["answer"]) for r in rows])
    assert [(r["correct"], r["extracted"], r["reason"]) for r in rows] == [
        (v.correct, v.extracted, v.reason) for v in again
    ]
    assert len({r["extracted"] for r in rows}) > 1  # a varied set, so a shuffle would show


def test_overlapped_grader_keeps_order_and_grades_correct_answers():
    """Both graders' verdicts for every sample, in submission order."""
    g = evaluate.OverlappedGrader()
    g.submit([("p", 0), ("p", 1)], [("so \\boxed{142}", "142.0"), ("the answer is 7", "8")])
    g.submit([("q", 0)], [("```python\nprint(70)\n```\n\\boxed{70}", "070")])
    both, busy = g.finish()
    verdicts = {k: v.math_verify for k, v in both.items()}
    assert verdicts[("p", 0)].correct is True and verdicts[("p", 1)].correct is False
    assert (
        verdicts[("q", 0)].correct is True
        and verdicts[("q", 0)].has_python
        and verdicts[("q", 0)].has_code_block
    )
    assert both[("p", 1)].paper.correct is False and both[("p", 0)].paper.extracted == "142"
    assert busy > 0


def test_rerun_does_not_generate_again(tiny, shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    settings = EvalSettings(limit=2, protocols={"math500": ProtocolOverride(max_new_tokens=6)})
    _, eid, meta = _run(tiny, tmp_path, "math500", settings)
    files = artifacts.eval_files(tmp_path, eid)
    mtimes = [f.stat().st_mtime_ns for f in files]

    def must_not_run(*a, **kw):
        raise AssertionError("generation ran again for a stored evaluation")

    monkeypatch.setattr(evaluate, "generate_transformers", must_not_run)
    monkeypatch.setattr(evaluate, "generate_vllm", must_not_run)
    _, eid2, meta2 = _run(tiny, tmp_path, "math500", settings, seed=99)
    assert eid2 == eid and meta2 == meta
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    # a changed protocol is a different evaluation, and does generate
    with pytest.raises(AssertionError, match="generation ran again"):
        _run(tiny, tmp_path, "math500", EvalSettings(limit=3, protocols=settings.protocols))


def test_vllm_backend_writes_the_same_records(tiny, shared_data, tmp_path, monkeypatch):
    """The CPU suite has no vLLM (tests/evaluation/test_vllm_engine.py runs the real one under `make test-vllm`): a
    fake `vllm` module answers; the rows must have the same shape and grading."""
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module())
    monkeypatch.setattr(generate, "_ENGINE", {})
    settings = EvalSettings(protocols={"aime24": ProtocolOverride(limit=3, samples=2, max_new_tokens=30)})
    _, eid, meta = _run(tiny, tmp_path, "aime24", settings, backend="vllm", seed=11)
    rows = artifacts.read_jsonl(tmp_path / f"{eid}.jsonl")
    assert len(fake.calls) == 1 and [p.n for p in fake.calls[0][1]] == [2, 2, 2]
    assert [p.seed for p in fake.calls[0][1]] == [generate.request_seed(11, k) for k in range(3)]
    assert len(rows) == 6 and all(set(r) == set(evaluate.ROW_FIELDS) for r in rows)
    assert [r["extracted"] for r in rows] == ["0", "0", "1", "1", "2", "2"]
    assert [r["truncated"] for r in rows] == [False, True] * 3 and meta["backend"] == "vllm"
    assert meta["summary"] == metrics.summarize(rows)


# ---------------------------------------------------------------------------------------------- the job value and run(job)
def _job(tiny=None, **kw):
    model, tok = tiny if tiny is not None else (None, None)
    proto = evaluate.protocol_for(
        EvalSettings(
            protocols={"arith": ProtocolOverride(limit=4, samples=2, temperature=1.0, max_new_tokens=8)}
        ),
        "arith",
    )
    base = {
        "eval_id": "e",
        "folder": Path("/nowhere"),
        "proto": proto,
        "prompt_template": "chat",
        "seed": 3,
        "weights": evaluate.Weights("tiny", model=model, tokenizer=tok, batch_size=2),
        "meta": {"model": "tiny", "step": 0},
    }
    return evaluate.EvalJob(**{**base, **kw})


def test_an_eval_job_is_an_immutable_value():
    import dataclasses
    import pickle

    job = _job()
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.seed = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        job.meta["step"] = 1  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.weights.source = "other"  # type: ignore[misc]
    # a value: equal when built alike (the loaded handles aside), different when anything that counts is
    assert job == _job(weights=evaluate.Weights("tiny", model=object(), tokenizer=object(), batch_size=2))
    assert hash(job) == hash(_job())
    assert job != _job(seed=4) and job != _job(meta={"model": "tiny", "step": 1})
    assert job != _job(weights=evaluate.Weights("tiny", batch_size=3))
    assert job.folder == Path("/nowhere") and _job(folder="/nowhere") == job  # a str folder becomes a Path
    # a job changes only by making another
    moved = job.placed(evaluate.Engines(2), backend="vllm")
    assert moved.placement == evaluate.Engines(2) and moved.weights.backend == "vllm"
    assert job.placement == evaluate.SINGLE and job.weights.backend == "transformers"
    assert pickle.loads(pickle.dumps(moved)) == moved  # what an engine's process is sent
    assert dict(pickle.loads(pickle.dumps(moved)).meta) == {"model": "tiny", "step": 0}


@pytest.mark.parametrize(
    ("change", "error", "words"),
    [
        ({"eval_id": ""}, ValueError, "needs an eval_id"),
        ({"proto": "arith"}, TypeError, "ResolvedProtocol"),
        ({"placement": "two GPUs"}, TypeError, "placement must be"),
        ({"placement": evaluate.Engines(2)}, ValueError, "Engines placement generates with vLLM"),
    ],
)
def test_a_bad_eval_job_is_refused_when_built(change, error, words):
    with pytest.raises(error, match=words):
        _job(**change)


@pytest.mark.parametrize(
    ("build", "words"),
    [
        (lambda: evaluate.Weights("tiny", "tgi"), "backend must be transformers or vllm"),
        (lambda: evaluate.Weights("tiny", "vllm", model=object()), "model must be None"),
        (lambda: evaluate.Weights("tiny", batch_size=0), "batch_size must be at least 1"),
        (lambda: evaluate.Weights(""), "source"),
        (lambda: evaluate.Engines(0), "at least 1 engine"),
        (lambda: evaluate.DataParallel(2, 2, lambda: None), "rank 2 is outside 0..1"),
        (lambda: evaluate.Colocated(0, 1, lambda: None), "needs its running engine"),
    ],
)
def test_bad_weights_and_placements_are_refused_when_built(build, words):
    with pytest.raises(ValueError, match=words):
        build()


def test_single_and_data_parallel_placements_write_the_same_rows(tiny, tmp_path):
    """run(job) on one process, and on two ranks (threads standing in for processes, a real barrier):
    the same rows and summary; the two-rank evaluation says so and leaves no shares behind."""
    import threading

    one = evaluate.run(_job(tiny, folder=tmp_path / "one"))
    barrier = threading.Barrier(2)
    metas: list = [None, None]

    def rank(r: int) -> None:
        job = _job(tiny, folder=tmp_path / "two", placement=evaluate.DataParallel(r, 2, barrier.wait))
        metas[r] = evaluate.run(job)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert metas[1] is None and metas[0]["processes"] == 2 and "processes" not in one
    rows = artifacts.read_jsonl(tmp_path / "one" / "e.jsonl")
    assert artifacts.read_jsonl(tmp_path / "two" / "e.jsonl") == rows and len(rows) == 8
    assert metas[0]["summary"] == one["summary"] and metas[0]["step"] == one["step"] == 0
    assert len({r["response"] for r in rows}) > 1  # really sampled
    assert not (tmp_path / "two" / ".shards").exists()


def _other_job(kind: str, tiny, folder: Path, placement=evaluate.SINGLE):
    """A job of the other kinds run(job) runs: the tiny model's probe of arith at two fractions, or its
    majority-vote labels of 6 arith prompts (4 samples each, temperature 1)."""
    from spurisweep.evaluation import labels, probe_run

    model, tok = tiny
    weights = evaluate.Weights(families.model_source("tiny"), model=model, tokenizer=tok, batch_size=3)
    if kind == "labels":
        spec = labels.LabelSpec("tiny", None, "builtin:arith", limit=6, samples=4, max_new_tokens=8, seed=1)
        return labels.LabellingJob(spec, folder / "labels.jsonl", weights, placement)
    settings = EvalSettings(protocols={"arith": ProtocolOverride(limit=4)})
    protos = tuple(
        probe_run.protocols(["arith"], [0.4, 0.6], template="chat", settings=settings, max_new_tokens=8)
    )
    ids = tuple(probe_run.probe_id("tiny", None, None, p) for p in protos)
    ident = {"model": "tiny", "model_path": None, "checkpoint": None}
    return probe_run.ProbeJob(protos, ids, ident, folder, 0, weights, placement)


def _files(folder: Path) -> dict[str, list]:
    return {f.name: artifacts.read_jsonl(f) for f in sorted(folder.glob("*.jsonl"))}


@pytest.mark.parametrize("kind", ["probe", "labels"])
def test_probes_and_labels_are_jobs_that_run_on_any_placement(kind, tiny, tmp_path):
    """The probe and the labels go through run(job) like an evaluation: on two data-parallel ranks (threads
    standing in for processes, a real barrier) they write the rows one process writes, and a second run
    reads them back without generating."""
    import threading

    one = evaluate.run(_other_job(kind, tiny, tmp_path / "one"))
    barrier = threading.Barrier(2)
    out: list = [None, None]

    def rank(r: int) -> None:
        where = evaluate.DataParallel(r, 2, barrier.wait)
        out[r] = evaluate.run(_other_job(kind, tiny, tmp_path / "two", where))

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert out[1] is None and out[0] is not None
    rows = _files(tmp_path / "one")
    assert rows and _files(tmp_path / "two") == rows
    assert not (tmp_path / "two" / ".shards").exists()
    if kind == "labels":
        metas = [artifacts.read_json(tmp_path / d / "labels.json") for d in ("one", "two")]
        assert metas[0]["samples_sha256"] == metas[1]["samples_sha256"]
        assert len({r["answer"] for r in rows["labels.jsonl"]}) > 1  # really sampled and voted
    else:
        assert [m["summary"] for m in out[0]] == [m["summary"] for m in one]
        assert [m["fraction"] for m in one] == [0.4, 0.6]
    again = _other_job(kind, tiny, tmp_path / "one")
    assert again.stored()
    assert evaluate.run(replace(again, weights=evaluate.Weights("/not/loaded"))) == one  # read, not generated


def test_a_colocated_placement_generates_on_the_engine_it_is_given(tiny, tmp_path, monkeypatch):
    """A training rank's running engine (a stand-in: no vLLM on this CPU) gets this rank's share, each
    problem seeded by its index in the whole evaluation; no engine is started, and the metadata names it."""
    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module())
    monkeypatch.setattr(generate, "_ENGINE", {})
    engine = fake.module().LLM(model="the rank's own")
    _, tok = tiny
    job = _job(weights=evaluate.Weights("/export/hf", "vllm", tokenizer=tok), folder=tmp_path)
    meta = evaluate.run(job.placed(evaluate.Colocated(0, 1, lambda: None, engine=engine)))
    assert fake.engines == [{"model": "the rank's own"}]  # only the one built above
    ((inputs, params),) = fake.calls
    assert len(inputs) == 4 and [p.seed for p in params] == [generate.request_seed(3, k) for k in range(4)]
    assert meta["engine"] == evaluate.COLOCATED and meta["backend"] == "vllm"
    assert len(artifacts.read_jsonl(tmp_path / "e.jsonl")) == 8


def test_a_cell_job_has_the_ids_and_metadata_of_its_step_or_baseline(tmp_path):
    from spurisweep.plan.spec import CellConfig

    cfg = CellConfig(model="tiny", prompt="qa", seed=7, eval=EvalSettings(benchmarks=["arith"], batch_size=4))
    proto = evaluate.protocol_for(cfg.eval, "arith")
    w = evaluate.Weights("tiny")
    base = evaluate.cell_job(cfg, proto, w, folder=tmp_path, step=0)
    assert base.eval_id == evaluate.baseline_eval_id("tiny", None, "qa", proto)
    assert dict(base.meta) == {
        "model": "tiny",
        "model_path": None,
        "step": 0,
        "is_baseline": True,
        "cell_id": None,
    }
    step = evaluate.cell_job(cfg, proto, w, folder=tmp_path, step=5, cell_id="c1", baseline_id=base.eval_id)
    assert step.eval_id == evaluate.checkpoint_eval_id("c1", 5, "qa", proto)
    assert step.meta["baseline_eval_id"] == base.eval_id and step.meta["is_baseline"] is False
    assert (step.seed, step.weights.batch_size, step.template) == (7, 4, "qa")


def test_loaded_loads_the_weights_once_and_only_when_something_is_missing(tiny, tmp_path, monkeypatch):
    calls = []

    def load(source, **kw):
        calls.append(source)
        return tiny

    monkeypatch.setattr(evaluate.families, "load_model_and_tokenizer", load)
    source = families.model_source("tiny")
    weights = evaluate.Weights(source, batch_size=2)
    jobs = [_job(eval_id=e, folder=tmp_path, weights=weights) for e in ("a", "b")]
    with evaluate.loaded(jobs) as ready:
        assert calls == [source] and all(j.weights.model is tiny[0] for j in ready)
        metas = [evaluate.run(j) for j in ready]
    assert [m["eval_id"] for m in metas] == ["a", "b"]
    with evaluate.loaded(jobs) as again:  # both stored: nothing loads
        assert again == jobs and calls == [source]
        assert [evaluate.run(j) for j in again] == metas


# ---------------------------------------------------------------------------------------------- the CLI and the store
def test_cli_eval_records_into_the_store(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    results = tmp_path / "results"
    args = [
        "eval",
        "--model",
        "tiny",
        "--benchmarks",
        "math500,aime24",
        "--limit",
        "2",
        "--protocol",
        "max_new_tokens=8",
        "--protocol",
        "aime24.samples=3",
        "--results",
        str(results),
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output + repr(res.exception)
    assert "math500: 2 problems x 1 samples  pass@1=" in res.output
    assert "aime24: 2 problems x 3 samples  avg@3=" in res.output and "pass@3=" in res.output
    with store.connect(store.db_path(results)) as con:
        evals = con.execute(
            "SELECT eval_id, benchmark, model, is_baseline, samples, temperature, max_new_tokens, "
            "n_problems FROM evals ORDER BY benchmark"
        ).fetchall()
        counts = dict(con.execute("SELECT eval_id, count(*) FROM samples GROUP BY eval_id").fetchall())
        code = con.execute(
            "SELECT count(*) FROM samples WHERE has_python IS NULL OR truncated IS NULL "
            "OR n_tokens IS NULL OR response IS NULL"
        ).fetchone()[0]
    assert [(e[1], e[2], e[3], e[4], e[5], e[6], e[7]) for e in evals] == [
        ("aime24", "tiny", True, 3, 0.6, 8, 2),
        ("math500", "tiny", True, 1, 0.0, 8, 2),
    ]
    assert counts == {evals[0][0]: 6, evals[1][0]: 2} and code == 0
    # the report's SQL over the stored rows gives the numbers of each evaluation's own summary
    from spurisweep.analysis.metric_registry import SAMPLE_METRICS

    keys = [
        k
        for k in (
            "avg@n",
            "code_frequency",
            "code_block_frequency",
            "acc_with_code",
            "acc_without_code",
            "mean_length",
            "truncated",
            "ungradable",
        )
        if k in SAMPLE_METRICS
    ]
    assert {"code_frequency", "acc_with_code", "acc_without_code"} <= set(keys)
    with store.connect(store.db_path(results)) as con:
        for eid, *_ in evals:
            sql = ", ".join(SAMPLE_METRICS[k] for k in keys)
            got = con.execute(f"SELECT {sql} FROM samples s WHERE s.eval_id = ?", [eid]).fetchone()
            summary = artifacts.read_json(results / artifacts.BASELINES / f"{eid}.json")["summary"]
            assert got == pytest.approx(tuple(summary[k] for k in keys)), eid
    files = sorted((results / artifacts.BASELINES).glob("*.json*"))
    mtimes = [f.stat().st_mtime_ns for f in files]
    again = CliRunner().invoke(app, args)  # stored: nothing generated, same numbers printed

    def lines(out: str) -> list[str]:
        return re.findall(r"\w+: \d+ problems x \d+ samples.*?\(eval\s+base-\w+\)", out, flags=re.DOTALL)

    assert len(lines(res.output)) == 2
    assert again.exit_code == 0 and lines(again.output) == lines(res.output)
    assert "Loading weights" not in again.output  # nothing left to generate: the model is not even loaded
    assert [f.stat().st_mtime_ns for f in files] == mtimes


def test_cli_eval_bad_options_are_config_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "--model", "tiny", "--benchmarks", "math5", "--results", str(tmp_path)])
    assert isinstance(res.exception, ConfigError) and "did you mean 'math500'" in str(res.exception)
    res = runner.invoke(app, ["eval", "--model", "tiny", "--protocol", "samples", "--results", str(tmp_path)])
    assert isinstance(res.exception, ConfigError) and "BENCH.FIELD=VALUE" in str(res.exception)
    res = runner.invoke(app, ["eval", "--model", "tiny", "--backend", "tgi", "--results", str(tmp_path)])
    assert isinstance(res.exception, ConfigError) and "valid: auto, vllm, transformers" in str(res.exception)


def test_training_cell_reuses_the_cli_baseline(shared_data, tmp_path, monkeypatch):
    """`spurisweep eval --model tiny` with a sweep's prompt and protocol computes the baseline id the cell
    computes, so the cell (run for real with TRL, debug executor) finds it and does not generate it again."""
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    results = tmp_path / "results"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(
        "name: basecheck\npreset: smoke\ngrid: {model: [tiny], reward: [ground_truth], clip: [standard], seed: [3]}\n"
        "settings:\n  train: {steps: 1, save_every: 1}\n"
        "  eval: {benchmarks: [math500], limit: 2, checkpoints: false, protocols: {math500: {max_new_tokens: 6}}}\n"
    )
    runner = CliRunner()
    res = runner.invoke(
        app,
        [
            "eval",
            "--model",
            "tiny",
            "--benchmarks",
            "math500",
            "--limit",
            "2",
            "--protocol",
            "math500.max_new_tokens=6",
            "--results",
            str(results),
        ],
    )
    assert res.exit_code == 0, res.output + repr(res.exception)
    (meta_path,) = (results / artifacts.BASELINES).glob("base-*.json")
    base_id, mtime = meta_path.stem, meta_path.stat().st_mtime_ns
    res = runner.invoke(app, ["run", str(sweep), "--executor", "debug", "--results", str(results)])
    assert res.exit_code == 0, res.output + repr(res.exception)
    (done,) = results.glob("basecheck/*/DONE")
    assert json.loads(done.read_text())["baselines"] == {"math500": base_id}
    assert meta_path.stat().st_mtime_ns == mtime  # not generated again
    assert len(list((results / artifacts.BASELINES).glob("base-*.json"))) == 1
    with store.connect(store.db_path(results)) as con:
        rows = con.execute(
            "SELECT is_baseline, baseline_eval_id, eval_id FROM evals ORDER BY is_baseline"
        ).fetchall()
    assert rows[-1] == (True, None, base_id)
    assert all(r[1] == base_id for r in rows[:-1]) and len(rows) >= 2


# ---------------------------------------------------------------------------------------------- variants, subsamples
def test_new_protocol_fields_keep_every_existing_eval_id():
    """eval.variants and subsample_seed enter an evaluation's id only when set: a default evaluation's id
    is still the hash of the protocol fields it always had."""
    from spurisweep.ids import short_hash

    settings = EvalSettings(protocols={"aime24": ProtocolOverride(samples=4, limit=5)})
    p = evaluate.protocol_for(settings, "aime24")
    before = {k: getattr(p, k) for k in ("benchmark", "samples", "temperature", "top_p", "max_new_tokens")}
    before.update(path=None, limit=5)
    assert evaluate.baseline_eval_id("tiny", None, "chat", p) == "base-" + short_hash(
        {"model": "tiny", "model_path": None, "prompt": "chat", "protocol": before}
    )
    seeded = EvalSettings(protocols={"aime24": ProtocolOverride(samples=4, limit=5, subsample_seed=0)})
    assert evaluate.checkpoint_eval_id("c", 2, "chat", evaluate.protocol_for(seeded, "aime24")) != (
        evaluate.checkpoint_eval_id("c", 2, "chat", p)
    )


def test_variants_resolve_to_their_own_protocols_and_skip_what_the_default_generates():
    from spurisweep.plan.spec import EvalVariant

    variants = [
        EvalVariant(seed=3),
        EvalVariant(seed=7),  # the cell's own seed: the default evaluation
        EvalVariant(temperature=0.6),
        EvalVariant(top_p=0.9, seed=4),
    ]
    settings = EvalSettings(benchmarks=["aime24", "math500"], variants=variants)
    protos = evaluate.protocols_for(settings, seed=7)
    default = [p for p in protos if p.variant is None]
    assert [p.benchmark for p in default] == ["aime24", "math500"]
    by = {(p.benchmark, p.variant): p for p in protos if p.variant}
    # aime24 samples at 0.6 already: {temperature: 0.6} is its default evaluation; math500 is greedy, where a
    # seed or top_p changes nothing, but a temperature makes it sampled
    assert set(by) == {("aime24", "seed=3"), ("aime24", "seed=4,top_p=0.9"), ("math500", "temperature=0.6")}
    assert by[("math500", "temperature=0.6")].temperature == 0.6 and by[("aime24", "seed=3")].seed == 3
    ids = {evaluate.checkpoint_eval_id("c", 2, "chat", p) for p in protos}
    assert len(ids) == len(protos) == 5


def test_a_cell_evaluates_each_point_once_per_variant_with_its_own_samples(tiny, tmp_path):
    """The same weights, one step: the default evaluation and two seed variants are three evaluations with
    their own ids, seeds and samples (different seeds, different samples), on one seeded subsample."""
    from spurisweep.plan.spec import CellConfig, EvalVariant

    over = ProtocolOverride(samples=3, temperature=1.0, max_new_tokens=6, limit=3, subsample_seed=5)
    cfg = CellConfig(
        model="tiny",
        prompt="chat",
        seed=0,
        eval=EvalSettings(
            benchmarks=["arith"],
            protocols={"arith": over},
            variants=[EvalVariant(seed=1), EvalVariant(seed=2)],
        ),
    )
    model, tok = tiny
    w = evaluate.Weights(families.model_source("tiny"), model=model, tokenizer=tok)
    protos = evaluate.protocols_for(cfg.eval, cfg.seed)
    base = {p: evaluate.cell_job(cfg, p, w, folder=tmp_path, step=0) for p in protos}
    jobs = [
        evaluate.cell_job(cfg, p, w, folder=tmp_path, step=4, cell_id="c1", baseline_id=base[p].eval_id)
        for p in protos
    ]
    metas = [evaluate.run(j) for j in jobs]
    assert len({j.eval_id for j in jobs}) == 3 and [m["seed"] for m in metas] == [0, 1, 2]
    assert [m.get("variant") for m in metas] == [None, "seed=1", "seed=2"]
    assert len({m["baseline_eval_id"] for m in metas}) == 3  # each variant against its own baseline
    rows = [artifacts.read_jsonl(tmp_path / f"{j.eval_id}.jsonl") for j in jobs]
    wanted = [p.id for p in data.subsample(data.load_benchmark("arith"), 3, 5)]
    assert all([r["problem_id"] for r in rs[::3]] == wanted for rs in rows)
    responses = [[r["response"] for r in rs] for rs in rows]
    assert responses[1] != responses[2] and responses[0] != responses[1]


def test_subsample_seed_draws_a_fixed_seed_dependent_subset():
    everything = data.load_benchmark("arith")
    ids = [p.id for p in everything]
    one = [p.id for p in data.load_benchmark("arith", limit=8, subsample_seed=1)]
    assert one == [p.id for p in data.load_benchmark("arith", limit=8, subsample_seed=1)]
    assert len(set(one)) == 8 and one != ids[:8] and one == sorted(one, key=ids.index)
    assert one != [p.id for p in data.load_benchmark("arith", limit=8, subsample_seed=2)]
    assert [p.id for p in data.load_benchmark("arith", limit=8)] == ids[:8]  # no seed: the first N
    assert data.subsample(everything[:3], 8, 1) == everything[:3]
