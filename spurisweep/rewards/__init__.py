"""Reward signals: one registry, one function per reward, compositions by name.

A reward is a plain TRL-compatible callable `f(completions, **kwargs) -> list[float | None]` (None =
could not grade, which is not 0). Rewards that compare against a reference all read the `answer`
column: for `ground_truth` it holds the gold answer, for `majority_vote` / `incorrect_label` the
training set is swapped for a labelled one (see spurisweep.evaluation.labels), for `one_shot` for one problem
repeated. So the *checker* is shared and the *data* differs, exactly as in the paper.

Names compose: `A_AND_B` (both hold) and `inverse_A` (1 - r), e.g. `format_AND_inverse_python`; a
mixture is a weighted sum of such names, `0.5*random+0.5*ground_truth` (see `parse`).
Adding a reward is one function decorated with `@register(...)` in one of the modules below, which
declares the reward's two facts beside it: `spurious=` (no information about the correct answer, so
`diagnose` calls a gain under it spurious) and `expected=` (what it must score on the adversarial suite,
rewards/verify_suite.yaml; `verify-rewards` refuses a reward that declares nothing). See registry.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import suggest
from . import correctness, intrinsic, majority, spurious  # noqa: F401  (each registers its rewards on import)
from .registry import (
    GRADER,
    REGISTRY,
    SUITE,
    UNSCORED,
    RewardContext,
    RewardDef,
    RewardFn,
    completion_text,
    register,
)

__all__ = [
    "GRADER",
    "REGISTRY",
    "SUITE",
    "UNSCORED",
    "RewardContext",
    "RewardDef",
    "RewardFn",
    "completion_text",
    "mix_name",
    "register",
]


# ---------------------------------------------------------------------------------------------- names
#: one term of a mixture: a weight, '*', a reward name or composition (`0.5*format_AND_inverse_python`)
_TERM = re.compile(r"\s*([+-]?)\s*((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*\*\s*([A-Za-z][A-Za-z0-9_]*)\s*")


@dataclass(frozen=True)
class Expr:
    op: str  # "base" | "and" | "inverse" | "mix"
    name: str = ""
    args: tuple[Expr, ...] = ()
    weights: tuple[float, ...] = ()  # mix: one weight per argument

    def bases(self) -> list[str]:
        if self.op == "base":
            return [self.name]
        out: list[str] = []
        for a in self.args:
            out += [b for b in a.bases() if b not in out]
        return out

    def __str__(self) -> str:
        """The canonical name: what `parse` reads back as this expression."""
        if self.op == "base":
            return self.name
        if self.op == "inverse":
            return f"inverse_{self.args[0]}"
        if self.op == "and":
            return "_AND_".join(str(a) for a in self.args)
        terms = [
            f"{'-' if w < 0 else '+'}{_weight(abs(w))}*{a}"
            for w, a in zip(self.weights, self.args, strict=True)
        ]
        text = "".join(terms)
        return text[1:] if text.startswith("+") else text


def _weight(w: float) -> str:
    """A weight as short as it can be written and still read back as the same float (0.5, 1, 1e-05)."""
    short = f"{w:g}"
    return short if float(short) == w else repr(w)


def parse(name: str) -> Expr:
    """A reward name -> its expression. `format_AND_inverse_python` -> and(format, inverse(python));
    `0.5*random+0.5*ground_truth` -> mix (a weighted sum: weights are finite numbers, negative ones written
    `-0.2*no_repetition`; each part a name or an A_AND_B / inverse_A composition, never a mixture; the
    mixture is the outermost operator). ValueError lists the valid names."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a reward name must be a non-empty string; valid: {', '.join(sorted(REGISTRY))}")
    if "*" in name:
        return _parse_mix(name)
    parts = name.split("_AND_")
    if len(parts) > 1:
        if any(not p for p in parts):
            raise ValueError(f"malformed composition {name!r}: '_AND_' needs a reward on both sides")
        return Expr("and", args=tuple(parse(p) for p in parts))
    if name.startswith("inverse_"):
        inner = name[len("inverse_") :]
        if not inner:
            raise ValueError(f"malformed composition {name!r}: 'inverse_' needs a reward after it")
        return Expr("inverse", args=(parse(inner),))
    if name not in REGISTRY:
        raise ValueError(suggest(name, list(REGISTRY)) + " (compose with A_AND_B, inverse_A and 0.5*A+0.5*B)")
    return Expr("base", name=name)


def _parse_mix(name: str) -> Expr:
    pos, weights, args = 0, [], []
    while pos < len(name):
        m = _TERM.match(name, pos)
        if m is None or (args and not m.group(1)):
            raise ValueError(
                f"malformed mixture {name!r}: write weighted rewards joined by + or -, e.g. "
                "0.5*random+0.5*ground_truth"
            )
        w = float(m.group(1) + m.group(2))
        if not math.isfinite(w):
            raise ValueError(f"malformed mixture {name!r}: weight {m.group(2)} is not a finite number")
        weights.append(w)
        args.append(parse(m.group(3)))
        pos = m.end()
    return Expr("mix", args=tuple(args), weights=tuple(weights))


def mix_name(pairs: Any) -> str:
    """The canonical name of a mixture given as the sweep file's mapping value, `{mix: PAIRS}` with PAIRS
    `[[random, 0.5], [ground_truth, 0.5]]`: here `0.5*random+0.5*ground_truth`. ValueError says what is
    wrong with PAIRS."""
    if not isinstance(pairs, list) or not pairs:
        raise ValueError(
            "a reward mixture is a non-empty list of [reward, weight] pairs, e.g. [[random, 0.5]]"
        )
    args, weights = [], []
    for pair in pairs:
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
        if not ok or isinstance(pair[1], bool) or not isinstance(pair[1], (int, float)):
            raise ValueError(f"a reward mixture's entry must be [reward, weight], got {pair!r}")
        if not math.isfinite(pair[1]):
            raise ValueError(f"a reward mixture's weight must be a finite number, got {pair[1]!r}")
        expr = parse(pair[0])
        if expr.op == "mix":
            raise ValueError(
                f"a reward mixture's part must be a reward or composition, not a mixture: {pair[0]!r}"
            )
        args.append(expr)
        weights.append(float(pair[1]))
    return str(Expr("mix", args=tuple(args), weights=tuple(weights)))


def canonical(name: str) -> str:
    """`name` written the one way `parse` reads it back (spaces and weight spellings normalised)."""
    return str(parse(name))


def resolve_params(expr: Expr, given: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Defaults for every reward in the expression, overridden by `given`; params of rewards the
    expression does not use are dropped (so they cannot change the cell id)."""
    out: dict[str, dict[str, Any]] = {}
    for base in expr.bases():
        d = REGISTRY[base]
        extra = given.get(base, {}) or {}
        unknown = set(extra) - set(d.params)
        if unknown:
            valid = ", ".join(sorted(d.params)) or "none"
            raise ValueError(f"reward {base!r} has no parameter {sorted(unknown)[0]!r}; valid: {valid}")
        if d.params:
            out[base] = {**d.params, **extra}
            if d.check is not None:
                d.check(out[base])
    return out


def data_kind(expr: Expr) -> str:
    """The training set a reward expression needs (at most one non-default kind per expression)."""
    kinds = {REGISTRY[b].data for b in expr.bases()} - {"train"}
    if len(kinds) > 1:
        raise ValueError(f"rewards needing different training sets cannot be combined: {sorted(kinds)}")
    return kinds.pop() if kinds else "train"


def build(name: str, params: dict[str, dict[str, Any]], ctx: RewardContext) -> RewardFn:
    """A TRL reward callable for a (possibly composite) reward name. Only the rewards used are built."""
    expr = parse(name)
    fn = _build(expr, params, ctx)
    fn.__name__ = name  # TRL logs rewards/<__name__>/mean
    return fn


def _build(expr: Expr, params: dict[str, dict[str, Any]], ctx: RewardContext) -> RewardFn:
    if expr.op == "base":
        d = REGISTRY[expr.name]
        return d.factory({**d.params, **params.get(expr.name, {})}, ctx)
    parts = [_build(a, params, ctx) for a in expr.args]
    stats = [s for p in parts for s in intrinsic.token_stats(p)]
    if expr.op == "inverse":
        (inner,) = parts

        def inverse(completions, **kw):
            return [None if r is None else 1.0 - r for r in inner(completions, **kw)]

        return intrinsic.needs(inverse, *stats)
    if expr.op == "mix":
        return intrinsic.needs(_mixture(parts, [str(a) for a in expr.args], expr.weights), *stats)

    def both(completions, **kw):
        cols = [p(completions, **kw) for p in parts]
        return [
            None if any(r is None for r in rs) else float(all(r >= 0.5 for r in rs))
            for rs in zip(*cols, strict=True)
        ]

    return intrinsic.needs(both, *stats)


def _mixture(parts: list[RewardFn], names: list[str], weights: tuple[float, ...]) -> RewardFn:
    """sum_i w_i r_i per completion; None where any part is None (one part ungradable leaves the sum
    unknown, as A_AND_B). Each part's mean over the completions it scored is logged as
    reward_part/<part>/mean (TRL's log_metric), so a mixture's components stay visible."""

    def mixture(completions, **kw):
        cols = [p(completions, **kw) for p in parts]
        log_metric = kw.get("log_metric")
        if log_metric is not None:
            for name, col in zip(names, cols, strict=True):
                scored = [r for r in col if r is not None]
                if scored:
                    log_metric(f"reward_part/{name}/mean", sum(scored) / len(scored))
        return [
            None if any(r is None for r in rs) else math.fsum(w * r for w, r in zip(weights, rs, strict=True))
            for rs in zip(*cols, strict=True)
        ]

    return mixture
