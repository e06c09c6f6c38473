"""Selectors from the spread and the level of a prompt's success rate.

- ``variance``: historical variance of r_i^k across epochs, the data selection of 1-shot RLVR
  (Wang et al., arXiv 2504.20571, section 2.2: rank examples by the variance of their training
  accuracy over epochs). Population variance (ddof 0) over the epochs in which the prompt was
  rolled out (no fill: a variance needs no aligned epochs); prompts with none are unscored.
- ``learnability``: p (1 - p), p the prompt's success rate (Foster & Foerster, "Learning to
  Reason at the Frontier of Learnability", arXiv 2502.12272): largest for p = 0.5, 0 for
  prompts always or never solved. p pools the rollouts of the last ``window`` epochs (None = all).
  The default threshold 0.16 keeps 0.2 <= p <= 0.8 (PRIME's band).

Both score the whole epochs of a history only, like LIM (``whole_epochs=False``: every epoch).
"""

from __future__ import annotations

import torch

from limr.registry import register_selector
from limr.selectors.curves import (
    CHUNK_ROWS,
    check_metric,
    ids_of,
    make_selection,
    one_thread,
    resolve_cut,
    scoring_view,
)
from limr.types import HistoryLike, Selection


def masked_variance(values: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    """[I] population variance of each row over its present cells (nan if none)."""
    w = present.to(values.dtype)
    count = w.sum(dim=1)
    mean = (values * w).sum(dim=1) / count
    return (((values - mean.unsqueeze(1)) ** 2) * w).sum(dim=1) / count


@register_selector("variance")
class Variance:
    """Keep the prompts whose per-epoch accuracy varied most (needs a threshold or a size)."""

    kind = "offline"
    default_threshold = None

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        whole_epochs: bool = True,
    ) -> None:
        self.threshold, self.size = resolve_cut("variance", threshold, size, None)
        self.metric = check_metric(metric)
        self.whole_epochs = whole_epochs

    @one_thread()
    def _score(self, history: HistoryLike):
        h, epochs = scoring_view(history, self.whole_epochs)
        rows, scores = self._variance(h)
        return h, rows, scores, epochs

    def _variance(self, history: HistoryLike):
        n = history.n
        num = history.n_correct if self.metric == "accuracy" else history.reward_sum
        var = torch.empty(n.shape[0], dtype=torch.float64)
        for lo in range(0, n.shape[0], CHUNK_ROWS):  # chunks: see curves.CHUNK_ROWS
            hi = min(n.shape[0], lo + CHUNK_ROWS)
            n_c = n[lo:hi]
            values = num[lo:hi].to(torch.float64) / n_c.clamp_min(1)
            var[lo:hi] = masked_variance(values, n_c > 0)
        ok = ~torch.isnan(var)
        if bool(ok.all()):
            return None, var
        rows = torch.nonzero(ok).squeeze(1)
        return rows, var[rows]

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        h, rows, scores, _ = self._score(history)
        return ids_of(h, rows), scores

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        h, rows, scores, epochs = self._score(history)
        return make_selection(
            "variance", h, rows, scores, self.threshold, self.size, metric=self.metric, **epochs
        )


@register_selector("learnability")
class Learnability:
    """Keep prompts with p (1 - p) >= threshold (default 0.16, i.e. 0.2 <= p <= 0.8), or the top N.

    Args:
        window: pool the last this many epochs of the history to estimate p; None = all epochs.
    ``metric`` is ignored: p is a success rate, always accuracy.
    """

    kind = "offline"
    default_threshold = 0.16

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        window: int | None = None,
        whole_epochs: bool = True,
    ) -> None:
        self.threshold, self.size = resolve_cut(
            "learnability", threshold, size, self.default_threshold
        )
        check_metric(metric)
        if window is not None and window < 1:
            raise ValueError(f"learnability: window must be >= 1 or None, got {window}")
        self.window = window
        self.whole_epochs = whole_epochs

    @one_thread()
    def _score(self, history: HistoryLike):
        h, epochs = scoring_view(history, self.whole_epochs)
        rows, scores = self._learnability(h)
        return h, rows, scores, epochs

    def _learnability(self, history: HistoryLike):
        n, nc = history.n, history.n_correct
        if self.window is not None:
            n, nc = n[:, -self.window :], nc[:, -self.window :]
        total = n.sum(dim=1)
        p = nc.sum(dim=1).to(torch.float64) / total.clamp_min(1).to(torch.float64)
        scores = p * (1.0 - p)
        ok = total > 0
        if bool(ok.all()):
            return None, scores
        rows = torch.nonzero(ok).squeeze(1)
        return rows, scores[rows]

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        h, rows, scores, _ = self._score(history)
        return ids_of(h, rows), scores

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        h, rows, scores, epochs = self._score(history)
        return make_selection(
            "learnability",
            h,
            rows,
            scores,
            self.threshold,
            self.size,
            metric="accuracy",
            window=self.window,
            **epochs,
        )
