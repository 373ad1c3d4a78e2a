"""Resources checked before anything is queued: per-node totals against the sweep's node shape, and the
memory planner's per-GPU estimate against the GPU (real CLI in subprocesses, the shipped paper sweep)."""

from __future__ import annotations

import json
from pathlib import Path

from spurisweep.plan import grid, spec
from spurisweep.plan import node as resources
from tests.storebuilder import run_cli

ROOT = Path(__file__).resolve().parents[2]


def _paper_cells(tmp_path: Path, edit: str = "") -> tuple[Path, list[grid.Cell]]:
    text = (ROOT / "sweeps" / "paper_table.yaml").read_text() + edit
    f = tmp_path / "paper.yaml"
    f.write_text(text)
    return f, grid.expand(spec.load_sweep(f))


def test_the_paper_sweep_fits_sharded_and_asks_what_a_node_has(tmp_path: Path):
    f, cells = _paper_cells(tmp_path)
    est = resources.check_cells(cells)
    for c in cells:
        assert c.config.train.sharding == "fsdp"
        assert est[c.id] is not None and est[c.id].peak < 80e9
        t = resources.node_totals(c.config)
        assert (t.tasks, t.gpus) == (8, 8) and t.cpus <= 128 and t.mem_gb <= 1000
    proc = run_cli("plan", str(f), "--json")
    payload = json.loads(proc.stdout)
    row = payload["cells"][0]
    assert row["node"]["cpus"] == 96 and row["memory"]["fits"] is True


def test_unsharded_7b_cells_do_not_fit_and_say_what_would(tmp_path: Path):
    f, _ = _paper_cells(tmp_path, "\n  - when: {model: olmo2-7b}\n    set: {train.sharding: none}\n")
    proc = run_cli("plan", str(f), check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    line = proc.stderr.strip()
    assert "train.sharding" in line and "olmo2-7b" in line and "GB per GPU" in line and "fsdp" in line


def test_a_request_above_the_node_shape_is_one_line(tmp_path: Path):
    f, _ = _paper_cells(tmp_path, "\n  - when: {model: qwen2.5-7b}\n    set: {resources.cpus_per_task: 64}\n")
    for cmd in ("plan", "run"):
        proc = (
            run_cli(cmd, str(f), "--dry-run", check=False)
            if cmd == "run"
            else run_cli(cmd, str(f), check=False)
        )
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert (
            "resources.cpus_per_task" in proc.stderr
            and "512 CPUs" in proc.stderr
            and "has 128" in proc.stderr
        )
