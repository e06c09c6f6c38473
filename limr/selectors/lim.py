"""LIM, Learning Impact Measurement (LIMR, arXiv 2502.11886, section 3.2), and the correlation
variant that the LIMR blog post's sketch computed (``pearson``), kept under its own name."""

from __future__ import annotations

import torch

from limr.registry import register_selector
from limr.selectors.curves import (
    check_metric,
    complete_curves,
    epoch_values,
    fill_backward_once,
    lim_scores,
    make_selection,
    masked_lim_scores,
    resolve_cut,
)
from limr.types import HistoryLike, Selection


@register_selector("lim")
class LIM:
    """Keep the prompts whose reward curve follows the average curve of all prompts.

    1. r_i^k: accuracy of prompt i in epoch k (``metric="reward"``: its mean raw reward).
    2. A missing r_i^k takes r_i^(k+1) (one backward pass); prompts still missing are dropped
       (``missing="mask"`` instead scores each prompt over the epochs it has).
    3. r_avg^k = mean over the kept prompts.
    4. s_i = 1 - sum_k (r_i^k - r_avg^k)^2 / sum_k (1 - r_avg^k)^2  (1 = follows the average).
    5. Keep s_i >= threshold (default 0.6; the paper writes >, its code >=: ``strict=True``
       for >), or the top ``size``.

    ``Selection.info`` reports the metric, the average curve and how many kept prompts were never
    solved: a never-solved prompt scores 1 - sum r_avg^2 / sum (1 - r_avg)^2, which passes 0.6
    when the pool's mean accuracy is low (~0.2).
    """

    kind = "offline"
    default_threshold = 0.6

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        strict: bool = False,
        missing: str = "drop",
    ) -> None:
        self.threshold, self.size = resolve_cut("lim", threshold, size, self.default_threshold)
        self.metric = check_metric(metric)
        self.strict = strict
        if missing not in ("drop", "mask"):
            raise ValueError(f"lim: missing must be 'drop' (the paper) or 'mask', got {missing!r}")
        self.missing = missing

    def _score(self, history: HistoryLike):
        if self.missing == "drop":
            rows, values, counts = complete_curves(history, self.metric)
            scores, avg = lim_scores(values)
            return rows, scores, avg, counts
        values, present, n_filled = fill_backward_once(*epoch_values(history, self.metric))
        scores, avg = masked_lim_scores(values, present)
        ok = ~torch.isnan(scores)
        rows = None if bool(ok.all()) else torch.nonzero(ok).squeeze(1)
        if rows is not None:
            scores = scores[rows]
        counts = {"filled_cells": n_filled, "dropped_missing": int((~ok).sum())}
        return rows, scores, avg, counts

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        """The scored ids and their LIM scores [I'] float64."""
        rows, scores, _, _ = self._score(history)
        ids = list(history.ids) if rows is None else [history.ids[j] for j in rows.tolist()]
        return ids, scores

    def select(self, history: HistoryLike) -> Selection:
        rows, scores, avg, counts = self._score(history)
        return make_selection(
            "lim",
            history,
            rows,
            scores,
            self.threshold,
            self.size,
            self.strict,
            metric=self.metric,
            missing=self.missing,
            avg_curve=avg.tolist(),
            **counts,
        )


@register_selector("pearson")
class PearsonToAverage:
    """Pearson correlation of a prompt's curve with the average curve (the LIMR blog's sketch).

    Not LIM (LIM is a normalised squared distance, see ``lim``): offered under its own name.
    Curves as LIM's (one backward fill, incomplete prompts dropped); a flat curve scores 0.
    Default threshold 0.6.
    """

    kind = "offline"
    default_threshold = 0.6

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
    ) -> None:
        self.threshold, self.size = resolve_cut("pearson", threshold, size, self.default_threshold)
        self.metric = check_metric(metric)

    def _score(self, history: HistoryLike):
        rows, values, counts = complete_curves(history, self.metric)
        avg = values.mean(dim=0) if len(values) else values.new_zeros(values.shape[1])
        return rows, _pearson_rows(values, avg), avg, counts

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        rows, scores, _, _ = self._score(history)
        ids = list(history.ids) if rows is None else [history.ids[j] for j in rows.tolist()]
        return ids, scores

    def select(self, history: HistoryLike) -> Selection:
        rows, scores, avg, counts = self._score(history)
        return make_selection(
            "pearson",
            history,
            rows,
            scores,
            self.threshold,
            self.size,
            metric=self.metric,
            avg_curve=avg.tolist(),
            **counts,
        )


def _pearson_rows(values: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of each row of ``values`` [I, E] with ``target`` [E]; 0 if either is
    constant."""
    t = target - target.mean()
    t_norm = float(t.norm())
    if values.shape[0] == 0 or t_norm == 0.0:
        return values.new_zeros(values.shape[0])
    centred = values - values.mean(dim=1, keepdim=True)
    norm = centred.norm(dim=1)
    cov = centred @ t
    return torch.where(norm > 0, cov / (norm * t_norm).clamp_min(1e-300), 0.0)
