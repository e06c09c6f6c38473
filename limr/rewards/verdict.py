"""What every stage of answer checking shares: the verdict type, the time budget, the tolerances.

It sits below :mod:`limr.rewards.answer` (the in-process stages), :mod:`limr.rewards.rules` (the
format checks), :mod:`limr.rewards.symbolic` (math-verify in a worker) and
:mod:`limr.rewards.parallel` (the workers), so none of them needs to import another for these.
Only the standard library is imported: this module also runs inside the checker's workers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from fractions import Fraction

DEFAULT_TIMEOUT = 2.0
"""Seconds allowed for one check (the paper's 2 s)."""

NUMERIC_TOLERANCE = Fraction(1, 10_000)
"""Relative tolerance when the gold answer is written as a decimal (the paper's 1e-4)."""

DIFFERENT = 1e-6
"""Relative difference above which two floating-point evaluations are certainly different values
(rounding errors of the evaluations are ~1e-15). Below it, floats decide nothing: two values that
close may still differ (``\\sqrt{10^{12}+1}`` and ``10^6``), so equality is left to exact maths."""


class Verdict(enum.Enum):
    """The outcome of one check."""

    CORRECT = "correct"
    WRONG = "wrong"
    TIMEOUT = "timeout"
    """Could not be decided within the time budget, or too large to compute (counts as wrong)."""


SymbolicFn = Callable[[str, str], bool]
"""The symbolic stage: ``(pred, gold) -> equal``, run only where a timer can stop it."""


def close(a: complex, b: complex, tolerance: float | None) -> bool | None:
    """Two floating-point values: with a ``tolerance``, whether they agree within it (relative);
    without one, False when they are clearly different and None (undecided) otherwise."""
    scale = max(abs(a), abs(b))
    if scale == 0:
        return True if tolerance is not None else None
    rel = abs(a - b) / scale
    if tolerance is not None:
        return rel <= tolerance
    return False if rel > DIFFERENT else None
