"""Answer extraction: pure string work on a model's response (linear scans, no sympy, no processes).

The paper's rule (the last ``\\boxed``, else "the answer is ...", else the last number) and the
code-reasoning flags. Safe to call in any thread and in the parent process: only the tail of a long
response is searched, and no scan backtracks, so pathological output costs linear time.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["MAX_RESPONSE_CHARS", "as_text", "code_flags", "extract_answer", "extract_boxed", "tail"]

#: responses longer than this only have their last MAX_RESPONSE_CHARS characters searched for an answer
MAX_RESPONSE_CHARS = 32_000

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_BRACE_TOKEN_RE = re.compile(r"\\.|[{}]", re.DOTALL)
_UNBRACED_BOX_ARG_RE = re.compile(r"[^\s$]+")
_ANSWER_IS_RE = re.compile(r"answer\s+is(?![A-Za-z])", re.IGNORECASE)
_SENTENCE_END_RE = re.compile(r"\.(?=\s|$)")
_EMPTY_BOX_RE = re.compile(r"\\(?:boxed|fbox)\s*\{\s*\}")
_NUM = r"(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+"
_NUMBER_RE = re.compile(
    r"(?P<frac>(?P<fsign>(?<![\w)\]}])[-\u2212])?\\[dt]?frac\{\s*(?P<fnum>\d+)\s*\}\{\s*(?P<fden>\d+)\s*\})"
    rf"|(?P<sign>(?<![\w)\]}}])[-\u2212])?(?P<num>{_NUM})(?:/(?P<den>{_NUM}))?"
)


def tail(text: str) -> str:
    """The last MAX_RESPONSE_CHARS characters of ``text`` (all of it when shorter)."""
    return text if len(text) <= MAX_RESPONSE_CHARS else text[-MAX_RESPONSE_CHARS:]


def _last_match(pattern: re.Pattern[str], text: str) -> re.Match[str] | None:
    last = None
    for last in pattern.finditer(text):  # noqa: B007 - we want the last match
        pass
    return last


def _last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed``/``\\fbox`` in ``text``; None if it is absent, empty or unclosed."""
    last = _last_match(_BOX_RE, text)
    if last is None:
        return None
    pos = last.end()
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    if pos >= n:
        return None
    if text[pos] != "{":  # "\boxed 5": LaTeX boxes the next token
        m = _UNBRACED_BOX_ARG_RE.match(text, pos)
        return m.group(0) if m else None
    depth = 0
    for tok in _BRACE_TOKEN_RE.finditer(text, pos):
        t = tok.group(0)
        if t == "{":
            depth += 1
        elif t == "}":
            depth -= 1
            if depth == 0:
                content = text[pos + 1 : tok.start()].strip()
                return content or None
    return None  # unclosed (truncated response)


def _clean_prose_answer(s: str) -> str:
    s = _EMPTY_BOX_RE.sub("", s)
    prev = None
    while s != prev:
        prev = s
        s = s.strip().strip("*").strip()
        s = s.lstrip(":").rstrip(".,;:").strip()
        for left, right in (("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
            if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
                s = s[len(left) : len(s) - len(right)]
        s = s.strip("$")
    return s.strip()


def _answer_is(text: str) -> str | None:
    last = _last_match(_ANSWER_IS_RE, text)
    if last is None:
        return None
    rest = text[last.end() :].lstrip(" \t:")
    line = ""
    for candidate in rest.split("\n", 8)[:8]:  # the first non-blank line after "answer is"
        if candidate.strip():
            line = candidate
            break
    m = _SENTENCE_END_RE.search(line)
    if m:
        line = line[: m.start()]
    out = _clean_prose_answer(line)
    return out or None


def _last_number(text: str) -> str | None:
    last = _last_match(_NUMBER_RE, text)
    if last is None:
        return None
    if last.group("frac"):
        sign = "-" if last.group("fsign") else ""
        return f"{sign}{last.group('fnum')}/{last.group('fden')}"
    sign = "-" if last.group("sign") else ""
    out = sign + last.group("num").replace(",", "")
    if last.group("den"):
        out += "/" + last.group("den").replace(",", "")
    return out


def extract_answer(text: str) -> str | None:
    """The paper's extraction rule, on the tail of ``text``.

    1. the content of the LAST ``\\boxed{...}`` (or ``\\fbox{...}``), nested braces handled by a linear
       scan; an empty or unclosed last box counts as no box;
    2. else what follows the last "answer is" (up to the end of that line/sentence, with a trailing
       period and surrounding ``$``/``\\(...\\)`` stripped);
    3. else the last number in the text (integers, decimals, negatives, ``3/4``, ``\\frac{3}{4}``).

    Returns None when nothing is found.
    """
    if not text:
        return None
    if not isinstance(text, str):
        text = str(text)
    text = tail(text)
    return _last_boxed(text) or _answer_is(text) or _last_number(text)


def extract_boxed(text: str) -> str | None:
    """The content of the LAST ``\\boxed{...}``/``\\fbox{...}`` in (the tail of) ``text``.

    None when there is no box, or the last one is empty or unclosed (the format reward's test).
    """
    if not text:
        return None
    if not isinstance(text, str):
        text = str(text)
    return _last_boxed(tail(text))


def code_flags(text: str) -> tuple[bool, bool]:
    """(has_python, has_code_block): "python" in the lower-cased text; a closed ``` fenced block."""
    if not text:
        return False, False
    if not isinstance(text, str):
        text = str(text)
    has_python = "python" in text.lower()
    start = text.find("```")
    has_block = start >= 0 and text.find("```", start + 3) >= 0
    return has_python, has_block


def as_text(x: Any) -> str:
    """A response or answer as a string ("" for None): graders never raise on odd input."""
    if x is None:
        return ""
    return x if isinstance(x, str) else str(x)
