"""LINEAR: the paper's baseline that favours "steady improvement across epochs" (LIMR, section
4.2; no formula or code was published, so limr defines it here).

Definition: the Pearson correlation between a prompt's curve r_i^k and the epoch index k,

    s_i = sum_k (r_i^k - m_i)(k - m) / sqrt(sum_k (r_i^k - m_i)^2 * sum_k (k - m)^2),
    m_i = mean_k r_i^k,  m = (E - 1) / 2,

with LIM's curves (one backward fill, prompts still missing an epoch dropped) and s_i = 0 for a
flat curve. Keep s_i >= 0.7 (the paper's theta).

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
from limr.selectors.curves import check_metric, complete_curves, make_selection, resolve_cut
from limr.types import HistoryLike, Selection


def trend_correlation(values: torch.Tensor) -> torch.Tensor:
    """[I] Pearson correlation of each curve (row of ``values`` [I, E]) with k = 0..E-1."""
    num_i, num_e = values.shape
    if num_e < 2 or num_i == 0:
        return values.new_zeros(num_i)
    k = torch.arange(num_e, dtype=values.dtype) - (num_e - 1) / 2  # centred epoch index [E]
    centred = values - values.mean(dim=1, keepdim=True)
    norm = centred.norm(dim=1)  # [I]
    # Because k is centred, sum_k (r - mean r) k = sum_k r k; use the centred values anyway.
    cov = centred @ k
    return torch.where(norm > 0, cov / (norm * float(k.norm())).clamp_min(1e-300), 0.0)


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
    ) -> None:
        self.threshold, self.size = resolve_cut("linear", threshold, size, self.default_threshold)
        self.metric = check_metric(metric)

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        rows, values, _ = complete_curves(history, self.metric)
        ids = list(history.ids) if rows is None else [history.ids[j] for j in rows.tolist()]
        return ids, trend_correlation(values)

    def select(self, history: HistoryLike) -> Selection:
        rows, values, counts = complete_curves(history, self.metric)
        return make_selection(
            "linear",
            history,
            rows,
            trend_correlation(values),
            self.threshold,
            self.size,
            metric=self.metric,
            definition="pearson(r_i^k, k)",
            **counts,
        )
