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
from dataclasses import dataclass

import numpy as np

from limr.rewards import answer
from limr.rewards.verdict import DEFAULT_TIMEOUT, SymbolicFn, Verdict


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
    unboxed: str | None = None
    """Where the answer of a response without a box comes from: None (it has none: the paper),
    or ``"last_number"``, the last number of the response (an integer, decimal or a/b fraction),
    for models too small to write ``\\boxed{}`` (configs/smollm2_cpu.yaml)."""
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


def _hashes(
    prefix: np.ndarray, fwd: np.ndarray, start: np.ndarray, length: np.ndarray
) -> np.ndarray:
    """Hash of ``text[start : start + length]`` for arrays of starts and lengths (the same value
    for equal substrings wherever they are)."""
    with np.errstate(over="ignore"):
        return (prefix[start + length] - prefix[start]) * fwd[start]


def _longest_equal(
    prefix: np.ndarray, fwd: np.ndarray, a: np.ndarray, b: np.ndarray, cap: np.ndarray
) -> np.ndarray:
    """For each i, the largest ``L <= cap[i]`` with equal hashes of ``text[a[i] : a[i] + L]`` and
    ``text[b[i] : b[i] + L]``, by a binary search run on all of them at once."""
    lo, hi = np.zeros_like(cap), cap.copy()
    while np.any(lo < hi):
        mid = (lo + hi + 1) // 2
        same = _hashes(prefix, fwd, a, mid) == _hashes(prefix, fwd, b, mid)
        lo = np.where(same, mid, lo)
        hi = np.where(same, hi, mid - 1)
    return lo


def _repetition_in(
    text: str,
    codes: np.ndarray,
    prefix: np.ndarray,
    fwd: np.ndarray,
    low: int,
    high: int,
    c: int,
) -> bool:
    """:func:`has_repetition` for the periods low..high.

    Every candidate (a run of ``c - 1`` equal aligned blocks) is extended to the left and right
    at once, with hashes, so no number of decoys (runs just too short to count) can push a real
    repetition out of reach. Each candidate long enough is then confirmed on the text itself.
    """
    n = len(text)
    periods = np.arange(low, high + 1, dtype=np.int64)
    blocks = n // periods  # aligned blocks of each period
    period = np.repeat(periods, blocks)
    first = np.cumsum(blocks) - blocks
    k = np.arange(period.size, dtype=np.int64) - np.repeat(first, blocks)
    start = k * period
    h = _hashes(prefix, fwd, start, period)  # hash of text[start : start + p]
    same = (h[1:] == h[:-1]) & (period[1:] == period[:-1])
    need = c - 2  # equalities between c - 1 consecutive blocks (c >= 3)
    run = same[: same.size - need + 1].copy()
    for shift in range(1, need):
        run &= same[shift : same.size - need + 1 + shift]
    candidates = np.flatnonzero(run)
    if candidates.size == 0:
        return False
    p, x = period[candidates], start[candidates]
    end = x + (c - 1) * p  # text[x : end] has period p (by the hashes)
    right = _longest_equal(prefix, fwd, end - p, end, np.maximum(0, np.minimum(p, n - end)))
    left = _longest_equal_before(prefix, fwd, x, p, np.minimum(p, x))
    long_enough = np.flatnonzero(left + right >= p)
    budget = 20 * n  # characters of exact comparison; see below
    for i in long_enough.tolist():
        q, s = int(p[i]), int(x[i] - left[i])
        if text[s : s + (c - 1) * q] == text[s + q : s + c * q]:
            return True
        budget -= c * q
        if budget < 0:
            # Only text built to collide 64-bit polynomial hashes (Thue-Morse-like) fails this
            # many confirmations: it is degenerate output in itself.
            return True
    return False


def _longest_equal_before(
    prefix: np.ndarray, fwd: np.ndarray, x: np.ndarray, p: np.ndarray, cap: np.ndarray
) -> np.ndarray:
    """For each i, the largest ``L <= cap[i]`` with equal hashes of ``text[x - L : x]`` and
    ``text[x - L + p : x + p]``: how far a period-p run starting at x reaches to the left."""
    lo, hi = np.zeros_like(cap), cap.copy()
    while np.any(lo < hi):
        mid = (lo + hi + 1) // 2
        same = _hashes(prefix, fwd, x - mid, mid) == _hashes(prefix, fwd, x - mid + p, mid)
        lo = np.where(same, mid, lo)
        hi = np.where(same, hi, mid - 1)
    return lo


def format_check(response: str, finished: bool, rules: Rules) -> tuple[Outcome, str | None]:
    """The first failed format check (or OK) and the content of the last box (None if none)."""
    if len(response) > rules.max_response_chars:
        return Outcome.TOO_LONG, None
    if rules.check_finished and not finished:
        return Outcome.UNFINISHED, None
    boxed = answer.extract_boxed(response)
    if boxed is None and rules.unboxed == "last_number":
        boxed = answer.last_number(response)
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
    symbolic: SymbolicFn | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> tuple[Outcome, Verdict | None]:
    """Format checks, then the answer check of the last box (None: only symbolic can decide)."""
    outcome, boxed = format_check(response, finished, rules)
    if outcome is not Outcome.OK:
        return outcome, None
    return outcome, answer.check_local(boxed, gold, symbolic, timeout)
