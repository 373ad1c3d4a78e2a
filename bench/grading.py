"""Grading throughput on MATH-500-style answers.

    python bench/grading.py [--n 2000] [--data PATH/math500.json] [--timeout 5]

Responses are built from the MATH-500 gold answers (correct boxed verbatim, correct boxed in another
format, wrong boxed, answer only in prose) behind a chunk of reasoning text, and graded by
(a) raw math-verify ``parse`` + ``verify`` in a loop, (b) ``grade_one`` in-process, (c) ``GradingPool``
with 1 and 2 workers (started and warmed up before the clock starts). Prints responses/s, the pool
speed-ups and the overhead of (b) over (a), both as shipped and with spurisweep's caches and
identical-string shortcut switched off (pure per-answer overhead beyond math-verify).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spurisweep import grading  # noqa: E402
from spurisweep.grading import verify  # noqa: E402


def _default_data() -> Path:
    env = os.environ.get("SPURISWEEP_SHARED_DATA")
    base = Path(env) if env else REPO.parent / "shared" / "data"
    return base / "math500.json"


def _reformat(gold: str) -> str:
    if re.fullmatch(r"-?\d+", gold):
        return gold + ".0"
    if "\\frac" in gold:
        return gold.replace("\\frac", "\\dfrac")
    if "\\left(" in gold:
        return gold.replace("\\left(", "(").replace("\\right)", ")")
    return gold


def _wrong(gold: str) -> str:
    if re.fullmatch(r"-?\d+", gold):
        return str(int(gold) + 1)
    return gold + " + 1"


def build_pairs(rows: list[dict], n: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    kinds = ("verbatim", "reformatted", "wrong", "prose")
    i = 0
    while len(pairs) < n:
        row = rows[(i // len(kinds)) % len(rows)]
        kind = kinds[i % len(kinds)]
        gold = row["answer"].strip()
        reasoning = (
            "Let me restate the problem. " + row["prompt"][:600] + "\nWorking through it step by step.\n"
        )
        if kind == "verbatim":
            resp = f"{reasoning}Therefore the final answer is $\\boxed{{{gold}}}$."
        elif kind == "reformatted":
            resp = f"{reasoning}So we get \\boxed{{{_reformat(gold)}}}"
        elif kind == "wrong":
            resp = f"{reasoning}Hence \\boxed{{{_wrong(gold)}}}."
        else:
            resp = f"{reasoning}After simplifying, the answer is {gold}."
        pairs.append((resp, gold))
        i += 1
    return pairs


def cold() -> None:
    """Empty every cache (spurisweep's, math-verify's, sympy's) so no run profits from an earlier one."""
    import math_verify.parser as mvp
    from sympy.core.cache import clear_cache

    verify.clear_caches()
    clear_cache()
    for fn in (mvp.parse_latex_cached, mvp.parse_expr_cached, mvp.extract_latex):
        fn.cache_clear()


def _respell(response: str, gold: str, style: str) -> tuple[str, str]:
    """The same answers, spelled with a leading ``style`` (\\displaystyle, ...): similar work, other
    cache keys."""
    response = response.replace("\\boxed{", "\\boxed{" + style + " ")
    return response.replace("answer is ", "answer is " + style + " "), style + " " + gold


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process, from /proc (nan where unavailable)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


# every bench_* returns (wall seconds, CPU seconds of the grading process(es), number graded correct)


def bench_raw(pairs: list[tuple[str, str]], timeout: int, extracted: bool) -> tuple[float, float, int]:
    """math-verify alone: on the full response (its own extraction), or on our pre-extracted answer."""
    from math_verify import parse, verify

    if extracted:
        pairs = [("\\boxed{" + (grading.extract_answer(r) or "") + "}", g) for r, g in pairs]
    cold()
    t0, c0 = time.perf_counter(), time.process_time()
    ok = 0
    for resp, gold in pairs:
        g = parse("\\boxed{" + gold + "}", parsing_timeout=timeout)
        p = parse(resp, parsing_timeout=timeout)
        ok += bool(verify(g, p, timeout_seconds=timeout))
    return time.perf_counter() - t0, time.process_time() - c0, ok


def bench_inproc(pairs: list[tuple[str, str]], timeout: float) -> tuple[float, float, int]:
    cold()
    t0, c0 = time.perf_counter(), time.process_time()
    ok = sum(grading.grade_one(r, g, timeout=timeout).correct is True for r, g in pairs)
    return time.perf_counter() - t0, time.process_time() - c0, ok


def bench_bare(pairs: list[tuple[str, str]], timeout: float) -> tuple[float, float, int]:
    """grade_one with spurisweep's caches and identical-string shortcut off: math-verify's work + ours."""
    saved = verify._FAST_PATH, verify._PARSE_CACHE_SIZE, verify._JUDGE_CACHE_SIZE
    verify._FAST_PATH, verify._PARSE_CACHE_SIZE, verify._JUDGE_CACHE_SIZE = False, 0, 0
    try:
        return bench_inproc(pairs, timeout)
    finally:
        verify._FAST_PATH, verify._PARSE_CACHE_SIZE, verify._JUDGE_CACHE_SIZE = saved


def bench_pool(pairs: list[tuple[str, str]], workers: int, timeout: float) -> tuple[float, float, int]:
    """Workers are started and warmed up before the clock starts; CPU is the workers' + the parent's."""
    with grading.GradingPool(workers=workers, timeout=timeout) as pool:
        pool.wait_ready()
        # warm the workers the way a long-lived pool is warm (sympy imports parts of itself lazily and
        # ANTLR builds its DFA as it sees input), with answers spelled differently from the timed ones
        # so that no cache entry carries over; two passes, as each worker only sees part of a pass
        for style in ("\\displaystyle", "\\textstyle"):
            pool.grade([_respell(r, g, style) for r, g in pairs])
        pids = pool.worker_pids()
        w0 = sum(_proc_cpu(pid) for pid in pids)
        t0, c0 = time.perf_counter(), time.process_time()
        ok = sum(v.correct is True for v in pool.grade(pairs))
        wall, parent = time.perf_counter() - t0, time.process_time() - c0
        return wall, sum(_proc_cpu(pid) for pid in pids) - w0 + parent, ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--data", type=Path, default=_default_data())
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs per method, interleaved; the best is kept")
    args = ap.parse_args()
    if not args.data.exists():
        sys.exit(f"no data at {args.data} (set SPURISWEEP_SHARED_DATA)")
    rows = json.loads(args.data.read_text())
    pairs = build_pairs(rows, args.n)
    n = len(pairs)
    load0 = os.getloadavg()[0]
    print(f"{n} responses from {args.data.name}; {os.cpu_count()} CPUs; timeout {args.timeout}s")

    # warm up imports / regex compilation in this process so no timing includes them
    grading.grade_one("\\boxed{\\frac{1}{2}}", "0.5")
    bench_raw(pairs[:8], 1, extracted=False)
    itimeout = int(max(1, args.timeout))
    methods = {
        "raw": ("(a) raw math-verify parse(response)+verify", lambda: bench_raw(pairs, itimeout, False)),
        "raw_x": ("(a') raw math-verify on the extracted answer", lambda: bench_raw(pairs, itimeout, True)),
        "one": ("(b) grade_one in-process", lambda: bench_inproc(pairs, args.timeout)),
        "bare": ("(b') grade_one, caches+shortcut off", lambda: bench_bare(pairs, args.timeout)),
        "pool1": ("(c1) GradingPool(workers=1)", lambda: bench_pool(pairs, 1, args.timeout)),
        "pool2": ("(c2) GradingPool(workers=2)", lambda: bench_pool(pairs, 2, args.timeout)),
    }
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    correct: dict[str, int] = {}
    for _ in range(max(1, args.repeat)):  # interleaved, best of N: other load on the machine only adds
        for key, (_label, fn) in methods.items():
            w, c, ok = fn()
            wall[key] = min(wall.get(key, w), w)
            cpu[key] = min(cpu.get(key, c), c)
            correct[key] = ok
    print(f"{'':46s}  {'resp/s':>8s}  {'wall ms':>8s}  {'CPU ms':>7s}  correct")
    for key, (label, _fn) in methods.items():
        print(
            f"{label:46s}: {n / wall[key]:8.1f}  {1e3 * wall[key] / n:8.3f}  {1e3 * cpu[key] / n:7.3f}  {correct[key]}"
        )

    def pct(a: float, b: float) -> str:
        return f"{100 * (a - b) / b:+.1f}%"

    print(f"speed-up pool(2) vs grade_one in-process (wall): {wall['one'] / wall['pool2']:.2f}x")
    print(f"speed-up pool(2) vs pool(1) (wall)             : {wall['pool1'] / wall['pool2']:.2f}x")
    print(
        f"overhead (b) over (a), as shipped  wall / CPU  : {pct(wall['one'], wall['raw'])} / {pct(cpu['one'], cpu['raw'])}"
    )
    print(
        f"overhead (b') over (a'), same math-verify work : {pct(wall['bare'], wall['raw_x'])} / {pct(cpu['bare'], cpu['raw_x'])}"
    )
    print(f"pool(1) CPU per answer over (b), incl. IPC     : {pct(cpu['pool1'], cpu['one'])}")
    print(
        f"load average before / after: {load0:.2f} / {os.getloadavg()[0]:.2f} (other processes distort timings)"
    )


if __name__ == "__main__":
    main()
