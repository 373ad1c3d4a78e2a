"""The Spurious Rewards paper's own grader, rebuilt from its behaviour (the ``paper`` grader).

The paper's released code grades training rewards and evaluations alike in two steps, and this module
reproduces both, rule for rule (see ``../shared/RESEARCH.md``, "The official code's behaviour"):

1. **Extraction** as in the Qwen2.5-Math evaluation parser (:func:`extract_answer`): a Minerva-style
   "final answer is $X$. I hope"; else the text after the last ``boxed`` (an unclosed ``\\boxed{...``
   runs to the end of the text; ``\\fbox`` does not count); else everything after the last
   "he answer is"; else after the last "final answer is"; else the last number. The result goes
   through that parser's string normalisation, which also deletes a list of "unit" words, some as
   short as ``a``, ``t`` or ``m`` (so ``37a(a+3)`` comes out as ``37a(+3)``).
2. **Equality** as in the PRM800K ``grade_answer`` (:func:`grade_answer`): the MATH normaliser's
   strings are compared first, then a second normalisation (LaTeX to text, units, case); integer golds
   need an exact match, unreduced fractions are rejected, tuples compare element by element in order,
   and everything else is ``sympy.simplify(gold - given) == 0`` when the expression has at most two
   distinct unknown letters.

The quirks are kept on purpose, because the paper's numbers were made with them; where a rule looks
wrong, the comment says it is the official behaviour. Deliberate deviations: none in verdicts, except
that text containing ``__`` is never handed to sympy's ``parse_expr`` (which evaluates Python; no
mathematical answer contains a double underscore).

Everything here is a pure function with no time limit of its own: sympy can run for minutes on a
hostile expression, so callers run it in the grading pool's worker processes under the same hard
per-answer budget as the math-verify grader. ``pylatexenc`` (LaTeX to text) and ``word2number``
(number words) are used because the official grader's behaviour is defined by exactly those
libraries.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Any

__all__ = ["extract_answer", "format_ok", "grade", "grade_answer", "grade_dict", "normalize_extracted"]

# --------------------------------------------------------------------------------------------------
# Extraction (Qwen2.5-Math evaluation parser)
# --------------------------------------------------------------------------------------------------

_ANSWER_TAG = "<answer>"
# The parser's R1 rule strips trailing characters drawn from this set (a character-set strip, not a
# suffix strip): "<answer>5 seconds" keeps "5 second".
_R1_TAIL_CHARS = "</answer>"
_MINERVA_OPEN = "final answer is $"
_MINERVA_CLOSE = "$. I hope"
_NUMBER = re.compile(r"-?\d*\.?\d+")


def _r1_segment(text: str) -> str:
    """The text after the last ``<answer>`` (all of it when there is none), trailing tag chars off."""
    return text.rsplit(_ANSWER_TAG, 1)[-1].rstrip(_R1_TAIL_CHARS)


def _after_last_boxed(text: str) -> str:
    """What the parser reads after the last ``boxed``: a brace group (unclosed runs to the end of the
    text), or, without a brace, everything up to the next ``$``."""
    rest = text.rsplit("boxed", 1)[-1]
    if not rest:
        return ""
    if rest[0] != "{":
        return rest.split("$", 1)[0].strip()
    depth = 1
    for i in range(1, len(rest)):
        ch = rest[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return rest[1:]


def _raw_answer(text: str) -> str:
    """The official extraction order, before normalisation."""
    if _MINERVA_OPEN in text and _MINERVA_CLOSE in text:
        after = text.split(_MINERVA_OPEN, 1)[1]
        return after.split(_MINERVA_CLOSE, 1)[0].strip()
    if "boxed" in text:
        return _after_last_boxed(text)
    for marker in ("he answer is", "final answer is"):
        if marker in text:
            return text.rsplit(marker, 1)[-1].strip()
    if "答案是" in text:  # Chinese "the answer is": the official parser takes the first one
        return text.split("答案是", 1)[1].strip().split("\n\n", 1)[0].strip()
    numbers = _NUMBER.findall(text.replace(",", ""))
    return numbers[-1] if numbers else ""


_NEWLINE_AND_INDENT = re.compile(r"\n\s*")


def _tidy(pred: str) -> str:
    """Line joins and one leading ':' / trailing '.' / trailing '/' off, then the normalisation."""
    pred = _NEWLINE_AND_INDENT.sub("", pred)
    if pred.startswith(":"):
        pred = pred[1:]
    if pred.endswith("."):
        pred = pred[:-1]
    if pred.endswith("/"):
        pred = pred[:-1]
    return normalize_extracted(pred)


def _prepare(response: Any, r1: bool) -> str:
    text = response if isinstance(response, str) else ("" if response is None else str(response))
    # the parser drops this Cyrillic pair everywhere (a step marker in some math data sets)
    text = text.replace("\u043a\u0438", "")
    return _r1_segment(text) if r1 else text


def extract_answer(response: str, *, r1: bool = False) -> str:
    """The official extracted and normalised answer ("" when nothing is found).

    With ``r1=True`` (R1-style prompts) only the text after the last ``<answer>`` is read, as the
    official code does for its base-model template."""
    return _tidy(_raw_answer(_prepare(response, r1)))


def format_ok(response: str, *, r1: bool = False) -> bool:
    """The paper's format reward (its "box-only" format check).

    True when the text after the last ``boxed`` is non-empty once normalised (an unclosed box counts,
    ``\\fbox`` does not, a box of only unit words such as ``\\text{west}`` is emptied and fails).
    Under R1-style prompts: True when any text follows the last ``<answer>`` (not normalised, so
    whitespace counts, as in the official code)."""
    text = _prepare(response, r1)
    if r1:
        return bool(text)
    if "boxed" not in text:
        return False
    return bool(_tidy(_after_last_boxed(text)))


# --------------------------------------------------------------------------------------------------
# The parser's string normalisation
# --------------------------------------------------------------------------------------------------

# The parser's "unit" words, in its order (the order matters: "a ." must go before "a"). They are
# regular expressions, not literals: "." matches any character. Each is then tried again with an "s".
_UNIT_WORDS = (
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .",
    "monkey", "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm",
    "lt", "gain", "ab", "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t",
    "a", "h", "no change", "men", "soldier", "pie", "bc", "excess", "st", "inches", "noon",
    "percent", "by", "gal", "kmh", "c", "acre", "rise", "a . m", "th", "π r 2", "sq", "mark", "l",
    "toy", "coin", "sq . m", "gallon", "° f", "profit", "minw", "yr", "women", "feet", "am", "pm",
    "hr", "cu cm", "square", "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm",
    "number", "kmph", "day", "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt",
    "sq inch", "mp", "∏ cm ³", "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs",
    "kg", "g", "month", "km", "m", "cm", "mm", "apple", "liter", "loss", "yard", "pure", "year",
    "increase", "decrease", "d", "less", "Surface", "litre", "pi sq m", "s .", "metre", "meter",
    "inch",
)  # fmt: skip
# (pattern, literal): a word without "." can only match where its literal text occurs, a cheap test
# that spares most of the 264 substitutions on long answers.
_UNIT_PATTERNS = tuple(
    (re.compile(r"(^|\W)" + word + r"($|\W)"), None if "." in word else word)
    for word in (*_UNIT_WORDS, *(w + "s" for w in _UNIT_WORDS))
)

_BEGIN_ARRAY = re.compile(r"\\begin\{array\}\{.*?\}")
_TRAILING_TEXT = re.compile(r"\\text\{.*?\}$")
_TEXT_GROUP = re.compile(r"\\text\{(.*?)\}")
_MBOX = re.compile(r"\\mbox\{.*?\}")
_ZERO_DECIMALS_BEFORE = re.compile(r"(\d+)\.0*([^\d])")
_ZERO_DECIMALS_AT_END = re.compile(r"(\d+)\.0*$")
_SQRT_WORD = re.compile(r"\\sqrt(\w+)")
_QWEN_REPLACEMENTS = (
    ("tfrac", "frac"), ("dfrac", "frac"), ("\\neq", "\\ne"), ("\\leq", "\\le"), ("\\geq", "\\ge"),
    ("\\left", ""), ("\\right", ""), ("\\{", "{"), ("\\}", "}"),
)  # fmt: skip
_VARIABLE_PREFIXES = ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to")


def _drop_units(s: str) -> str:
    """Two passes over the unit words; a deletion that would empty the string is not made."""
    for _ in range(2):
        for pattern, literal in _UNIT_PATTERNS:
            if literal is not None and literal not in s:
                continue
            out = pattern.sub(r"\1\2", s)
            if out:
                s = out
    return s


def _words_to_number(s: str) -> str:
    """The parser's number-word conversion ("five" -> "5", "070" -> "70"), via the same library."""
    from word2number import w2n

    try:
        return str(w2n.word_to_num(s))
    except Exception:  # any text with no (well-formed) number words stays as it is
        return s


def _latex_cleanup(s: str) -> str:
    """Array/bracket/fraction spellings unified, \\left/\\right dropped, a trailing \\text{...} unit
    cut (unless that empties the string), the unit words deleted."""
    s = _BEGIN_ARRAY.sub(r"\\begin{pmatrix}", s)
    s = s.replace("\\end{array}", "\\end{pmatrix}").replace("bmatrix", "pmatrix")
    for old, new in _QWEN_REPLACEMENTS:
        s = s.replace(old, new)
    cut = _TRAILING_TEXT.sub("", s).strip()
    if cut and cut != s:
        s = cut
    s = _drop_units(s)
    for mark in ("^{\\circ}", "^\\circ", "\\$", "$", "\\(", "\\)"):
        s = s.replace(mark, "")
    return s


def _text_cleanup(s: str) -> str:
    """Number words, \\text unwrapping, variable prefixes, percent, infinity and "and" rewrites."""
    s = _words_to_number(s)
    s = _TEXT_GROUP.sub(r"\1", s)
    for prefix in _VARIABLE_PREFIXES:
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = _MBOX.sub("", s)
    if "j" in s and "i" not in s:  # the imaginary unit written j
        s = s.replace("j", "i")
    s = _ZERO_DECIMALS_BEFORE.sub(r"\1\2", s)
    return _ZERO_DECIMALS_AT_END.sub(r"\1", s)


def normalize_extracted(answer: str) -> str:
    """The Qwen2.5-Math parser's normalisation of an extracted answer (units removed)."""
    s = str(answer).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = _text_cleanup(_latex_cleanup(s))
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    s = _drop_short_lhs(s)
    s = _SQRT_WORD.sub(r"\\sqrt{\1}", s).replace(" ", "")
    s = _expand_frac_shorthand(s, strict=False)
    return _slash_to_frac(s, sqrt_ok=True)


# --------------------------------------------------------------------------------------------------
# Helpers shared by both normalisers
# --------------------------------------------------------------------------------------------------


class _Malformed(Exception):
    """The MATH normaliser gives up on this string and keeps it as it was."""


def _drop_short_lhs(s: str) -> str:
    """One "=" with at most two characters before it: "k = 5" -> " 5"."""
    parts = s.split("=")
    if len(parts) == 2 and len(parts[0]) <= 2:
        return parts[1]
    return s


def _expand_frac_shorthand(s: str, *, strict: bool) -> str:
    """\\frac12 -> \\frac{1}{2}, \\frac1b -> \\frac{1}{b}, \\frac1{72} -> \\frac{1}{72}.

    A \\frac followed by a single character leaves the whole string unchanged; one followed by
    nothing does too, or (strict: the MATH normaliser) makes it give up."""
    pieces = s.split("\\frac")
    out = [pieces[0]]
    for piece in pieces[1:]:
        out.append("\\frac")
        if piece.startswith("{"):
            out.append(piece)
            continue
        if not piece and strict:
            raise _Malformed(s)
        if len(piece) < 2:
            return s
        num, den, rest = piece[0], piece[1], piece[2:]
        out.append(f"{{{num}}}{{{den}}}{rest}" if den != "{" else f"{{{num}}}{den}{rest}")
    return "".join(out)


def _slash_to_frac(s: str, *, sqrt_ok: bool) -> str:
    """A plain integer ratio "3/4" -> \\frac{3}{4} (the parser also lets sqrt sides through
    unconverted)."""
    parts = s.split("/")
    if len(parts) != 2:
        return s
    sides: list[str] = []
    for part in parts:
        if sqrt_ok and "sqrt" in part:
            sides.append(part)
            continue
        try:
            sides.append(str(int(part)))
        except ValueError:
            return s
    if s != f"{sides[0]}/{sides[1]}":
        return s
    return f"\\frac{{{sides[0]}}}{{{sides[1]}}}"


# --------------------------------------------------------------------------------------------------
# Equality (PRM800K grade_answer: the MATH normaliser, then its own normaliser and sympy)
# --------------------------------------------------------------------------------------------------

_WHOLE_TEXT = re.compile(r"\\text\{(.+?)\}$")


def _mathd_sqrt(s: str) -> str:
    """\\sqrt3 -> \\sqrt{3} (one character only); a bare trailing \\sqrt makes the normaliser give up."""
    if "\\sqrt" not in s:
        return s
    pieces = s.split("\\sqrt")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if not piece:
            raise _Malformed(s)
        out.append("\\sqrt" + piece if piece[0] == "{" else "\\sqrt{" + piece[0] + "}" + piece[1:])
    return "".join(out)


def _mathd_strip(s: str) -> str:
    for old, new in (("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac")):
        s = s.replace(old, new)
    for mark in ("\\left", "\\right", "^{\\circ}", "^\\circ", "\\$"):
        s = s.replace(mark, "")
    if "\\text{ " in s:  # a unit written "\text{ cm}" is cut off; two of them make it give up
        pieces = s.split("\\text{ ")
        if len(pieces) != 2:
            raise _Malformed(s)
        s = pieces[0]
    s = s.replace("\\%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    s = _drop_short_lhs(s)
    s = _mathd_sqrt(s).replace(" ", "")
    s = _expand_frac_shorthand(s, strict=True)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _slash_to_frac(s, sqrt_ok=False)


def _mathd_normalize(answer: str) -> str:
    """The MATH data set's answer normaliser (Hendrycks' math_equivalence)."""
    answer = answer.strip()
    m = _WHOLE_TEXT.match(answer)
    if m is not None:
        answer = m.group(1).strip()
    try:
        return _mathd_strip(answer)
    except _Malformed:
        return answer


_PRM_UNITS = (
    "degree", "cm", "centimeter", "meter", "mile", "second", "minute", "hour", "day", "week",
    "month", "year", "foot", "feet", "inch", "yard",
)  # fmt: skip
# No word boundaries, as in the official code: "day" also leaves "today" as "to".
_PRM_UNIT_PATTERNS = tuple(re.compile(unit + r"(es)?(s)? *(\^[0-9]+)?") for unit in _PRM_UNITS)
_PRM_REPLACEMENTS = (
    ("\\%", "%"), ("\\$", "$"), ("$", ""), ("%", ""), (" or ", " , "), (" and ", " , "),
    ("million", "*10^6"), ("billion", "*10^9"), ("trillion", "*10^12"),
)  # fmt: skip
_DEGREE_MARK = re.compile(r"\^ *\\circ")
_THIN_SPACE_COMMA = re.compile(r",\\! *")
_DASH_SPACES = re.compile(r"- *")
_MIXED_NUMBER = re.compile(r"([0-9]) +([0-9])")
_THOUSANDS_COMMA = re.compile(r"(\d),(\d\d\d)($|\D)")
_FRACTION = re.compile(r"^-?[0-9]+.?/0*[1-9][0-9]*.?$")
_LATEX_SYMBOLS = (("√", "sqrt"), ("π", "pi"), ("∞", "inf"), ("∪", "U"), ("·", "*"), ("×", "*"))


@lru_cache(maxsize=1)
def _latex_converter() -> Any:
    from pylatexenc.latex2text import LatexNodes2Text

    # Malformed answer LaTeX makes pylatexenc log a warning per answer; its fallback (the macro left
    # as it is) is the official behaviour, so the warning is noise here.
    logging.getLogger("pylatexenc.latex2text").setLevel(logging.ERROR)
    return LatexNodes2Text()


def _latex_to_text(expr: str) -> str:
    expr = expr.replace("\\tfrac", "\\frac").replace("\\dfrac", "\\frac")
    expr = expr.replace("\\frac", " \\frac")  # "1\frac12" stays a mixed number
    expr = _latex_converter().latex_to_text(expr)
    for symbol, word in _LATEX_SYMBOLS:
        expr = expr.replace(symbol, word)
    return expr.strip()


def _as_float(s: str) -> float | None:
    try:
        return float(s)
    except ValueError:
        return None


def _is_whole(x: float) -> bool:
    try:
        return abs(x - int(round(x))) <= 1e-7
    except (OverflowError, ValueError):  # inf, nan
        return False


def _drop_thousands_commas(s: str) -> str:
    while True:
        out = _THOUSANDS_COMMA.sub(r"\1\2\3", s)
        if out == s:
            return out
        s = out


def _str_is_int(s: str) -> bool:
    x = _as_float(_drop_thousands_commas(s))
    return x is not None and _is_whole(x)


def _prm_normalize(expr: str) -> str:
    """PRM800K's second normaliser: units, LaTeX to text, spaces, braces and case away."""
    m = _WHOLE_TEXT.match(expr)
    if m is not None:
        expr = m.group(1)
    for old, new in _PRM_REPLACEMENTS:
        expr = expr.replace(old, new)
    for pattern in _PRM_UNIT_PATTERNS:
        expr = pattern.sub("", expr)
    expr = _DEGREE_MARK.sub("", expr)
    if expr and expr[0] == "{" and expr[-1] == "}":
        expr = expr[1:-1]
    expr = _THIN_SPACE_COMMA.sub("", expr)
    x = _as_float(expr)
    if x is not None and _is_whole(x):
        expr = str(int(round(x)))
    if "\\" in expr:
        try:
            expr = _latex_to_text(expr)
        except Exception:  # pylatexenc gives up on some malformed LaTeX: keep the string
            pass
    expr = _DASH_SPACES.sub("-", expr)
    expr = _MIXED_NUMBER.sub(r"\1+\2", expr)
    expr = expr.replace(" ", "").replace("{", "").replace("}", "").lower()
    if _str_is_int(expr):
        expr = str(int(float(expr.replace(",", ""))))
    return expr


def _split_tuple(expr: str) -> list[str]:
    """The elements of "(a,b)" / "[a,b)" ..., or the whole expression; thousands commas kept whole."""
    expr = _drop_thousands_commas(expr)
    if not expr:
        return []
    brackets = "()[]"
    inner = expr[1:-1]
    if (
        len(expr) > 2
        and expr[0] in brackets
        and expr[-1] in brackets
        and not any(b in inner for b in brackets)
    ):
        return [elem.strip() for elem in inner.split(",")]
    return [expr]


def _sympy_may_try(expr: str) -> bool:
    """At most two unknown letters, and no powers that could blow up (the official guard)."""
    letters = {ch for ch in expr.replace("sqrt", "").replace("frac", "") if ch.isalpha()}
    if len(letters) > 2 or "^{" in expr or "^(" in expr:
        return False
    if re.search(r"\^[0-9]+\^", expr) or re.search(r"\^[0-9][0-9]+", expr):
        return False
    # parse_expr evaluates Python: never hand it a dunder (no math answer has one)
    return "__" not in expr


def _sympy_equal(gold: str, given: str) -> bool:
    expr = f"({gold})-({given})"
    if not _sympy_may_try(expr):
        return False
    import sympy
    from sympy.parsing import sympy_parser

    transformations = sympy_parser.standard_transformations + (
        sympy_parser.implicit_multiplication_application,
    )
    try:
        diff = sympy_parser.parse_expr(expr.replace("^", "**"), transformations=transformations)
        return bool(sympy.simplify(diff) == 0)
    except Exception:  # unparseable or unsimplifiable: not equal
        return False


def _elements_equal(gold: str, given: str) -> bool:
    if _FRACTION.search(gold) and _FRACTION.search(given):
        return gold == given  # unreduced fractions must not pass through sympy
    if _str_is_int(gold) != _str_is_int(given):
        return False  # an integer gold needs the exact integer (equal strings were caught earlier)
    return _sympy_equal(gold, given)


def grade_answer(given: str, gold: str) -> bool:
    """Whether the extracted answer ``given`` equals ``gold`` under the official (PRM800K) rules."""
    if given is None:
        return False
    given, gold = str(given), str(gold)
    if _mathd_normalize(gold) == _mathd_normalize(given):
        return True
    gold_n, given_n = _prm_normalize(gold), _prm_normalize(given)
    if gold_n == given_n:
        return True
    if not given_n:
        return False
    gold_elems, given_elems = _split_tuple(gold_n), _split_tuple(given_n)
    if len(gold_elems) > 1 and (gold_n[0] != given_n[0] or gold_n[-1] != given_n[-1]):
        return False  # "(1,2)" against "[1,2]": the bracket kinds must agree
    if len(gold_elems) != len(given_elems):
        return False
    return all(_elements_equal(g, p) for g, p in zip(gold_elems, given_elems, strict=True))


def grade_dict(response: str, gold: str, *, r1: bool = False) -> dict[str, Any]:
    """One response graded the official way: ``correct``, ``extracted`` and ``format_ok``."""
    extracted = extract_answer(response, r1=r1)
    return {
        "correct": grade_answer(extracted, gold),
        "extracted": extracted,
        "format_ok": format_ok(response, r1=r1),
    }


# --------------------------------------------------------------------------------------------------
# The grading pool's interface (grading.pool.GRADERS names this module "paper", and paper_r1 for
# R1-style prompts whose answer is read after the last <answer>)
# --------------------------------------------------------------------------------------------------
def _verdict(response: Any, answer: Any, timeout: float, r1: bool) -> Any:
    from .extract import as_text, code_flags
    from .verify import MISMATCH, NO_ANSWER, TIMEOUT, Verdict, with_budget

    response, answer = as_text(response), as_text(answer)
    has_python, has_block = code_flags(response)
    # an empty gold is graded as the official grader grades it: an empty (or emptied) answer matches it
    # (1), any other answer does not (0); math-verify leaves it unscored (None)
    timed_out, out = with_budget(lambda: grade_dict(response, answer, r1=r1), timeout)
    if timed_out:
        return Verdict(None, None, TIMEOUT, has_python, has_block)
    extracted = out["extracted"] or None
    # the official grader scores an ungradable answer 0: never None, unlike math-verify
    reason = None if out["correct"] else (NO_ANSWER if extracted is None else MISMATCH)
    return Verdict(bool(out["correct"]), extracted, reason, has_python, has_block)


def grade(response: Any, answer: Any, timeout: float) -> Any:
    """The pool's entry point: a Verdict, under a hard budget of ``timeout`` seconds (main thread)."""
    return _verdict(response, answer, timeout, r1=False)


def grade_r1(response: Any, answer: Any, timeout: float) -> Any:
    return _verdict(response, answer, timeout, r1=True)


def equal(a: Any, b: Any, timeout: float) -> bool | None:
    """Whether two answers are the same by the official grader (used to group majority answers)."""
    from .verify import with_budget

    timed_out, out = with_budget(lambda: grade_answer(str(a), str(b)), timeout)
    return None if timed_out else bool(out)


def warm_up() -> None:
    """Import sympy's lazy parts and compile the regexes before the first real answer."""
    for response, gold in (
        ("so \\boxed{\\frac{1}{2}}", "0.5"),
        ("the answer is 3", "3"),
        ("\\boxed{x^2}", "x^2"),
    ):
        grade_dict(response, gold)
