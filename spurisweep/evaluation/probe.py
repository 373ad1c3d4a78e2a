"""The pure parts of the memorisation probe (RESEARCH.md, "Is the gain real? Contamination").

Give a model the first 40/60/80% of a benchmark problem, decode greedily, and compare what it writes with
the problem's true remainder: exact match and ROUGE-L (the partial-prompt completion rate), plus whether
the answer it reaches from the incomplete problem is right (the partial-prompt answer accuracy). A model
that regenerates MATH-500's remainders word for word has seen MATH-500.

This module cuts problems, scores one continuation and summarises rows; generation and storage belong
to the evaluation side. Comparisons work on normalised tokens so that layout does not count as a
difference: LaTeX spacing commands, `\\left`/`\\right`, `\\dfrac`/`\\tfrac` vs `\\frac` and the spaces
around operators (`x+1` vs `x + 1`) are ignored; each LaTeX command, run of letters/digits or other
symbol is one token. ROUGE-L is the `rouge-score` library's F-measure with its own tokenizer (the
standard one, as in the study); only the continuation's first as-many-tokens-as-the-remainder are
scored, since a model that finishes the problem usually goes on to solve it.
"""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..errors import ConfigError

DEFAULT_FRACTIONS = (0.4, 0.6, 0.8)
#: fewer words than this on either side of the cut: too short to probe (skipped and counted)
MIN_WORDS = 2

_WORD = re.compile(r"\S+")
_TOKEN = re.compile(r"\\[A-Za-z]+|\w+|\S")
_LATEX_SPACE = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
_LATEX_SIZE = re.compile(r"\\(?:left|right|big|Big|bigg|Bigg)(?![A-Za-z])")
_LATEX_FRAC = re.compile(r"\\[dt]frac(?![A-Za-z])")


def parse_fractions(value: str | Iterable[float]) -> tuple[float, ...]:
    """Fractions of a problem to show, from `0.4,0.6,0.8` or a list; every one strictly inside (0, 1).
    Every bad value is reported at once in one ConfigError naming the field `fractions`."""
    items = [x.strip() for x in value.split(",")] if isinstance(value, str) else list(value)
    if not items or items == [""]:
        raise ConfigError("no fractions given; expected e.g. 0.4,0.6,0.8", field="fractions")
    out, bad = [], []
    for item in items:
        try:
            f = float(item)
        except (TypeError, ValueError):
            bad.append(repr(item))
            continue
        if isinstance(item, bool) or not (0.0 < f < 1.0):
            bad.append(repr(item))
        elif f not in out:
            out.append(f)
    if bad:
        raise ConfigError(
            f"{', '.join(bad)}: each must be a number strictly between 0 and 1", field="fractions"
        )
    return tuple(out)


def truncate(problem: str, fraction: float) -> tuple[str, str] | None:
    """(prefix, remainder) of a problem cut after round(fraction * words) whitespace-separated words.

    The prefix keeps the problem's own layout and ends at a word (no trailing space); the remainder starts
    at the next word. None when either side would have fewer than MIN_WORDS words (too short to probe).
    A fraction outside (0, 1) raises ConfigError naming the field `fractions`.
    """
    (fraction,) = parse_fractions([fraction])
    words = list(_WORD.finditer(problem))
    k = math.floor(fraction * len(words) + 0.5)  # round half up: 0.5 * 5 words shows 3
    if k < MIN_WORDS or len(words) - k < MIN_WORDS:
        return None
    return problem[: words[k - 1].end()], problem[words[k].start() : words[-1].end()]


def tokens(text: str) -> list[str]:
    """Normalised comparison tokens: layout-only LaTeX removed, one token per command, word or symbol."""
    text = unicodedata.normalize("NFKC", text)
    text = _LATEX_FRAC.sub(r"\\frac", _LATEX_SIZE.sub(" ", _LATEX_SPACE.sub(" ", text)))
    return _TOKEN.findall(text)


def cut_continuation(generated: str, remainder: str) -> str:
    """The continuation's first len(tokens(remainder)) normalised tokens, joined by single spaces."""
    return " ".join(tokens(generated)[: len(tokens(remainder))])


@functools.cache
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"])


def continuation_metrics(generated: str, remainder: str) -> dict[str, Any]:
    """exact_match (the continuation's first tokens are the remainder's, after normalisation) and rouge_l
    (rouge-score's ROUGE-L F-measure of that cut continuation against the normalised remainder).
    An empty continuation, or an empty remainder, scores False and 0.0."""
    want = tokens(remainder)
    got = tokens(generated)[: len(want)]
    if not want or not got:
        return {"exact_match": False, "rouge_l": 0.0}
    score = _scorer().score(" ".join(want), " ".join(got))["rougeL"].fmeasure
    return {"exact_match": got == want, "rouge_l": float(score)}


def summarize(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, float], dict[str, Any]]:
    """Per (benchmark, fraction): n probed, skipped (too short), exact_match rate, mean rouge_l, accuracy
    (the cell grader's `correct`; None = ungradable counts as wrong, as in evaluation) and the
    ungradable share. Rows with `skipped` true count only as skipped; rates are None when n is 0."""
    groups: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["benchmark"]), float(row["fraction"])), []).append(row)
    return {key: summary(group) for key, group in sorted(groups.items())}


def summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The summary of one probe's rows (one benchmark and fraction): see `summarize`."""
    probed = [r for r in rows if not r.get("skipped")]
    n = len(probed)

    def mean(values: Iterable[float]) -> float | None:
        return sum(values) / n if n else None

    return {
        "n": n,
        "skipped": len(rows) - n,
        "exact_match": mean(float(bool(r["exact_match"])) for r in probed),
        "rouge_l": mean(float(r["rouge_l"]) for r in probed),
        "accuracy": mean(float(r.get("correct") is True) for r in probed),
        "ungradable": mean(float(r.get("correct") is None) for r in probed),
    }
