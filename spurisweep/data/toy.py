"""The toy laboratory's synthetic task: short arithmetic word problems and two solution styles.

A problem is a start value and 2 or 3 steps that add or subtract a small number:

    Ann has 7 apples. Ann gets 5 more. Ann loses 3. How many apples does Ann have?   (answer 9)

It is written with the `qa` prompt template ("Question: ...\\nAnswer:") that the toy families use, and
solved in one of two styles, which mirror the paper's code reasoning vs natural-language reasoning:

  code   a ```python block that tracks the quantity with assignments, each intermediate value in a
         comment, then "The answer is \\boxed{N}." The lower-cased text contains "python" (the paper's
         code-reasoning flag); no prose solution does.
  prose  sentences that do the same arithmetic in words, then the same boxed sentence.

Why the styles differ in accuracy, on purpose (RESEARCH.md, code-reasoning table: Qwen2.5-Math-7B is
right 61% of the time with code and 35% without): the corpus a toy family is pretrained on makes prose
solutions slip more often (`StyleSpec.slip`: an intermediate value written off by 1 or 2, then carried on)
and, on three-step problems, usually stop after the second step (`StyleSpec.skip_last`: the prose prior
carries a systematic mistake, not just noise, so sharpening it does not make it right). A model that
samples its pretraining distribution is then more often right when it writes code.

Everything is deterministic given a seed (`random.Random`), pure Python, and cheap.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field

NAMES = ("Ann", "Bob", "Cat", "Dan", "Eve", "Max", "Sam", "Zoe")
ITEMS = ("apples", "coins", "books", "pens", "cards", "shells", "stamps", "eggs")
ADD_VERBS = ("gets", "buys", "finds", "wins")
SUB_VERBS = ("loses", "sells", "gives away", "uses")
CODE, PROSE = "code", "prose"
STYLES = (CODE, PROSE)
#: the prompt template the toy families are pretrained with (families.PROMPTS["qa"])
PROMPT = "Question: {problem}\nAnswer:"


@dataclass(frozen=True)
class Step:
    op: str  # "+" or "-"
    n: int
    verb: str


@dataclass(frozen=True)
class ToyProblem:
    """One word problem; `text` is what the model sees, `answer` the verifiable integer result."""

    name: str
    item: str
    start: int
    steps: tuple[Step, ...]

    @property
    def text(self) -> str:
        parts = [f"{self.name} has {self.start} {self.item}."]
        for s in self.steps:
            parts.append(f"{self.name} {s.verb} {s.n}{' more' if s.op == '+' else ''}.")
        parts.append(f"How many {self.item} does {self.name} have?")
        return " ".join(parts)

    @property
    def values(self) -> list[int]:
        """The running values: start, then after each step."""
        out = [self.start]
        for s in self.steps:
            out.append(out[-1] + s.n if s.op == "+" else out[-1] - s.n)
        return out

    @property
    def answer(self) -> int:
        return self.values[-1]

    @property
    def key(self) -> tuple[int, tuple[tuple[str, int], ...]]:
        """The arithmetic content (names, items and verbs are cosmetic): what held-out sets exclude."""
        return self.start, tuple((s.op, s.n) for s in self.steps)


@dataclass(frozen=True)
class StyleSpec:
    """How one style's solutions are written in a pretraining corpus.

    slip       probability that a step's written result is off by 1 or 2 (and carried on from there)
    skip_last  probability that a three-step solution stops after the second step (boxing that value)
    """

    slip: float = 0.0
    skip_last: float = 0.0


@dataclass(frozen=True)
class CorpusSpec:
    """A pretraining mixture: the share of code-style solutions and how each style errs."""

    code_share: float = 0.65
    code: StyleSpec = field(default_factory=lambda: StyleSpec(slip=0.05))
    prose: StyleSpec = field(default_factory=lambda: StyleSpec(slip=0.12, skip_last=0.75))
    three_step: float = 0.6  # share of three-step problems


@dataclass(frozen=True)
class Example:
    """One corpus row: the rendered prompt, the solution that follows it, and what it is."""

    problem: ToyProblem
    prompt: str
    completion: str  # starts with a space (it follows "Answer:"), no EOS
    style: str
    boxed: int  # the value the solution boxes
    correct: bool


# ---------------------------------------------------------------------------------------------- problems
def make_problem(rng: random.Random, three_step: float = 0.6) -> ToyProblem:
    """A random problem: start 2..20, 2 or 3 steps of +/- 1..9, never below zero."""
    start = rng.randint(2, 20)
    n_steps = 3 if rng.random() < three_step else 2
    steps = []
    value = start
    for _ in range(n_steps):
        n = rng.randint(1, 9)
        op = "-" if value >= n and rng.random() < 0.5 else "+"
        verb = rng.choice(SUB_VERBS if op == "-" else ADD_VERBS)
        steps.append(Step(op, n, verb))
        value = value + n if op == "+" else value - n
    return ToyProblem(rng.choice(NAMES), rng.choice(ITEMS), start, tuple(steps))


def problems(
    seed: int, n: int, *, three_step: float = 0.6, exclude: Iterable[ToyProblem] = ()
) -> list[ToyProblem]:
    """n problems with distinct arithmetic, none sharing its arithmetic with `exclude` (held-out sets)."""
    rng = random.Random(seed)
    banned = {p.key for p in exclude}
    out: list[ToyProblem] = []
    while len(out) < n:
        p = make_problem(rng, three_step)
        if p.key not in banned:
            banned.add(p.key)
            out.append(p)
    return out


# ---------------------------------------------------------------------------------------------- solutions
def _written_values(p: ToyProblem, spec: StyleSpec, rng: random.Random) -> tuple[list[int], int]:
    """The values a solution writes (with slips carried forward) and how many steps it does."""
    n_steps = len(p.steps)
    if n_steps == 3 and rng.random() < spec.skip_last:
        n_steps = 2
    vals = [p.start]
    for s in p.steps[:n_steps]:
        v = vals[-1] + s.n if s.op == "+" else vals[-1] - s.n
        if rng.random() < spec.slip:
            delta = rng.choice((-2, -1, 1, 2))
            v = v + delta if v + delta >= 0 else v + abs(delta)
        vals.append(v)
    return vals, n_steps


def code_solution(p: ToyProblem, vals: list[int], n_steps: int) -> str:
    var = p.item
    lines = ["```python", f"{var} = {p.start}"]
    for s, v in zip(p.steps[:n_steps], vals[1:], strict=True):
        lines.append(f"{var} = {var} {s.op} {s.n} # {v}")
    lines += [f"print({var})", "```", f"The answer is \\boxed{{{vals[-1]}}}."]
    return "\n".join(lines)


def prose_solution(p: ToyProblem, vals: list[int], n_steps: int) -> str:
    parts = [f"{p.name} starts with {p.start} {p.item}."]
    for s, prev, v in zip(p.steps[:n_steps], vals, vals[1:], strict=False):
        parts.append(f"{p.name} {s.verb} {s.n}, so {prev} {s.op} {s.n} = {v}.")
    parts.append(f"The answer is \\boxed{{{vals[-1]}}}.")
    return " ".join(parts)


def solve(p: ToyProblem, style: str, spec: StyleSpec, rng: random.Random) -> Example:
    """One solution of `p` in `style`, erring as `spec` says."""
    vals, n_steps = _written_values(p, spec, rng)
    body = code_solution(p, vals, n_steps) if style == CODE else prose_solution(p, vals, n_steps)
    return Example(
        problem=p,
        prompt=PROMPT.replace("{problem}", p.text),
        completion=" " + body,
        style=style,
        boxed=vals[-1],
        correct=vals[-1] == p.answer,
    )


def corpus(spec: CorpusSpec, n: int, seed: int, *, exclude: Iterable[ToyProblem] = ()) -> list[Example]:
    """A pretraining corpus of n solved problems: style drawn per row with P(code) = spec.code_share.

    Problems whose arithmetic is in `exclude` (the RL and test sets) never appear, so the toy families
    have not seen the evaluation problems solved.
    """
    rng = random.Random(seed)
    banned = {p.key for p in exclude}
    out: list[Example] = []
    while len(out) < n:
        p = make_problem(rng, spec.three_step)
        if p.key in banned:
            continue
        style = CODE if rng.random() < spec.code_share else PROSE
        out.append(solve(p, style, spec.code if style == CODE else spec.prose, rng))
    return out


# ---------------------------------------------------------------------------------------------- data sets
TRAIN_SEED, TEST_SEED, FRESH_SEED = 8101, 8202, 8303
TRAIN_SIZE, TEST_SIZE = 512, 200


def test_problems() -> list[ToyProblem]:
    """`builtin:toy-test` (the `toy` benchmark): 200 held-out problems."""
    return problems(TEST_SEED, TEST_SIZE)


def train_problems() -> list[ToyProblem]:
    """`builtin:toy`: 512 RL training problems, disjoint in arithmetic from the test set."""
    return problems(TRAIN_SEED, TRAIN_SIZE, exclude=test_problems())


def fresh_problems() -> list[ToyProblem]:
    """`builtin:toy-fresh` (the `toy-fresh` benchmark): 200 more test problems, disjoint in arithmetic from
    the test and training sets; the memorising family's corpus excludes them too (the fresh control)."""
    return problems(FRESH_SEED, TEST_SIZE, exclude=test_problems() + train_problems())


def held_out() -> list[ToyProblem]:
    """Every problem the pretraining corpus must not contain."""
    return test_problems() + train_problems()


def rows(kind: str) -> list[tuple[str, str, str]]:
    """(id, problem text, answer) rows of `builtin:toy` (kind "train"), `builtin:toy-test` ("test") or
    `builtin:toy-fresh` ("fresh")."""
    probs = {"train": train_problems, "fresh": fresh_problems}.get(kind, test_problems)()
    return [(f"toy-{kind}-{i}", p.text, str(p.answer)) for i, p in enumerate(probs)]
