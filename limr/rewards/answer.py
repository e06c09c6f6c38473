"""Answer checking in this process: the last ``\\boxed{}`` of a response, normalised and compared
to the gold answer by the stages that decide exactly.

Equivalence is decided by the cheapest stage that can decide it (REFERENCE.md, eval protocol):

1. the normalised strings are equal (Minerva-style normalisation: ``\\dfrac``, ``\\left``,
   ``\\right``, spaces, ``$``, ``^\\circ``, ``\\text{units}``, ``x =`` prefixes, ...);
2. both sides evaluate, with a safe parser (:mod:`limr.rewards._expr`, no ``eval``), to values
   that are exactly equal -- rationals exactly ("025" is 25, ``12600.0`` is 12600), functions at
   exact rational points -- or, when a side is written as a decimal, within a relative 1e-4
   (never for an integer gold: ``12601.0`` is not 12600);
3. tuples, intervals, sets, unions and matrices are compared element by element (sets and
   comma-separated lists of solutions in any order, the others in order; ``a = 3, b = 2`` keeps
   its names);
4. what is left goes to math-verify and sympy (:mod:`limr.rewards.symbolic`, with both answers
   wrapped in ``\\boxed{}`` so that its parser sees maths), inside a worker process that is killed
   when the time budget runs out (:mod:`limr.rewards.verify`, :mod:`limr.rewards.parallel`).

The principle: this module decides only what it decides exactly -- equal, or certainly
different -- and passes everything else on (``check_local`` returns None). Floating-point values
decide only that two values differ: ``\\sqrt{1000000000001}`` is within 1e-12 of 1000000, and
``3\\sqrt{13}`` vs ``\\sqrt{117}`` is math-verify's to prove.

Stages 1-3 decide the common case in microseconds and end within the check's budget: the
evaluator checks the deadline before every operation and bounds every number's size. Stage 4 is
the only one that can be slow, and it never runs in the calling process.

This module imports only the standard library: it also runs inside the checker's workers.
"""

from __future__ import annotations

import functools
import re
import time
from fractions import Fraction
from typing import NamedTuple

from limr.rewards import _expr
from limr.rewards.verdict import (
    DEFAULT_TIMEOUT,
    NUMERIC_TOLERANCE,
    SymbolicFn,
    Verdict,
    close,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "NUMERIC_TOLERANCE",
    "Verdict",
    "check_local",
    "count_boxes",
    "extract_boxed",
    "normalize",
]

MAX_BOX_CHARS = 10_000
"""A ``\\boxed{`` whose closing brace is further away than this counts as unclosed."""
MAX_ANSWER_CHARS = 1_000
"""A boxed answer longer than this is wrong without further checks."""
MAX_ITEMS = 64
"""Tuples, sets and matrices with more elements are compared as strings only."""


class _Undecided(Exception):
    """Internal: the in-process stages cannot decide; the symbolic stage must."""


class _BudgetExceeded(Exception):
    """Internal: the time budget ran out between two steps."""


# ---------------------------------------------------------------------------------------------
# Extraction

_BOX = re.compile(r"\\(?:boxed|fbox|framebox)(?![A-Za-z])")
_BRACE = re.compile(r"\\[\\{}]|[{}]")


def count_boxes(text: str) -> int:
    """The number of ``\\boxed`` / ``\\fbox`` commands in ``text``."""
    return len(_BOX.findall(text))


_BETWEEN_BOXES = re.compile(
    r"(?:\s|\$|\\[()\[\]]|[,;]|\\q?quad|\\[,;!]|\band\b|\bor\b|\\text\s*\{\s*(?:and|or|,)?\s*\})*"
)
MAX_JOINED_BOXES = 16


def _box(text: str, match: re.Match) -> tuple[str, int] | None:
    """The content of the box command ``match`` and the index after it, or None if unclosed."""
    i = match.end()
    while i < len(text) and text[i] in " \t":
        i += 1
    if text.startswith("[", i) and match.group() == "\\framebox":
        close = text.find("]", i, i + 100)  # \framebox[width]{...}
        i = close + 1 if close > 0 else i
    if text.startswith("{", i):
        depth = 0
        for m in _BRACE.finditer(text, i, min(len(text), i + MAX_BOX_CHARS + 2)):
            tok = m.group()
            if tok == "{":
                depth += 1
            elif tok == "}":
                depth -= 1
                if depth == 0:
                    return text[i + 1 : m.start()], m.end()
        return None
    # ``\boxed 5``: up to the end of the math ($) or the line (Minerva's rule)
    m = re.match(rf"[^$\n]{{1,{MAX_BOX_CHARS}}}", text[i : i + MAX_BOX_CHARS])
    return (m.group().strip(), i + m.end()) if m else None


_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:/\d+)?(?![\w])")


def last_number(text: str) -> str | None:
    """The last number of ``text`` (``-3``, ``2.5``, ``3/4``; not a digit inside a word such as
    ``x2``), or None. Linear time: one regular-expression scan without backtracking."""
    last = None
    for m in _NUMBER.finditer(text):
        last = m.group(0)
    return last


def extract_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{}``, ``\\boxed 5``) of ``text``.

    Braces nest to any depth; escaped braces ``\\{ \\}`` do not count. Returns None when there is
    no box or the last one is never closed (a box longer than :data:`MAX_BOX_CHARS` counts as
    unclosed, so a megabyte of braces costs one bounded scan). An answer split over adjacent boxes
    (``\\boxed{-2} and \\boxed{1}``: nothing but separators between them) is the list of their
    contents, ``-2, 1``.
    """
    matches = list(_BOX.finditer(text))
    if not matches:
        return None
    last = _box(text, matches[-1])
    if last is None:
        return None
    contents, start = [last[0]], matches[-1].start()
    spans = _math_spans(text) if len(matches) > 1 else []
    for match in reversed(matches[-MAX_JOINED_BOXES:-1]):
        box = _box(text, match)
        if box is None or box[1] > start:
            break
        if not (
            _BETWEEN_BOXES.fullmatch(text, box[1], start)
            or _same_answer(spans, text, box[1], start)
        ):
            break
        contents.append(box[0])
        start = match.start()
    return ", ".join(reversed(contents))


_MATH_DELIMITER = re.compile(r"(?<!\\)\$\$|(?<!\\)\$|\\[()\[\]]")
_CLOSER = {"$$": "$$", "$": "$", "\\(": "\\)", "\\[": "\\]"}
_JOINING = re.compile(r"\s*(?:,?\s*and|,?\s*or|,)?\s*")


def _math_spans(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` of each math environment ($...$, $$...$$, \\(...\\), \\[...\\])."""
    spans, opened = [], None
    for m in _MATH_DELIMITER.finditer(text):
        d = m.group()
        if opened is None:
            if d in _CLOSER:
                opened = (d, m.start())
        elif d == _CLOSER[opened[0]]:
            spans.append((opened[1], m.end()))
            opened = None
    return spans


def _same_answer(spans: list[tuple[int, int]], text: str, end: int, start: int) -> bool:
    """Do a box ending at ``end`` and one starting at ``start`` belong to one final answer: the
    same math environment, or two joined by ``and`` / ``or`` / a comma (math-verify's rule)?"""
    first = next((sp for sp in spans if sp[0] <= end <= sp[1]), None)
    second = next((sp for sp in spans if sp[0] <= start <= sp[1]), None)
    if first is None or second is None:
        return False
    return first == second or (
        first[1] <= second[0] and _JOINING.fullmatch(text, first[1], second[0]) is not None
    )


# ---------------------------------------------------------------------------------------------
# Normalisation


def _match_brace(s: str, i: int, open_: str = "{", close: str = "}") -> int:
    """Index of the brace closing the one at ``s[i]``, or -1."""
    depth = 0
    j = i
    while j < len(s):
        c = s[j]
        if c == "\\":
            j += 2
            continue
        if c == open_:
            depth += 1
        elif c == close:
            depth -= 1
            if depth == 0:
                return j
        j += 1
    return -1


def _read_arg(s: str, i: int) -> tuple[str, int] | None:
    """One TeX argument at ``s[i]``: a braced group, a command name or a single character."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s):
        return None
    if s[i] == "{":
        end = _match_brace(s, i)
        return (s[i + 1 : end], end + 1) if end > 0 else None
    if s[i] == "\\":
        m = re.match(r"\\(?:[A-Za-z]+|.)", s[i:])
        return (m.group(), i + m.end()) if m else None
    if s[i] in "}^_":
        return None
    return s[i], i + 1


def _braced_args(s: str, command: str, nargs: int) -> str:
    """Rewrite ``\\frac12``, ``\\frac{1}2``, ``\\frac 1 2`` as ``\\frac{1}{2}``; same for sqrt."""
    pattern = re.compile(re.escape(command) + r"(?![A-Za-z])")
    out = []
    pos = 0
    while (m := pattern.search(s, pos)) is not None:
        out.append(s[pos : m.end()])
        i = m.end()
        if command == "\\sqrt" and s.startswith("[", i):  # \sqrt[3]{x}
            end = s.find("]", i)
            if end < 0:
                break
            out.append(s[i : end + 1])
            i = end + 1
        args = []
        for _ in range(nargs):
            arg = _read_arg(s, i)
            if arg is None:
                break
            # thousands separators inside a fraction: \frac{1}{29,322,216}
            args.append(arg[0].replace(",", "") if _THOUSANDS.fullmatch(arg[0]) else arg[0])
            i = arg[1]
        if len(args) < nargs:
            pos = m.end()
            continue
        out.append("".join("{" + _braced_args(a, command, nargs) + "}" for a in args))
        pos = i
    out.append(s[pos:])
    return "".join(out)


_UNICODE = str.maketrans(
    {
        "\u2212": "-",
        "\u2013": "-",
        "\u00d7": "\\times ",
        "\u22c5": "\\cdot ",
        "\u00b7": "\\cdot ",
        "\u00f7": "\\div ",
        "\u03c0": "\\pi ",
        "\u221e": "\\infty ",
        "\u2264": "\\leq ",
        "\u2265": "\\geq ",
        "\u2260": "\\neq ",
        "\u00b0": "^\\circ",
        "\u221a": "\\sqrt",
        "\u222a": "\\cup ",
        "\u00a0": " ",
    }
)
_SPACING = re.compile(
    r"(\\\\)|\\[,;:! ]|\\q?quad(?![A-Za-z])|~|\\(?:dis|text|script)style(?![A-Za-z])"
)
_SIZES = re.compile(r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])\.?")
_TEXT_CMDS = re.compile(
    r"\\(?:mbox|textrm|textnormal|textup|textit|textsf|mathrm|mathit|mathsf|operatorname)"
    r"(?![A-Za-z])"
)
_UNWRAP = re.compile(
    r"\\(?:textbf|mathbf|mathcal|mathscr|boldsymbol|bm|boxed|fbox)(?![A-Za-z])\s*\{"
)
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|\\degree(?![A-Za-z])|\\circ(?![A-Za-z])")
_UNIT_WORDS = (
    r"(?:(?:square|sq\.?|cubic|cu\.?)\s*)?(?:units?|cm|mm|km|meters?|metres?|centimeters?|"
    r"millimeters?|kilometers?|inches|inch|in\.|feet|foot|ft|yards?|yd|miles?|mph|kph|acres?|"
    r"hours?|hrs?|minutes?|mins?|seconds?|secs?|degrees?|radians?|dollars?|cents?|usd|euros?|"
    r"pounds?|lbs?|ounces?|oz|kg|gm|grams?|kilograms?|tons?|liters?|litres?|ml|gallons?|"
    r"quarts?|pints?|cups?|days?|weeks?|months?|years?|a\.m\.|p\.m\.|am|pm|ways|people|persons?|"
    r"students|points?|digits|integers|numbers|values|solutions|multiples|times|tiles|marbles|"
    r"coins|cookies|pages|meals|triangles|right triangles|distinct integers|daps|steps|games|"
    r"books|boxes|balls|cards|handshakes|outfits|sequences|squares|cubes|rectangles|diagonals|"
    r"edges|vertices|faces|sides|rows|columns|letters|words|arrangements|committees|teams|"
    r"percentage|percent|pct)(?:\^?\{?[23]\}?)?\.?"
)
"""Words that may follow a number as its unit and are dropped (``5\\text{ cm}^2``). Any other
word after a number stays part of the answer: ``5 \\text{ not}`` is not 5."""
_UNIT = re.compile(_UNIT_WORDS, re.IGNORECASE)
_UNITS = re.compile(r"(?<=[\d}])\s+" + _UNIT_WORDS + r"\s*$", re.IGNORECASE)
_LHS = re.compile(  # "x =", "x_1 =", "f(x) =", "\\theta =", "x \\in": a name being assigned
    r"^(?P<name>([A-Za-z]|\\(?:" + "|".join(sorted(_expr._GREEK)) + r")(?![A-Za-z]))"
    r"(?:_(?:\{\w+\}|\w))?(?:\([A-Za-z]\))?)\s*(?P<rel>=|\\in(?![A-Za-z]))(?!=)"
)
_THOUSANDS = re.compile(r"-?[1-9]\d{0,2}(?:(?:,\d{3})+|(?:,\d\d)+,\d{3})(?:\.\d+)?")
"""1,000,000 and the Indian 56,01,78,95,760 (not 0,111: that is no thousands separator)."""
_DOUBLED = re.compile(
    r"\\\\(?=(?:left|right|frac|dfrac|tfrac|sqrt|pi|cdot|times|infty|text|begin|end)(?![A-Za-z]))"
)
_PLAIN_SQRT = re.compile(r"(?<![\\A-Za-z])sqrt\(([^()]*)\)")


class _Normal(NamedTuple):
    """An answer in normal form, and what normalising it took away."""

    text: str
    is_text: bool
    """A word or a choice: compared as a string."""
    name: str = ""
    """The ``x`` / ``f(x)`` / ``x_1`` of an ``x =`` prefix that was removed: ``x = -1`` is not
    ``y = -1``."""
    percent: bool = False
    """It was written as a percentage (``10\\%`` is 10, and also 0.1)."""


_MIXED = re.compile(r"(-?)(\d+)\\frac\{(\d+)\}\{(\d+)\}")
_CHOICE = re.compile(r"\(?([A-Ea-e])\)?")
_BASE = re.compile(r"(-?[0-9A-Z.]*\d[0-9A-Z.]*|-?[0-9A-Z.]+)_\{?([2-9]|[1-3]\d)\}?")


def _text_groups(s: str) -> tuple[str, bool]:
    """Handle ``\\text{...}``: "and"/"or" become commas, words after maths are units and are
    dropped (``5\\text{ cm}^2``), anything else is unwrapped. Returns the new string and whether
    the answer is text only (a word or a choice: compared as a string)."""
    spans = []
    for m in re.finditer(r"\\text\s*\{", s):
        start = m.end() - 1
        end = _match_brace(s, start)
        if end < 0:
            return s, False
        spans.append((m.start(), end + 1, s[start + 1 : end]))
    if not spans:
        return s, False
    pieces, outside, pos, had_text = [], [], 0, False
    for begin, end, content in spans:
        if begin < pos:  # nested \text inside \text
            continue
        pieces.append(s[pos:begin])
        outside.append(s[pos:begin])
        word = content.strip()
        if word.lower() in ("and", "or", ","):
            pieces.append(",")
            outside.append(",")
        elif _UNIT.fullmatch(word) and re.search(r"[\d}]\s*$", "".join(pieces)):
            unit = re.match(r"\s*\^\s*\{?[23]\}?", s[end:])  # a unit: 5\text{ cm}^2
            if unit:
                end += unit.end()
        else:
            pieces.append(content)
            had_text = True
        pos = end
    pieces.append(s[pos:])
    outside.append(s[pos:])
    text = "".join(pieces)
    only_text = had_text and not "".join(outside).strip(" .,;:")
    return text, only_text and re.search(r"[A-Za-z]", text) is not None


@functools.lru_cache(maxsize=16384)
def _normalize(answer: str) -> _Normal:
    name = ""
    s = answer.translate(_UNICODE).replace("\\$", "").replace("$", "").strip()
    spaced_list = re.search(r"\d,\s+\d", s) is not None  # 32, 349 is two numbers
    s = _DOUBLED.sub(r"\\", s)  # \\frac written with a doubled backslash (raw strings)
    s = s.replace("{,}", ",").replace("**", "^")
    s = s.replace("<=", "\\leq ").replace(">=", "\\geq ").replace("!=", "\\neq ")
    s = _PLAIN_SQRT.sub(r"\\sqrt{\1}", s)
    s = re.sub(r"\\+$", "", s).strip()  # a stray backslash at the end
    s = re.sub(r"\\lt(?![A-Za-z])", "<", s)
    s = re.sub(r"\\gt(?![A-Za-z])", ">", s)
    s = re.sub(r"^\\approx(?![A-Za-z])", "", s)
    if (m := _LHS.match(s)) is not None and len(s) > m.end() and "=" not in s[m.end() :]:
        name = m.group("name")  # (a = 3, b = 2 keeps its names: each item has its own)
        s = s[m.end() :].strip()  # x = \text{Tuesday}
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("\\dbinom", "\\binom").replace("\\tbinom", "\\binom")
    s = re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", s)
    # unwrap \textbf{x}, a nested \boxed{x}
    while (m := _UNWRAP.search(s)) is not None:
        end = _match_brace(s, m.end() - 1)
        if end < 0:
            break
        s = s[: m.start()] + s[m.end() : end] + s[end + 1 :]
    s = _SPACING.sub(lambda m: m.group(1) or " ", s)
    s = _SIZES.sub("", s)
    s = _TEXT_CMDS.sub(r"\\text", s)
    s = _DEGREES.sub("", s)
    percent = re.search(r"%|(?<=\d)\s*(?:percent|percentage|pct)\.?\s*$", s) is not None
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    s, is_text = _text_groups(s)
    # 1 and 2, (1,2)or(2,1) -- between two pieces of maths only: 5 or more is no list
    s = re.sub(r"(?<=[\d)\]}])\s*\b(?:and|or)\b\s*(?=[-\d(\[{\\])", ",", s)
    s = re.sub(r"(?:\s*,)+\s*,", ",", s)  # 19, 46, and 82
    if is_text:
        return _Normal(re.sub(r"\s*,\s*", ",", re.sub(r"\s+", " ", s)).strip(" .,;"), True, name)
    s = re.sub(r"(?<=\d)\s+(\d+)/(\d+)$", r"+\\frac{\1}{\2}", s)  # 3128 1/2
    s = _UNITS.sub("", s)
    # spaces: keep one after a command followed by a letter (\cot x), drop the rest
    s = re.sub(r"([\^_])(\w)\s+(?=[\w{])", r"\1{\2}", s)  # \log_2 8 is not \log_28
    s = re.sub(r"\s+", " ", s).strip()
    s = re.sub(r"(\\[A-Za-z]+) (?=[A-Za-z])| ", lambda m: m.group(1) + " " if m.group(1) else "", s)
    s = _braced_args(s, "\\frac", 2)
    s = _braced_args(s, "\\binom", 2)
    s = _braced_args(s, "\\sqrt", 1)
    s = re.sub(r"([\^_])\{(\w)\}(?![\w{])", r"\1\2", s)  # x^{2} is x^2, but not x^{2}3
    s = re.sub(r"\\(?:le|leqslant)(?![A-Za-z])", r"\\leq", s)
    s = re.sub(r"\\(?:ge|geqslant)(?![A-Za-z])", r"\\geq", s)
    s = re.sub(r"\\ne(?![A-Za-z])", r"\\neq", s)
    s = re.sub(
        r"\\infinity|\\inf(?![A-Za-z])|(?<![A-Za-z\\])(?:infinity|inf)(?![A-Za-z])", r"\\infty", s
    )
    s = re.sub(r"\+\\infty", r"\\infty", s)
    s = re.sub(r"\\(?:bmatrix|Bmatrix|matrix)(?![A-Za-z])", "", s)
    s = s.replace("{bmatrix}", "{pmatrix}").replace("{matrix}", "{pmatrix}")
    s = re.sub(r"\\begin\{array\}\{[^{}]*\}", r"\\begin{pmatrix}", s).replace(
        "\\end{array}", "\\end{pmatrix}"
    )
    if m := re.fullmatch(r"[(\[](\\begin\{pmatrix\}.*\\end\{pmatrix\})[)\]]", s, re.DOTALL):
        s = m.group(1)  # \left[\begin{array}...\end{array}\right]
    if (m := _LHS.match(s)) is not None and len(s) > m.end() and "=" not in s[m.end() :]:
        name = name or m.group("name")
        s = s[m.end() :]
    if (m := _MIXED.fullmatch(s)) is not None and int(m.group(3)) < int(m.group(4)):
        # 1\frac{4}{5} is one and four fifths (MATH's convention), not 4/5
        whole = f"{m.group(2)}+\\frac{{{m.group(3)}}}{{{m.group(4)}}}"
        s = f"-({whole})" if m.group(1) else whole
    if not spaced_list and _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    s = s.rstrip(".")
    return _Normal(s, False, name, percent)


def normalize(answer: str) -> str:
    """The Minerva-style normal form of an answer (valid LaTeX, so later stages can parse it)."""
    return _normalize(answer).text


# ---------------------------------------------------------------------------------------------
# Structures: tuples, intervals, sets, unions, matrices, "a, b" lists and a \pm b


def _split_top(s: str, sep: str) -> list[str]:
    """Split at ``sep`` outside any brackets."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if s.startswith(sep, i) and depth == 0:
                parts.append(s[start:i])
                i += len(sep)
                start = i
                continue
            if i + 1 < len(s) and s[i + 1] in "{}":
                depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(sep, i):
            parts.append(s[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(s[start:])
    return parts


def _closes_at_end(s: str) -> bool:
    """True when the bracket opening ``s`` is closed by its last character."""
    depth = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                return i == len(s) - 1
        i += 1
    return False


def _balanced(s: str) -> bool:
    """True when no bracket of ``s`` closes one opened before ``s`` (escaped braces count)."""
    depth = 0
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 < len(s) and s[i + 1] in "{}":
                depth += 1 if s[i + 1] == "{" else -1
            i += 2
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if depth < 0:
            return False
        i += 1
    return depth == 0


def _expand_pm(items: list[str]) -> list[str]:
    out = []
    for item in items:
        parts = _split_top(item, "\\pm")
        if len(parts) == 2:
            a, b = parts
            out += [f"{a}+{b}" if a else b, f"{a}-({b})"]
        else:
            out.append(item)
    return out


_ORDERED = ("()", "[]", "(]", "[)")


def _structure(s: str) -> tuple[str, list[str]] | None:
    """``(kind, items)`` for a structured answer, None for a single value."""
    m = re.fullmatch(r"\\begin\{pmatrix\}(.*)\\end\{pmatrix\}", s, re.DOTALL)
    if m:
        rows = [r for r in _split_top(m.group(1), "\\\\") if r.strip()]
        cells = [_split_top(r, "&") for r in rows]
        if len({len(r) for r in cells}) != 1:
            return ("matrix?", [s])
        return (f"matrix{len(cells)}x{len(cells[0])}", [c for row in cells for c in row])
    if s.startswith("\\{") and s.endswith("\\}") and _balanced(s[2:-2]):
        return ("set", _expand_pm(_split_top(s[2:-2], ",")))
    if len(s) >= 2 and s[0] in "([" and s[-1] in ")]" and _closes_at_end(s):
        items = _split_top(s[1:-1], ",")
        if len(items) >= 2:
            return (s[0] + s[-1], items)
    parts = _split_top(s, "\\cup")
    if len(parts) >= 2:
        return ("union", parts)
    for sep in (",", ";"):
        items = _split_top(s, sep)
        if len(items) >= 2:
            return ("list", _expand_pm(items))
    items = _split_top(s, ":")
    if len(items) >= 2:
        return ("ratio", items)  # 3:1, or a time 4:51:06
    if len(_split_top(s, "\\pm")) == 2:
        return ("list", _expand_pm([s]))
    return None


def _relation_interval(s: str) -> str | None:
    """``a < x \\leq b``, ``x > a``, ``b \\geq x`` ... as an interval, or None."""
    parts = re.split(r"(\\leq|\\geq|<|>)", s)
    if len(parts) not in (3, 5) or not all(parts[0::2]):
        return None
    terms, ops = [t.strip() for t in parts[0::2]], parts[1::2]
    if all(op in (">", "\\geq") for op in ops):  # write it ascending
        terms, ops = terms[::-1], [{">": "<", "\\geq": "\\leq"}[op] for op in ops[::-1]]
    elif not all(op in ("<", "\\leq") for op in ops):
        return None
    variables = [
        i for i, t in enumerate(terms)
        if re.fullmatch(r"[A-Za-z]|\\[A-Za-z]+", t) and t not in ("\\infty", "\\pi", "e", "i")
    ]  # fmt: skip
    if len(variables) != 1 or any(_RELATION.search(t) for t in terms):
        return None
    v = variables[0]
    if len(terms) == 3 and v == 1:
        return (
            f"{'(' if ops[0] == '<' else '['}{terms[0]},{terms[2]}{')' if ops[1] == '<' else ']'}"
        )
    if len(terms) == 2 and v == 0:
        return f"(-\\infty,{terms[1]}{')' if ops[0] == '<' else ']'}"
    if len(terms) == 2 and v == 1:
        return f"{'(' if ops[0] == '<' else '['}{terms[0]},\\infty)"
    return None


_RELATION = re.compile(r"=|<|>|\\leq|\\geq|\\neq|\\in(?![A-Za-z])|\\lt|\\gt")


# ---------------------------------------------------------------------------------------------
# Comparison

_UNPARSED = "unparsed"
_TOO_BIG = "too big"
"""What the parse cache keeps for an answer that does not parse: a short string, not the
exception (whose traceback holds the parser's frames, 27 KB to 0.28 MB each, 16k entries)."""


@functools.lru_cache(maxsize=16384)
def _parsed(s: str) -> _expr.Expr | str:
    try:
        return _expr.parse(s)
    except _expr.TooBig:
        return _TOO_BIG
    except (_expr.Unsupported, RecursionError):
        return _UNPARSED


def _same_value(
    a: _expr.Value, b: _expr.Value, gold_decimal: bool, pred_decimal: bool
) -> bool | None:
    """Is prediction value ``a`` the gold value ``b``? None: only the symbolic stage can say.

    Exact values are compared exactly, and within the paper's 1e-4 when either side is written as
    a decimal (``0.33333`` for 1/3, ``3.14159`` for pi) -- except that an integer gold is matched
    only by that integer (``12601.0`` is not 12600: an integer is never approximately right).
    Without a decimal, floating-point values decide only that two values are different
    (``\\sqrt{1000000000001}`` is within 1e-12 of 1000000 and is not it).
    """
    integer_gold = isinstance(b, Fraction) and b.denominator == 1 and not gold_decimal
    approximate = (gold_decimal or pred_decimal) and not integer_gold
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        if a == b:
            return True
        return approximate and abs(a - b) <= NUMERIC_TOLERANCE * max(abs(a), abs(b))
    tolerance = float(NUMERIC_TOLERANCE) if approximate else None
    return close(_expr._as_complex(a), _expr._as_complex(b), tolerance)


def _compare_values(pred: _expr.Expr, gold: _expr.Expr, deadline: float) -> bool:
    """Equal as numbers or as functions of their variables (evaluated exactly at rational points
    where they are rational). Raises _Undecided, or _expr.TooBig / _expr.OutOfTime."""
    variables = pred.variables | gold.variables
    verdicts = []
    for env in _expr.points(variables, 3 if variables else 1):
        try:
            b = _expr.evaluate(gold, env, deadline)
        except (ZeroDivisionError, ValueError, ArithmeticError):
            continue  # outside the domain at this point; try the next one
        try:
            a = _expr.evaluate(pred, env, deadline)
        except (ZeroDivisionError, ValueError, ArithmeticError):
            if variables:
                continue
            return False  # the gold is a number, the prediction is undefined (1/0)
        verdict = _same_value(a, b, gold.has_decimal, pred.has_decimal)
        if verdict is False:
            return False
        verdicts.append(verdict)
    if not verdicts or None in verdicts:
        raise _Undecided
    return True


def _exactly(a: _expr.Value, b: _expr.Value) -> bool | None:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a == b
    return close(_expr._as_complex(a), _expr._as_complex(b), None)


def _compare_equations(pred: str, gold: str, deadline: float) -> bool:
    """``lhs = rhs`` on both sides: equivalent when lhs - rhs agree up to a non-zero factor."""
    sides = []
    for s in (pred, gold):
        parts = s.split("=")
        if len(parts) != 2 or not all(parts):
            raise _Undecided
        lhs, rhs = (_parsed(p) for p in parts)
        if not isinstance(lhs, _expr.Expr) or not isinstance(rhs, _expr.Expr):
            raise _Undecided
        sides.append((lhs, rhs))
    variables = frozenset().union(*(e.variables for pair in sides for e in pair))
    if not variables:  # 0.56 = 56\%: two forms of one value, compared side by side
        return _compare_values(sides[0][0], sides[1][0], deadline) and _compare_values(
            sides[0][1], sides[1][1], deadline
        )
    ratios = []
    for env in _expr.points(variables, 4):
        try:
            fp, fg = (
                _expr.evaluate(lhs, env, deadline) - _expr.evaluate(rhs, env, deadline)
                for lhs, rhs in sides
            )
        except (ZeroDivisionError, ValueError, ArithmeticError):
            continue
        zero_p, zero_g = _exactly(fp, 0), _exactly(fg, 0)
        if zero_p or zero_g or None in (zero_p, zero_g):
            if zero_p and zero_g:
                continue
            if zero_p is None or zero_g is None:
                raise _Undecided
            return False
        ratios.append(fp / fg)
    if len(ratios) < 2:
        raise _Undecided
    verdicts = [_exactly(r, ratios[0]) for r in ratios[1:]]
    if False in verdicts:
        return False
    if None in verdicts:
        raise _Undecided
    return True


_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")
_PRIMED = re.compile(r"[A-Za-z]'*")


def _base(name: str) -> str:
    """The letter of a name: x of x_1, f of f(x)."""
    return re.match(r"\\[A-Za-z]+|[A-Za-z]", name).group()  # type: ignore[union-attr]


def _named_side(equation: str) -> str | None:
    """The value side of ``name = value`` or ``value = name`` when the other side is only names
    (``V_1:V_2``, ``any text``, ``x``), else None (``x + y = 5`` is an equation, not a value)."""
    parts = _split_top(equation, "=")
    if len(parts) != 2:
        return None
    lhs, rhs = parts
    for name, value in ((lhs, rhs), (rhs, lhs)):
        bare = re.sub(r"_\{[^{}]*\}|_\w|\\text\{[^{}]*\}", "", name)
        if value and re.fullmatch(
            r"(?:[A-Za-z]+|\\[A-Za-z]+)(?:[:,](?:[A-Za-z]+|\\[A-Za-z]+))*", bare
        ):
            return value
    return None


_INFINITE = frozenset({"\\infty", "-\\infty"})


def _is_relation(s: str) -> bool:
    return re.search(r"<|>|\\leq|\\geq|\\neq", s) is not None


class _Checker:
    """One comparison of a prediction with a gold answer, with a deadline and an optional
    symbolic stage (present only inside a worker process)."""

    def __init__(
        self, deadline: float, symbolic: SymbolicFn | None, raw: tuple[str, str] = ("", "")
    ) -> None:
        self.deadline = deadline
        self.symbolic = symbolic
        self.raw = raw  # the pair as given: what math-verify sees for a whole structure

    def tick(self) -> None:
        if time.monotonic() > self.deadline:
            raise _BudgetExceeded

    def fallback(self, pred: str, gold: str) -> bool:
        if self.symbolic is None:
            raise _Undecided
        self.tick()
        return self.symbolic(pred, gold)

    def equal(self, pred: str, gold: str, depth: int = 0) -> bool:
        """Raises _Undecided (no symbolic stage), _BudgetExceeded or _expr.TooBig."""
        self.tick()
        pn, gn = _normalize(pred), _normalize(gold)
        pred, gold = pn.text, gn.text
        if not pred or not gold:
            return False
        if pn.name and gn.name and _base(pn.name) != _base(gn.name):
            return False  # x = -1 answers for x, y = -1 for y
        if pn.name and "=" in gold:
            pred = f"{pn.name}={pred}"  # y = 2x + 1 against 2x - y + 1 = 0: both equations
        if pred == gold:
            return True
        for one, other in ((pred, gold), (gold, pred)):
            if _DECIMAL_COMMA.fullmatch(one) and other == one.replace(",", "."):
                return True  # 1,22 is 1.22 written with a decimal comma
        if gn.is_text:  # a word or a choice: strings only, never symbolic
            choice_g, choice_p = _CHOICE.fullmatch(gold), _CHOICE.fullmatch(pred)
            if choice_g and choice_p:
                return choice_g.group(1).upper() == choice_p.group(1).upper()
            return pred.lower() == gold.lower()
        if _PRIMED.fullmatch(pred) and _PRIMED.fullmatch(gold):
            return False  # E is not E' (both strings are names, and they differ)
        gold_base, pred_base = _BASE.fullmatch(gold), _BASE.fullmatch(pred)
        if gold_base is not None or pred_base is not None:
            # 52_8: the digits in that base (the question names the base, so 52 is fine too)
            g = gold_base.groups() if gold_base else (gold, None)
            p = pred_base.groups() if pred_base else (pred, None)
            return g[0] == p[0] and None in (g[1], p[1]) or g == p
        if pn.percent != gn.percent:  # 10\% is 10, and it is 0.1
            scaled = (
                (f"\\frac{{{pred}}}{{100}}", gold)
                if pn.percent
                else (pred, f"\\frac{{{gold}}}{{100}}")
            )
            return self.any_equal([(pred, gold), scaled], depth)
        return self.compare(pred, gold, depth)

    def compare(self, pred: str, gold: str, depth: int) -> bool:
        """Two answers in normal form."""
        if depth < 3:
            chained = self.chain(pred, gold, depth)
            if chained is not None:
                return chained
            if "=" in gold and "=" not in pred:
                named = _named_side(gold)
                if named is not None:  # V_1:V_2 = 11:21 against 11:21, 2 = x against 2
                    return self.equal(pred, named, depth + 1)
            pred_interval, gold_interval = _relation_interval(pred), _relation_interval(gold)
            if pred_interval or gold_interval:  # x > 2 is (2, \infty)
                if (pred_interval is None and _is_relation(pred)) or (
                    gold_interval is None and _is_relation(gold)
                ):
                    return self.fallback(pred, gold)  # -x > -1 is x < 1: symbolic
                pred, gold = pred_interval or pred, gold_interval or gold
                if pred == gold:
                    return True
            gold_struct, pred_struct = _structure(gold), _structure(pred)
            if gold_struct is not None or pred_struct is not None:
                return self.structures(pred, gold, pred_struct, gold_struct, depth)
        return self.values(pred, gold)

    def any_equal(self, pairs: list[tuple[str, str]], depth: int) -> bool:
        undecided = False
        for p, g in pairs:
            try:
                if self.compare(p, g, depth):
                    return True
            except _Undecided:
                undecided = True
        if undecided:
            raise _Undecided
        return False

    def chain(self, pred: str, gold: str, depth: int) -> bool | None:
        """``2+3=5`` for the gold 5: the last member must be the answer and every member that is
        a plain number must equal it (``5=4`` is not 4). None when ``pred`` is no such chain."""
        if "=" not in pred or "=" in gold or len(_split_top(pred, ",")) > 1:
            return None  # (a list of assignments is compared item by item)
        parts = _split_top(pred, "=")
        if len(parts) < 2 or not all(p.strip() for p in parts):
            return None
        for part in parts[:-1]:
            parsed = _parsed(part)
            if isinstance(parsed, _expr.Expr) and not parsed.variables:
                if not self.equal(part, gold, depth + 1):
                    return False
        return self.equal(parts[-1], gold, depth + 1)

    def values(self, pred: str, gold: str) -> bool:
        if "=" in pred and "=" in gold:
            try:
                return _compare_equations(pred, gold, self.deadline)
            except _Undecided:
                return self.fallback(pred, gold)
        if pred in _INFINITE or gold in _INFINITE:
            other = _parsed(gold if pred in _INFINITE else pred)
            if isinstance(other, _expr.Expr) and not other.variables:
                return False  # a finite number is not infinity
            return self.fallback(pred, gold)
        p, g = _parsed(pred), _parsed(gold)
        if p is _TOO_BIG:
            raise _expr.TooBig(pred[:40])
        if isinstance(p, _expr.Expr) and isinstance(g, _expr.Expr):
            try:
                return _compare_values(p, g, self.deadline)
            except _Undecided:
                pass
        return self.fallback(pred, gold)

    def structures(
        self,
        pred: str,
        gold: str,
        pred_struct: tuple[str, list[str]] | None,
        gold_struct: tuple[str, list[str]] | None,
        depth: int,
    ) -> bool:
        # Only "all items equal" is decided here; every other outcome (different kinds, lengths,
        # an item that differs) is the symbolic stage's: math-verify has its own conventions for
        # sets against tuples, a solution among several, ... and limr is never worse than it.
        # A whole answer goes to it as written (32, 349 is a list; 32,349 a number).
        if depth == 0 and all(self.raw):
            pred, gold = self.raw
        if pred_struct is None or gold_struct is None:
            return self.fallback(pred, gold)
        (pk, pitems), (gk, gitems) = pred_struct, gold_struct
        if len(pitems) > MAX_ITEMS or len(gitems) > MAX_ITEMS or "?" in pk + gk:
            return self.fallback(pred, gold)
        unordered = {"set", "list", "union"}
        try:
            if pk in unordered and gk in unordered and (pk == "union") == (gk == "union"):
                if self.match_unordered(pitems, gitems, depth):
                    return True
            elif pk in _ORDERED and gk in _ORDERED and pk != gk:
                return False  # (a, b] is not [a, b]: both are intervals
            elif (pk == gk or {pk, gk} == {"()", "list"}) and len(pitems) == len(gitems):
                if self.all_equal(list(zip(pitems, gitems)), depth):
                    return True
        except _Undecided:
            pass
        return self.fallback(pred, gold)

    def all_equal(self, pairs: list[tuple[str, str]], depth: int) -> bool:
        undecided = False
        for p, g in pairs:
            try:
                if not self.equal(p, g, depth + 1):
                    return False
            except _Undecided:
                undecided = True
        if undecided:
            raise _Undecided
        return True

    def match_unordered(self, pitems: list[str], gitems: list[str], depth: int) -> bool:
        if len(pitems) != len(gitems):
            return False
        free = list(range(len(pitems)))
        undecided = False
        for g in gitems:
            found = None
            for j in free:
                try:
                    if self.equal(pitems[j], g, depth + 1):
                        found = j
                        break
                except _Undecided:
                    undecided = True
            if found is None:
                if undecided:
                    raise _Undecided
                return False
            free.remove(found)
        return True


def check_local(
    pred: str | None,
    gold: str,
    symbolic: SymbolicFn | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Verdict | None:
    """Check in this process; None when only the symbolic stage could decide (and ``symbolic``
    is None). ``symbolic`` must itself respect the deadline (the workers run it under a timer)."""
    if pred is None:
        return Verdict.WRONG
    if len(gold) > MAX_ANSWER_CHARS:  # not a final answer (a proof?): only the same text counts
        return Verdict.CORRECT if pred.strip() == gold.strip() else Verdict.WRONG
    if len(pred) > MAX_ANSWER_CHARS:
        return Verdict.WRONG
    checker = _Checker(time.monotonic() + timeout, symbolic, (pred, gold))
    try:
        return Verdict.CORRECT if checker.equal(pred, gold) else Verdict.WRONG
    except _Undecided:
        return None
    except (_BudgetExceeded, _expr.TooBig, RecursionError, MemoryError):
        return Verdict.TIMEOUT
