"""The memorisation probe's pure parts (spurisweep.evaluation.probe) on hand-made cases: word-boundary cuts, too-short
problems, bad fractions, exact and partial continuations, layout-only differences, and ROUGE-L checked
against the rouge-score library's own result."""

from __future__ import annotations

import pytest
from rouge_score import rouge_scorer

from spurisweep.errors import ConfigError
from spurisweep.evaluation import probe

TEN = "one two three four five six seven eight nine ten"
LATEX = "Let $f(x) = x^2 + 3x$.\nFind   $f(2)$ when the\tdomain is $\\mathbb{R}$, please."


def _library_rouge_l(target: str, prediction: str) -> float:
    return rouge_scorer.RougeScorer(["rougeL"]).score(target, prediction)["rougeL"].fmeasure


# ---------------------------------------------------------------------------------------------- truncate
@pytest.mark.parametrize(("fraction", "shown"), [(0.4, 4), (0.6, 6), (0.8, 8)])
def test_truncate_cuts_on_word_boundaries(fraction, shown):
    prefix, remainder = probe.truncate(TEN, fraction)
    words = TEN.split()
    assert prefix == " ".join(words[:shown]) and remainder == " ".join(words[shown:])


@pytest.mark.parametrize("fraction", [0.4, 0.6, 0.8])
def test_truncate_keeps_the_problems_layout(fraction):
    prefix, remainder = probe.truncate(LATEX, fraction)
    words = LATEX.split()
    shown = len(prefix.split())
    assert shown == round(fraction * len(words)) and len(remainder.split()) == len(words) - shown
    assert LATEX.startswith(prefix) and LATEX.endswith(remainder)
    assert not prefix[-1].isspace() and not remainder[0].isspace()
    gap = LATEX[len(prefix) : len(LATEX) - len(remainder)]
    assert gap and gap.isspace()  # nothing lost but the whitespace at the cut


def test_truncate_rounds_half_up_and_ignores_outer_whitespace():
    assert probe.truncate("  a b c d e  ", 0.5) == ("  a b c", "d e")
    assert probe.truncate("a b c d e f g", 0.4) == ("a b c", "d e f g")  # 2.8 words shown as 3


@pytest.mark.parametrize(
    ("problem", "fraction"),
    [("", 0.6), ("   ", 0.6), ("Compute 2+2.", 0.6), ("a b c", 0.4), ("a b c", 0.8), ("a b c d", 0.8)],
)
def test_too_short_problems_are_none(problem, fraction):
    assert probe.truncate(problem, fraction) is None


def test_shortest_cuttable_problem():
    assert probe.truncate("a b c d", 0.5) == ("a b", "c d")


@pytest.mark.parametrize("fraction", [0, 1, 0.0, 1.0, -0.2, 1.5, float("nan"), float("inf"), True, "x"])
def test_bad_fractions_raise_config_error_naming_the_field(fraction):
    with pytest.raises(ConfigError) as exc:
        probe.truncate(TEN, fraction)
    assert exc.value.field == "fractions"


def test_parse_fractions_reports_every_bad_value_at_once():
    assert probe.parse_fractions("0.4, 0.6,0.8") == (0.4, 0.6, 0.8)
    assert probe.parse_fractions([0.6, 0.6, 0.2]) == (0.6, 0.2)
    with pytest.raises(ConfigError) as exc:
        probe.parse_fractions("0.4,1.2,abc,0")
    assert exc.value.field == "fractions"
    assert "1.2" in str(exc.value) and "abc" in str(exc.value) and "'0'" in str(exc.value)
    with pytest.raises(ConfigError, match="fractions"):
        probe.parse_fractions("")


# ---------------------------------------------------------------------------------------------- metrics
def test_exact_continuation():
    _, remainder = probe.truncate(TEN, 0.6)
    assert probe.continuation_metrics(" seven eight nine ten", remainder) == {
        "exact_match": True,
        "rouge_l": 1.0,
    }


def test_exact_continuation_that_goes_on_to_solve_the_problem():
    m = probe.continuation_metrics(" seven eight nine ten\n\nSolution: first we note", "seven eight nine ten")
    assert m == {"exact_match": True, "rouge_l": 1.0}


def test_partial_continuation_scores_the_librarys_rouge_l():
    remainder = "the sum of the first ten positive integers"
    generated = "the sum of all ten integers and more words after"
    m = probe.continuation_metrics(generated, remainder)
    assert m["exact_match"] is False
    cut = "the sum of all ten integers and more"  # as many tokens as the remainder's eight
    assert probe.cut_continuation(generated, remainder) == cut
    assert m["rouge_l"] == pytest.approx(_library_rouge_l(remainder, cut))
    assert 0.0 < m["rouge_l"] < 1.0


def test_one_word_off_is_not_an_exact_match():
    m = probe.continuation_metrics("seven eight nine eleven", "seven eight nine ten")
    assert m["exact_match"] is False
    assert m["rouge_l"] == pytest.approx(_library_rouge_l("seven eight nine ten", "seven eight nine eleven"))


def test_a_short_continuation_is_not_an_exact_match():
    m = probe.continuation_metrics("seven eight", "seven eight nine ten")
    assert m["exact_match"] is False
    assert m["rouge_l"] == pytest.approx(_library_rouge_l("seven eight nine ten", "seven eight"))


@pytest.mark.parametrize("generated", ["", "   \n\t"])
def test_empty_continuation(generated):
    assert probe.continuation_metrics(generated, "seven eight") == {"exact_match": False, "rouge_l": 0.0}


def test_whitespace_and_latex_layout_differences_still_match():
    remainder = "when $x+1 = \\frac{3}{4}$ and\n$\\left(y\\right) \\geq 2$."
    generated = "  when $x + 1=\\dfrac{3}{4}$   and $(y)\\,\\geq 2$ .\n\nSolution"
    assert probe.continuation_metrics(generated, remainder) == {"exact_match": True, "rouge_l": 1.0}


def test_latex_content_differences_do_not_match():
    m = probe.continuation_metrics("when $x-1 = \\frac{3}{4}$", "when $x+1 = \\frac{3}{4}$")
    assert m["exact_match"] is False


def test_case_counts_for_exact_match():
    assert probe.continuation_metrics("Seven eight", "seven eight")["exact_match"] is False


def test_empty_remainder_scores_nothing():
    assert probe.continuation_metrics("anything", "") == {"exact_match": False, "rouge_l": 0.0}


# ---------------------------------------------------------------------------------------------- summarize
def test_summarize_per_benchmark_and_fraction():
    rows = [
        {"benchmark": "math500", "fraction": 0.6, "exact_match": True, "rouge_l": 1.0, "correct": True},
        {"benchmark": "math500", "fraction": 0.6, "exact_match": False, "rouge_l": 0.5, "correct": None},
        {"benchmark": "math500", "fraction": 0.6, "exact_match": False, "rouge_l": 0.0, "correct": False},
        {"benchmark": "math500", "fraction": 0.6, "skipped": True},
        {"benchmark": "math500", "fraction": 0.4, "exact_match": False, "rouge_l": 0.25, "correct": True},
        {"benchmark": "randcalc", "fraction": 0.6, "skipped": True},
    ]
    out = probe.summarize(rows)
    assert list(out) == [("math500", 0.4), ("math500", 0.6), ("randcalc", 0.6)]
    m = out[("math500", 0.6)]
    assert (m["n"], m["skipped"]) == (3, 1)
    assert m["exact_match"] == pytest.approx(1 / 3) and m["rouge_l"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(1 / 3) and m["ungradable"] == pytest.approx(1 / 3)
    assert out[("math500", 0.4)] == {
        "n": 1,
        "skipped": 0,
        "exact_match": 0.0,
        "rouge_l": 0.25,
        "accuracy": 1.0,
        "ungradable": 0.0,
    }
    empty = out[("randcalc", 0.6)]
    assert (empty["n"], empty["skipped"], empty["exact_match"], empty["accuracy"]) == (0, 1, None, None)


def test_summarize_of_probed_problems_end_to_end():
    """truncate -> a continuation -> metrics -> summarize, as the probe will chain them."""
    problems = [TEN, "too short", LATEX]
    rows = []
    for text in problems:
        cut = probe.truncate(text, 0.6)
        if cut is None:
            rows.append({"benchmark": "b", "fraction": 0.6, "skipped": True})
            continue
        metrics = probe.continuation_metrics(" " + cut[1], cut[1])
        rows.append({"benchmark": "b", "fraction": 0.6, "correct": False, **metrics})
    (summary,) = probe.summarize(rows).values()
    assert summary == {
        "n": 2,
        "skipped": 1,
        "exact_match": 1.0,
        "rouge_l": 1.0,
        "accuracy": 0.0,
        "ungradable": 0.0,
    }
