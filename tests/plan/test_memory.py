"""The memory planner: parameter counts from config.json, a hand-computed estimate, and the paper's cells.

Parameter counts are checked against transformers' own models (built small, random weights) and against
the published counts of the paper's families. No GPU is needed: the planner is arithmetic; its fit to a
measured peak is bench/memory_plan.py (CPU) and bench/gpu_check.py (CUDA).
"""

from __future__ import annotations

import json

import pytest

from spurisweep.errors import ConfigError, DataError
from spurisweep.plan import memory
from spurisweep.plan.presets import PRESETS

PUBLISHED = {  # parameters, from the model cards / RESEARCH.md
    "Qwen/Qwen2.5-Math-7B": 7.616e9,
    "meta-llama/Llama-3.1-8B": 8.030e9,
    "allenai/OLMo-2-1124-7B": 7.299e9,
    "Qwen/Qwen2.5-Math-1.5B": 1.54e9,
    "meta-llama/Llama-3.2-3B-Instruct": 3.21e9,
}
PAPER_FAMILIES = ["Qwen/Qwen2.5-Math-7B", "meta-llama/Llama-3.1-8B", "allenai/OLMo-2-1124-7B"]

SMALL = {  # a 2-layer llama small enough to count by hand
    "model_type": "llama",
    "vocab_size": 32,
    "hidden_size": 8,
    "intermediate_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "tie_word_embeddings": True,
}


def shipped(hub_id: str) -> memory.ModelShape:
    return memory.model_shape(memory.shipped_configs()[hub_id], hub_id)


@pytest.mark.parametrize("hub_id", sorted(PUBLISHED))
def test_published_parameter_counts(hub_id):
    assert shipped(hub_id).params == pytest.approx(PUBLISHED[hub_id], rel=0.005)


@pytest.mark.parametrize(
    "cls,extra",
    [
        ("LlamaConfig", {"tie_word_embeddings": True}),
        ("LlamaConfig", {"tie_word_embeddings": False, "attention_bias": True}),
        ("Qwen2Config", {"tie_word_embeddings": False}),  # biases on q, k, v
        ("Olmo2Config", {"tie_word_embeddings": False}),  # q_norm / k_norm
    ],
)
def test_counts_match_transformers_models(cls, extra):
    """The count from config.json equals the numel of the model transformers builds from that config."""
    import transformers

    dims = {k: v for k, v in SMALL.items() if k not in ("model_type", "tie_word_embeddings")}
    cfg = getattr(transformers, cls)(**dims, **extra)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    assert memory.model_shape(cfg.to_dict()).params == sum(p.numel() for p in model.parameters())


def test_hand_computed_estimate():
    shape = memory.model_shape(SMALL, "small")
    # per layer: q 8x8 + k, v 8x4 each (1 KV head of width 4) + o 8x8 = 192; MLP 3 x 8 x 16 = 384;
    # two norms 2 x 8 = 16 -> 592. Model: 2 x 592 + embeddings 32 x 8 (head tied) + final norm 8 = 1448
    assert shape.layer_params == 592
    assert shape.params == 1448
    est = memory.estimate(
        shape,
        micro_batch=1,
        prompt_len=3,
        completion_len=5,
        compute_dtype="fp32",
        fused_lm_head=False,
        overhead_gb=0.0,
    )
    assert est.weights == 1448 * 4 == 5792  # fp32 master
    assert est.gradients == 5792 and est.ddp_buckets == 0  # one process: no DDP
    assert est.optimizer == 2 * 5792  # AdamW's two fp32 moments
    assert est.compute_copy == 0  # fp32 compute needs no cast
    # per token per layer (4-byte elements): 2 norms x (4 + 2x4) x 8 = 192; attention 4 x (2x8 + 2x4) = 96;
    # MLP 4 x 4 x 16 = 256 -> 544; 8 tokens x 2 layers -> 8704
    assert memory.layer_activation_bytes_per_token(shape, 4) == 544
    assert est.activations == 2 * 8 * 544 == 8704
    # one layer's backward without checkpointing: 8 tokens x 4 B x (16 + 2x8) = 1024
    assert est.backward == 1024
    # LM head: final norm 8 x (4 + 8) x 8 = 768, plus fp32 logits and log-softmax of 5 completion tokens x 32
    assert est.lm_head == 768 + 2 * 5 * 32 * 4 == 2048
    assert est.training_peak == 5792 * 2 + 11584 + 8704 + max(1024, 2048) == 33920
    assert est.rollout_peak == 5792 + 11584  # no gradients or activations between updates
    assert est.fits(gpu_mem_gb=3.4e-5) and not est.fits(gpu_mem_gb=3.3e-5)  # 33920 B = 3.392e-5 GB


def test_hand_computed_fsdp_terms():
    shape = memory.model_shape(SMALL, "small")
    est = memory.estimate(shape, sharding="fsdp", world_size=2, compute_dtype="fp32", overhead_gb=0.0)
    assert est.weights == 5792 // 2 and est.optimizer == 5792
    # gathered units: root (embeddings 256 + final norm 8) + two layers (one computing, one prefetched)
    assert est.compute_copy == (264 + 2 * 592) * 4
    # the shard of the gradients plus one unit's full fp32 gradient before reduce-scatter
    assert est.gradients == 5792 // 2 + 592 * 4


def paper_cell(hub_id: str, **kw) -> memory.MemoryEstimate:
    train = PRESETS["paper"]["train"]
    world = 8
    settings = dict(
        world_size=world,
        # the paper preset leaves micro_batch to mini_batch / processes (sweeps/paper_table.yaml states 16)
        micro_batch=train["mini_batch"] // world,
        prompt_len=train["max_prompt_length"],
        completion_len=train["max_completion_length"],
        gpu_mem_gb=80.0,
    )
    return memory.estimate(shipped(hub_id), **(settings | kw))


@pytest.mark.parametrize("hub_id", PAPER_FAMILIES)
def test_paper_cells_do_not_fit_under_ddp(hub_id):
    est = paper_cell(hub_id, sharding="none", grad_checkpointing=True)
    states = est.weights + est.gradients + est.ddp_buckets + est.optimizer
    assert 140e9 < states < 165e9  # fp32 weights, gradients, DDP buckets, AdamW: 20 B per parameter
    assert not est.fits()
    assert "exceeds 80 GB" in est.problems()[0]
    assert any(s.change.get("sharding") == "fsdp" for s in est.suggestions())


@pytest.mark.parametrize("hub_id", PAPER_FAMILIES)
def test_paper_cells_fit_under_fsdp_over_8(hub_id):
    train_only = paper_cell(hub_id, sharding="fsdp", grad_checkpointing=True)
    assert train_only.fits() and 35e9 < train_only.training_peak < 70e9
    colocated = paper_cell(
        hub_id, sharding="fsdp", grad_checkpointing=True, vllm_gpu_memory_utilization=0.3, vllm_sleep=True
    )
    assert colocated.fits() and colocated.peak < 80e9
    awake = paper_cell(hub_id, sharding="fsdp", grad_checkpointing=True, vllm_gpu_memory_utilization=0.3)
    assert not awake.fits()  # an engine that never sleeps holds its share through the update
    assert {"vllm_sleep": True} in [s.change for s in awake.suggestions()]


def test_suggestions_fit_when_applied():
    est = paper_cell("Qwen/Qwen2.5-Math-7B", sharding="fsdp", micro_batch=64, grad_checkpointing=False)
    suggestions = est.suggestions()
    assert suggestions
    for s in suggestions:
        settings = {**vars(est.settings), **s.change}
        assert memory.estimate(est.shape, **settings).fits(), s
    assert est.as_dict()["fits"] is False and est.as_dict()["suggestions"]


def test_vllm_share_too_small_for_weights():
    est = paper_cell(
        "meta-llama/Llama-3.1-8B", sharding="fsdp", grad_checkpointing=True, vllm_gpu_memory_utilization=0.15
    )
    assert est.vllm_kv is not None and est.vllm_kv < est.vllm_seq_kv  # 12 GB cannot hold 16 GB of weights
    assert any("KV cache" in p for p in est.problems())
    assert all(
        memory.estimate(est.shape, **{**vars(est.settings), **s.change}).fits() for s in est.suggestions()
    )


def test_bad_settings_name_the_field():
    shape = memory.model_shape(SMALL)
    with pytest.raises(ConfigError, match="sharding 'zero3'"):
        memory.estimate(shape, sharding="zero3", micro_batch=0)
    with pytest.raises(ConfigError, match="micro_batch 0"):
        memory.estimate(shape, micro_batch=0)
    with pytest.raises(ConfigError, match="unknown micro"):
        memory.estimate(shape, micro=4)
    with pytest.raises(ConfigError, match="hidden_size"):
        memory.model_shape({"num_attention_heads": 2}, "cfg.json")


def test_family_shape_sources(tmp_path):
    qwen = memory.family_shape("qwen2.5-math-7b")
    assert qwen.params == shipped("Qwen/Qwen2.5-Math-7B").params
    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    assert memory.family_shape("tiny", str(tmp_path)).params == 1448  # a local model_path: its own config
    tiny = memory.family_shape("tiny", build=True)  # a built-in local family: its built folder's config
    assert tiny.hidden_size == 64 and tiny.num_layers == 2
    with pytest.raises(DataError, match="no shipped config"):
        memory.family_shape("tiny", "someone/unknown-model")
    with pytest.raises(DataError, match="no config.json"):
        memory.load_config(tmp_path / "absent")
