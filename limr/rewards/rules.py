"""The format checks of the paper's rule reward (REFERENCE.md), as pure functions of strings.

In order: the response finished; it has a ``\\boxed{}`` and fewer than five; at most 30% of its
characters are outside ASCII letters, digits, punctuation (and whitespace) and the U+2200-U+22FF
maths block; no run of 5+ characters repeats 5+ times in a row. Each threshold is a field of
:class:`Rules`, and ``None`` (or 0 for the repetition count) switches a check off.

Only the standard library and numpy are imported: this module also runs in the checker's workers.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from limr.rewards import answer


class Outcome(str, enum.Enum):
    """Which format check a response failed first (``OK``: none)."""

    OK = "ok"
    UNFINISHED = "unfinished"
    NO_BOX = "no_box"
    TOO_MANY_BOXES = "too_many_boxes"
    NON_MATH = "non_math"
    REPETITION = "repetition"
    TOO_LONG = "too_long"


@dataclass(frozen=True)
class Rules:
    """Switches and thresholds of the format checks (defaults: the paper's)."""

    check_finished: bool = True
    """A response cut by the token limit fails."""
    require_box: bool = True
    """A response without a (closed) last ``\\boxed{}`` fails."""
    max_boxes: int | None = 4
    """More boxes than this fail (the paper: 5 or more); None = no limit."""
    max_non_math_fraction: float | None = 0.3
    """Largest share of characters outside ASCII and the maths block; None = no limit."""
    repeat_min_length: int = 5
    """Shortest repeated unit that counts as degenerate repetition."""
    repeat_min_count: int = 5
    """Repetitions in a row that count (3 or more); 0 switches the check off."""
    max_response_chars: int = 200_000
    """Longer responses fail without further checks (bounds the time of every check)."""


NO_RULES = Rules(
    check_finished=False,
    require_box=False,
    max_boxes=None,
    max_non_math_fraction=None,
    repeat_min_count=0,
)
"""Correctness alone: only the last box matters."""

_ALLOWED = re.compile(r"[\x20-\x7e\t\n\r\u2200-\u22ff]+")


def non_math_fraction(text: str) -> float:
    """Share of characters outside printable ASCII, ASCII whitespace and U+2200-U+22FF."""
    if not text:
        return 0.0
    return len(_ALLOWED.sub("", text)) / len(text)


_BASE = 0x100000001B3  # odd, so invertible modulo 2**64
_BASE_INV = pow(_BASE, -1, 1 << 64)


def _first_false(mask: np.ndarray) -> int:
    bad = np.flatnonzero(~mask)
    return int(bad[0]) if bad.size else int(mask.size)


def has_repetition(text: str, min_length: int = 5, min_count: int = 5) -> bool:
    """True when some substring of ``min_length``+ characters occurs ``min_count``+ times in a row.

    Exact, in about n log n time. A repetition of a unit of length p covers a window of length
    ``min_count * p`` of period p, which contains ``min_count - 1`` consecutive blocks aligned at
    multiples of p that are all equal; equal aligned blocks are found for every p at once by
    hashing (polynomial hashes mod 2**64), and each candidate is then confirmed on the text.
    """
    n, c = len(text), min_count
    if c < 3:
        raise ValueError(f"min_count must be at least 3, got {c}")
    if n < min_length * c:
        return False
    codes = (
        np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32).astype(np.uint64)
        + 1
    )
    with np.errstate(over="ignore"):
        inv = np.empty(n, dtype=np.uint64)
        inv[0] = 1
        inv[1:] = _BASE_INV
        inv = np.cumprod(inv, dtype=np.uint64)  # B^-t
        fwd = np.empty(n + 1, dtype=np.uint64)
        fwd[0] = 1
        fwd[1:] = _BASE
        fwd = np.cumprod(fwd, dtype=np.uint64)  # B^t
        prefix = np.zeros(n + 1, dtype=np.uint64)
        np.cumsum(codes * inv, dtype=np.uint64, out=prefix[1:])

    # small periods first: a degenerate loop is usually found in the first, cheapest chunk
    low = min_length
    while low <= n // c:
        high = min(n // c, low * 16)
        if _repetition_in(text, codes, prefix, fwd, low, high, c):
            return True
        low = high + 1
    return False


def _repetition_in(
    text: str,
    codes: np.ndarray,
    prefix: np.ndarray,
    fwd: np.ndarray,
    low: int,
    high: int,
    c: int,
) -> bool:
    """:func:`has_repetition` for the periods low..high."""
    n = len(text)
    with np.errstate(over="ignore"):
        periods = np.arange(low, high + 1, dtype=np.int64)
        blocks = n // periods  # aligned blocks of each period
        period = np.repeat(periods, blocks)
        first = np.cumsum(blocks) - blocks
        k = np.arange(period.size, dtype=np.int64) - np.repeat(first, blocks)
        start = k * period
        # hash of text[start : start + p], independent of where the block is
        h = (prefix[start + period] - prefix[start]) * fwd[start]
    same = (h[1:] == h[:-1]) & (period[1:] == period[:-1])
    need = c - 2  # equalities between c - 1 consecutive blocks (c >= 3)
    run = same[: same.size - need + 1].copy()
    for shift in range(1, need):
        run &= same[shift : same.size - need + 1 + shift]
    candidates = np.flatnonzero(run)
    checked, last_period, last_index = 0, -1, -10
    for i in candidates.tolist():
        p = int(period[i])
        if p == last_period and i == last_index + 1:  # same run as the previous candidate
            last_index = i
            continue
        last_period, last_index = p, i
        checked += 1
        if checked > 2000:
            break
        x = int(start[i])
        span = (c - 2) * p
        if text[x : x + span] != text[x + p : x + p + span]:
            continue  # hash collision
        y = x + span  # extend the period-p run to the right and to the left, up to p each
        right_len = max(0, min(p, n - p - y))
        right = _first_false(codes[y : y + right_len] == codes[y + p : y + p + right_len])
        left_len = min(p, x)
        left_eq = codes[x - left_len : x] == codes[x - left_len + p : x + p]
        left = _first_false(left_eq[::-1])
        if span + left + right >= (c - 1) * p:
            return True
    return False


def format_check(response: str, finished: bool, rules: Rules) -> tuple[Outcome, str | None]:
    """The first failed format check (or OK) and the content of the last box (None if none)."""
    if len(response) > rules.max_response_chars:
        return Outcome.TOO_LONG, None
    if rules.check_finished and not finished:
        return Outcome.UNFINISHED, None
    boxed = answer.extract_boxed(response)
    if rules.require_box and boxed is None:
        return Outcome.NO_BOX, None
    if rules.max_boxes is not None and answer.count_boxes(response) > rules.max_boxes:
        return Outcome.TOO_MANY_BOXES, boxed
    if (
        rules.max_non_math_fraction is not None
        and non_math_fraction(response) > rules.max_non_math_fraction
    ):
        return Outcome.NON_MATH, boxed
    if rules.repeat_min_count and has_repetition(
        response, rules.repeat_min_length, rules.repeat_min_count
    ):
        return Outcome.REPETITION, boxed
    return Outcome.OK, boxed


def score(
    response: str,
    gold: str,
    finished: bool,
    rules: Rules,
    symbolic: Callable[[str, str], bool] | None = None,
    timeout: float = answer.DEFAULT_TIMEOUT,
) -> tuple[Outcome, answer.Verdict | None]:
    """Format checks, then the answer check of the last box (None: only symbolic can decide)."""
    outcome, boxed = format_check(response, finished, rules)
    if outcome is not Outcome.OK:
        return outcome, None
    return outcome, answer.check_local(boxed, gold, symbolic, timeout)
