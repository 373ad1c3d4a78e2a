"""Fresh multi-step arithmetic problems that no model can have seen (`builtin:randcalc`).

In the spirit of RandomCalculation (RESEARCH.md, "Is the gain real? Contamination"): a spurious-reward
gain on MATH-500 may be memorisation; on freshly generated arithmetic it cannot be. Each problem is one
expression of `steps` binary operations (+, -, times, div) over small positive integers and, with
`fractions=True`, proper fractions, written in words plus LaTeX. Answers are exact (`fractions.Fraction`),
rendered as an integer or a reduced `\\frac{p}{q}`, which the grader (math-verify) accepts against `p/q`,
`\\boxed{p/q}` and the like.

Problem i of a setting depends only on (seed, i, steps range, fractions), so `n=100` is a prefix of
`n=500`. Step counts cycle through the range (equal numbers of 1-step, 2-step, ... problems) so accuracy
can be read per step count. Every intermediate value stays within `max_abs` in absolute value with a
denominator of at most `max_denominator`, and no division is by zero. 1-step problems are few enough that
two seeds can share one by chance; longer ones practically never.

Settings in a data set name: `builtin:randcalc?n=500&steps=1-20&seed=0&fractions=1` (every key optional;
`steps=5` means exactly 5). `builtin:randcalc-test` is the `randcalc` benchmark's stream: another seed,
so training on `builtin:randcalc` never trains on the benchmark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qsl

from ..errors import ConfigError

TRAIN_SEED, TEST_SEED = 0, 20250714
DEFAULT_N = 500
OPS = ("+", "-", "*", "/")
_LATEX_OP = {"+": "+", "-": "-", "*": "\\times", "/": "\\div"}
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_ATOM = 3  # precedence of a leaf: never needs parentheses
_TRIES = 32  # random candidates per step before the always-valid fallback


@dataclass(frozen=True)
class _Expr:
    """An expression tree node: a leaf (op None, value only) or `left op right`."""

    value: Fraction
    op: str | None = None
    left: _Expr | None = None
    right: _Expr | None = None

    @property
    def precedence(self) -> int:
        return _ATOM if self.op is None else _PRECEDENCE[self.op]


def generate(
    n: int,
    *,
    seed: int,
    min_steps: int = 1,
    max_steps: int = 20,
    fractions: bool = True,
    max_operand: int = 20,
    max_abs: int = 10_000,
    max_denominator: int = 100,
) -> list[dict[str, Any]]:
    """`n` problems as dicts with `id`, `problem` (text), `answer` (integer or reduced `\\frac{p}{q}`),
    `steps` (operations in the expression) and `expression` (the LaTeX alone). Deterministic per seed."""
    _check_settings(n, min_steps, max_steps, max_operand, max_abs, max_denominator)
    span = max_steps - min_steps + 1
    tag = f"{min_steps}to{max_steps}" + ("" if fractions else "-int")
    out = []
    for i in range(n):
        steps = min_steps + i % span
        # str seeds are hashed with SHA-512 by `random`, so they are stable across runs and platforms
        rng = random.Random(f"randcalc:{seed}:{tag}:{i}")
        expr = _chain(rng, steps, fractions, max_operand, max_abs, max_denominator)
        latex = render(expr)
        out.append(
            {
                "id": f"randcalc-s{seed}-{tag}-{i}",
                "problem": f"Evaluate the following expression exactly: ${latex}$.",
                "answer": render_value(expr.value),
                "steps": steps,
                "expression": latex,
            }
        )
    return out


def _check_settings(n: int, lo: int, hi: int, operand: int, max_abs: int, max_den: int) -> None:
    """Every bad setting at once, each named."""
    bad = []
    if n < 0:
        bad.append(f"n must be >= 0, got {n}")
    if lo < 1:
        bad.append(f"min_steps must be >= 1, got {lo}")
    if hi < lo:
        bad.append(f"max_steps must be >= min_steps ({lo}), got {hi}")
    if operand < 2:
        bad.append(f"max_operand must be >= 2, got {operand}")
    if max_abs < 2 * operand:
        bad.append(f"max_abs must be >= 2 * max_operand ({2 * operand}), got {max_abs}")
    if max_den < 10:
        bad.append(f"max_denominator must be >= 10, got {max_den}")
    if bad:
        raise ConfigError("; ".join(bad), field="randcalc")


def _operand(rng: random.Random, fractions: bool, max_operand: int) -> _Expr:
    """A positive integer, or (a quarter of the time, with fractions) a proper fraction a/b, b in 2..9."""
    if fractions and rng.random() < 0.25:
        b = rng.randint(2, 9)
        a = rng.randint(1, b - 1)
        if Fraction(a, b).denominator > 1:
            return _Expr(Fraction(a, b))
    return _Expr(Fraction(rng.randint(1, max_operand)))


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    if op == "/":
        return None if b == 0 else a / b
    return a + b if op == "+" else a - b if op == "-" else a * b


def _chain(
    rng: random.Random, steps: int, fractions: bool, max_operand: int, max_abs: int, max_den: int
) -> _Expr:
    """`steps` operations, each combining the expression so far with a fresh operand on either side."""
    expr = _operand(rng, fractions, max_operand)
    for _ in range(steps):
        for _ in range(_TRIES):
            leaf = _operand(rng, fractions, max_operand)
            op = rng.choice(OPS)
            left, right = (expr, leaf) if rng.random() < 0.6 else (leaf, expr)
            value = _apply(op, left.value, right.value)
            if value is None or abs(value) > max_abs or value.denominator > max_den:
                continue
            if not fractions and value.denominator != 1:
                continue
            expr = _Expr(value, op, left, right)
            break
        else:
            # moving one step toward zero keeps the denominator and the magnitude within bounds
            op, value = ("-", expr.value - 1) if expr.value > 0 else ("+", expr.value + 1)
            expr = _Expr(value, op, expr, _Expr(Fraction(1)))
    return expr


def render(expr: _Expr) -> str:
    """LaTeX for an expression, with only the parentheses that precedence and (non-)associativity need."""
    if expr.op is None:
        return render_value(expr.value)
    assert expr.left is not None and expr.right is not None  # an op node always has both children
    left, right = render(expr.left), render(expr.right)
    prec = _PRECEDENCE[expr.op]
    if expr.left.precedence < prec:
        left = f"({left})"
    # a - (b + c) and a / (b * c) need theirs; a + (b - c) would not, but keeping them reads the same
    if expr.right.precedence < prec or (expr.right.precedence == prec and expr.op in "-/"):
        right = f"({right})"
    return f"{left} {_LATEX_OP[expr.op]} {right}"


def render_value(v: Fraction) -> str:
    """An exact value as the answer is written: `12`, `-3`, `\\frac{3}{4}`, `-\\frac{7}{2}`."""
    if v.denominator == 1:
        return str(v.numerator)
    sign = "-" if v < 0 else ""
    return f"{sign}\\frac{{{abs(v.numerator)}}}{{{v.denominator}}}"


# ---------------------------------------------------------------------------------------------- named sets
def from_name(name: str) -> list[dict[str, Any]]:
    """The problems of `builtin:NAME` for NAME `randcalc` / `randcalc-test`, optionally followed by
    `?n=500&steps=1-20&seed=0&fractions=1`. Bad settings raise one ConfigError naming every bad key."""
    base, _, query = name.partition("?")
    if base not in ("randcalc", "randcalc-test"):
        raise ConfigError(f"unknown built-in data set {base!r}; valid: randcalc, randcalc-test", field="data")
    settings: dict[str, Any] = {
        "n": DEFAULT_N,
        "seed": TEST_SEED if base == "randcalc-test" else TRAIN_SEED,
        "min_steps": 1,
        "max_steps": 20,
        "fractions": True,
    }
    bad = []
    for key, value in parse_qsl(query, keep_blank_values=True):
        try:
            settings.update(_setting(key, value))
        except ValueError as exc:
            bad.append(f"{key}={value!r}: {exc}")
    if bad:
        raise ConfigError("; ".join(bad), field=f"builtin:{name}")
    try:
        return generate(settings.pop("n"), **settings)
    except ConfigError as exc:
        raise ConfigError(exc.detail, field=f"builtin:{name}") from None


def _setting(key: str, value: str) -> dict[str, Any]:
    """One `key=value` of a randcalc name as generate() keywords; ValueError says what is valid."""
    if key in ("n", "seed"):
        return {key: int(value)}
    if key == "steps":
        lo, sep, hi = value.partition("-")
        return {"min_steps": int(lo), "max_steps": int(hi) if sep else int(lo)}
    if key == "fractions":
        if value.lower() not in ("0", "1", "true", "false"):
            raise ValueError("expected 0, 1, true or false")
        return {"fractions": value.lower() in ("1", "true")}
    raise ValueError("unknown setting; valid: n, seed, steps (A-B or A), fractions (0/1)")
