"""The store is a cache of results/: it cannot be bricked. A damaged, empty or out-of-date database, a
results path that is a file or missing, damaged cell files, a full disk: each is one line naming the file
and the fix (exit 2), never a traceback, and `spurisweep ingest --rebuild` brings the database back from
the cell folders. Real CLI in subprocesses over a real results folder (the smoke sweep), real DuckDB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from tests.storebuilder import run_cli

REPORT = ("report", "--sweep", "smoke", "--pivot", "model,reward", "--format", "csv")


@pytest.fixture
def copy(smoke_results: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "results"
    shutil.copytree(smoke_results, dest)
    run_cli("ingest", "--results", str(dest))
    return dest


def one_line_error(proc: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


@pytest.mark.parametrize("damage", ["empty", "garbage", "old_schema"])
def test_a_damaged_database_is_one_line_and_rebuild_restores_it(copy: Path, damage: str):
    db = copy / "spurisweep.duckdb"
    before = run_cli(*REPORT, "--results", str(copy)).stdout
    if damage == "empty":
        db.write_bytes(b"")
    elif damage == "garbage":
        db.write_bytes(os.urandom(64 * 1024))
    else:
        con = duckdb.connect(str(db))
        con.execute("DROP TABLE schema_info")
        con.close()
    for cmd in (REPORT, ("ingest",)):
        proc = run_cli(*cmd, "--results", str(copy), check=False)
        one_line_error(proc, str(db), "spurisweep ingest --rebuild")
    rebuilt = run_cli("ingest", "--rebuild", "--results", str(copy))
    assert "ingested 4 cell(s)" in rebuilt.stdout
    assert run_cli(*REPORT, "--results", str(copy)).stdout == before


def test_results_path_that_is_a_file_or_missing(tmp_path: Path):
    f = tmp_path / "results"
    f.write_text("not a folder")
    one_line_error(run_cli(*REPORT, "--results", str(f), check=False), str(f), "is a file")
    missing = tmp_path / "nowhere"
    one_line_error(
        run_cli(*REPORT, "--results", str(missing), check=False), str(missing), "no such results folder"
    )
    assert not missing.exists()  # no empty database conjured up


def test_damaged_cell_files_skip_that_cell_with_a_warning(copy: Path):
    cells = sorted(p for p in (copy / "smoke").iterdir() if (p / "DONE").exists())
    bad_cfg, bad_samples = cells[0], cells[1]
    (bad_cfg / "config.json").write_bytes(b"\xff\xfe\x00garbage")
    sample_file = sorted((bad_samples / "evals").glob("*.jsonl"))[0]
    sample_file.write_bytes(sample_file.read_bytes()[:50] + b"\xff\xfe\n")
    proc = run_cli("ingest", "--rebuild", "--results", str(copy))
    assert "ingested 3 cell(s)" in proc.stdout
    assert str(bad_cfg / "config.json") in proc.stderr
    assert str(sample_file) in proc.stderr
    con = duckdb.connect(str(copy / "spurisweep.duckdb"), read_only=True)
    ids = {r[0] for r in con.execute("SELECT cell_id FROM cells").fetchall()}
    n = con.execute("SELECT count(*) FROM samples WHERE eval_id = ?", [sample_file.stem]).fetchone()[0]
    con.close()
    assert bad_cfg.name not in ids and bad_samples.name in ids and n == 0
    assert run_cli(*REPORT, "--results", str(copy)).returncode == 0


def test_atomic_files_respect_the_umask(tmp_path: Path):
    code = textwrap.dedent(f"""
        import os, stat
        os.umask(0o002)
        from pathlib import Path
        from spurisweep import artifacts
        p = Path({str(tmp_path)!r}) / "a.json"
        artifacts.atomic_write_json(p, {{"x": 1}})
        print(oct(stat.S_IMODE(p.stat().st_mode)))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "0o664"


def _tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]).returncode == 0


def test_a_full_disk_never_leaves_a_broken_database(copy: Path, tmp_path: Path):
    """Disk full, for real: a tiny tmpfs (root only; skipped elsewhere with the reason)."""
    mnt = tmp_path / "small"
    if not _tmpfs(mnt, "32m"):
        pytest.skip("needs root and tmpfs to fill a real disk")
    try:
        res = mnt / "results"
        shutil.copytree(copy / "smoke", res / "smoke", ignore=shutil.ignore_patterns("checkpoints"))
        filler = mnt / "filler"
        try:  # take every free byte
            with open(filler, "wb") as f:
                while True:
                    f.write(b"\0" * 4096)
                    f.flush()
        except OSError:
            pass
        proc = run_cli(*REPORT, "--results", str(res), check=False)
        one_line_error(proc, "spurisweep.duckdb")
        assert not (res / "spurisweep.duckdb").exists()  # no 0-byte file left to brick later commands
        filler.unlink()
        assert run_cli(*REPORT, "--results", str(res)).returncode == 0
    finally:
        subprocess.run(["umount", str(mnt)])
