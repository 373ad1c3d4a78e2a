"""The plan side: what a sweep asks for, checked and priced before anything is submitted.

    spec.py      the sweep file's pydantic models (CellConfig and its settings groups)
    presets.py   `paper` and `smoke` settings applied before a sweep's own
    grid.py      YAML grid -> cells: expansion, overrides, excludes, ids, plan-time checks
    clipping.py  clip modes -> GRPOConfig epsilons and batch layout
    grpo.py      settings -> GRPOConfig keyword arguments; `trl:` and cross-field validation
    memory.py    per-GPU memory estimate from a model config
    node.py      what a cell asks of a node (per-node totals, node shape, memory fit)
    cost.py      each cell's wall time and GPU-hours by phase, beside the official layout's
    fidelity.py  every resolved setting that differs from the paper's official code, with its effect

Nothing here imports torch, transformers or trl at module level; the job side imports spec and grpo.
"""
