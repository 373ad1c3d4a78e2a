"""Benchmark registry and loaders: protocol defaults against RESEARCH.md, the real offline data in
../shared/data (as JSON, and rewritten as JSONL and parquet), SPURISWEEP_DATA_DIR lookup, field mapping,
and the DataError / ConfigError paths."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from spurisweep.data import sets as data
from spurisweep.errors import ConfigError, DataError
from tests.conftest import ROOT

RESEARCH = ROOT.parent / "shared" / "RESEARCH.md"
COUNTS = {"math500": 500, "aime24": 30, "aime25": 30, "amc": 83}


# ---------------------------------------------------------------------------------------------- protocols
def test_protocol_defaults_are_the_papers():
    """RESEARCH.md "Evaluation protocol": MATH-500 1 greedy sample (pass@1); AIME24/25 and AMC 8 samples at
    temperature 0.6 (avg@8, pass@8); max 3072 new tokens."""
    p = data.BENCHMARKS["math500"].protocol
    assert (p.samples, p.temperature, p.max_new_tokens) == (1, 0.0, 3072)
    assert p.headline == ("pass@1",)
    for name in ("aime24", "aime25", "amc"):
        p = data.BENCHMARKS[name].protocol
        assert (p.samples, p.temperature, p.top_p, p.max_new_tokens) == (8, 0.6, 1.0, 3072), name
        assert p.headline == ("avg@8", "pass@8")


def test_protocol_defaults_match_research_md_text():
    """Reads the protocol column of RESEARCH.md itself, so a change there fails here."""
    if not RESEARCH.exists():
        pytest.skip("../shared/RESEARCH.md is not present")
    text = RESEARCH.read_text()
    section = text.split("## Evaluation protocol", 1)[1].split("\n## ", 1)[0]
    rows = {"MATH-500": "math500", "AIME24": "aime24", "AIME25": "aime25", "AMC": "amc"}
    seen = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or cells[0] not in rows:
            continue
        proto = data.BENCHMARKS[rows[cells[0]]].protocol
        m = re.search(r"(\d+) (?:greedy )?samples?", cells[2])
        assert m and int(m.group(1)) == proto.samples, cells
        if "greedy" in cells[2]:
            assert proto.temperature == 0.0
        else:
            t = re.search(r"temperature ([\d.]+)", cells[2])
            assert t and float(t.group(1)) == proto.temperature, cells
        hub = re.search(r"`([^`]+)`", cells[1])
        assert hub and hub.group(1) == data.BENCHMARKS[rows[cells[0]]].hub_id
        split = re.search(r"\((\w+);", cells[1])
        if split:
            assert split.group(1) == data.BENCHMARKS[rows[cells[0]]].split, cells
        seen.add(rows[cells[0]])
    assert seen == set(rows.values())
    limit = re.search(r"Max (\d+) new tokens", section)
    assert limit and all(data.BENCHMARKS[b].protocol.max_new_tokens == int(limit.group(1)) for b in seen)


def test_hub_sources_and_aime25_alternative():
    b = data.BENCHMARKS
    assert (b["math500"].hub_id, b["math500"].split) == ("HuggingFaceH4/MATH-500", "test")
    assert (b["aime24"].hub_id, b["aime24"].split) == ("HuggingFaceH4/aime_2024", "train")
    assert (b["amc"].hub_id, b["amc"].split) == ("AI-MO/aimo-validation-amc", "train")
    assert (b["aime25"].hub_id, b["aime25"].split) == ("math-ai/aime25", "test")
    oc = b["aime25"].sources[1]
    assert oc.hub_id == "opencompass/AIME2025" and oc.configs == ("AIME2025-I", "AIME2025-II")


def test_unknown_benchmark_is_a_config_error():
    with pytest.raises(ConfigError, match="did you mean 'math500'"):
        data.load_benchmark("math50")


# ---------------------------------------------------------------------------------------------- real data
@pytest.mark.parametrize("name", sorted(COUNTS))
def test_shared_data_files_load_via_data_dir(name, shared_data, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    probs = data.load_benchmark(name)
    assert len(probs) == COUNTS[name]
    assert len({p.id for p in probs}) == len(probs)
    assert all(p.problem.strip() and p.answer for p in probs)
    assert data.benchmark_source(name) == str(shared_data / f"{name}.json")
    raw = json.loads((shared_data / f"{name}.json").read_text())
    assert [p.answer for p in probs] == [str(r["answer"]).strip() for r in raw]  # answers as given
    assert [p.problem for p in probs] == [r["prompt"] for r in raw]


def test_answers_kept_as_written(shared_data):
    amc = data.load_problems(str(shared_data / "amc.json"))
    assert amc[0].answer == "142.0"  # the grader, not the loader, knows 142.0 = 142
    aime25 = data.load_problems(str(shared_data / "aime25.json"))
    assert aime25[0].answer == "070"
    math500 = data.load_problems(str(shared_data / "math500.json"), limit=1)
    assert math500[0].id == "test/precalculus/807.json"
    assert math500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"


def test_jsonl_and_parquet_copies_load_the_same(shared_data, tmp_path):
    raw = json.loads((shared_data / "amc.json").read_text())
    jsonl = tmp_path / "amc.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in raw) + "\n")
    parquet = tmp_path / "amc.parquet"
    pd.DataFrame(raw).to_parquet(parquet)
    want = data.load_problems(str(shared_data / "amc.json"))
    assert data.load_problems(str(jsonl)) == want
    assert data.load_problems(str(parquet)) == want
    assert data.load_problems(str(parquet), limit=5) == want[:5]


def test_data_dir_finds_other_suffixes_by_stem(shared_data, tmp_path, monkeypatch):
    raw = json.loads((shared_data / "aime24.json").read_text())
    pd.DataFrame(raw).to_parquet(tmp_path / "aime24.parquet")
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(tmp_path))
    assert data.benchmark_source("aime24") == str(tmp_path / "aime24.parquet")
    assert [p.answer for p in data.load_benchmark("aime24", limit=3)] == [r["answer"] for r in raw[:3]]


def test_explicit_path_wins_over_data_dir(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(shared_data))
    f = tmp_path / "mine.jsonl"
    f.write_text(json.dumps({"question": "1+1?", "answer": 2}) + "\n")
    probs = data.load_benchmark("math500", path=str(f))
    assert probs == [data.Problem("0", "1+1?", "2")]


def test_missing_data_dir_file_falls_back_to_hub_and_fails_clearly(tmp_path, monkeypatch):
    """Offline (conftest sets HF_DATASETS_OFFLINE): the hub error says how to point at local files."""
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert data.benchmark_source("math500") == "HuggingFaceH4/MATH-500"
    with pytest.raises(DataError, match="SPURISWEEP_DATA_DIR"):
        data.load_benchmark("math500", limit=2)


# ---------------------------------------------------------------------------------------------- field mapping
def test_hub_style_fields_are_mapped(tmp_path):
    """MATH-500 on the hub: problem/answer/unique_id; opencompass: question; AMC: float answers."""
    f = tmp_path / "hub.json"
    f.write_text(
        json.dumps(
            [
                {"problem": "P1", "answer": "3", "unique_id": "test/a/1.json", "subject": "x", "level": 1},
                {"question": "P2", "answer": 142.0},
                {"Problem": "P3", "Answer": 204, "ID": "2024-II-4"},
            ]
        )
    )
    probs = data.load_problems(str(f))
    assert probs == [
        data.Problem("test/a/1.json", "P1", "3"),
        data.Problem("1", "P2", "142.0"),
        data.Problem("2024-II-4", "P3", "204"),
    ]


def test_parquet_numeric_answers_print_like_python(tmp_path):
    f = tmp_path / "nums.parquet"
    pd.DataFrame({"problem": ["a", "b"], "answer": [142.0, 81.5], "id": [7, 8]}).to_parquet(f)
    assert data.load_problems(str(f)) == [data.Problem("7", "a", "142.0"), data.Problem("8", "b", "81.5")]


def test_explicit_fields(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"text": "Q", "gold": "5", "problem": "ignored", "answer": "no"}) + "\n")
    assert data.load_problems(str(f), problem_field="text", answer_field="gold")[0] == data.Problem(
        "0", "Q", "5"
    )
    with pytest.raises(DataError, match=r"row 0 has no field 'nope' \(answer\)"):
        data.load_problems(str(f), answer_field="nope")


def test_repeated_ids_are_made_unique(tmp_path):
    f = tmp_path / "dup.json"
    f.write_text(
        json.dumps([{"problem": "a", "answer": "1", "id": 5}, {"problem": "b", "answer": "2", "id": 5}])
    )
    assert [p.id for p in data.load_problems(str(f))] == ["5", "5#1"]


# ---------------------------------------------------------------------------------------------- errors
def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        data.load_problems(str(tmp_path / "nope.json"))
    with pytest.raises(DataError, match="file not found"):
        data.load_benchmark("amc", path=str(tmp_path / "nope.parquet"))


def test_missing_fields_name_the_row_and_the_candidates(tmp_path):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps([{"problem": "ok", "answer": "1"}, {"text": "no problem field", "answer": "2"}]))
    with pytest.raises(DataError, match=r"row 1 has none of the problem fields problem, prompt, question"):
        data.load_problems(str(f))
    f.write_text(json.dumps([{"problem": "no answer"}]))
    with pytest.raises(DataError, match="none of the answer fields"):
        data.load_problems(str(f))
    f.write_text(json.dumps([{"problem": "null answer", "answer": None}]))
    with pytest.raises(DataError, match="none of the answer fields"):
        data.load_problems(str(f))


def test_malformed_files(tmp_path):
    bad_jsonl = tmp_path / "bad.jsonl"
    bad_jsonl.write_text('{"problem": "a", "answer": "1"}\n{oops\n')
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        data.load_problems(str(bad_jsonl))
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("[{")
    with pytest.raises(DataError, match="cannot read"):
        data.load_problems(str(bad_json))
    not_rows = tmp_path / "rows.json"
    not_rows.write_text(json.dumps(["a", "b"]))
    with pytest.raises(DataError, match="row 0 is a str"):
        data.load_problems(str(not_rows))
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps([{"prompt": [{"role": "user", "content": "x"}], "answer": "1"}]))
    with pytest.raises(DataError, match="expected text"):
        data.load_problems(str(chat))
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_text("not parquet")
    with pytest.raises(DataError, match="cannot read as parquet"):
        data.load_problems(str(bad_parquet))


def test_wrapped_json_object(tmp_path):
    f = tmp_path / "wrapped.json"
    f.write_text(json.dumps({"data": [{"problem": "a", "answer": "1"}]}))
    assert data.load_problems(str(f)) == [data.Problem("0", "a", "1")]


# ---------------------------------------------------------------------------------------------- hub (faked)
def test_multi_config_hub_source_concatenates_with_prefixed_ids(monkeypatch):
    """The hub cannot be reached here, so `read_hub` is replaced by canned rows (the network boundary only);
    what is tested is the concatenation of opencompass's two AIME 2025 configs and the fallback order."""
    calls = []

    def fake_read_hub(hub_id: str, split: str, config: str | None):
        calls.append((hub_id, split, config))
        if hub_id == "math-ai/aime25":
            raise DataError("cannot load data set 'math-ai/aime25'")
        return [{"question": f"{config} q{i}", "answer": str(i)} for i in range(2)]

    monkeypatch.delenv("SPURISWEEP_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "read_hub", fake_read_hub)
    probs = data.load_benchmark("aime25")
    assert calls == [
        ("math-ai/aime25", "test", None),
        ("opencompass/AIME2025", "test", "AIME2025-I"),
        ("opencompass/AIME2025", "test", "AIME2025-II"),
    ]
    assert [p.id for p in probs] == ["AIME2025-I/0", "AIME2025-I/1", "AIME2025-II/0", "AIME2025-II/1"]
    assert probs[2].problem == "AIME2025-II q0"


def test_builtin_arith_is_offline_and_deterministic():
    a = data.load_benchmark("arith", limit=5)
    assert a == data.load_benchmark("arith", limit=5) and len(a) == 5
    for p in a:  # "What is A op B + C?" with the stated answer
        x, op, y, _, c = p.problem.removeprefix("What is ").rstrip("?").split()
        assert int(p.answer) == {"+": int(x) + int(y), "-": int(x) - int(y), "*": int(x) * int(y)}[op] + int(
            c
        )


def test_a_benchmark_is_one_entry_with_its_fields_and_answer_format(tmp_path, monkeypatch):
    """A new benchmark is one Benchmark entry: its own field names and its own answer extractor (here the
    paper grader's, named as module:function), read by loading and by every grader; real files, real graders."""
    import json as _json

    from spurisweep.data import sets as d
    from spurisweep.grading import grade_batch

    f = tmp_path / "bench.json"
    f.write_text(_json.dumps([{"q": "What is 6 x 7?", "sol": "42"}, {"q": "What is 2 + 2?", "sol": "4"}]))
    entry = d.Benchmark(
        "mine",
        (d.HubSource("nowhere/mine", "test"),),
        d.GREEDY,
        display="My benchmark",
        problem_field="q",
        answer_field="sol",
        extractor="spurisweep.grading.paper:extract_answer",
    )
    monkeypatch.setitem(d.BENCHMARKS, "mine", entry)
    probs = d.load_benchmark("mine", path=str(f))
    assert [(p.problem, p.answer) for p in probs] == [("What is 6 x 7?", "42"), ("What is 2 + 2?", "4")]
    assert entry.display_name == "My benchmark"
    text = "so the final answer is 42"  # no box: math-verify's own extraction reads "the answer is" too,
    graded = entry.grading_text(text)  # the entry's extractor hands both graders the same answer
    assert graded == "\\boxed{42}"
    for grader in ("math_verify", "paper"):
        assert grade_batch([(graded, "42")], grader=grader, workers=0)[0].correct is True
    assert d.BENCHMARKS["math500"].grading_text(text) == text  # no extractor: the graders' own reading


def test_builtin_sets_are_entries_and_an_unknown_one_lists_them():
    """The built-in sets are BUILTINS entries (an alias loads the same rows); the error lists the entries."""
    from spurisweep.data import sets as d

    assert d.load_problems("builtin:arith-train", limit=3) == d.load_problems("builtin:arith", limit=3)
    assert (
        len(d.load_problems("builtin:toy-fresh")) == 200 and len(d.load_problems("builtin:randcalc?n=7")) == 7
    )
    with pytest.raises(DataError) as bad:
        d.load_problems("builtin:arith?n=3")  # settings only where the set takes them
    assert str(bad.value) == (
        "unknown built-in data set 'arith?n=3'; valid: builtin:arith, builtin:arith-test, builtin:toy, "
        "builtin:toy-test, builtin:toy-fresh, builtin:randcalc, builtin:randcalc-test "
        "(settings: ?n=500&steps=1-20&seed=0)"
    )
    with pytest.raises(DataError, match="data.train: builtin:randcalc"):
        d.check_source(
            "builtin:randcalc?steps=0", what="data.train"
        )  # a set with settings is built to check them


def test_display_names_and_sizes_are_the_entries():
    from spurisweep.data import sets as d

    names = {k: b.display_name for k, b in d.BENCHMARKS.items()}
    assert names["math500"] == "MATH-500" and names["aime24"] == "AIME24" and names["amc"] == "AMC"
    assert names["arith"] == "arith"  # no display: the name
    assert [d.BENCHMARKS[k].problems for k in ("math500", "aime24", "aime25", "amc")] == [500, 30, 30, 83]


# ---------------------------------------------------------------------------------------------- follow-up benchmarks
def _livemathbench_rows(config: str, n: int) -> list[dict[str, str]]:
    """A generated stand-in with LiveMathBench's schema (question, answer, question_type, subject)."""
    return [
        {
            "question": f"[{config}] What is {i} + {i}?",
            "answer": str(2 * i),
            "question_type": "Problem-Solving",
            "subject": "Algebra",
        }
        for i in range(n)
    ]


def test_livemathbench_reads_its_four_english_configs(monkeypatch):
    """The hub is replaced by generated rows of LiveMathBench's schema (the network boundary only): what is
    tested is the entry's hub id, split, configs, field mapping and prefixed ids."""
    calls = []

    def fake_read_hub(hub_id: str, split: str, config: str | None):
        calls.append((hub_id, split, config))
        return _livemathbench_rows(str(config), 2)

    monkeypatch.delenv("SPURISWEEP_DATA_DIR", raising=False)
    monkeypatch.setattr(data, "read_hub", fake_read_hub)
    entry = data.get_benchmark("livemathbench")
    probs = data.load_benchmark("livemathbench")
    assert {c[0] for c in calls} == {"opencompass/LiveMathBench"} and {c[1] for c in calls} == {"test"}
    assert [c[2] for c in calls] == [f"v202412_{x}_en" for x in ("AMC", "CCEE", "CNMO", "WLPMC")]
    assert len(probs) == 8 and probs[0].id == "v202412_AMC_en/0" and probs[1].answer == "2"
    assert entry.display_name == "LiveMathBench" and entry.protocol.samples > 16


@pytest.mark.parametrize(
    ("name", "row"),
    [
        ("livemathbench", {"question": "What is 3 + 4?", "answer": "7", "subject": "Algebra"}),
        ("math_beyond", {"problem": "What is 3 + 4?", "answer": "7", "topic": "Algebra", "difficulty": 5}),
    ],
)
def test_follow_up_benchmarks_load_offline_from_a_local_stand_in(name, row, tmp_path, monkeypatch):
    """A generated file of the benchmark's schema under SPURISWEEP_DATA_DIR is read instead of the hub."""
    entry = data.get_benchmark(name)
    rows = [{**row, "answer": str(i)} for i in range(5)]
    (tmp_path / entry.local_name).write_text(json.dumps(rows))
    monkeypatch.setenv("SPURISWEEP_DATA_DIR", str(tmp_path))
    probs = data.load_benchmark(name, limit=3)
    assert [p.answer for p in probs] == ["0", "1", "2"] and probs[0].problem == "What is 3 + 4?"
    assert entry.problems and entry.protocol.samples >= 48 and entry.protocol.temperature > 0
