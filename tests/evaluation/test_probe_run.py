"""The memorisation probe end to end: the runner on the tiny model (real transformers generation, the real
grader), its files ingested into a real DuckDB and pivoted by `report`, shared and never recomputed
(also under concurrent callers), and the `spurisweep probe` command with good and bad input."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from spurisweep import artifacts, cli, store
from spurisweep.analysis import report
from spurisweep.data import sets as data
from spurisweep.errors import ConfigError
from spurisweep.evaluation import probe, probe_run
from spurisweep.plan.spec import EvalSettings, ProtocolOverride
from tests.storebuilder import run_cli

# arith problems are 7 words ("What is 12 + 5 + 3?"): 0.4 and 0.6 cut them, 0.8 leaves 1 word (skipped)
ARITH = EvalSettings(protocols={"arith": ProtocolOverride(limit=4)})
TOKENS = 6  # the random tiny model never stops by itself: short continuations keep the tests quick


def _probe_tiny(results: Path, fractions=(0.4, 0.6, 0.8), **kw) -> list[dict]:
    return probe_run.run_probes(
        model="tiny",
        benchmarks=["arith"],
        fractions=list(fractions),
        results=results,
        settings=ARITH,
        max_new_tokens=TOKENS,
        **kw,
    )


def test_probe_rows_are_stored_ingested_and_pivotable(tmp_path):
    metas = _probe_tiny(tmp_path)
    assert [m["fraction"] for m in metas] == [0.4, 0.6, 0.8]
    assert len({m["probe_id"] for m in metas}) == 3
    folder = artifacts.probes_dir(tmp_path)
    rows = artifacts.read_jsonl(folder / f"{metas[0]['probe_id']}.jsonl")
    assert len(rows) == 4 and all(set(r) == set(probe_run.ROW_FIELDS) for r in rows)
    first, words = rows[0], data.load_benchmark("arith", limit=1)[0].problem.split()
    assert first["skipped"] is False
    assert (first["prefix"], first["remainder"]) == (" ".join(words[:3]), " ".join(words[3:]))
    assert metas[0]["prompt_head"] == ""  # tiny's `chat` template: the cut problem as raw text
    assert metas[2]["summary"]["n"] == 0 and metas[2]["summary"]["skipped"] == 4
    assert metas[1]["summary"]["n"] == 4 and metas[1]["n_problems"] == 4

    assert store.ingest(tmp_path)["probes"] == 3
    assert store.ingest(tmp_path)["probes"] == 0  # idempotent
    with store.connect(store.db_path(tmp_path)) as con:
        assert con.execute("SELECT count(*) FROM probe_samples").fetchone()[0] == 12
        assert con.execute("SELECT count(*) FROM probe_samples WHERE skipped").fetchone()[0] == 4
        model, lineage, frac = con.execute(
            "SELECT model, lineage, fraction FROM probes WHERE probe_id = ?", [metas[1]["probe_id"]]
        ).fetchone()
        assert (model, lineage, frac) == ("tiny", "tiny", 0.6)
        p = report.pivot(con, sweep=None, rows="model", cols="benchmark", metric="probe_rouge_l")
        assert p.row_values == ["tiny"] and p.col_values == ["arith"]
        cell = p.cells[("tiny", "arith")]
        want = sum(r["rouge_l"] for r in artifacts.read_jsonl(folder / f"{metas[1]['probe_id']}.jsonl")) / 4
        assert cell["n"] == 1 and cell["mean"] == pytest.approx(want)
        assert any("60%" in n for n in p.notes)
        by_fraction = report.pivot(
            con, sweep=None, rows="benchmark", cols="fraction", metric="probe_accuracy"
        )
        assert by_fraction.col_values == [0.4, 0.6]  # 0.8 probed nothing: no value


def test_a_stored_probe_is_never_computed_again(tmp_path, monkeypatch):
    first = _probe_tiny(tmp_path)

    def boom(*a, **k):
        raise AssertionError("a stored probe was computed again")

    monkeypatch.setattr(probe_run.ProbeJob, "share", boom)
    monkeypatch.setattr(probe_run.families, "load_model_and_tokenizer", boom)
    assert _probe_tiny(tmp_path) == first
    # another fraction is another probe
    monkeypatch.undo()
    more = _probe_tiny(tmp_path, fractions=[0.5])
    assert more[0]["probe_id"] not in {m["probe_id"] for m in first}


def test_concurrent_cells_compute_the_probe_once(tmp_path, monkeypatch):
    calls = []
    real = probe_run.ProbeJob.share

    def counting(job, *a, **k):
        calls.append(job.making)
        return real(job, *a, **k)

    monkeypatch.setattr(probe_run.ProbeJob, "share", counting)
    out: list[list[dict]] = []

    def cell() -> None:
        out.append(
            probe_run.ensure_probe(
                "tiny", None, ["arith"], [0.4, 0.6], tmp_path, settings=ARITH, max_new_tokens=TOKENS
            )
        )

    threads = [threading.Thread(target=cell) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(out) == 2 and out[0] == out[1]


def test_a_probe_job_makes_only_the_fractions_not_stored(tmp_path, monkeypatch):
    """Asked for 0.4 and 0.6 when 0.4 is stored, the job generates 0.6 alone (its metadata says so) and
    returns both, the stored one as it was."""
    first = _probe_tiny(tmp_path, fractions=[0.4])
    made = []
    real = probe_run.ProbeJob.share

    def counting(job, *a, **k):
        made.append([p.fraction for p in job.making])
        return real(job, *a, **k)

    monkeypatch.setattr(probe_run.ProbeJob, "share", counting)
    both = _probe_tiny(tmp_path, fractions=[0.4, 0.6])
    assert made == [[0.6]]
    assert both[0] == first[0] and both[1]["fraction"] == 0.6 and both[1]["joint_fractions"] == [0.6]


def test_probe_ids_follow_model_weights_checkpoint_and_protocol():
    proto = probe_run.ProbeProtocol("math500", 0.6, "chat", 3072)
    base = probe_run.probe_id("qwen2.5-math-7b", None, None, proto)
    assert base == probe_run.probe_id("qwen2.5-math-7b", None, None, proto)
    others = {
        probe_run.probe_id("llama3.1-8b", None, None, proto),
        probe_run.probe_id("qwen2.5-math-7b", "/w", None, proto),
        probe_run.probe_id("qwen2.5-math-7b", None, "ckpt", proto),
        probe_run.probe_id(
            "qwen2.5-math-7b", None, None, probe_run.ProbeProtocol("math500", 0.4, "chat", 3072)
        ),
        probe_run.probe_id(
            "qwen2.5-math-7b", None, None, probe_run.ProbeProtocol("aime24", 0.6, "chat", 3072)
        ),
    }
    assert base not in others and len(others) == 5


def test_the_prompt_is_a_completion_of_the_templates_head():
    assert probe_run.template_head("qa") == "Question: "
    assert probe_run.template_head("plain") == ""
    assert probe_run.template_head("chat") == "" and probe_run.template_head("chat_boxed") == ""
    assert probe_run.template_head("r1").endswith("User: ")
    with pytest.raises(ConfigError) as exc:
        probe_run.template_head("nope")
    assert exc.value.field == "prompt"


def test_an_empty_benchmark_names_the_field(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    settings = EvalSettings(protocols={"math500": ProtocolOverride(path=str(empty))})
    with pytest.raises(ConfigError) as exc:
        probe_run.run_probes(
            model="tiny", benchmarks=["math500"], fractions=[0.6], results=tmp_path, settings=settings
        )
    assert exc.value.field == "benchmarks" and "no problems" in str(exc.value)


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["spurisweep", *args])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    return int(exc.value.code), capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--benchmarks", "math5000"], "benchmarks"),
        (["--benchmarks", " , "], "benchmarks"),
        (["--benchmarks", "math500", "--fractions", "0.4,1.5"], "fractions"),
        (["--benchmarks", "math500", "--fractions", "0"], "fractions"),
        (["--benchmarks", "math500", "--fractions", ""], "fractions"),
    ],
)
def test_bad_probe_input_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, args, field):
    code, err = _cli(monkeypatch, capsys, "probe", "--model", "tiny", *args, "--results", str(tmp_path))
    assert code == 2
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert len(lines) == 1 and field in lines[0], err
    assert not artifacts.probes_dir(tmp_path).exists()  # nothing was computed


def test_probe_command_on_math500_and_randcalc(tmp_path, shared_data, monkeypatch):
    """`spurisweep probe --model tiny --benchmarks math500,randcalc --limit 5` through the real entry point
    (continuations cut to 24 tokens to keep it short: the random tiny model never stops by itself)."""
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    proc = run_cli(
        "probe", "--model", "tiny", "--benchmarks", "math500,randcalc", "--limit", "5",
        "--max-new-tokens", "24", "--results", str(tmp_path), "--format", "csv",
    )  # fmt: skip
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("benchmark,fraction,n,skipped,exact_match,rouge_l,accuracy")
    rows = [x.split(",") for x in lines[1:]]
    assert [(r[0], float(r[1])) for r in rows] == [
        (b, f) for b in ("math500", "randcalc") for f in probe.DEFAULT_FRACTIONS
    ]
    assert all(int(r[2]) + int(r[3]) == 5 for r in rows)
    with store.connect(store.db_path(tmp_path)) as con:
        got = con.execute("SELECT benchmark, count(*) FROM probes GROUP BY 1 ORDER BY 1").fetchall()
        assert got == [("math500", 3), ("randcalc", 3)]
        meta = con.execute("SELECT meta->>'data_source' FROM probes WHERE benchmark = 'math500'").fetchone()[
            0
        ]
        assert meta.endswith("math500.json")  # the local file, not the hub
