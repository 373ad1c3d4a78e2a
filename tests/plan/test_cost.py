"""The cost model of `plan` (spurisweep.plan.cost): a case computed by hand, the official layout beside
spurisweep's, the paper sweep's 7B cells, `plan --json`'s cost fields and bad assumptions (one line, exit 2)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from spurisweep.plan import cost, grid, memory, spec
from spurisweep.plan import node as resources
from tests.storebuilder import run_cli

ROOT = Path(__file__).resolve().parents[2]
PAPER = ROOT / "sweeps" / "paper_table.yaml"

# A made-up model: 1e9 parameters, every one multiplied by each token (tied embeddings: the head is the
# embedding), 10 layers with a 1,000-wide query, one KV head of 100: K and V of 10 layers in bf16 is
# 2 x 10 x 100 x 2 = 4,000 bytes a token. 10 x 90e6 + 99,999 x 1,000 + 1,000 (final norm) = 1e9.
SHAPE = memory.ModelShape(
    name="made-up",
    model_type="llama",
    vocab_size=99_999,
    hidden_size=1000,
    num_layers=10,
    intermediate_size=1000,
    num_heads=10,
    num_kv_heads=1,
    head_dim=100,
    tie_word_embeddings=True,
    layer_params=90_000_000,
    embed_params=99_999_000,
    head_params=0,
)
A = spec.CostAssumptions(
    decode_tokens_per_s=1000,
    decode_batch=100,
    train_tflops=100,
    pad_factor=2,
    prompt_tokens=100,
    response_tokens=200,
    eval_response_tokens=300,
    label_response_tokens=400,
)
# 2 GPUs of 10 GB, the colocated engine at half of each; 8 responses a step, 10 steps, an evaluation every
# 2 steps (5) of 6 sequences x 300 tokens; the update is forward + backward (3 passes), plus TRL's
# old-log-probability forward (1); responses capped at 400 tokens
WORK = cost.Work(
    shape=SHAPE,
    gpus=2,
    gpu_mem_gb=10,
    share=0.5,
    tp=1,
    steps=10,
    rollout=8,
    epochs=1,
    prompt=100,
    response=200,
    max_response=400,
    update_passes=3,
    extra_passes=1,
    evals=5,
    eval_seqs=6,
    eval_tokens=6 * 300,
)


@pytest.fixture
def reference_at_the_rollout(monkeypatch):
    """decode_tokens_per_s stated at the made-up model's own rollout point: 1e9 parameters, 4,000 KV bytes a
    token, 4 sequences a GPU (8 responses over 2 GPUs) of context 200 (prompt 100 + half of 200)."""
    monkeypatch.setattr(cost, "REFERENCE", (1e9, 4000, 4, 200))


def test_a_cell_computed_by_hand(reference_at_the_rollout):
    # The roofline, tokens per byte a decode step reads: B / max(W + B c k, W B / decode_batch), W = 2e9 bytes.
    # Reference: 4 / max(2e9 + 4 x 200 x 4,000, 2e9 x 4 / 100) = 4 / 2.0032e9 (reading bound)
    ref = 4 / 2.0032e9

    # --- spurisweep: both GPUs colocated
    # rollout: 8 x 200 = 1,600 tokens at the reference point itself, 1,000 tokens/s on each of 2 GPUs: 0.8 s
    rollout = 1600 / (2 * 1000)
    # training: sequences (100 + 200) x pad 2 = 600 tokens; 8 of them, 4,800 tokens; a forward pass costs
    # 2 x 1e9 + 2 x 10 layers x 1,000 x 600 = 2.012e9 FLOPs a token; 3 passes: 2.89728e13. The old
    # log-probabilities: 8 sequences padded to 100 + 400 = 500 tokens, 4,000 tokens x (2e9 + 2 x 10 x 1,000 x
    # 500 = 2.01e9) = 8.04e12. At 2 GPUs x 100 TFLOPs: 3.70128e13 / 2e14 = 0.185064 s
    train = (3 * 4800 * 2.012e9 + 4000 * 2.01e9) / 2e14
    assert train == pytest.approx(0.185064)
    # evaluation: 6 sequences, 3 a GPU, context 100 + 300 / 2 = 250: 3 / (2e9 + 3 x 250 x 4,000) = 3 / 2.003e9
    # per byte; 1,000 x that / ref = 749.93 tokens/s a GPU; 1,800 tokens on 2 GPUs: 1.2001 s
    evaluation = 1800 / (2 * 1000 * (3 / 2.003e9) / ref)
    ours = cost.ours(WORK, A)
    assert ours.rollout == pytest.approx(10 * rollout / 3600)
    assert ours.train == pytest.approx(10 * train / 3600)
    assert ours.eval == pytest.approx(5 * evaluation / 3600)
    assert ours.wall_h == pytest.approx((10 * (rollout + train) + 5 * evaluation) / 3600)
    assert ours.gpu_h == pytest.approx(2 * ours.wall_h)  # every GPU is held throughout; no labels here

    # --- official: 1 GPU trains (packed), 1 serves vLLM alone (0.85 of it: room for every sequence)
    # rollout: all 8 sequences on one GPU: 8 / max(2e9 + 8 x 200 x 4,000, 2e9 x 8 / 100) = 8 / 2.0064e9;
    # 1,000 x that / ref = 1,996.8 tokens/s; 1,600 tokens: 0.8013 s
    rollout_o = 1600 / (1000 * (8 / 2.0064e9) / ref)
    # training, unpadded (300 tokens a sequence: 2.006e9 FLOPs a token) on 1 GPU:
    # (3 x 2,400 + 2,400) x 2.006e9 / 1e14 = 0.192576 s
    train_o = 4 * 2400 * 2.006e9 / 1e14
    # evaluation beside the training: 6 sequences on one GPU, 6 / (2e9 + 6 x 250 x 4,000) = 6 / 2.006e9:
    # 1,800 tokens take 1.2017 s, of which 1.2017 - 0.1926 s outlast the training
    beyond = 1800 / (1000 * (6 / 2.006e9) / ref) - train_o
    theirs = cost.official(WORK, A)
    assert theirs.rollout == pytest.approx(10 * rollout_o / 3600)
    assert theirs.train == pytest.approx(10 * train_o / 3600)
    assert theirs.eval == pytest.approx(5 * beyond / 3600)
    assert theirs.gpu_h == pytest.approx(2 * (10 * (rollout_o + train_o) + 5 * beyond) / 3600)


def test_the_kv_cache_and_the_engine_cap_limit_decoding(reference_at_the_rollout):
    # a 10 GB GPU, share s: s x 1e10 - 2e9 (weights) - 2e9 (vLLM's workspace) bytes of KV cache; a
    # sequence of context 200 needs 200 x 4,000 = 8e5 bytes
    engine = dict(gpu_mem_gb=10, tp=1, context=200)
    assert cost.kv_seqs(SHAPE, share=0.5, **engine) == pytest.approx(1e9 / 8e5)  # 1,250
    assert cost.share_for(SHAPE, seqs=4, **engine) == pytest.approx((4e9 + 4 * 8e5) / 1e10)  # 0.40032
    # at share 0.40016 the cache holds 2 of the 4 sequences: 2 / (2e9 + 2 x 8e5) per byte, 500.4 tokens/s
    rate = cost.decode_rate(SHAPE, A, seqs_per_gpu=4, share=0.40016, **engine)
    assert rate == pytest.approx(1000 * (2 / 2.0016e9) / (4 / 2.0032e9))
    # an engine that decodes at most 2 at once (TRL sizes its engine for a rank's share) is as slow
    assert cost.decode_rate(SHAPE, A, seqs_per_gpu=4, share=0.5, max_seqs=2, **engine) == pytest.approx(rate)
    # past decode_batch sequences a step is bound by its FLOPs: 200 sequences, 2e9 x 200 / 100 = 4e9
    # "bytes" > 2e9 + 200 x 8e5; the rate levels off at 200 / 4e9 per byte
    wide = cost.decode_rate(SHAPE, A, seqs_per_gpu=200, share=0.5, max_seqs=1000, **engine)
    assert wide == pytest.approx(1000 * (200 / 4e9) / (4 / 2.0032e9))


def test_the_official_layout_overlaps_evaluation_and_needs_two_gpus(reference_at_the_rollout):
    from dataclasses import replace

    # an evaluation shorter than the training step adds no wall time there, and is a phase of its own here
    small = replace(WORK, eval_seqs=1, eval_tokens=10)
    assert cost.official(small, A).eval == 0.0
    assert cost.ours(small, A).eval > 0
    # the same GPUs hold the same weights: the official layout decodes on half of them, trains on half
    assert cost.official(WORK, A).rollout > cost.ours(WORK, A).rollout
    assert cost.official(replace(WORK, gpus=1), A) is None


def _write(tmp_path: Path, edit: str = "") -> Path:
    f = tmp_path / "paper.yaml"
    f.write_text(PAPER.read_text() + edit)
    return f


def _paper(tmp_path: Path, edit: str = "") -> tuple[Path, list[grid.Cell]]:
    f = _write(tmp_path, edit)
    return f, grid.expand(spec.load_sweep(f), check_inputs=False)


def test_the_paper_sweeps_7b_cells_cost_no_more_than_the_official_layout(tmp_path: Path):
    """As shipped, every 7-8B cell of the paper table costs at most what it costs in the official layout,
    the same assumptions pricing both, and the memory planner fits them. The shipped engine shares are the
    ones plan's note names: at the Qwen families' 0.3, Llama's and OLMo's colocated KV caches hold fewer
    sequences than a rank decodes and those cells cost more than the official layout."""
    _, cells = _paper(tmp_path)
    resources.check_cells(cells)  # the raised shares fit the 80 GB GPUs
    costs = cost.estimate(cells, cost.assumptions(spec.CostAssumptions(), []))
    for c in cells:
        cc = costs[c.id]
        assert cc is not None and cc.official is not None and cc.ours.gpus == 8
        assert cc.kv_seqs >= cc.seqs_per_gpu, c.label
        assert cc.ours.gpu_h <= cc.official.gpu_h, c.label
        assert cc.ours.labels == cc.official.labels  # labels are made the same way in both layouts
    shipped = {c.config.model: c.config.train.vllm_gpu_memory_utilization for c in cells}
    undo = "".join(
        f"\n  - when: {{model: {m}}}\n    set: {{train.vllm_gpu_memory_utilization: 0.3}}\n"
        for m in ("llama3.1-8b-instruct", "olmo2-7b")
    )
    _, small = _paper(tmp_path, undo)
    costs = cost.estimate(small, cost.assumptions(spec.CostAssumptions(), []))
    shares = {}
    for c in small:
        cc = costs[c.id]
        if cc.kv_seqs < cc.seqs_per_gpu:  # TRL's engine would decode fewer than it could
            shares[c.config.model] = math.ceil(cc.full_share * 100) / 100  # as plan's note rounds it
            assert cc.ours.gpu_h > cc.official.gpu_h, c.label
    assert shares == {m: shipped[m] for m in ("llama3.1-8b-instruct", "olmo2-7b")}
    # a label set is counted once: split over the 6 cells of each family that train on it
    costs = cost.estimate(cells, spec.CostAssumptions())
    labelled = [
        costs[c.id].ours.labels for c in cells if c.config.reward in ("majority_vote", "incorrect_label")
    ]
    assert len(labelled) == 24 and all(x > 0 for x in labelled)
    one_family = [
        costs[c.id].ours.labels
        for c in cells
        if c.config.model == "qwen2.5-math-7b" and c.config.reward in ("majority_vote", "incorrect_label")
    ]
    assert len(set(one_family)) == 1


def test_the_printed_block_fits_80_columns_and_states_every_assumption(tmp_path: Path):
    _, cells = _paper(tmp_path)
    a = spec.CostAssumptions()
    lines = cost.summary_lines(cells, cost.estimate(cells, a), a)
    assert lines and all(len(x) <= 80 for x in lines), max(lines, key=len)
    text = "\n".join(lines)
    for key, value in a.model_dump().items():
        assert f"{key}={value:g}" in text
    assert "official" in text and "above the official layout" not in text  # as shipped: none
    undo = "\n  - when: {model: llama3.1-8b-instruct}\n    set: {train.vllm_gpu_memory_utilization: 0.3}\n"
    _, small = _paper(tmp_path, undo)
    text = "\n".join(cost.summary_lines(small, cost.estimate(small, a), a))
    assert "llama3.1-8b-instruct: above the official layout" in text and "0.34 holds them all" in text
    # a sweep of CPU cells (no GPUs asked for) has no cost block
    smoke = grid.expand(spec.load_sweep(ROOT / "sweeps" / "smoke.yaml"), check_inputs=False)
    assert cost.summary_lines(smoke, cost.estimate(smoke, a), a) == []


def test_a_model_name_longer_than_its_column_is_printed_whole(tmp_path: Path):
    _, cells = _paper(tmp_path)
    a = spec.CostAssumptions()
    costs = cost.estimate(cells, a)
    long = "qwen2.5-math-7b-a-site-fine-tune-v2"
    renamed = [c for c in cells if costs.get(c.id)][:1]
    renamed[0].config.model = long  # the printed block reads the name only
    lines = cost.summary_lines(renamed, costs, a)
    row = next(x for x in lines if x.startswith(long))
    header = lines[1]
    assert row[len(long)] == " " and len(row) == len(header)  # the columns after it moved, aligned


def test_plan_json_carries_the_cost_and_assumptions_move_it(tmp_path: Path):
    f, cells = _paper(tmp_path, "\ncost: {train_tflops: 500}\n")
    results = tmp_path / "results"
    payload = json.loads(run_cli("plan", str(f), "--json", "--results", str(results)).stdout)
    assert payload["cost"]["assumptions"]["train_tflops"] == 500  # the sweep's `cost:` section
    assert payload["cost"]["assumptions"]["decode_tokens_per_s"] == 2500  # a default
    row = payload["cells"][0]["cost"]
    for layout in ("ours", "official"):
        assert {"wall_h", "gpu_h", "rollout", "train", "eval", "labels", "gpus"} <= set(row[layout])
    assert row["ours"]["gpu_h"] == pytest.approx(
        sum(row["ours"][p] for p in ("rollout", "train", "eval", "labels")), abs=0.05
    )
    total = sum(c["cost"]["ours"]["gpu_h"] for c in payload["cells"])
    assert payload["cost"]["gpu_h"] == pytest.approx(total, abs=1)
    # --assume on top of the section: twice the decode speed halves every rollout
    faster = run_cli(
        "plan", str(f), "--json", "--results", str(results), "--assume", "decode_tokens_per_s=5000"
    )
    fast = json.loads(faster.stdout)
    assert fast["cost"]["assumptions"]["train_tflops"] == 500
    assert fast["cells"][0]["cost"]["ours"]["rollout"] == pytest.approx(row["ours"]["rollout"] / 2, rel=0.01)
    # the table output carries the block
    text = run_cli("plan", str(f), "--results", str(results)).stdout
    assert "cost per cell" in text and "train_tflops=500" in text


@pytest.mark.parametrize(
    ("args", "edit", "words"),
    [
        (("--assume", "train_tflops=0"), "", ("--assume train_tflops", "greater than 0")),
        (("--assume", "decode_tokens_per_s=nan"), "", ("--assume decode_tokens_per_s", "finite")),
        (("--assume", "pad_factor=0.5"), "", ("--assume pad_factor", "greater than or equal to 1")),
        (("--assume", "decode_tps=3000"), "", ("--assume", "decode_tps", "decode_tokens_per_s")),
        (("--assume", "train_tflops"), "", ("--assume", "KEY=VALUE")),
        ((), "\ncost: {response_tokens: -700}\n", ("cost.response_tokens", "greater than 0")),
        ((), "\ncost: {gpus: 8}\n", ("cost.gpus", "unknown setting")),
    ],
)
def test_a_bad_assumption_is_one_line_and_exit_2(tmp_path: Path, args, edit, words):
    f = _write(tmp_path, edit)
    proc = run_cli("plan", str(f), "--results", str(tmp_path / "results"), *args, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    for w in words:
        assert w in line, line
