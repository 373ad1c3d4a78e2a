"""Qwen2 0.5B / 1.5B shapes for the random-weight GPU benchmarks (bench/eval.py, bench/train_step.py)."""

SHAPES = {
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
    ),
    "1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
    ),
}
QWEN2_VOCAB = 151_936
