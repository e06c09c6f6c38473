"""Reward curves and the arithmetic every curve-based selector shares (vectorised over [I, E]).

r_i^k is prompt i's value in epoch k: its accuracy (fraction of rollouts that were correct) or,
with ``metric="reward"``, its mean raw reward. A cell with no rollouts is missing.

Every built-in offline selector scores the whole epochs of a history only (:func:`scoring_view`,
:func:`limr.history.whole_epochs`): a partly recorded last epoch is left out, as LIMR's released
script does, and ``Selection.info`` says how many epochs and prompts were left out
(``epochs_recorded``, ``epochs_dropped``, ``partial_epoch``, ``unscored``). ``whole_epochs=False``
scores every recorded epoch instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import torch

from limr.history import score_record, whole_epochs  # noqa: F401  (score_record: re-exported)
from limr.types import HistoryLike, Selection

METRICS = ("accuracy", "reward")


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed torch ops on one intra-op thread, then restore the setting.

    The passes below are loops over small chunks: on a shared or busy machine torch's worker
    threads wait on each other at every op (measured: 1M x 21 LIM took 3-5 s of CPU on two threads
    of a loaded 2-core machine, 0.5 s on one), and on an idle one they gain little.
    """
    before = torch.get_num_threads()
    if before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ids_of(history: HistoryLike, rows: torch.Tensor | None) -> list[str]:
    """The ids of ``rows`` (None = all) of a history."""
    ids = history.ids  # read the attribute once: it may be a computed property
    if rows is None:
        return list(ids)
    if len(rows) < 10_000:
        return [ids[j] for j in rows.tolist()]
    # numpy's object gather is ~3x faster than a list comprehension on a million ids
    return np.asarray(ids, dtype=object)[rows.numpy()].tolist()


def scoring_view(history: HistoryLike, whole: bool = True) -> tuple[HistoryLike, dict[str, Any]]:
    """The epochs a selector scores: the whole ones (``whole``), or all; and the epoch report."""
    if whole:
        return whole_epochs(history)
    num_e = int(history.n.shape[1])
    return history, {"epochs_recorded": num_e, "epochs_dropped": 0, "partial_epoch": None}


def complete_after_fill(history: HistoryLike) -> torch.Tensor:
    """[I] bool: prompts with rollouts in every epoch after LIM's one backward fill (the prompts
    LIM's ``missing="drop"``, LINEAR and PEARSON score)."""
    present = history.n > 0
    if present.shape[1] > 1:
        filled = present.clone()
        filled[:, :-1] |= present[:, 1:]  # one pass: from the unfilled next column
        present = filled
    return _complete(present)


def check_metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    return metric


def epoch_values(history: HistoryLike, metric: str = "accuracy") -> tuple[torch.Tensor, ...]:
    """Per-epoch values and presence.

    Returns:
        values: [I, E] float64, r_i^k (0 where missing).
        present: [I, E] bool, True where the prompt had rollouts that epoch.
    """
    check_metric(metric)
    n = history.n
    present = n > 0
    num = history.n_correct if metric == "accuracy" else history.reward_sum
    values = num.to(torch.float64) / n.clamp_min(1).to(torch.float64)
    return values, present


def fill_backward_once(
    values: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """LIMR's fill: a missing r_i^k takes r_i^(k+1) when that one is present (a single pass, so
    two missing epochs in a row leave the first missing). Returns (values, present, n_filled)."""
    if values.shape[1] < 2:
        return values, present, 0
    fill = present[:, 1:] & ~present[:, :-1]  # [I, E-1]
    n_filled = int(fill.sum())
    if not n_filled:
        return values, present, 0
    values = values.clone()
    present = present.clone()
    # torch.where reads the original values[:, 1:] before the assignment: one pass, as LIMR's.
    values[:, :-1] = torch.where(fill, values[:, 1:], values[:, :-1])
    present[:, :-1] |= fill
    return values, present, n_filled


CHUNK_ROWS = 1 << 15
"""Rows per block of the chunked passes. Whole-array temporaries of 1M x 21 float64 cost more in
page faults than in arithmetic (0.1-0.6 s per fresh 168 MB array on a 2-core VM, depending on
its load); a block's temporaries are small and reused."""


def curve_chunks(
    history: HistoryLike,
    metric: str = "accuracy",
    chunk_rows: int | None = None,
    out: torch.Tensor | None = None,
) -> Iterator[tuple[int, int, torch.Tensor, torch.Tensor, int]]:
    """LIM's curves, a block of rows at a time: one backward fill, as LIMR's script.

    Yields:
        (lo, hi, values, present, filled): rows lo..hi-1; values [hi-lo, E] float64 r_i^k after
        the fill (0 where still missing), in a buffer reused by the next block (or in
        ``out[lo:hi]`` when ``out`` [I, E] float64 is given); present
        [hi-lo, E] bool after the fill; filled = cells the fill supplied in this block.
    """
    check_metric(metric)
    n = history.n
    num = history.n_correct if metric == "accuracy" else history.reward_sum
    num_i, num_e = n.shape
    chunk_rows = chunk_rows or CHUNK_ROWS
    buf = torch.empty(min(num_i, chunk_rows), num_e, dtype=torch.float64) if out is None else out
    for lo in range(0, num_i, chunk_rows):
        hi = min(num_i, lo + chunk_rows)
        n_c = n[lo:hi]
        present = n_c > 0
        v = buf[: hi - lo] if out is None else out[lo:hi]
        v.copy_(num[lo:hi])
        v.div_(n_c.clamp_min(1))
        filled = 0
        if num_e > 1:
            fill = present[:, 1:] > present[:, :-1]  # missing at k, present at k + 1
            filled = int(fill.sum())
            if filled:
                # torch.where reads values[:, 1:] before the assignment: one pass, as LIMR's.
                v[:, :-1] = torch.where(fill, v[:, 1:], v[:, :-1])
                present[:, :-1] |= fill
        yield lo, hi, v, present, filled


def _complete(present: torch.Tensor) -> torch.Tensor:
    # an int32 row sum is ~5x faster than .all(dim=1) on bool
    return present.sum(dim=1, dtype=torch.int32) == present.shape[1]


class Curves(NamedTuple):
    """LIM's curves of every prompt of a history, in memory.

    Attributes:
        values: [I, E] float64 r_i^k after one backward fill (0 where still missing).
        complete: [I] bool, True for prompts with a value in every epoch after the fill.
        present: [I, E] bool presence after the fill.
        filled_cells: how many cells the fill supplied.
    """

    values: torch.Tensor
    complete: torch.Tensor
    present: torch.Tensor
    filled_cells: int


def prepare_curves(history: HistoryLike, metric: str = "accuracy") -> Curves:
    """All of :func:`curve_chunks` in memory (plots, the curriculum, ``missing="mask"``)."""
    num_i, num_e = history.n.shape
    values = torch.empty(num_i, num_e, dtype=torch.float64)
    present_all = torch.empty(num_i, num_e, dtype=torch.bool)
    filled = 0
    for lo, hi, _, present, k in curve_chunks(history, metric, out=values):
        present_all[lo:hi] = present
        filled += k
    return Curves(values, _complete(present_all), present_all, filled)


def complete_rows(complete: torch.Tensor) -> torch.Tensor | None:
    """Indices of the True rows, or None when every row is True."""
    if bool(complete.all()):
        return None
    return torch.nonzero(complete).squeeze(1)


class CurveStats(NamedTuple):
    """Scores of every prompt plus what the report needs.

    Attributes:
        scores: [I] float64 (meaningful only where ``complete``).
        complete: [I] bool, prompts with every epoch after the fill (the scored ones).
        avg: [E] float64 average curve over the complete prompts.
        filled_cells: cells supplied by the fill.
    """

    scores: torch.Tensor
    complete: torch.Tensor
    avg: torch.Tensor
    filled_cells: int


def average_curve(
    history: HistoryLike, metric: str = "accuracy", out: torch.Tensor | None = None
) -> CurveStats:
    """First pass: r_avg^k over the complete prompts (scores left empty); the curves go to
    ``out`` [I, E] when given."""
    num_i, num_e = history.n.shape
    complete = torch.empty(num_i, dtype=torch.bool)
    total = torch.zeros(num_e, dtype=torch.float64)
    filled = 0
    for lo, hi, v, present, k in curve_chunks(history, metric, out=out):
        c = _complete(present)
        complete[lo:hi] = c
        total += c.to(torch.float64) @ v
        filled += k
    count = int(complete.sum())
    avg = total / count if count else torch.full((num_e,), torch.nan, dtype=torch.float64)
    return CurveStats(torch.empty(0, dtype=torch.float64), complete, avg, filled)


def lim_stats(history: HistoryLike, metric: str = "accuracy") -> CurveStats:
    """LIM (LIMR eq. 2-3) of every prompt:

        s_i = 1 - sum_k (r_i^k - r_avg^k)^2 / sum_k (1 - r_avg^k)^2,

    r_avg the mean curve of the complete prompts. Pass 1 builds the curves and r_avg; pass 2
    the distances, a chunk at a time (storing the curves beats recomputing them by ~15%).
    """
    num_i, num_e = history.n.shape
    values = torch.empty(num_i, num_e, dtype=torch.float64)
    first = average_curve(history, metric, out=values)
    avg = first.avg
    scores = torch.full((num_i,), torch.nan, dtype=torch.float64)
    if not bool(first.complete.any()):
        return first._replace(scores=scores)
    denom = float(((1.0 - avg) ** 2).sum())
    buf = torch.empty(min(num_i, CHUNK_ROWS), num_e, dtype=torch.float64)
    for lo in range(0, num_i, CHUNK_ROWS):
        hi = min(num_i, lo + CHUNK_ROWS)
        b = buf[: hi - lo]
        torch.sub(values[lo:hi], avg, out=b)
        b.square_()
        torch.sum(b, dim=1, out=scores[lo:hi])  # distances for now
    if denom == 0.0:
        # Every prompt is perfect in every epoch (the average is 1): all follow it exactly.
        scores = torch.where(scores == 0, 1.0, -torch.inf).to(torch.float64)
    else:
        scores.div_(denom).neg_().add_(1.0)
    return first._replace(scores=scores)


def row_correlation(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """[I] Pearson correlation of each row of ``values`` [I, E] with ``target`` [E];
    0 where the row or the target is constant (no trend to correlate)."""
    num_i, num_e = values.shape
    t = target.to(values.dtype) - target.to(values.dtype).mean()
    t_norm = float(t.norm())
    if num_i == 0 or num_e < 2 or t_norm == 0.0:
        return values.new_zeros(num_i)
    centred = values - values.mean(dim=1, keepdim=True)
    norm = centred.norm(dim=1)
    cov = centred @ t
    return torch.where(norm > 0, cov / (norm * t_norm).clamp_min(1e-300), 0.0)


def correlation_stats(history: HistoryLike, metric: str, target: torch.Tensor | None) -> CurveStats:
    """Pearson correlation of every curve with ``target`` [E] (None: the average curve)."""
    first = None
    if target is None:
        first = average_curve(history, metric)
        target = first.avg
    num_i = history.n.shape[0]
    scores = torch.empty(num_i, dtype=torch.float64)
    complete = torch.empty(num_i, dtype=torch.bool)
    filled = 0
    for lo, hi, v, present, k in curve_chunks(history, metric):
        scores[lo:hi] = row_correlation(v, target)
        complete[lo:hi] = _complete(present)
        filled += k
    avg = first.avg if first is not None else torch.empty(0, dtype=torch.float64)
    return CurveStats(scores, complete, avg, filled)


def masked_lim_scores(
    values: torch.Tensor, present: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """LIM over the epochs in which each prompt was present (equal to LIM when none is missing).

    r_avg^k is the mean over the prompts present in epoch k; s_i sums only over i's epochs:
    s_i = 1 - sum_{k in K_i} (r_i^k - r_avg^k)^2 / sum_{k in K_i} (1 - r_avg^k)^2.
    Used by the curriculum, whose prompts drop out of later epochs by design.

    Returns:
        scores [I] float64 (nan for a prompt with no epoch), r_avg [E] (nan for an empty epoch).
    """
    w = present.to(values.dtype)
    count = w.sum(dim=0)  # [E]
    avg = (values * w).sum(dim=0) / count  # [E]; nan where no prompt was present
    avg0 = torch.nan_to_num(avg, nan=0.0)
    dist = (((values - avg0) ** 2) * w).sum(dim=1)
    denom = (((1.0 - avg0) ** 2) * w).sum(dim=1)
    scores = 1.0 - dist / denom
    scores = torch.where((denom == 0) & (dist == 0), 1.0, scores)
    scores = torch.where(w.sum(dim=1) == 0, torch.nan, scores)
    return scores, avg


def keep_mask(
    scores: torch.Tensor,
    threshold: float | None,
    size: int | None,
    strict: bool = False,
) -> torch.Tensor:
    """True for the kept prompts: ``scores >= threshold`` (``>`` if strict), or the top ``size``
    (ties broken by the history's order)."""
    if size is not None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        keep = torch.zeros(len(scores), dtype=torch.bool)
        order = torch.argsort(scores, descending=True, stable=True)
        keep[order[:size]] = True
        return keep
    if threshold is None:
        raise ValueError("give a threshold or a size")
    return scores > threshold if strict else scores >= threshold


def resolve_cut(
    name: str, threshold: float | None, size: int | None, default: float | None
) -> tuple[float | None, int | None]:
    """The (threshold, size) a selector applies: exactly one of them, the default threshold if
    neither is given; a clear error if both are, or if neither is and there is no default."""
    if threshold is not None and size is not None:
        raise ValueError(f"selector {name!r}: give a threshold or a size, not both")
    if threshold is None and size is None:
        if default is None:
            raise ValueError(f"selector {name!r} needs a threshold or a size (it has no default)")
        threshold = default
    return threshold, size


def never_solved(history: HistoryLike) -> torch.Tensor:
    """[I] bool: True for prompts with no correct rollout in any epoch."""
    return history.n_correct.sum(dim=1) == 0


def make_selection(
    name: str,
    history: HistoryLike,
    rows: torch.Tensor | None,
    scores: torch.Tensor,
    threshold: float | None,
    size: int | None,
    strict: bool = False,
    **info: Any,
) -> Selection:
    """Apply the cut and build the :class:`Selection` with the usual report fields.

    ``rows`` indexes the scored prompts in ``history.ids`` (None = all of them); ``history`` is
    the view that was scored (its ``epochs``), ``info`` adds the selector's own fields (the epoch
    report of :func:`scoring_view` among them). ``unscored`` = prompts of the history without a
    score.
    """
    keep = keep_mask(scores, threshold, size, strict)
    ids = ids_of(history, rows)
    unsolved = never_solved(history)
    if rows is not None:
        unsolved = unsolved[rows]
    info = {
        "selector": name,
        "n_prompts": len(history.ids),
        "n_scored": len(ids),
        "unscored": len(history.ids) - len(ids),
        "n_kept": int(keep.sum()),
        "never_solved_kept": int((unsolved & keep).sum()),
        "epochs": int(history.n.shape[1]),
        "size": size,
        "comparison": ">" if strict else ">=",
        **info,
    }
    return Selection(
        ids=ids,
        scores=scores,
        keep=keep,
        threshold=None if size is not None else threshold,
        info=info,
    )
