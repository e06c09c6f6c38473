"""Reward curves and the arithmetic every curve-based selector shares (vectorised over [I, E]).

r_i^k is prompt i's value in epoch k: its accuracy (fraction of rollouts that were correct) or,
with ``metric="reward"``, its mean raw reward. A cell with no rollouts is missing.
"""

from __future__ import annotations

from typing import Any

import torch

from limr.types import HistoryLike, Selection

METRICS = ("accuracy", "reward")


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


def complete_curves(
    history: HistoryLike, metric: str = "accuracy"
) -> tuple[torch.Tensor | None, torch.Tensor, dict[str, int]]:
    """LIM's curves: fill once backward, then drop the prompts that still miss an epoch.

    Returns:
        rows: [I'] long indices of the kept prompts into ``history.ids``, or None if all kept.
        values: [I', E] float64 curves of the kept prompts.
        counts: {"filled_cells", "dropped_missing"}.
    """
    values, present, n_filled = fill_backward_once(*epoch_values(history, metric))
    complete = present.all(dim=1)
    if bool(complete.all()):
        return None, values, {"filled_cells": n_filled, "dropped_missing": 0}
    rows = torch.nonzero(complete).squeeze(1)
    return (
        rows,
        values[rows],
        {"filled_cells": n_filled, "dropped_missing": int(len(complete) - len(rows))},
    )


def lim_scores(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LIM (LIMR eq. 2-3): s_i = 1 - sum_k (r_i^k - r_avg^k)^2 / sum_k (1 - r_avg^k)^2.

    Args:
        values: [I, E] complete curves.
    Returns:
        scores [I] float64 and the average curve r_avg [E] (mean over the I prompts).
    """
    if values.shape[0] == 0:
        return values.new_zeros(0), values.new_zeros(values.shape[1])
    avg = values.mean(dim=0)  # [E]
    denom = float(((1.0 - avg) ** 2).sum())
    sq = values - avg
    sq.square_()
    dist = sq.sum(dim=1)  # [I]
    if denom == 0.0:
        # Every prompt is perfect in every epoch (the average is 1): all follow it exactly.
        return torch.where(dist == 0, 1.0, -torch.inf).to(values.dtype), avg
    return 1.0 - dist / denom, avg


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

    ``rows`` indexes the scored prompts in ``history.ids`` (None = all of them).
    """
    keep = keep_mask(scores, threshold, size, strict)
    ids = list(history.ids) if rows is None else [history.ids[j] for j in rows.tolist()]
    unsolved = never_solved(history)
    if rows is not None:
        unsolved = unsolved[rows]
    info = {
        "selector": name,
        "n_prompts": len(history.ids),
        "n_scored": len(ids),
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
