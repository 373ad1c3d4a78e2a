"""A sharded cell (train.sharding: fsdp) end to end: 2 CPU processes over gloo through the real `spurisweep
run --executor local` (submitit's local executor), the real TRL trainer on the tiny model, real grading.

What is checked: each process held part of every parameter (the cell's own record in status.json); every
save wrote an HF export before its COMPLETE marker, and pruning removed old checkpoints with their exports;
the export loads with from_pretrained and one process evaluating it writes exactly the rows the two
processes wrote (problems split across ranks, sampled protocol); kill -9 of the whole job after a
checkpoint, then a re-run, ends with the metric rows and evaluations of an uninterrupted run; a sharded
cell with one process, or an unknown sharding value, is a plan-time error (exit 2, one line). In process:
the resume and evaluation cadences, and that the shares of several ranks merge into one process's rows.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from spurisweep import artifacts
from spurisweep.evaluation import run as evaluate
from spurisweep.models import families
from spurisweep.plan import grid, grpo, spec
from spurisweep.plan.spec import EvalSettings, ProtocolOverride
from tests.helpers_train import metrics

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]
#: 4 rollout steps of 4 updates; resume points every 2 steps, an evaluation every step (steps 1 and 3
#: between saves, from a scratch export; 2 and 4 at saves); a sampled protocol, so the split across ranks
#: must keep each problem's samples
SHARDED = {
    "name": "sh",
    "preset": "smoke",
    "grid": {"model": ["tiny"], "reward": ["random"], "seed": [0]},
    "settings": {
        "train": {"steps": 4, "sharding": "fsdp", "resume_every": 2, "keep_checkpoints": 1},
        "eval": {
            "limit": 4,
            "eval_every": 1,
            "protocols": {"arith": {"samples": 2, "temperature": 1.0, "max_new_tokens": 16}},
        },
        "resources": {"tasks_per_node": 2},
    },
}


def cli(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "SPURISWEEP_GRADING_WORKERS": "1"}
    return subprocess.run([*EXE, *args], capture_output=True, text=True, cwd=ROOT, timeout=timeout, env=env)


def write_sweep(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def cell_dir(results: Path) -> Path:
    (d,) = [p for p in (results / "sh").iterdir() if (p / "config.json").exists()]
    return d


def rows_of(folder: Path, eval_id: str) -> list[dict]:
    return artifacts.read_jsonl(folder / f"{eval_id}.jsonl")


# ---------------------------------------------------------------------------------------------- plan time
@pytest.mark.parametrize(
    ("settings", "words"),
    [
        ({"train": {"sharding": "fsdp"}}, "shards across 1 process"),
        ({"train": {"sharding": "zero3"}}, "'none' or 'fsdp'"),
    ],
)
def test_a_sharding_that_cannot_work_is_one_line_and_exit_2(tmp_path, settings, words):
    doc = {"name": "bad", "preset": "smoke", "grid": {"model": ["tiny"]}, "settings": settings}
    sweep = write_sweep(tmp_path / "bad.yaml", doc)
    proc = cli("plan", str(sweep), "--results", str(tmp_path / "r"), timeout=300)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert str(sweep) in lines[0] and "train.sharding" in lines[0] and words in lines[0], lines[0]


def test_two_processes_plan_and_the_sharding_setting_is_part_of_the_id(tmp_path):
    (sharded,) = grid.expand(spec.load_sweep(write_sweep(tmp_path / "a.yaml", SHARDED)))
    plain_doc = json.loads(json.dumps(SHARDED))
    plain_doc["settings"]["train"]["sharding"] = "none"
    (plain,) = grid.expand(spec.load_sweep(write_sweep(tmp_path / "b.yaml", plain_doc)))
    assert sharded.id != plain.id  # a DDP checkpoint cannot resume a sharded cell, nor the reverse
    plain_doc["settings"]["train"]["resume_every"] = 1
    (often,) = grid.expand(spec.load_sweep(write_sweep(tmp_path / "c.yaml", plain_doc)))
    assert often.id == plain.id  # where a run can restart is not what it computes


def test_resume_points_and_evaluations_have_their_own_cadence(tmp_path):
    from spurisweep.training.callback import CellCallback

    doc = json.loads(json.dumps(SHARDED))
    doc["settings"]["train"].update(sharding="none", steps=6, resume_every=1, save_every=3)
    doc["settings"]["eval"].pop("eval_every")
    doc["settings"].pop("resources")
    (cell,) = grid.expand(spec.load_sweep(write_sweep(tmp_path / "s.yaml", doc)))
    kw = grpo.grpo_kwargs(cell.config, str(tmp_path), cpu=True)
    upr = grpo.updates_per_rollout(kw)
    assert kw["save_steps"] == upr  # a resume point every rollout step
    cb = CellCallback(
        artifacts.CellDir(tmp_path),
        updates_per_rollout=upr,
        resumed_update=0,
        resume=None,
        keep_checkpoints=1,
        evaluate_checkpoints=True,
        eval_every=grpo.eval_interval(cell.config),
        metric_rows=[],
        evaluate_at=lambda *a: None,
    )
    evaluated = [u // upr for u in range(1, 6 * upr + 1) if cb.is_eval_point(u, 6 * upr)]
    assert evaluated == [3, 6]  # save_every, as before resume_every existed
    cb.eval_every = 4
    assert [u // upr for u in range(1, 6 * upr + 1) if cb.is_eval_point(u, 6 * upr)] == [4, 6]  # + last


def test_shares_of_several_ranks_merge_into_the_rows_of_one_process(tmp_path, shared_data):
    """Problem i on rank i % 3 (a sampled protocol): the merged shares are the single process's rows."""
    model, tok = families.load_model_and_tokenizer(str(families.ensure_built(families.get("tiny"))))
    settings = EvalSettings(limit=5, protocols={"arith": ProtocolOverride(samples=2, temperature=1.0)})
    proto = evaluate.protocol_for(settings, "arith")
    job = evaluate.EvalJob(
        "e", tmp_path / "one", proto, "chat", 3, evaluate.Weights("tiny", model=model, tokenizer=tok)
    )
    one = evaluate.run(job)
    shares = [evaluate.generate_share(job, r, 3) for r in range(3)]
    assert [s.indices for s in shares] == [[0, 3], [1, 4], [2]]
    evaluate.write_evaluation(replace(job, folder=tmp_path / "three"), shares, wall_s=0.0)
    assert one["n_samples"] == 10
    assert rows_of(tmp_path / "three", "e") == rows_of(tmp_path / "one", "e")
    assert len({r["response"] for r in rows_of(tmp_path / "one", "e")}) > 1  # really sampled


# ---------------------------------------------------------------------------------------------- 2 processes
@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("sharded")
    sweep = write_sweep(tmp / "sh.yaml", SHARDED)
    results = tmp / "ref"
    proc = cli("run", str(sweep), "--executor", "local", "--results", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return results


@pytest.mark.slow
def test_the_sharded_cell_trains_on_two_processes_each_holding_half(uninterrupted):
    d = cell_dir(uninterrupted)
    done = json.loads((d / "DONE").read_text())
    assert done["world_size"] == 2 and done["sharding"] == "fsdp" and not list(d.glob("error*.txt"))
    record = artifacts.CellDir(d).status()["sharding"]
    from transformers import AutoModelForCausalLM

    tiny = AutoModelForCausalLM.from_pretrained(families.ensure_built(families.get("tiny")))
    assert record["numel"] == sum(p.numel() for p in tiny.parameters())
    assert record["parameters"] == len(list(tiny.parameters()))
    per_rank = record["numel_per_rank"]
    assert (
        len(per_rank) == 2 and sum(per_rank) == record["numel"] and all(n < record["numel"] for n in per_rank)
    )
    upr = done["updates_per_rollout"]
    assert [r["update"] for r in metrics(d)] == list(range(1, 4 * upr + 1))
    # one checkpoint kept (keep_checkpoints 1), with its export; the scratch export and shares are gone
    (ckpt,) = (d / "checkpoints").glob("checkpoint-*")
    assert ckpt.name == f"checkpoint-{4 * upr}" and (ckpt / "COMPLETE").exists()
    assert (ckpt / "hf" / "config.json").exists() and (ckpt / "hf" / "model.safetensors").exists()
    assert (ckpt / "pytorch_model_fsdp_0").is_dir() and (ckpt / "optimizer_0").is_dir()
    assert not (d / "eval-export").exists() and not (d / "evals" / ".shards").exists()
    evals = artifacts.CellDir(d).completed_evals()
    assert sorted(m["step"] for m in evals) == [1, 2, 3, 4]
    assert all(m["processes"] == 2 for m in evals)


@pytest.mark.slow
def test_the_export_loads_and_one_process_evaluates_it_as_the_two_did(uninterrupted):
    import torch
    from transformers import AutoModelForCausalLM

    d = cell_dir(uninterrupted)
    upr = json.loads((d / "DONE").read_text())["updates_per_rollout"]
    export = d / "checkpoints" / f"checkpoint-{4 * upr}" / "hf"
    assert AutoModelForCausalLM.from_pretrained(export).dtype == torch.bfloat16  # as written
    cfg = spec.CellConfig.model_validate(artifacts.CellDir(d).config()["config"])
    model, tok = families.load_model_and_tokenizer(str(export))  # fp32 on CPU, as the cell evaluated it
    (final,) = [m for m in artifacts.CellDir(d).completed_evals() if m["step"] == 4]
    proto = evaluate.protocol_for(cfg.eval, "arith")
    weights = evaluate.Weights(str(export), model=model, tokenizer=tok)
    evaluate.run(evaluate.EvalJob(final["eval_id"], d.parent / "one", proto, cfg.prompt, cfg.seed, weights))
    ours = rows_of(d.parent / "one", final["eval_id"])
    assert ours == rows_of(d / "evals", final["eval_id"]) and len(ours) == 8
    # the shared baseline, evaluated by both ranks, equals one process's evaluation of the untrained model
    base = json.loads((d / "DONE").read_text())["baselines"]["arith"]
    model, tok = families.load_model_and_tokenizer(str(families.ensure_built(families.get("tiny"))))
    weights = evaluate.Weights("tiny", model=model, tokenizer=tok)
    evaluate.run(evaluate.EvalJob(base, d.parent / "one", proto, cfg.prompt, cfg.seed, weights))
    assert rows_of(d.parent / "one", base) == rows_of(uninterrupted / artifacts.BASELINES, base)


def _tree(pid: int) -> list[int]:
    """pid and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    out, todo = [pid], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


@pytest.mark.slow
def test_kill_9_of_the_sharded_job_resumes_to_the_uninterrupted_rows(uninterrupted, tmp_path):
    sweep = write_sweep(tmp_path / "sh.yaml", SHARDED)
    results = tmp_path / "killed"
    proc = cli("run", str(sweep), "--executor", "local", "--results", str(results), "--no-wait")
    assert proc.returncode == 0, proc.stderr
    deadline = time.time() + 600
    while not list((results / "sh").glob("*/checkpoints/checkpoint-*/COMPLETE")):
        assert time.time() < deadline, "no checkpoint completed in time"
        time.sleep(0.1)
    d = cell_dir(results)
    st = artifacts.CellDir(d).status()
    pids = _tree(int(st["job_id"])) + _tree(int(st["pid"]))  # the job's controller and both ranks
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert not (d / "DONE").exists(), "the job finished before it was killed"

    rerun = cli("run", str(sweep), "--executor", "local", "--results", str(results))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    done = json.loads((d / "DONE").read_text())
    assert done["resumed_from"] and done["resumed_from"][0].startswith("checkpoint-")
    ref = cell_dir(uninterrupted)
    rows, ref_rows = metrics(d), metrics(ref)
    assert [r["update"] for r in rows] == [r["update"] for r in ref_rows]
    for r, q in zip(rows, ref_rows, strict=True):
        for key in ("loss", "grad_norm", "entropy", "reward", "learning_rate", "token_prob/mean"):
            if key in q:
                assert r[key] == pytest.approx(q[key], rel=1e-4, abs=1e-6), (r["update"], key)
    evals = {m["eval_id"] for m in artifacts.CellDir(d).completed_evals()}
    assert evals == {m["eval_id"] for m in artifacts.CellDir(ref).completed_evals()}
    for eid in evals:
        assert rows_of(d / "evals", eid) == rows_of(ref / "evals", eid), eid


def test_a_ranks_vllm_engine_gets_its_share_and_the_memory_training_left(tmp_path, shared_data, monkeypatch):
    """vLLM cannot run here (no GPU): a fake `vllm` module (tests/fakes.FakeVLLM) records the engine and
    the prompts; rank 1 of 2 sends problems 1 and 3 to its own engine, which is dropped afterwards."""
    from spurisweep.evaluation import generate
    from tests.fakes import FakeVLLM

    fake = FakeVLLM()
    monkeypatch.setitem(sys.modules, "vllm", fake.module())
    monkeypatch.setattr(generate, "_ENGINE", {})
    _, tok = families.load_model_and_tokenizer(str(families.ensure_built(families.get("tiny"))))
    proto = evaluate.protocol_for(EvalSettings(limit=4), "arith")
    weights = evaluate.Weights("/export/hf", "vllm", tokenizer=tok, vllm_memory=0.4)
    share = evaluate.generate_share(evaluate.EvalJob("e", tmp_path, proto, "chat", 0, weights), 1, 2)
    assert fake.engines == [{"model": "/export/hf", "seed": 0, "gpu_memory_utilization": 0.4}]
    problems = evaluate.data.load_benchmark("arith", limit=4)
    assert share.indices == [1, 3] and [r["problem_id"] for r in share.rows] == [
        problems[1].id,
        problems[3].id,
    ]
    ((inputs, _),) = fake.calls
    assert len(inputs) == 2
    generate.release_vllm()
    assert generate._ENGINE == {}


# ---------------------------------------------------------------------------------------------- colocated
#: the sharded cell with TRL's colocated vLLM engine (vLLM's CPU build) serving rollouts and evaluations
COLOCATED = {
    **SHARDED,
    "name": "sh",
    "settings": {
        **SHARDED["settings"],
        "train": {**SHARDED["settings"]["train"], "steps": 3, "generation_backend": "vllm"},
        "eval": {**SHARDED["settings"]["eval"], "baseline": True},
    },
}


@pytest.mark.vllm
@pytest.mark.slow
def test_a_sharded_cell_evaluates_on_its_colocated_engines_and_its_group_survives(tmp_path):
    """2 gloo processes, FSDP, TRL's colocated vLLM engine in each (real vLLM, CPU build, its weights synced
    by training.engine's reload): the baseline at step 0 and every step's evaluation run on those engines,
    the problems split across both ranks, with no export and no other engine; the process group survives
    every evaluation, the final one included (the cell finishes with every evaluation written). Each
    evaluation's samples differ from the baseline's once the weights moved (the engine got the synced
    weights, not the ones it was built with)."""
    sweep = write_sweep(tmp_path / "sh.yaml", COLOCATED)
    results = tmp_path / "res"
    proc = cli("run", str(sweep), "--executor", "local", "--results", str(results))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    d = cell_dir(results)
    done = json.loads((d / "DONE").read_text())
    assert done["backend"] == "vllm" and done["world_size"] == 2 and not list(d.glob("error*.txt"))
    evals = artifacts.CellDir(d).completed_evals()
    assert sorted(m["step"] for m in evals) == [1, 2, 3]
    (base,) = [artifacts.read_json(p) for p in (results / "_baselines").glob("*.json")]
    for meta in [*evals, base]:
        assert meta["engine"] == "trl-colocated-vllm" and meta["backend"] == "vllm", meta
        assert meta["processes"] == 2 and meta["n_problems"] == 4
    assert not (d / "eval-export").exists() and not (d / "evals" / ".shards").exists()
    responses = {m["step"]: [r["response"] for r in rows_of(d / "evals", m["eval_id"])] for m in evals}
    base_rows = [r["response"] for r in rows_of(results / "_baselines", base["eval_id"])]
    assert responses[3] != base_rows
