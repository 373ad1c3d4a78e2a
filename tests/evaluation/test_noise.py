"""spurisweep/evaluation/noise.py and `spurisweep noise-floor`: the same weights evaluated greedily at two batch sizes
(the real tiny model, transformers, on this CPU), the record it writes, and `report` printing it next to
that model's greedy deltas."""

from __future__ import annotations

import json

import pytest

from spurisweep import artifacts
from spurisweep.evaluation import noise
from spurisweep.models import families
from tests.storebuilder import StoreBuilder, outcomes, run_cli


def test_a_noise_floor_is_measured_recorded_and_reported(tmp_path):
    results = tmp_path / "results"
    proc = run_cli(
        "noise-floor",
        "--model",
        "tiny",
        "--benchmark",
        "arith",
        "--batch-sizes",
        "1,5",
        "--limit",
        "10",
        "--results",
        str(results),
    )
    assert "noise floor on arith, tiny (untrained weights)" in proc.stdout, proc.stdout
    (rec,) = noise.floors(results)
    assert rec["batch_sizes"] == [1, 5] and rec["n_problems"] == 10 and rec["model"] == "tiny"
    assert 0 <= rec["flipped"] <= 10 and rec["points"] == rec["points"]  # measured, not NaN
    # its two evaluations are stored evaluations (evaluation.run): every problem's row, read back on a rerun
    evals = results / "_noise" / "evals"
    assert [len(artifacts.read_jsonl(evals / f"{e}.jsonl")) for e in rec["evaluations"]] == [10, 10]
    assert rec["evaluations"][0].endswith("-b1") and rec["evaluations"][1].endswith("-b5")

    def boom(*a, **k):
        raise AssertionError("a stored noise evaluation was generated again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(families, "load_model_and_tokenizer", boom)
        again = noise.measure(
            model="tiny", model_path=None, checkpoint=None, benchmark="arith", batch_sizes=(1, 5), limit=10,
            results=results,
        )  # fmt: skip
    assert {k: again[k] for k in ("points", "flipped", "evaluations")} == {
        k: rec[k] for k in ("points", "flipped", "evaluations")
    }
    # report prints it under a pivot of that model on that benchmark, and not for another benchmark
    with StoreBuilder(results / "spurisweep.duckdb") as b:
        b.baseline("tiny", "arith", outcomes(0.5, 10))
        cid = b.cell("tiny", "random")
        b.evaluation(cid, 2, "arith", outcomes(0.6, 10))
    out = run_cli(
        "report", "--sweep", "t", "--results", str(results), "--benchmark", "arith", "--format", "json"
    )
    notes = json.loads(out.stdout)["notes"]
    assert any(n.startswith("noise floor on arith, tiny") for n in notes), notes


def test_a_sampled_benchmark_or_one_batch_size_is_one_line(tmp_path):
    for args, field in (
        (["--benchmark", "aime24"], "--benchmark"),
        (["--batch-sizes", "8"], "--batch-sizes"),
        (["--batch-sizes", "8,8"], "--batch-sizes"),
        (["--model", "nope"], "model"),
    ):
        cmd = ["noise-floor", "--model", "tiny", *args, "--results", str(tmp_path / "r")]
        if args[0] == "--model":
            cmd = ["noise-floor", *args, "--results", str(tmp_path / "r")]
        proc = run_cli(*cmd, check=False)
        assert proc.returncode == 2, proc.stderr
        assert (
            len(proc.stderr.strip().splitlines()) == 1
            and field in proc.stderr
            and "Traceback" not in proc.stderr
        )
