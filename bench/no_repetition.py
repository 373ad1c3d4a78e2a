"""Cost of the no_repetition detector (one pattern of 10-256 characters, 10 times in a row).

    python bench/no_repetition.py [--kb 20] [--rounds 5]

Prints milliseconds per call on a response of ``--kb`` kilobytes of ordinary text (no repetition: the
whole search runs), the same text ending in a loop, one character repeated, and a text built to
defeat the block search (each period's blocks equal in runs of 7, one short of a catch). The official
code's own search compares every start with every length, about len * 247 slice comparisons (and more
on long equal stretches); a backtracking regex such as ``(.{10,256}?)\\1{9,}`` took 0.5 s on 4 kB of
ordinary text here, growing with the length.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spurisweep.rewards.spurious import has_repetition  # noqa: E402


def ordinary(n: int) -> str:
    rng = random.Random(0)
    words = "we have so the answer is let \\frac{1}{2} x y = + - and then thus sum of".split()
    out: list[str] = []
    while sum(map(len, out)) < n:
        out.append(rng.choice(words) + (" " if rng.random() < 0.8 else f" {rng.randint(0, 999)} "))
    return "".join(out)[:n]


def near_miss(n: int) -> str:
    """Runs of 7 equal 10-character blocks, each run different: every block compare at period 10
    succeeds often, and none makes a catch."""
    rng = random.Random(1)
    out: list[str] = []
    while sum(map(len, out)) < n:
        block = "".join(rng.choice("abcdefgh") for _ in range(10))
        out.append(block * 7 + "!")
    return "".join(out)[:n]


def timed(text: str, rounds: int) -> tuple[float, bool]:
    found = has_repetition(text)
    t0 = time.perf_counter()
    for _ in range(rounds):
        has_repetition(text)
    return (time.perf_counter() - t0) / rounds * 1000, found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    n = args.kb * 1000
    base = ordinary(n)
    cases = {
        "ordinary text": base,
        "ordinary, loop at the end": base[: n // 2] + ("so the answer is 5. " * (n // 40))[: n // 2],
        "one character repeated": "a" * n,
        "near miss (runs of 7)": near_miss(n),
    }
    for name, text in cases.items():
        ms, found = timed(text, args.rounds)
        print(f"{name:28s} {len(text):7d} chars  {ms:8.2f} ms/call  repetition={found}")


if __name__ == "__main__":
    main()
