"""The symbolic stage of answer checking: math-verify (on sympy) for what the fast path leaves.

It runs only inside the checker's worker processes (:mod:`limr.rewards._worker`), under a timer
and a memory limit, and the parent kills the worker when the budget runs out. Before anything
reaches sympy, :func:`guard` refuses inputs whose evaluation could explode (power towers, huge
factorials, enormous literals): sympy evaluates ``9^{9^{9^9}}`` in C code that no timer can
interrupt, and the kill would cost a worker restart.

math-verify is called with only its LaTeX extraction (never its plain-expression extraction,
which calls sympy's ``parse_expr``, an ``eval``), on the two answers wrapped in ``\\boxed{}`` so
that its parser sees maths rather than a bare string (the defect of the released LIMR code), and
with its own ``signal.alarm`` timeouts off, because they would cancel the worker's timer.
"""

from __future__ import annotations

import functools
import logging
import re

from limr.rewards._expr import TooBig

MAX_DIGITS = 100
"""Longest integer literal handed to sympy."""
MAX_EXPONENT = 10_000
"""Largest literal exponent handed to sympy."""
MAX_FACTORIAL = 1_000
"""Largest literal factorial handed to sympy."""

_DIGITS = re.compile(r"\d{" + str(MAX_DIGITS + 1) + ",}")
_FACTORIAL = re.compile(r"(\d+)\s*!|[)}\]]\s*!|\\factorial(?![A-Za-z])")
_CARET = re.compile(r"\^|\\exp(?![A-Za-z])|\\uparrow|\*\*")


def _exponents(s: str) -> list[str]:
    """The text of every exponent in ``s`` (``{...}`` groups or single tokens after ``^``)."""
    out = []
    for m in re.finditer(r"\^\s*", s):
        i = m.end()
        if s.startswith("{", i):
            depth = 0
            for j in range(i, len(s)):
                if s[j] == "{":
                    depth += 1
                elif s[j] == "}":
                    depth -= 1
                    if depth == 0:
                        out.append(s[i + 1 : j])
                        break
            else:
                out.append(s[i:])
        else:
            token = re.match(r"-?(?:\d+|\\?[A-Za-z]+|.)", s[i:])
            out.append(token.group() if token else "")
    return out


def guard(s: str) -> None:
    """Raise :class:`TooBig` when ``s`` could make sympy compute something astronomically large."""
    if _DIGITS.search(s):
        raise TooBig("integer literal too long")
    symbolic = re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", s)) is not None
    for m in _FACTORIAL.finditer(s):
        if (m.group(1) is None and not symbolic) or (
            m.group(1) is not None and int(m.group(1)) > MAX_FACTORIAL
        ):
            raise TooBig("factorial")
    for exponent in _exponents(s):
        numeric = re.search(r"[A-Za-z]", re.sub(r"\\[A-Za-z]+", "", exponent)) is None
        if numeric and (_CARET.search(exponent) or "!" in exponent):
            raise TooBig("power tower")
        for number in re.findall(r"\d+", exponent):
            if int(number) > MAX_EXPONENT:
                raise TooBig("exponent too large")
    if "**" in s or "\\uparrow" in s:
        raise TooBig("unusual power notation")


_CONFIG = None
_INTEGER = re.compile(r"\s*-?\d+\s*")


@functools.lru_cache(maxsize=4096)  # a prompt's gold answer comes back for each of its samples
def _parse(answer: str) -> list:
    global _CONFIG
    from math_verify import LatexExtractionConfig, parse

    if _CONFIG is None:
        logging.getLogger("math_verify").setLevel(logging.CRITICAL)
        _CONFIG = [LatexExtractionConfig(boxed_match_priority=0)]
    return parse(
        "\\boxed{" + answer + "}",
        extraction_config=_CONFIG,
        fallback_mode="no_fallback",
        parsing_timeout=None,  # type: ignore[arg-type] - the worker's timer bounds it
    )


def symbolic_equal(pred: str, gold: str) -> bool:
    """math-verify's verdict on two normalised answers (gold first: its comparison is not
    symmetric). Raises :class:`TooBig` for inputs refused by :func:`guard`."""
    guard(pred)
    guard(gold)
    from math_verify import verify

    parsed_gold = _parse(gold)
    parsed_pred = _parse(pred)
    if not parsed_gold or not parsed_pred:
        return False
    # the paper's 1e-4 where a side is a decimal, but an integer gold is matched only exactly
    decimal = re.search(r"\.\d", pred + " " + gold) is not None and not _INTEGER.fullmatch(gold)
    numeric = _numeric_verdict(parsed_gold[0], parsed_pred[0], decimal)
    if numeric is not None:
        return numeric
    return bool(verify(parsed_gold, parsed_pred, timeout_seconds=None))  # type: ignore[arg-type]


def _numeric_verdict(gold, pred, decimal: bool) -> bool | None:
    """Two sympy expressions compared by value at the fast path's generic points (``evalf`` to 30
    digits, no code generation), or None when that does not decide: not plain expressions, not
    numbers after substitution, or not clearly different. Without a tolerance (the gold is not a
    decimal), values decide only that the answers differ: equality is math-verify's to prove
    (``\\sqrt{1000000000001}`` is within 1e-12 of ``1000000`` and is not it)."""
    import sympy

    from limr.rewards import _expr
    from limr.rewards.verdict import NUMERIC_TOLERANCE, close

    if not (_elementary(gold) and _elementary(pred)):
        return None  # sums, integrals, floor, ...: their value at a generic point means nothing
    symbols = sorted(gold.free_symbols | pred.free_symbols, key=str)
    tolerance = float(NUMERIC_TOLERANCE) if decimal else None
    verdicts = []
    for values in _expr.point_values(3 if symbols else 1, len(symbols)):
        subs = {s: sympy.Float(v, 30) for s, v in zip(symbols, values)}
        try:
            a = complex(gold.evalf(30, subs=subs))
            b = complex(pred.evalf(30, subs=subs))
        except (TypeError, ValueError, ArithmeticError):
            continue
        if not all(map(_finite, (a, b))):
            continue
        verdicts.append(close(a, b, tolerance))
    if False in verdicts:
        return False
    if not verdicts or None in verdicts:
        return None
    return True


def _elementary(expr) -> bool:
    """An expression built only from numbers, symbols, + * ^, |.|, exp, log and trigonometric
    and hyperbolic functions (and their inverses)."""
    import sympy
    from sympy.functions.elementary.hyperbolic import HyperbolicFunction
    from sympy.functions.elementary.trigonometric import (
        InverseTrigonometricFunction,
        TrigonometricFunction,
    )

    allowed = (
        sympy.Number, sympy.NumberSymbol, sympy.core.numbers.ImaginaryUnit, sympy.Symbol,
        sympy.Add, sympy.Mul, sympy.Pow, sympy.Abs, sympy.exp, sympy.log, TrigonometricFunction,
        InverseTrigonometricFunction, HyperbolicFunction,
    )  # fmt: skip
    if not isinstance(expr, sympy.Expr):
        return False
    return all(isinstance(node, allowed) for node in sympy.preorder_traversal(expr))


def _finite(z: complex) -> bool:
    return z.real == z.real and z.imag == z.imag and abs(z) != float("inf")
