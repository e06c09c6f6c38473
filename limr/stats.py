"""Statistics of the report: paired bootstrap confidence intervals and reward-curve kinds.

Only numpy (and the standard library) are used; torch tensors are accepted wherever an array is.

:func:`paired_bootstrap` compares two arms evaluated on the same held-out problems with the same
training seeds; :func:`verdict_of` turns its confidence interval into plain words;
:func:`curve_kinds` sorts the prompts of a reward history into the LIMR paper's three kinds of
per-epoch accuracy curve (never solved, mastered early, learned during the run) plus "other".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# ---------------------------------------------------------------------------------------------
# paired bootstrap

CHUNK_ELEMENTS = 1 << 20
"""Resampled indices drawn per chunk (1M: 4 MB of int32 indices, 8 MB of gathered values):
bounds the memory of :func:`paired_bootstrap` whatever ``n_boot``; the result does not depend on
it (the draws are the same stream in any chunking)."""


@dataclass(frozen=True)
class BootstrapResult:
    """A paired bootstrap comparison of arm A with arm B (see :func:`paired_bootstrap`).

    Attributes:
        mean: the observed mean difference A - B over every (seed, problem) cell.
        low, high: the percentile bootstrap confidence interval of ``mean``.
        confidence: its level (0.95 for a 95% interval).
        n_seeds, n_problems: the shape [S, P] of the paired data.
        n_boot: the number of bootstrap resamples.
    """

    mean: float
    low: float
    high: float
    confidence: float
    n_seeds: int
    n_problems: int
    n_boot: int


def _as_matrix(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must be [seeds, problems] (or [problems]), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} holds non-finite values")
    return arr


def paired_bootstrap(
    a: Any,
    b: Any,
    n_boot: int = 10000,
    seed: int = 0,
    confidence: float = 0.95,
) -> BootstrapResult:
    """Mean difference A - B with a paired percentile bootstrap confidence interval.

    Args:
        a, b: [S, P] arrays (seed x held-out problem; a [P] array is one seed) of per-problem
            accuracy in [0, 1] (the mean over a problem's samples) of the two arms; cell [s, p]
            of ``a`` and of ``b`` is the same problem, evaluated after training with the same
            seed.
        n_boot: bootstrap resamples.
        seed: seed of the resampling (the result is a deterministic function of the inputs and
            ``seed``).
        confidence: level of the interval, in (0, 1).

    What is resampled: with d = a - b, each resample draws, independently for every seed s,
    P problem indices uniformly with replacement from 0..P-1 (one stream of
    ``numpy.random.default_rng(seed).integers(0, P, dtype=np.int32)`` draws, in the order
    resample, seed, draw), and takes the mean of d over the S x P drawn cells. Pairing: the same
    drawn problems are used for A and B, so a problem that both arms find hard does not widen
    the interval. The seeds themselves are not resampled (three seeds are too few to resample):
    the interval covers the variability due to which held-out problems were drawn (and the
    sampling noise of each problem's evaluation), conditional on the training runs that were
    made; the spread over seeds is reported apart.

    The interval is the (1 - confidence) / 2 and (1 + confidence) / 2 quantiles of the resampled
    means (``numpy.quantile``, linear interpolation).

    Returns:
        A :class:`BootstrapResult`.
    """
    a_m = _as_matrix(a, "a")
    b_m = _as_matrix(b, "b")
    if a_m.shape != b_m.shape:
        raise ValueError(f"a and b must have the same shape, got {a_m.shape} and {b_m.shape}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    d = a_m - b_m
    num_s, num_p = d.shape
    rng = np.random.default_rng(seed)
    flat = d.ravel()
    if num_s * num_p >= 2**31:
        raise ValueError(f"paired_bootstrap: {num_s} x {num_p} cells are too many")
    offsets = (np.arange(num_s, dtype=np.int32) * num_p)[None, :, None]  # row starts in flat
    per_chunk = max(1, CHUNK_ELEMENTS // (num_s * num_p))
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, per_chunk):
        count = min(per_chunk, n_boot - start)
        # [count, S, P]: for each resample and seed, P problems drawn with replacement
        idx = rng.integers(0, num_p, size=(count, num_s, num_p), dtype=np.int32)
        idx += offsets
        means[start : start + count] = np.take(flat, idx).reshape(count, -1).mean(axis=1)
    alpha = 1.0 - confidence
    low, high = np.quantile(means, [alpha / 2, 1.0 - alpha / 2])
    return BootstrapResult(
        mean=float(d.mean()),
        low=float(low),
        high=float(high),
        confidence=confidence,
        n_seeds=num_s,
        n_problems=num_p,
        n_boot=n_boot,
    )


HIGHER = "higher"
""":func:`verdict_of`: the whole interval is above 0 (A scored higher than B)."""
LOWER = "lower"
""":func:`verdict_of`: the whole interval is below 0 (A scored lower than B)."""
NO_DIFFERENCE = "no difference detected"
""":func:`verdict_of`: the interval contains 0."""


def verdict_of(low: float, high: float) -> str:
    """What a confidence interval of A - B says: :data:`HIGHER` when ``low > 0``,
    :data:`LOWER` when ``high < 0``, else :data:`NO_DIFFERENCE` (an interval that touches or
    spans 0)."""
    if low > high:
        raise ValueError(f"a confidence interval needs low <= high, got [{low}, {high}]")
    if low > 0:
        return HIGHER
    if high < 0:
        return LOWER
    return NO_DIFFERENCE


# ---------------------------------------------------------------------------------------------
# kinds of reward curve

NEVER_SOLVED = "never solved"
MASTERED_EARLY = "mastered early"
LEARNED = "learned during the run"
OTHER = "other"
KINDS = (NEVER_SOLVED, MASTERED_EARLY, LEARNED, OTHER)
"""The labels of :func:`curve_kinds`, in the order the report lists them."""

START_EPOCHS = 1
"""A prompt's start accuracy is the mean accuracy of its first START_EPOCHS epochs with
rollouts."""
END_EPOCHS = 2
"""Its end accuracy is the mean accuracy of its last END_EPOCHS epochs with rollouts after the
start epochs (fewer when it has fewer; the start accuracy when it has no later epoch)."""
MASTERED_ACCURACY = 0.75
"""Mastered early: start accuracy >= MASTERED_ACCURACY and end accuracy >= MASTERED_ACCURACY."""
LEARNED_START_MAX = 0.25
"""Learned during the run: start accuracy <= LEARNED_START_MAX, and ..."""
LEARNED_END_MIN = 0.6
"""... end accuracy >= LEARNED_END_MIN, or ..."""
LEARNED_RISE_MIN = 0.5
"""... end accuracy - start accuracy >= LEARNED_RISE_MIN."""


@dataclass(frozen=True)
class CurveKinds:
    """The kinds of the prompts' accuracy curves (see :func:`curve_kinds`).

    Attributes:
        labels: one of :data:`KINDS` per prompt, in the history's order.
        counts: prompts of each kind, every kind of :data:`KINDS` present (0 when none).
        start: [I] start accuracy per prompt (nan for a prompt without rollouts).
        end: [I] end accuracy per prompt (nan for a prompt without rollouts).
    """

    labels: list[str]
    counts: dict[str, int]
    start: np.ndarray
    end: np.ndarray


def curve_kinds(
    n: Any,
    n_correct: Any,
    *,
    start_epochs: int = START_EPOCHS,
    end_epochs: int = END_EPOCHS,
    mastered_accuracy: float = MASTERED_ACCURACY,
    learned_start_max: float = LEARNED_START_MAX,
    learned_end_min: float = LEARNED_END_MIN,
    learned_rise_min: float = LEARNED_RISE_MIN,
) -> CurveKinds:
    """Sort every prompt's per-epoch accuracy curve into the LIMR paper's kinds.

    Args:
        n: [I, E] rollouts per prompt and epoch (a reward history's ``n``); an epoch with 0
            rollouts for a prompt is left out of that prompt's means.
        n_correct: [I, E] correct rollouts.
        start_epochs, end_epochs, mastered_accuracy, learned_start_max, learned_end_min,
            learned_rise_min: the rules' parameters (defaults: the module constants).

    With acc = n_correct / n in each epoch that has rollouts, ``start`` the mean acc of the
    first ``start_epochs`` such epochs and ``end`` the mean acc of the last ``end_epochs`` of
    the epochs after those (``start`` when there is none), the first rule that holds gives the
    kind:

    1. never solved: no correct rollout in any epoch (and at least one rollout);
    2. mastered early: start >= mastered_accuracy and end >= mastered_accuracy;
    3. learned during the run: start <= learned_start_max and (end >= learned_end_min or
       end - start >= learned_rise_min);
    4. other: everything else, including a prompt without any rollout.

    Returns:
        A :class:`CurveKinds`.
    """
    n_m = np.asarray(n, dtype=np.float64)
    c_m = np.asarray(n_correct, dtype=np.float64)
    if n_m.ndim != 2 or n_m.shape != c_m.shape:
        raise ValueError(f"n and n_correct must both be [I, E], got {n_m.shape} and {c_m.shape}")
    if start_epochs < 1 or end_epochs < 1:
        raise ValueError("start_epochs and end_epochs must be at least 1")
    present = n_m > 0
    acc = np.where(present, c_m / np.where(present, n_m, 1.0), 0.0)
    rank = np.cumsum(present, axis=1)  # k for the k-th epoch with rollouts (1-based)
    total = rank[:, -1:]  # epochs with rollouts per prompt, [I, 1]
    start_cells = present & (rank <= start_epochs)
    end_cells = present & (rank > start_epochs) & (total - rank < end_epochs)
    with np.errstate(invalid="ignore", divide="ignore"):
        start = (acc * start_cells).sum(1) / start_cells.sum(1)
        end_mean = (acc * end_cells).sum(1) / end_cells.sum(1)
    end = np.where(end_cells.any(1), end_mean, start)
    seen = present.any(1)
    never = seen & (c_m.sum(1) == 0)
    mastered = seen & ~never & (start >= mastered_accuracy) & (end >= mastered_accuracy)
    learned = (
        seen
        & ~never
        & ~mastered
        & (start <= learned_start_max)
        & ((end >= learned_end_min) | (end - start >= learned_rise_min))
    )
    kinds = np.select([never, mastered, learned], [0, 1, 2], default=3)
    labels = [KINDS[k] for k in kinds.tolist()]
    counts = {kind: int((kinds == j).sum()) for j, kind in enumerate(KINDS)}
    return CurveKinds(labels=labels, counts=counts, start=start, end=end)
