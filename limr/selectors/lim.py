"""LIM, Learning Impact Measurement (LIMR, arXiv 2502.11886, section 3.2), and the correlation
variant that the LIMR blog post's sketch computed (``pearson``), kept under its own name."""

from __future__ import annotations

import torch

from limr.registry import register_selector
from limr.selectors.curves import (
    CurveStats,
    check_metric,
    complete_rows,
    correlation_stats,
    ids_of,
    lim_stats,
    make_selection,
    masked_lim_scores,
    one_thread,
    prepare_curves,
    resolve_cut,
    scoring_view,
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

    Only whole epochs are scored (a partly recorded last epoch is left out, as LIMR's script
    does; ``whole_epochs=False`` keeps it): see :func:`limr.history.whole_epochs`.

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
        whole_epochs: bool = True,
    ) -> None:
        self.threshold, self.size = resolve_cut("lim", threshold, size, self.default_threshold)
        self.metric = check_metric(metric)
        self.strict = strict
        self.whole_epochs = whole_epochs
        if missing not in ("drop", "mask"):
            raise ValueError(f"lim: missing must be 'drop' (the paper) or 'mask', got {missing!r}")
        self.missing = missing

    @one_thread()
    def _score(self, history: HistoryLike):
        h, epochs = scoring_view(history, self.whole_epochs)
        if self.missing == "drop":
            rows, scores, avg, counts = _scored(lim_stats(h, self.metric))
            return h, rows, scores, avg, {**counts, **epochs}
        curves = prepare_curves(h, self.metric)
        scores, avg = masked_lim_scores(curves.values, curves.present)
        ok = ~torch.isnan(scores)
        rows = complete_rows(ok)
        if rows is not None:
            scores = scores[rows]
        counts = {"filled_cells": curves.filled_cells, "dropped_missing": int((~ok).sum())}
        return h, rows, scores, avg, {**counts, **epochs}

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        """The scored ids and their LIM scores [I'] float64."""
        h, rows, scores, _, _ = self._score(history)
        return ids_of(h, rows), scores

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        h, rows, scores, avg, counts = self._score(history)
        return make_selection(
            "lim",
            h,
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
    Curves as LIM's (one backward fill, incomplete prompts dropped, whole epochs only); a flat
    curve scores 0. Default threshold 0.6.
    """

    kind = "offline"
    default_threshold = 0.6

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        whole_epochs: bool = True,
    ) -> None:
        self.threshold, self.size = resolve_cut("pearson", threshold, size, self.default_threshold)
        self.metric = check_metric(metric)
        self.whole_epochs = whole_epochs

    @one_thread()
    def _score(self, history: HistoryLike):
        h, epochs = scoring_view(history, self.whole_epochs)
        rows, scores, avg, counts = _scored(correlation_stats(h, self.metric, None))
        return h, rows, scores, avg, {**counts, **epochs}

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        h, rows, scores, _, _ = self._score(history)
        return ids_of(h, rows), scores

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        h, rows, scores, avg, counts = self._score(history)
        return make_selection(
            "pearson",
            h,
            rows,
            scores,
            self.threshold,
            self.size,
            metric=self.metric,
            avg_curve=avg.tolist(),
            **counts,
        )


def _scored(stats: CurveStats):
    """(rows, scores of the complete prompts, r_avg, counts) from whole-history stats."""
    rows = complete_rows(stats.complete)
    scores = stats.scores if rows is None else stats.scores[rows]
    dropped = 0 if rows is None else len(stats.complete) - len(rows)
    return rows, scores, stats.avg, {"filled_cells": stats.filled_cells, "dropped_missing": dropped}
