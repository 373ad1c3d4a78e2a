"""Training sets and benchmarks: hub ids by default, local JSON/JSONL/parquet files on request, and an
offline built-in arithmetic set (`builtin:arith`) so a sweep can run with no network at all, and fresh
multi-step arithmetic no model can have seen (`builtin:randcalc`, the `randcalc` benchmark).

Every loader returns `Problem` rows with a stable, unique string id. Field names are mapped per data set:
the problem text is the first present of `problem`, `prompt`, `question` (also `Problem`, `Question`); the
answer the first of `answer`, `final_answer`, `expected_answer` (also `Answer`); the id the first of `id`,
`unique_id`, `problem_id`, `ID` (else the row index). Answers are kept as the data set writes them (AMC's
"142.0", AIME 2025's "070"): equivalence is the grader's job, not the loader's.

`BENCHMARKS` holds each benchmark's hub source(s) and its evaluation protocol, the named defaults of
RESEARCH.md ("Evaluation protocol"): MATH-500 one greedy sample (pass@1); AIME24, AIME25 and AMC eight
samples at temperature 0.6 (avg@8 and pass@8); 3072 new tokens at most. A sweep overrides any of them
under `eval.protocols.<benchmark>`. With $SPURISWEEP_DATA_DIR set, a benchmark is read from the file of
its name there (`math500.json`, or `.jsonl` / `.parquet`) before the hub is tried. A benchmark's entry is
all there is of it: figures print its `display` name, plan's cost model counts its `problems`.

`BUILTINS` holds the generated sets, one `BuiltinSet` entry each (its builder as "module:function", its
aliases, the ?settings it takes); `builtin:NAME` is read from there and nowhere else.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..artifacts import read_input_text
from ..errors import ConfigError, DataError, SpurisweepError, suggest

log = logging.getLogger(__name__)

PROBLEM_FIELDS = ("problem", "prompt", "question", "Problem", "Question")
ANSWER_FIELDS = ("answer", "final_answer", "expected_answer", "Answer")
ID_FIELDS = ("id", "unique_id", "problem_id", "ID")
LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet")

#: RESEARCH.md: "Max 3072 new tokens" for every benchmark
MAX_NEW_TOKENS = 3072


@dataclass(frozen=True)
class Problem:
    id: str
    problem: str
    answer: str


@dataclass(frozen=True)
class Protocol:
    """How a benchmark is evaluated (RESEARCH.md, "Evaluation protocol"). temperature 0 = greedy."""

    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = MAX_NEW_TOKENS

    @property
    def headline(self) -> tuple[str, ...]:
        """The metrics the paper reports under this protocol: pass@1 for one sample, else avg@n and pass@n."""
        return ("pass@1",) if self.samples == 1 else (f"avg@{self.samples}", f"pass@{self.samples}")


@dataclass(frozen=True)
class HubSource:
    """One way to get a benchmark from the hub: id, split, and the configs to concatenate (None: default)."""

    hub_id: str
    split: str
    configs: tuple[str | None, ...] = (None,)


@dataclass(frozen=True)
class Benchmark:
    name: str
    sources: tuple[HubSource, ...]  # tried in order; the first that loads wins
    protocol: Protocol
    local_name: str | None = None  # file name looked up in $SPURISWEEP_DATA_DIR
    description: str = ""
    # generated afresh, so no model can have memorised it: the control of the contamination diagnosis
    fresh: bool = False
    display: str = ""  # the name figures print (default: `name`)
    problems: int | None = None  # its size, for plan's cost model without a download (None: counted as 500)
    problem_field: str | None = None  # the source's field names when they are not the usual ones
    answer_field: str | None = None
    # its own answer format: "module:function" mapping a response to the answer text (None: none found);
    # graded as if the response had boxed it, by every grader (None: the graders' own extraction)
    extractor: str | None = None

    @property
    def display_name(self) -> str:
        return self.display or self.name

    def grading_text(self, response: str) -> str:
        """What the graders read: the response, or the answer this benchmark's own extractor found in it."""
        if self.extractor is None:
            return response
        import importlib

        module, _, attr = self.extractor.partition(":")
        found = getattr(importlib.import_module(module), attr)(response)
        return response if found is None else f"\\boxed{{{found}}}"

    @property
    def hub_id(self) -> str:
        return self.sources[0].hub_id

    @property
    def split(self) -> str:
        return self.sources[0].split


GREEDY = Protocol(samples=1, temperature=0.0, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS)
SAMPLED = Protocol(samples=8, temperature=0.6, top_p=1.0, max_new_tokens=MAX_NEW_TOKENS)
BENCHMARKS: dict[str, Benchmark] = {
    "math500": Benchmark(
        "math500",
        (HubSource("HuggingFaceH4/MATH-500", "test"),),
        GREEDY,
        "math500.json",
        "MATH-500 (500 problems; problem, answer, subject, level, unique_id)",
        display="MATH-500",
        problems=500,
    ),
    "aime24": Benchmark(
        "aime24",
        (HubSource("HuggingFaceH4/aime_2024", "train"),),
        SAMPLED,
        "aime24.json",
        "AIME 2024 (30 problems; problem, answer)",
        display="AIME24",
        problems=30,
    ),
    "aime25": Benchmark(
        "aime25",
        (
            HubSource("math-ai/aime25", "test"),
            HubSource("opencompass/AIME2025", "test", ("AIME2025-I", "AIME2025-II")),
        ),
        SAMPLED,
        "aime25.json",
        "AIME 2025 (30 problems; problem/question, answer)",
        display="AIME25",
        problems=30,
    ),
    "amc": Benchmark(
        "amc",
        (HubSource("AI-MO/aimo-validation-amc", "train"),),
        SAMPLED,
        "amc.json",
        "AMC 12 2022-23 (83 problems; problem, answer as floats like 142.0)",
        display="AMC",
        problems=83,
    ),
    "arith": Benchmark(
        "arith",
        (HubSource("builtin:arith-test", "test"),),
        Protocol(max_new_tokens=64),
        None,
        "built-in two-operation arithmetic (offline, for smoke runs)",
    ),
    # the toy laboratory (spurisweep.toy): sampled at the training temperature, since a toy family's
    # style choice is a coin flip that greedy decoding would always settle the same way (docs/toy.md);
    # 2 samples of each of 200 problems (pass@1 = avg@2, and pass@2); solutions fit in 64 tokens
    "toy": Benchmark(
        "toy",
        (HubSource("builtin:toy-test", "test"),),
        Protocol(samples=2, temperature=1.0, max_new_tokens=64),
        None,
        "built-in toy word problems, 200 held out (offline; spurisweep.data.toy)",
    ),
    # the toy laboratory's fresh control: 200 more problems of the same kind that no toy family, the
    # memorising toy-memo included, saw in pretraining (toy-memo memorised the `toy` benchmark)
    "toy-fresh": Benchmark(
        "toy-fresh",
        (HubSource("builtin:toy-fresh", "test"),),
        Protocol(samples=2, temperature=1.0, max_new_tokens=64),
        None,
        "built-in toy word problems, 200 never seen by any toy family (offline; spurisweep.data.toy)",
        fresh=True,
    ),
    # fresh arithmetic no model can have memorised (spurisweep.data.randcalc): size and steps are settings of
    # the source, e.g. eval.protocols.randcalc.path: "builtin:randcalc-test?n=200&steps=1-10"
    "randcalc": Benchmark(
        "randcalc",
        (HubSource("builtin:randcalc-test", "test"),),
        Protocol(max_new_tokens=1024),
        None,
        "built-in fresh arithmetic, 500 problems of 1-20 steps with fractions (offline; spurisweep.data.randcalc)",
        fresh=True,
        problems=500,
    ),
    # G-Pass@k's benchmark (Liu et al. 2024, arXiv 2412.13147): its English December 2024 release, four
    # configs of one hub id (AMC 46, CCEE 44, CNMO 18, WLPMC 11 problems; fields question, answer), sampled
    # 48 times at temperature 1.0 as in the paper (G-Pass@k_tau for k up to 16 needs n well above k)
    "livemathbench": Benchmark(
        "livemathbench",
        (
            HubSource(
                "opencompass/LiveMathBench",
                "test",
                ("v202412_AMC_en", "v202412_CCEE_en", "v202412_CNMO_en", "v202412_WLPMC_en"),
            ),
        ),
        Protocol(samples=48, temperature=1.0),
        "livemathbench.json",
        "LiveMathBench v202412, English (119 problems; question, answer)",
        display="LiveMathBench",
        problems=119,
    ),
    # MATH-Beyond (Mayilvahanan et al. 2025, arXiv 2510.11653): 181 problems chosen so that open base models
    # up to 8B solve none at pass@1024; read at large k (256 samples at 0.6 here, the pass@k study's default)
    "math_beyond": Benchmark(
        "math_beyond",
        (HubSource("brendel-group/MATH-Beyond", "test"),),
        Protocol(samples=256, temperature=0.6),
        "math_beyond.json",
        "MATH-Beyond union set (181 problems; problem, answer)",
        display="MATH-Beyond",
        problems=181,
    ),
}

#: the One-Shot RLVR "pi1" example (answer 12.8)
PI1 = Problem(
    id="pi1",
    problem=(
        "The pressure $P$ exerted by wind on a sail varies jointly as the area $A$ of the sail and the cube "
        "of the wind's velocity $V$. When the velocity is 8 miles per hour, the pressure on a sail of 2 "
        "square feet is 4 pounds. Find the wind velocity when the pressure on 4 square feet of sail is 32 "
        "pounds."
    ),
    answer="12.8",
)


def data_dir() -> Path | None:
    """$SPURISWEEP_DATA_DIR, which must be a folder when set: a typo must not send every benchmark to the hub
    (or, offline, fail mid-job)."""
    d = os.environ.get("SPURISWEEP_DATA_DIR")
    if not d:
        return None
    path = Path(d).expanduser()
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise DataError(f"SPURISWEEP_DATA_DIR={d}: {what} (unset it to read benchmarks from the hub)")
    return path


def get_benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ConfigError(suggest(name, list(BENCHMARKS)), field="benchmark")
    return BENCHMARKS[name]


def looks_like_path(source: str) -> bool:
    """Written as a file-system path (absolute, ./, ../ or ~/), which a hub id never is."""
    return source.startswith(("/", "./", "../", "~")) or source in (".", "..")


def is_local(source: str) -> bool:
    """A path to a file (by its suffix, its form, or because it exists) rather than a hub id."""
    if source.startswith("builtin:"):
        return False
    path = Path(source).expanduser()
    return path.suffix.lower() in LOCAL_SUFFIXES or looks_like_path(source) or path.exists()


def check_source(
    source: str,
    *,
    what: str,
    problem_field: str | None = None,
    answer_field: str | None = None,
) -> None:
    """Plan-time check of a data set setting: a local file must exist and read as a data set (every row with
    a problem and an answer); builtin names must exist. Hub ids are left to the job (no network here).
    Raises DataError naming the file and `what` (the setting)."""
    if source.startswith("builtin:"):
        try:
            _check_builtin(source.split(":", 1)[1])
        except SpurisweepError as exc:  # randcalc's settings raise ConfigError
            raise DataError(f"{what}: {exc}") from None
        return
    if not is_local(source):
        return
    path = Path(source).expanduser()
    try:
        stat = path.stat()
    except OSError:
        raise DataError(f"{what}: {source}: file not found") from None
    try:
        _check_local(str(path), stat.st_mtime_ns, stat.st_size, problem_field, answer_field)
    except DataError as exc:
        raise DataError(f"{what}: {exc}") from None


@functools.lru_cache(maxsize=64)
def _check_local(
    source: str, mtime_ns: int, size: int, problem_field: str | None, answer_field: str | None
) -> None:
    # once per file version: a grid of thousands of cells names the same few files
    load_problems(source, problem_field=problem_field, answer_field=answer_field)


@functools.lru_cache(maxsize=64)
def _check_builtin(name: str) -> None:
    if builtin_set(name).settings:  # an unknown name raises DataError
        builtin(name)  # its settings are parsed (and checked) by building it


def load_problems(
    source: str,
    *,
    split: str = "train",
    limit: int | None = None,
    problem_field: str | None = None,
    answer_field: str | None = None,
    config: str | None = None,
    configs: tuple[str | None, ...] | None = None,
) -> list[Problem]:
    """Rows of a data set from `builtin:NAME`, a local JSON/JSONL/parquet file, or a hub id."""
    if source.startswith("builtin:"):
        rows = builtin(source.split(":", 1)[1])
        return rows[:limit] if limit else rows
    if is_local(source):
        parts: list[tuple[str | None, list[dict[str, Any]]]] = [
            (None, read_records(Path(source).expanduser()))
        ]
    else:
        parts = [(c, read_hub(source, split, c)) for c in (configs or (config,))]
    prefix = len(parts) > 1
    out = []
    for cfg, records in parts:
        for i, r in enumerate(records):
            p = to_problem(r, i, source, problem_field, answer_field)
            out.append(Problem(f"{cfg}/{p.id}", p.problem, p.answer) if prefix and cfg else p)
    out = unique_ids(out, source)
    return out[:limit] if limit else out


def local_benchmark_file(name: str) -> Path | None:
    """$SPURISWEEP_DATA_DIR/<name>.json (or .jsonl / .parquet), if the variable is set and the file exists."""
    bench = get_benchmark(name)
    d = data_dir()
    if d is None or bench.local_name is None:
        return None
    stem = Path(bench.local_name).stem
    for cand in [d / bench.local_name, *(d / f"{stem}{s}" for s in LOCAL_SUFFIXES)]:
        if cand.is_file():
            return cand
    log.info("SPURISWEEP_DATA_DIR=%s has no %s; reading %s from the hub", d, bench.local_name, name)
    return None


def benchmark_source(name: str, path: str | None = None) -> str:
    """Where `load_benchmark` reads from: the explicit path, the $SPURISWEEP_DATA_DIR file, or the hub id."""
    bench = get_benchmark(name)
    if path:
        return path
    local = local_benchmark_file(name)
    return str(local) if local else bench.hub_id


def load_benchmark(
    name: str, *, path: str | None = None, limit: int | None = None, subsample_seed: int | None = None
) -> list[Problem]:
    """A benchmark's problems: `path` (a local file or another hub id), the $SPURISWEEP_DATA_DIR file of
    its name, or its hub sources in order. `limit`: the first N, or with `subsample_seed` a seeded random
    N (`subsample`)."""
    if subsample_seed is not None and limit is not None:
        return subsample(load_benchmark(name, path=path), limit, subsample_seed)
    bench = get_benchmark(name)
    source = benchmark_source(name, path)
    fields = {"problem_field": bench.problem_field, "answer_field": bench.answer_field}
    if path or is_local(source) or source.startswith("builtin:"):
        return load_problems(source, split=bench.split, limit=limit, **fields)
    errors = []
    for hub in bench.sources:
        try:
            return load_problems(hub.hub_id, split=hub.split, limit=limit, configs=hub.configs, **fields)
        except DataError as exc:
            errors.append(str(exc))
            log.warning("benchmark %s: %s", name, exc)
    raise DataError(f"benchmark {name!r}: no source could be read ({'; '.join(errors)})")


def subsample(problems: list[Problem], n: int, seed: int) -> list[Problem]:
    """A seeded random `n` of `problems`, kept in their order: the same set for the same problems and seed,
    whichever cell, variant or baseline asks (a fixed subsample, not the first n, which for a benchmark
    sorted by subject or difficulty would be one corner of it)."""
    if n >= len(problems):
        return list(problems)
    chosen = sorted(random.Random(seed).sample(range(len(problems)), n))
    return [problems[i] for i in chosen]


def read_records(path: Path) -> list[dict[str, Any]]:
    """The rows of a local JSON list (or {"data"|"rows"|"train"|"test": [...]}), JSONL or parquet file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")
    suffix = path.suffix.lower()
    text = "" if suffix == ".parquet" else read_input_text(path, what="data set (JSON/JSONL/parquet)")
    try:
        if suffix == ".jsonl":
            rows = []
            for n, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as exc:
                        raise DataError(f"{path}: line {n} is not valid JSON ({exc.msg})") from None
            data: Any = rows
        elif suffix == ".parquet":
            import pandas as pd

            data = pd.read_parquet(path).to_dict(orient="records")
        else:
            data = json.loads(text)
    except DataError:
        raise
    except (json.JSONDecodeError, OSError, ValueError, ImportError) as exc:
        raise DataError(f"{path}: cannot read as {suffix.lstrip('.') or 'json'} ({exc})") from None
    if isinstance(data, dict):
        for key in ("data", "rows", "train", "test"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a list of objects (or an object with a 'data' list)")
    if data and not all(isinstance(r, dict) for r in data):
        bad = next(i for i, r in enumerate(data) if not isinstance(r, dict))
        raise DataError(f"{path}: row {bad} is a {type(data[bad]).__name__}, expected an object")
    return data


def read_hub(hub_id: str, split: str, config: str | None) -> list[dict[str, Any]]:
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_id, config, split=split)
    except Exception as exc:  # network errors, missing data sets: all end the same way for the user
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise DataError(
            f"cannot load data set {hub_id!r} (split {split!r}{f', config {config!r}' if config else ''}) from the "
            f"hub: {type(exc).__name__}: {first}. Offline? Pass a local JSON/JSONL/parquet path or set "
            "SPURISWEEP_DATA_DIR"
        ) from None
    return [dict(r) for r in ds]


def to_problem(
    r: dict[str, Any], index: int, source: str, problem_field: str | None, answer_field: str | None
) -> Problem:
    def pick(names: tuple[str, ...], explicit: str | None, what: str) -> Any:
        if explicit:
            if explicit not in r or r[explicit] is None:
                raise DataError(
                    f"{source}: row {index} has no field {explicit!r} ({what}); it has {sorted(r)}"
                )
            return r[explicit]
        for n in names:
            if n in r and r[n] is not None:
                return r[n]
        raise DataError(
            f"{source}: row {index} has none of the {what} fields {', '.join(names)}; it has {sorted(r)}"
        )

    problem = pick(PROBLEM_FIELDS, problem_field, "problem")
    if not isinstance(problem, str):
        raise DataError(f"{source}: row {index}: the problem is a {type(problem).__name__}, expected text")
    answer = pick(ANSWER_FIELDS, answer_field, "answer")
    pid = next((r[n] for n in ID_FIELDS if n in r and r[n] is not None), index)
    return Problem(id=str(_scalar(pid)), problem=problem, answer=_answer_str(answer))


def _scalar(x: Any) -> Any:
    """numpy scalars (from parquet) as Python values, so str() prints 142.0, not np.float64(142.0)."""
    item = getattr(x, "item", None)
    return item() if callable(item) and not isinstance(x, (str, bytes)) else x


def _answer_str(a: Any) -> str:
    """The answer as the data set writes it: strings unchanged, numbers as Python prints them (142.0)."""
    return str(_scalar(a)).strip()


def unique_ids(problems: list[Problem], source: str) -> list[Problem]:
    """Repeated ids get a #k suffix: samples are grouped by problem id, so two problems must never share one."""
    seen: dict[str, int] = {}
    out = []
    for p in problems:
        k = seen.get(p.id, 0)
        seen[p.id] = k + 1
        out.append(p if k == 0 else Problem(f"{p.id}#{k}", p.problem, p.answer))
    dupes = sum(v - 1 for v in seen.values())
    if dupes:
        log.warning("%s: %d repeated problem id(s) renamed with a #k suffix", source, dupes)
    return out


# ---------------------------------------------------------------------------------------------- builtin
@dataclass(frozen=True)
class BuiltinSet:
    """A data set generated offline, `builtin:<name>`: one entry each in BUILTINS."""

    #: "module:function" taking the name (with any ?settings) and returning its Problems, imported when used
    builder: str
    description: str = ""
    aliases: tuple[str, ...] = ()  # other names of the same set (accepted, not listed)
    #: the ?key=value settings it takes, as the error message shows them ("" = none): such a set is built
    #: at plan time to check them
    settings: str = ""


BUILTINS: dict[str, BuiltinSet] = {
    "arith": BuiltinSet(
        "spurisweep.data.sets:arith_train",
        "512 two-operation problems (smoke runs)",
        aliases=("arith-train",),
    ),
    "arith-test": BuiltinSet("spurisweep.data.sets:arith_test", "200 more, the `arith` benchmark"),
    "toy": BuiltinSet(
        "spurisweep.data.sets:toy_set", "512 toy word problems (spurisweep.data.toy)", ("toy-train",)
    ),
    "toy-test": BuiltinSet("spurisweep.data.sets:toy_set", "200 held out, the `toy` benchmark"),
    "toy-fresh": BuiltinSet(
        "spurisweep.data.sets:toy_set", "200 no toy family saw, the `toy-fresh` benchmark"
    ),
    "randcalc": BuiltinSet(
        "spurisweep.data.sets:randcalc_set",
        "fresh multi-step arithmetic (spurisweep.data.randcalc)",
        settings="?n=500&steps=1-20&seed=0",
    ),
    "randcalc-test": BuiltinSet(
        "spurisweep.data.sets:randcalc_set",
        "the `randcalc` benchmark's stream",
        settings="?n=500&steps=1-20&seed=0",
    ),
}


def builtin_set(name: str) -> BuiltinSet:
    """The BUILTINS entry of `name` (its base name or an alias; ?settings only where the set takes them)."""
    base, query, _ = name.partition("?")
    for key, entry in BUILTINS.items():
        if base in (key, *entry.aliases) and (not query or entry.settings):
            return entry
    listed = ", ".join(f"builtin:{n}" for n in BUILTINS)
    settings = next((e.settings for e in BUILTINS.values() if e.settings), "")
    raise DataError(
        f"unknown built-in data set {name!r}; valid: {listed}"
        + (f" (settings: {settings})" if settings else "")
    )


def builtin(name: str) -> list[Problem]:
    """The problems of `builtin:<name>`, from its BUILTINS entry's builder."""
    import importlib

    module, _, attr = builtin_set(name).builder.partition(":")
    return getattr(importlib.import_module(module), attr)(name)


def arith_train(name: str) -> list[Problem]:
    return arith_problems(seed=1234, n=512)


def arith_test(name: str) -> list[Problem]:
    return arith_problems(seed=4321, n=200)


def toy_set(name: str) -> list[Problem]:
    from . import toy as task

    rows = task.rows({"toy-test": "test", "toy-fresh": "fresh"}.get(name, "train"))
    return [Problem(id=i, problem=text, answer=answer) for i, text, answer in rows]


def randcalc_set(name: str) -> list[Problem]:
    from . import randcalc

    return [Problem(r["id"], r["problem"], r["answer"]) for r in randcalc.from_name(name)]


def arith_problems(seed: int, n: int) -> list[Problem]:
    """Small two-operation arithmetic problems with integer answers (deterministic)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        a, b, c = rng.randint(2, 30), rng.randint(2, 30), rng.randint(1, 9)
        op = rng.choice(["+", "-", "*"])
        value = {"+": a + b, "-": a - b, "*": a * b}[op] + c
        out.append(Problem(id=f"arith-{seed}-{i}", problem=f"What is {a} {op} {b} + {c}?", answer=str(value)))
    return out
