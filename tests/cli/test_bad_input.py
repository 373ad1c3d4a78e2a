"""Every command against the bad inputs a person meets: the table of what each now gets.

Each case runs the real `spurisweep` CLI in a subprocess and checks its exit code (errors.py: 0 all well,
1 the work did not succeed, 2 bad input, 130 interrupted), one substring of the one error line, and that
no traceback reached stderr. Nothing here trains; inputs are a few bytes. The read-only and full-disk
cases mount a small tmpfs and need root (they skip with the reason elsewhere). A SIGINT sent to a
long-running command (`status --watch` following a job that is alive) must exit 130.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXE = [sys.executable, "-m", "spurisweep.cli"]
SMOKE = str(ROOT / "sweeps" / "smoke.yaml")
BINARY = bytes(range(128, 256)) * 4  # never valid UTF-8


def cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: int = 300):
    e = {**os.environ, **(env or {})}
    return subprocess.run(
        [*EXE, *args], capture_output=True, text=True, env=e, cwd=cwd or ROOT, timeout=timeout
    )


def sweep(settings: str = "", grid: str = "model: [tiny]", name: str = "t") -> str:
    return f"name: {name}\npreset: smoke\ngrid: {{{grid}}}\nsettings: {{{settings}}}\n"


BOMB = "name: bomb\n" + "".join(
    f"{k}: &{k} [{', '.join([f'*{p}'] * 9)}]\n" if p else f"{k}: &{k} [{', '.join(['lol'] * 9)}]\n"
    for p, k in zip(["", *"abcdefgh"], "abcdefghi", strict=True)
)
BOMB += "grid: {model: [tiny], seed: *i}\n"


@dataclass
class Case:
    """One bad input: the command line ({tmp} is the test's folder), the files it finds there, the expected
    exit code and a fragment of the error line."""

    id: str
    args: list[str]
    code: int
    fragment: str
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)


R = ["--results", "{tmp}/results"]
FILE_AS_RESULTS = ["--results", "{tmp}/afile"]
UNDER_FILE = ["--results", "{tmp}/afile/results"]
AFILE = {"afile": "not a folder\n"}
GOOD_JSONL = '{"response": "so \\\\boxed{2}", "answer": "2"}\n'

CASES = [
    # ------------------------------------------------------------------ usage errors (click): usage line, exit 2
    Case("report-unknown-option", ["report", "--nosuch"], 2, "No such option: --nosuch"),
    Case("grade-missing-argument", ["grade"], 2, "Missing argument"),
    Case("plan-missing-argument", ["plan"], 2, "Missing argument"),
    Case("unknown-command", ["nosuch"], 2, "No such command"),
    Case("option-missing-value", ["report", "--step"], 2, "requires an argument"),
    Case("option-bad-type", ["run", SMOKE, "--max-parallel", "many"], 2, "Invalid value"),
    Case("toy-build-unknown-option", ["toy", "build", "--nosuch"], 2, "No such option"),
    # ------------------------------------------------------------------ sweep files (plan, run, status, cancel, diagnose)
    Case("plan-missing-sweep", ["plan", "{tmp}/nope.yaml"], 2, "file not found"),
    Case("plan-sweep-is-folder", ["plan", "{tmp}"], 2, "is a folder"),
    Case("plan-binary-sweep", ["plan", "{tmp}/s.yaml"], 2, "not a text file", {"s.yaml": BINARY}),
    Case("run-binary-sweep", ["run", "{tmp}/s.yaml", *R], 2, "not a text file", {"s.yaml": BINARY}),
    Case("status-binary-sweep", ["status", "{tmp}/s.yaml", *R], 2, "not a text file", {"s.yaml": BINARY}),
    Case("cancel-binary-sweep", ["cancel", "{tmp}/s.yaml", *R], 2, "not a text file", {"s.yaml": BINARY}),
    Case("diagnose-binary-sweep", ["diagnose", "{tmp}/s.yaml", *R], 2, "not a text file", {"s.yaml": BINARY}),
    Case("plan-malformed-yaml", ["plan", "{tmp}/s.yaml"], 2, "malformed YAML", {"s.yaml": "name: [x\n"}),
    Case("plan-alias-bomb", ["plan", "{tmp}/s.yaml"], 2, "expands to over", {"s.yaml": BOMB}),
    Case(
        "plan-self-alias",
        ["plan", "{tmp}/s.yaml"],
        2,
        "refers to the node",
        {"s.yaml": "name: x\ngrid: &g {model: [tiny], x: *g}\n"},
    ),
    Case(
        "plan-nested-too-deep",
        ["plan", "{tmp}/s.yaml"],
        2,
        "nested too deeply",
        {"s.yaml": "name: x\ngrid: {model: " + "[" * 3000 + "]" * 3000 + "}\n"},
    ),
    Case("plan-huge-sweep", ["plan", "{tmp}/s.yaml"], 2, "too large", {"s.yaml": "#" * (2 << 20)}),
    Case(
        "plan-reserved-name-db",
        ["plan", "{tmp}/s.yaml"],
        2,
        "results folder's own files",
        {"s.yaml": sweep(name="spurisweep.duckdb")},
    ),
    Case(
        "plan-reserved-name-readme",
        ["plan", "{tmp}/s.yaml"],
        2,
        "results folder's own files",
        {"s.yaml": sweep(name="README.md")},
    ),
    Case("plan-baselines-name", ["plan", "{tmp}/s.yaml"], 2, "name", {"s.yaml": sweep(name="_baselines")}),
    # ------------------------------------------------------------------ local paths a cell reads, at plan time
    Case(
        "plan-model-path-missing",
        ["plan", "{tmp}/s.yaml"],
        2,
        "no such folder",
        {"s.yaml": sweep("model_path: /nonexistent/m")},
    ),
    Case(
        "plan-model-path-is-file",
        ["plan", "{tmp}/s.yaml"],
        2,
        "is a file",
        {"s.yaml": sweep("model_path: ./afile"), **AFILE},
    ),
    Case(
        "plan-model-path-not-a-model",
        ["plan", "{tmp}/s.yaml"],
        2,
        "no config.json",
        {"s.yaml": sweep("model_path: ./m"), "m/weights.bin": "x"},
    ),
    Case(
        "run-model-path-missing",
        ["run", "{tmp}/s.yaml", *R],
        2,
        "no such folder",
        {"s.yaml": sweep("model_path: /nonexistent/m")},
    ),
    Case(
        "plan-train-missing",
        ["plan", "{tmp}/s.yaml"],
        2,
        "file not found",
        {"s.yaml": sweep("data: {train: ./no.jsonl}")},
    ),
    Case(
        "plan-train-binary",
        ["plan", "{tmp}/s.yaml"],
        2,
        "not a text file",
        {"s.yaml": sweep("data: {train: ./d.json}"), "d.json": BINARY},
    ),
    Case(
        "plan-train-not-a-dataset",
        ["plan", "{tmp}/s.yaml"],
        2,
        "none of the problem fields",
        {"s.yaml": sweep("data: {train: ./d.jsonl}"), "d.jsonl": '{"x": 1}\n'},
    ),
    Case(
        "plan-train-parquet-garbage",
        ["plan", "{tmp}/s.yaml"],
        2,
        "cannot read as parquet",
        {"s.yaml": sweep("data: {train: ./d.parquet}"), "d.parquet": BINARY},
    ),
    Case(
        "plan-labels-missing",
        ["plan", "{tmp}/s.yaml"],
        2,
        "data.labels",
        {"s.yaml": sweep("data: {labels: ./labels.jsonl}", grid="model: [tiny], reward: [majority_vote]")},
    ),
    Case(
        "plan-protocol-path-missing",
        ["plan", "{tmp}/s.yaml"],
        2,
        "eval.protocols.arith.path",
        {"s.yaml": sweep("eval: {benchmarks: [arith], protocols: {arith: {path: /nonexistent/a.json}}}")},
    ),
    Case(
        "plan-unknown-builtin",
        ["plan", "{tmp}/s.yaml"],
        2,
        "unknown built-in data set",
        {"s.yaml": sweep("data: {train: 'builtin:nosuch'}")},
    ),
    Case(
        "plan-data-dir-missing",
        ["plan", SMOKE],
        2,
        "SPURISWEEP_DATA_DIR",
        env={"SPURISWEEP_DATA_DIR": "{tmp}/nodir"},
    ),
    Case(
        "plan-data-dir-is-file",
        ["plan", SMOKE],
        2,
        "is not a folder",
        AFILE,
        {"SPURISWEEP_DATA_DIR": "{tmp}/afile"},
    ),
    # ------------------------------------------------------------------ reward and clip parameters outside their domain
    Case(
        "plan-random-gamma-above-1",
        ["plan", "{tmp}/s.yaml"],
        2,
        "gamma must be in [0.0, 1.0]",
        {"s.yaml": sweep(grid="model: [tiny], reward: [{name: random, gamma: 1.5}]")},
    ),
    Case(
        "plan-random-gamma-negative",
        ["plan", "{tmp}/s.yaml"],
        2,
        "gamma must be in",
        {"s.yaml": sweep("reward_params: {random: {gamma: -0.1}}", grid="model: [tiny], reward: [random]")},
    ),
    Case(
        "plan-random-gamma-text",
        ["plan", "{tmp}/s.yaml"],
        2,
        "gamma must be a number",
        {"s.yaml": sweep(grid="model: [tiny], reward: [{name: random, gamma: half}]")},
    ),
    Case(
        "plan-random-gamma-bool",
        ["plan", "{tmp}/s.yaml"],
        2,
        "gamma must be a number",
        {"s.yaml": sweep(grid="model: [tiny], reward: [{name: random, gamma: true}]")},
    ),
    Case(
        "plan-composed-random-gamma",
        ["plan", "{tmp}/s.yaml"],
        2,
        "gamma must be in",
        {
            "s.yaml": sweep(
                "reward_params: {random: {gamma: 2}}", grid="model: [tiny], reward: [format_AND_random]"
            )
        },
    ),
    Case(
        "plan-no-repetition-repeats",
        ["plan", "{tmp}/s.yaml"],
        2,
        "repeats must be in [3",
        {"s.yaml": sweep(grid="model: [tiny], reward: [{name: no_repetition, repeats: 1}]")},
    ),
    Case(
        "plan-no-repetition-lengths",
        ["plan", "{tmp}/s.yaml"],
        2,
        "must not exceed max_length",
        {
            "s.yaml": sweep(
                grid="model: [tiny], reward: [{name: no_repetition, min_length: 50, max_length: 20}]"
            )
        },
    ),
    Case(
        "plan-no-repetition-float-length",
        ["plan", "{tmp}/s.yaml"],
        2,
        "min_length must be an integer",
        {"s.yaml": sweep(grid="model: [tiny], reward: [{name: no_repetition, min_length: 2.5}]")},
    ),
    Case(
        "plan-eps-low-negative",
        ["plan", "{tmp}/s.yaml"],
        2,
        "clip_params.eps_low",
        {"s.yaml": sweep(grid="model: [tiny], clip_params.eps_low: [-0.1]")},
    ),
    Case(
        "plan-eps-low-above-1",
        ["plan", "{tmp}/s.yaml"],
        2,
        "clip_params.eps_low",
        {"s.yaml": sweep("clip_params: {eps_low: 1.5}")},
    ),
    Case(
        "plan-eps-high-nan",
        ["plan", "{tmp}/s.yaml"],
        2,
        "finite number",
        {"s.yaml": sweep("clip_params: {eps_high: .nan}")},
    ),
    Case(
        "plan-eps-high-zero",
        ["plan", "{tmp}/s.yaml"],
        2,
        "clip_params.eps_high",
        {"s.yaml": sweep("clip_params: {eps_high: 0}", grid="model: [tiny], clip: [clip_higher]")},
    ),
    Case(
        "plan-learning-rate-inf",
        ["plan", "{tmp}/s.yaml"],
        2,
        "train.learning_rate",
        {"s.yaml": sweep("train: {learning_rate: .inf}")},
    ),
    Case(
        "plan-adam-beta-1",
        ["plan", "{tmp}/s.yaml"],
        2,
        "train.adam_beta2",
        {"s.yaml": sweep("train: {adam_beta2: 1.0}")},
    ),
    # ------------------------------------------------------------------ --results / SPURISWEEP_RESULTS not a folder
    *[
        Case(
            "-".join(c.lstrip("-") for c in cmd[:3] if c != SMOKE) + "-results-is-file",
            [*cmd, *FILE_AS_RESULTS],
            2,
            "is a file, not a results folder",
            AFILE,
        )
        for cmd in [
            ["plan", SMOKE],
            ["run", SMOKE],
            ["run", SMOKE, "--dry-run"],
            ["status", SMOKE],
            ["cancel", SMOKE],
            ["ingest"],
            ["report"],
            ["diagnose", "smoke"],
            ["eval", "--model", "tiny"],
            ["label", "--model", "tiny", "--dataset", "builtin:arith"],
        ]
    ],
    Case(
        "report-env-results-is-file", ["report"], 2, "is a file", AFILE, {"SPURISWEEP_RESULTS": "{tmp}/afile"}
    ),
    Case("run-results-under-a-file", ["run", SMOKE, *UNDER_FILE], 2, "no results folder can be made", AFILE),
    Case("ingest-results-under-a-file", ["ingest", *UNDER_FILE], 2, "no results folder can be made", AFILE),
    Case("report-results-missing", ["report", *R], 2, "no such results folder"),
    Case("diagnose-results-missing", ["diagnose", "smoke", *R], 2, "no such results folder"),
    # ------------------------------------------------------------------ eval and label: paths checked before any model loads
    Case(
        "eval-checkpoint-missing",
        ["eval", "--model", "tiny", "--checkpoint", "/nonexistent/ckpt", *R],
        2,
        "--checkpoint",
    ),
    Case(
        "eval-checkpoint-is-file",
        ["eval", "--model", "tiny", "--checkpoint", "{tmp}/afile", *R],
        2,
        "is a file",
        AFILE,
    ),
    Case(
        "eval-checkpoint-not-a-model",
        ["eval", "--model", "tiny", "--checkpoint", "{tmp}/ck", *R],
        2,
        "no config.json",
        {"ck/x": "x"},
    ),
    Case(
        "eval-model-path-missing",
        ["eval", "--model", "tiny", "--model-path", "./nonexistent", *R],
        2,
        "--model-path",
    ),
    Case("eval-unknown-model", ["eval", "--model", "nosuch", *R], 2, "unknown 'nosuch'"),
    Case(
        "eval-unknown-benchmark",
        ["eval", "--model", "tiny", "--benchmarks", "nosuch", *R],
        2,
        "unknown 'nosuch'",
    ),
    Case(
        "label-dataset-missing",
        ["label", "--model", "tiny", "--dataset", "{tmp}/no.jsonl", *R],
        2,
        "file not found",
    ),
    Case(
        "label-dataset-binary",
        ["label", "--model", "tiny", "--dataset", "{tmp}/d.jsonl", *R],
        2,
        "not a text file",
        {"d.jsonl": BINARY},
    ),
    Case(
        "label-model-path-missing",
        ["label", "--model", "tiny", "--dataset", "builtin:arith", "--model-path", "/nonexistent", *R],
        2,
        "--model-path",
    ),
    Case(
        "label-unknown-model",
        ["label", "--model", "nosuch", "--dataset", "builtin:arith", *R],
        2,
        "unknown 'nosuch'",
    ),
    # ------------------------------------------------------------------ grade
    Case("grade-missing-file", ["grade", "{tmp}/no.jsonl"], 2, "file not found"),
    Case("grade-folder", ["grade", "{tmp}"], 2, "is a folder"),
    Case("grade-binary", ["grade", "{tmp}/g.jsonl"], 2, "not a text file", {"g.jsonl": BINARY}),
    Case("grade-not-json", ["grade", "{tmp}/g.jsonl"], 2, "line 1: not JSON", {"g.jsonl": "hello\n"}),
    Case(
        "grade-missing-fields",
        ["grade", "{tmp}/g.jsonl"],
        2,
        "expected an object with",
        {"g.jsonl": '{"x": 1}\n'},
    ),
    Case(
        "grade-out-under-a-file",
        ["grade", "{tmp}/g.jsonl", "--out", "{tmp}/afile/x.jsonl"],
        2,
        "--out",
        {"g.jsonl": GOOD_JSONL, **AFILE},
    ),
    Case(
        "grade-out-is-folder",
        ["grade", "{tmp}/g.jsonl", "--out", "{tmp}"],
        2,
        "is a folder",
        {"g.jsonl": GOOD_JSONL},
    ),
    # ------------------------------------------------------------------ report options
    Case("report-pivot-one-dimension", ["report", "--pivot", "model", *R], 2, "two comma-separated"),
    Case("report-bad-spread", ["report", "--spread", "iqr", *R], 2, "unknown spread"),
    Case("report-plot-without-out", ["report", "--plot", "curves", *R], 2, "--plot needs --out"),
    Case(
        "report-plot-out-is-file",
        ["report", "--plot", "curves", "--out", "{tmp}/afile", *R],
        2,
        "is a file",
        AFILE,
    ),
    # ------------------------------------------------------------------ run / verify-rewards
    Case(
        "run-unknown-executor",
        ["run", SMOKE, "--executor", "k8s", "--dry-run", *R],
        2,
        "valid: local, debug, slurm",
    ),
    Case("verify-rewards-unknown-reward", ["verify-rewards", "--reward", "nosuch"], 2, "unknown 'nosuch'"),
    Case("verify-rewards-below-floor", ["verify-rewards", "--reward", "python", "--floor", "1.01"], 1, ""),
]


def _materialise(case: Case, tmp: Path) -> tuple[list[str], dict[str, str]]:
    for name, content in case.files.items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content)
    args = [a.replace("{tmp}", str(tmp)) for a in case.args]
    env = {k: v.replace("{tmp}", str(tmp)) for k, v in case.env.items()}
    return args, env


def check(proc: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    out = proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, out
    assert proc.returncode == code, out
    assert fragment in proc.stderr, out


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path):
    args, env = _materialise(case, tmp_path)
    proc = cli(*args, env=env, cwd=tmp_path)
    check(proc, case.code, case.fragment)
    if case.code == 2 and not args[0] == "verify-rewards":
        # bad input: nothing was submitted or written into a results folder
        assert not list(tmp_path.glob("results/*/*/config.json")), proc.stdout
        # one error line (click's usage errors: the usage line, a hint, a blank line and the error)
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert len(lines) == (3 if lines and lines[0].startswith("Usage:") else 1), proc.stderr


def test_ids_are_unique():
    assert len({c.id for c in CASES}) == len(CASES)


# ---------------------------------------------------------------------------------------------- --help
def _commands() -> list[list[str]]:
    """Every command of the app, sub-commands included (read from the app itself, so a new one is covered)."""
    import typer

    from spurisweep.cli import app

    def walk(cmd: Any, path: list[str]) -> list[list[str]]:
        if getattr(cmd, "commands", None):  # a group (typer ships its own click)
            return [p for name, sub in sorted(cmd.commands.items()) for p in walk(sub, [*path, name])]
        return [path]

    return walk(typer.main.get_command(app), [])


COMMANDS = _commands()


def test_every_command_is_covered():
    assert ["toy", "reading"] in COMMANDS and ["plan"] in COMMANDS and len(COMMANDS) > 15


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c) for c in COMMANDS])
def test_help_lists_the_exit_codes(command):
    proc = cli(*command, "--help", env={"COLUMNS": "400"})
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    for fragment in ("Exit codes: 0 all well", "; 2 bad input", "; 130 interrupted"):
        assert fragment in text, text
    if command == ["run"]:
        assert "1 a cell failed or was killed" in text
        assert "129 the terminal closed (SIGHUP)" in text and "143 stopped (SIGTERM)" in text
    if command == ["verify-rewards"]:
        assert "1 a checker's coverage is below --floor" in text


def test_readme_documents_the_exit_codes():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Exit codes", 1)[1].split("\n## ", 1)[0]
    for code in ("| 0 |", "| 1 |", "| 2 |", "| 130 |", "| 129 |", "| 143 |"):
        assert code in section


# ---------------------------------------------------------------------------------------------- bytes in files
def test_report_and_diagnose_skip_a_damaged_baseline_naming_it(tmp_path):
    """Non-UTF-8 bytes in a file `report` and `diagnose` read (a baseline's metadata): named, skipped, exit 0."""
    results = tmp_path / "results"
    bad = results / "_baselines" / "0123456789ab.json"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(BINARY)
    bad.with_suffix(".jsonl").write_text("")
    for args in (["report"], ["diagnose", "smoke"], ["ingest"]):
        proc = cli(*args, "--results", str(results))
        assert "Traceback" not in proc.stderr, proc.stderr
        assert str(bad) in proc.stderr, proc.stderr  # named
        assert proc.returncode in (0, 2), proc.stderr  # diagnose of an empty sweep is a one-line error
    proc = cli("ingest", "--results", str(results))
    assert proc.returncode == 0 and "ingested 0 cell(s)" in proc.stdout, proc.stdout + proc.stderr


def test_report_skips_a_cell_with_binary_config_naming_it(tmp_path):
    results = tmp_path / "results"
    cell = results / "s" / "0123456789ab"
    cell.mkdir(parents=True)
    (cell / "config.json").write_bytes(BINARY)
    (cell / "DONE").write_text("{}")
    proc = cli("report", "--results", str(results))
    assert "Traceback" not in proc.stderr and str(cell) in proc.stderr, proc.stderr


# ---------------------------------------------------------------------------------------------- faults (root)
def _mount_tmpfs(path: Path, options: str) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs (read-only / full-disk results folder)")
    path.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()}")


@pytest.fixture
def mounts():
    made: list[Path] = []
    yield made
    for m in reversed(made):
        subprocess.run(["umount", "-l", str(m)], capture_output=True)


@pytest.mark.parametrize(
    "args",
    [
        ["run", SMOKE],
        ["ingest"],
        ["eval", "--model", "tiny"],
        ["label", "--model", "tiny", "--dataset", "builtin:arith"],
    ],
    ids=["run", "ingest", "eval", "label"],
)
def test_read_only_results_folder_is_one_line(args, tmp_path, mounts):
    ro = tmp_path / "ro"
    _mount_tmpfs(ro, "ro,size=1m")
    mounts.append(ro)
    proc = cli(*args, "--results", str(ro / "results"))
    check(proc, 2, "is not writable")


def test_controller_on_a_full_disk_is_one_line_exit_1(tmp_path, mounts):
    """`run` writes each cell's config and the sweep manifest before submitting: on a full disk that is one
    line and exit 1, and nothing is submitted."""
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "size=64k")
    mounts.append(disk)
    results = disk / "results"
    results.mkdir()
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # fill the disk to the last block
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    proc = cli("run", SMOKE, "--executor", "local", "--results", str(results))
    check(proc, 1, "No space left on device")
    assert not list(results.glob("_submitit/*")), "a job was submitted"


# ---------------------------------------------------------------------------------------------- interruption
def test_sigint_exits_130(tmp_path):
    """Ctrl-C on a long-running command: `status --watch` follows a cell whose (local) job is alive."""
    sweep_file = tmp_path / "w.yaml"
    sweep_file.write_text(sweep(name="w"))
    results = tmp_path / "results"
    plan = cli("plan", str(sweep_file), "--json", "--results", str(results))
    assert plan.returncode == 0, plan.stderr
    cell_id = json.loads(plan.stdout)["cells"][0]["id"]
    job = subprocess.Popen(["sleep", "600"])
    try:
        status = results / "w" / cell_id / "status.json"
        status.parent.mkdir(parents=True)
        status.write_text(json.dumps({"state": "running", "executor": "local", "job_id": str(job.pid)}))
        proc = subprocess.Popen(
            [*EXE, "status", str(sweep_file), "--watch", "--interval", "0.2", "--results", str(results)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            # a forced terminal makes the live table print at once: the sign that the loop is running
            env={**os.environ, "FORCE_COLOR": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "120"},
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        assert proc.stdout is not None
        seen = ""
        deadline = time.monotonic() + 120
        while "running" not in seen and time.monotonic() < deadline:
            chunk = proc.stdout.read(1)
            if not chunk:
                break
            seen += chunk
        assert "running" in seen, seen
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "Traceback" not in err, err
    finally:
        job.kill()
        job.wait()


@pytest.mark.slow
def test_sigint_during_run_exits_130_and_jobs_keep_running(tmp_path):
    """Ctrl-C while `run` follows its local jobs: exit 130, the jobs are left to run (then cancelled here)."""
    results = tmp_path / "results"
    proc = subprocess.Popen(
        [*EXE, "run", SMOKE, "--executor", "local", "--max-parallel", "1", "--results", str(results)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        line = ""
        deadline = time.monotonic() + 300
        while "submitting" not in line and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
        assert "submitting" in line, line
        time.sleep(2)  # inside the wait loop
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
        cli("cancel", SMOKE, "--results", str(results))
