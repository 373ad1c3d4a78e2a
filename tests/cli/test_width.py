"""Every table-printing command on a terminal of 80 and of 200 columns, and the one way every sweep command
takes its sweep.

Two real results folders, built once: `analysed`, a DuckDB store with known values written by
tests/storebuilder.py (report, report --paper, diagnose), and `ran`, the smoke sweep's folder (its
manifest, so `smoke` is a stored sweep; one failed cell with a long error, the others done, one with
health flags). The commands run in this process through Typer's runner (the real app, real files, real
DuckDB) with the console set to the width under test; the error paths, which only `main()` turns into
one line and exit code 2, run the real entry point in a subprocess.

What is checked at each width: no line is wider than the terminal, no word of a known name is cut (no
ellipsis, no fragment of a name, every name shown whole), and an empty result is one line.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from rich.cells import cell_len
from typer.testing import CliRunner

from spurisweep import artifacts, launch
from spurisweep.cli import app, common
from spurisweep.plan import grid, spec
from tests.storebuilder import StoreBuilder, outcomes, run_cli

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "sweeps" / "smoke.yaml")
WIDTHS = (80, 200)
MODELS = ("qwen2.5-math-7b", "llama3.1-8b-instruct")
REWARDS = ("ground_truth", "incorrect_label", "random")
#: names that must never be cut: models, rewards, a health flag, words of the failed cell's error
NAMES = (*MODELS, *REWARDS, "entropy_collapse", "CUDA_ERROR_OUT_OF_MEMORY", "math_verify")
ERROR = (
    "training stopped at step 3: CUDA_ERROR_OUT_OF_MEMORY while generating rollouts for qwen2.5-math-7b "
    "on 8 GPUs; lower train.micro_batch or raise slurm.gpus_per_node"
)


# ---------------------------------------------------------------------------------------------- folders
@pytest.fixture(scope="module")
def analysed(tmp_path_factory) -> Path:
    """A store with two families x three rewards x two seeds, one health flag per random run."""
    res = tmp_path_factory.mktemp("analysed")
    with StoreBuilder(res / "spurisweep.duckdb", sweep="smoke") as b:
        for m in MODELS:
            b.baseline(m, "math500", outcomes(0.5))
            for r in REWARDS:
                for seed in (0, 1):
                    flags = [{"flag": "entropy_collapse", "step": 3}] if r == "random" else None
                    c = b.cell(m, r, seed=seed, health=flags)
                    b.evaluation(c, 4, "math500", outcomes(0.6 + 0.1 * seed))
    return res


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """The smoke sweep's results folder: its manifest, one failed cell (a long error), three done cells,
    one of them with health flags. No training: the folders are what a run leaves."""
    res = tmp_path_factory.mktemp("ran")
    cells = grid.expand(spec.load_sweep(SMOKE), check_inputs=False)
    launch.write_manifest("smoke", SMOKE, cells, res)
    for i, cell in enumerate(cells):
        folder = artifacts.CellDir(launch.write_cell_config(cell, res))
        if i == 0:
            folder.set_status("failed", error=ERROR)
        else:
            folder.mark_done({"health": ["entropy_collapse", "reward_collapse"] if i == 1 else []})
    return res


@pytest.fixture
def invoke(monkeypatch):
    """`spurisweep ARGS` in this process with a terminal `width` columns wide: the shared consoles and
    any console made later (render.py's width) see that width."""

    def run(args: list[str], width: int = 200):
        monkeypatch.setenv("COLUMNS", str(width))
        for console in (common.console, common.err):
            monkeypatch.setattr(console, "_width", width)  # rich read COLUMNS once, at import
        result = CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": str(width)})
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        assert result.exit_code == 0, result.output
        return result.stdout

    return run


def commands(analysed: Path, ran: Path) -> dict[str, list[str]]:
    """Every command that prints a table, on the folders above."""
    a, r = ["--results", analysed], ["--results", ran]
    return {
        "plan": ["plan", SMOKE, *r],
        "plan-paper-grid": ["plan", str(ROOT / "sweeps" / "paper_table.yaml"), *r],
        "status": ["status", SMOKE, *r],
        "run-dry": ["run", SMOKE, "--dry-run", *r],
        "report": ["report", "smoke", "--pivot", "model,reward", *a],
        "report-paper": ["report", "--paper", "--step", "4", *a],
        "diagnose": ["diagnose", "smoke", *a],
        "fidelity": ["fidelity", SMOKE],
        "verify-rewards": ["verify-rewards", "--reward", "python", "--grader", "paper"],
    }


# ---------------------------------------------------------------------------------------------- width
def cut_words(text: str) -> list[str]:
    """Ellipses, and the first part of a known name cut at a column's edge or a line's end: a proper prefix
    of the name that is not a word of its own (it holds a digit or a separator, or stops inside a run of
    letters and digits: 'qwen2.5-ma', 'ground_tr', 'llama'; not 'ground' of 'ground_truth')."""
    words = re.split(r"[\s│┃|:;,()\[\]]+", text)
    return [w for w in words if "…" in w or any(_cut(w, n) for n in NAMES)]


def _cut(word: str, name: str) -> bool:
    if len(word) < 3 or len(word) >= len(name) or not name.startswith(word):
        return False
    return bool(re.search(r"[\d_.-]", word)) or name[len(word)].isalnum()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize(
    "name",
    ["plan", "plan-paper-grid", "status", "run-dry", "report", "report-paper", "diagnose", "fidelity",
     "verify-rewards"],
)  # fmt: skip
def test_every_table_fits_the_terminal_and_cuts_no_name(invoke, analysed, ran, name, width):
    out = invoke(commands(analysed, ran)[name], width)
    wide = [ln for ln in out.splitlines() if cell_len(ln.rstrip()) > width]
    assert not wide, "\n".join(wide)
    assert not cut_words(out), (cut_words(out), out)
    shown = {
        "status": ["tiny", "ground_truth", "CUDA_ERROR_OUT_OF_MEMORY", "entropy_collapse"],
        "report": [*MODELS, *REWARDS],
        "report-paper": [*MODELS, "ground_truth", "incorrect_label"],
        "diagnose": [*MODELS, "entropy_collapse"],
        "fidelity": ["math_verify"],
    }.get(name, [])
    for n in shown:
        assert n in out, (n, out)


def test_prose_tables_are_lists_below_120_columns_and_grids_above(invoke, analysed, ran):
    """report --paper and status's detail column: a block per row at 80 columns, a grid at 200."""
    for args, heading in (
        (["report", "--paper", "--step", "4", "--results", analysed], "- qwen2.5-math-7b  ours"),
        (["status", SMOKE, "--results", ran], "failed"),
    ):
        narrow, wide = invoke(args, 80), invoke(args, 200)
        assert "┃" not in narrow and any(ln.startswith("- ") and heading in ln for ln in narrow.splitlines())
        assert "┃" in wide and not any(ln.startswith("- ") for ln in wide.splitlines())


def test_a_table_that_fits_stays_a_grid_at_80_columns(invoke, ran):
    out = invoke(["verify-rewards", "--reward", "python", "--grader", "paper"], 80)
    assert "┃ checker" in out and "│ python" in out


@pytest.mark.parametrize("width", WIDTHS)
def test_an_empty_result_is_one_line(invoke, analysed, width):
    out = invoke(["report", "--where", "reward=random", "--where", "seed=7", "--results", analysed], width)
    assert len(out.strip().splitlines()) == 1, out
    assert "no finished cells match" in out


# ---------------------------------------------------------------------------------------------- --format
@pytest.mark.parametrize(
    "name", ["plan", "status", "report", "report-paper", "diagnose", "fidelity", "verify-rewards"]
)
def test_format_json_parses_and_markdown_is_a_grid(invoke, analysed, ran, name):
    args = commands(analysed, ran)[name]
    data = json.loads(invoke([*args, "--format", "json"], 80))
    rows = {"verify-rewards": data.get("paper", {}).get("coverage"), "diagnose": data.get("sensitivity")}
    assert rows.get(name, data.get("cells")), data
    if name == "status":
        assert {c["state"] for c in data["cells"]} == {"failed", "done"}
        assert any(c["detail"] == ERROR for c in data["cells"])
    markdown = invoke([*args, "--format", "markdown"], 80)
    assert re.search(r"^\|.*\|$", markdown, re.M) and "┃" not in markdown, markdown


# ---------------------------------------------------------------------------------------------- SWEEP
SWEEP_COMMANDS = {
    "plan": ["plan"],
    "run": ["run", "--dry-run"],
    "status": ["status"],
    "cancel": ["cancel"],
    "fidelity": ["fidelity", "--format", "json"],
    "report": ["report", "--format", "json"],
    "diagnose": ["diagnose", "--format", "json"],
}


@pytest.mark.parametrize("how", ["file", "name", "--sweep name", "--sweep file"])
@pytest.mark.parametrize("command", sorted(SWEEP_COMMANDS))
def test_every_sweep_command_takes_a_file_or_a_stored_name(invoke, analysed, ran, command, how):
    """SWEEP is a file or the name of a sweep that ran in --results; --sweep says the same. The sweep
    commands that need the file find it through the stored sweep's manifest."""
    given = SMOKE if how.endswith("file") else "smoke"
    sweep = ["--sweep", given] if how.startswith("--sweep") else [given]
    results = analysed if command in ("report", "diagnose") else ran
    out = invoke([*SWEEP_COMMANDS[command], *sweep, "--results", results], 200)
    if command in ("report", "diagnose", "fidelity"):
        data = json.loads(out)
        if command == "report":
            assert {c["model"] for c in data["cells"]} == set(MODELS)
        elif command == "diagnose":
            assert data["sweep"] == "smoke" and data["runs"] == 12
        else:
            assert data["title"].startswith("sweep smoke")
    elif command == "cancel":
        assert "cancelled 0 job(s)" in out
    elif command == "run":
        assert "would submit 0 of 4 cells" in out
    else:
        assert "sweep smoke" in out and "4 cells: 3 done, 1 failed" in out


def test_a_stored_name_resolves_to_the_file_its_manifest_names(ran, tmp_path):
    man = json.loads((ran / "smoke" / "sweep.json").read_text())
    assert common.resolve_sweep_file("smoke", ran) == Path(man["file"])
    assert common.resolve_sweep_file(SMOKE, tmp_path) == Path(SMOKE)  # a path is a path, stored or not


def test_an_unknown_name_is_one_line_listing_close_names(ran):
    proc = run_cli("status", "smok", "--results", str(ran), check=False)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    assert "'smok' is no sweep file" in lines[0] and "did you mean 'smoke'" in lines[0]


def test_a_stored_sweep_whose_file_is_gone_says_to_give_the_file(tmp_path):
    moved = tmp_path / "moved.yaml"
    moved.write_text(Path(SMOKE).read_text())
    cells = grid.expand(spec.load_sweep(moved), check_inputs=False)
    launch.write_manifest("smoke", str(moved), cells, tmp_path / "results")
    moved.unlink()
    proc = run_cli("plan", "smoke", "--results", str(tmp_path / "results"), check=False)
    assert proc.returncode == 2 and "which is not there any more: give the sweep file" in proc.stderr


def test_sweep_and_option_naming_two_sweeps_is_bad_input(ran):
    proc = run_cli("status", SMOKE, "--sweep", "other", "--results", str(ran), check=False)
    assert proc.returncode == 2 and "give one sweep" in proc.stderr and "Traceback" not in proc.stderr
