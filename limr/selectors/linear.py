"""LINEAR: the paper's baseline that favours "steady improvement across epochs" (LIMR, section
4.2; no formula or code was published, so limr defines it here).

Definition: the Pearson correlation between a prompt's curve r_i^k and the epoch index k,

    s_i = sum_k (r_i^k - m_i)(k - m) / sqrt(sum_k (r_i^k - m_i)^2 * sum_k (k - m)^2),
    m_i = mean_k r_i^k,  m = (E - 1) / 2,

with LIM's curves (one backward fill, prompts still missing an epoch dropped, whole epochs only:
a partly recorded last epoch is left out) and s_i = 0 for a flat curve. Keep s_i >= 0.7 (the
paper's theta).

Why this one: it is the textbook measure of "consistency of a steady trend" (the sign of the
least-squares slope times the square root of its R^2), so it rewards steadiness and direction,
not size: a prompt that rises 0 -> 0.3 smoothly outranks one that jumps 0 -> 1 once and wobbles.
It lies in [-1, 1] whatever the metric (accuracy or raw reward), so the paper's 0.7 means "strong
rising trend" (R^2 >= 0.49) on any scale; a raw slope would need a scale-dependent threshold and
R^2 alone would also keep steadily falling prompts.
"""

from __future__ import annotations

import torch

from limr.registry import register_selector
from limr.selectors.curves import (
    check_metric,
    complete_rows,
    correlation_stats,
    ids_of,
    make_selection,
    one_thread,
    resolve_cut,
    row_correlation,
    scoring_view,
)
from limr.types import HistoryLike, Selection


def trend_correlation(values: torch.Tensor) -> torch.Tensor:
    """[I] Pearson correlation of each curve (row of ``values`` [I, E]) with k = 0..E-1."""
    return row_correlation(values, torch.arange(values.shape[1], dtype=values.dtype))


@register_selector("linear")
class Linear:
    """Keep prompts whose curve rises steadily: Pearson(r_i^k, k) >= threshold (default 0.7)."""

    kind = "offline"
    default_threshold = 0.7

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        whole_epochs: bool = True,
    ) -> None:
        self.threshold, self.size = resolve_cut("linear", threshold, size, self.default_threshold)
        self.metric = check_metric(metric)
        self.whole_epochs = whole_epochs

    @one_thread()
    def _score(self, history: HistoryLike):
        h, epochs = scoring_view(history, self.whole_epochs)
        num_e = h.n.shape[1]
        stats = correlation_stats(h, self.metric, torch.arange(num_e, dtype=torch.float64))
        rows = complete_rows(stats.complete)
        scores = stats.scores if rows is None else stats.scores[rows]
        dropped = 0 if rows is None else len(stats.complete) - len(rows)
        counts = {"filled_cells": stats.filled_cells, "dropped_missing": dropped}
        return h, rows, scores, {**counts, **epochs}

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        h, rows, scores, _ = self._score(history)
        return ids_of(h, rows), scores

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        h, rows, scores, counts = self._score(history)
        return make_selection(
            "linear",
            h,
            rows,
            scores,
            self.threshold,
            self.size,
            metric=self.metric,
            definition="pearson(r_i^k, k)",
            **counts,
        )
