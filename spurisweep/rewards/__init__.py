"""Reward signals: one registry, one function per reward, compositions by name.

A reward is a plain TRL-compatible callable `f(completions, **kwargs) -> list[float | None]` (None =
could not grade, which is not 0). Rewards that compare against a reference all read the `answer`
column: for `ground_truth` it holds the gold answer, for `majority_vote` / `incorrect_label` the
training set is swapped for a labelled one (see spurisweep.evaluation.labels), for `one_shot` for one problem
repeated. So the *checker* is shared and the *data* differs, exactly as in the paper.

Names compose: `A_AND_B` (both hold) and `inverse_A` (1 - r), e.g. `format_AND_inverse_python`.
Adding a reward is one function decorated with `@register(...)` in one of the modules below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import suggest
from . import correctness, spurious  # noqa: F401  (each registers its rewards on import)
from .registry import REGISTRY, RewardContext, RewardDef, RewardFn, completion_text, register

__all__ = ["REGISTRY", "RewardContext", "RewardDef", "RewardFn", "completion_text", "register"]


# ---------------------------------------------------------------------------------------------- names
@dataclass(frozen=True)
class Expr:
    op: str  # "base" | "and" | "inverse"
    name: str = ""
    args: tuple[Expr, ...] = ()

    def bases(self) -> list[str]:
        if self.op == "base":
            return [self.name]
        out: list[str] = []
        for a in self.args:
            out += [b for b in a.bases() if b not in out]
        return out


def parse(name: str) -> Expr:
    """`format_AND_inverse_python` -> and(format, inverse(python)). ValueError lists the valid names."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"a reward name must be a non-empty string; valid: {', '.join(sorted(REGISTRY))}")
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
        raise ValueError(suggest(name, list(REGISTRY)) + " (compose with A_AND_B and inverse_A)")
    return Expr("base", name=name)


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
    if expr.op == "inverse":
        (inner,) = parts

        def inverse(completions, **kw):
            return [None if r is None else 1.0 - r for r in inner(completions, **kw)]

        return inverse

    def both(completions, **kw):
        cols = [p(completions, **kw) for p in parts]
        return [
            None if any(r is None for r in rs) else float(all(r >= 0.5 for r in rs))
            for rs in zip(*cols, strict=True)
        ]

    return both
