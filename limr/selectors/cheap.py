"""Cheap LIM (issue 11): LIM scores from a fraction of the FULL run's rollouts.

- ``lim_prefix``: LIM over the first k whole epochs of a FULL run (``epochs=k``, or
  ``fraction=f`` for the first ceil(f * E) of its E whole epochs; default 0.25). Training could
  stop after k epochs: the rollouts of the later ones are the saving.
- :func:`subsample_lim_scores`: LIM from a FULL run over a random fraction of the pool, extended to
  the rest by a predictor (documented there).

Every cheap selector reports its cost in ``Selection.info``: ``rollouts_used`` (rollouts of
the part of the history it scored), ``rollouts_total`` (rollouts of the whole epochs of the
history it was given, what full LIM scores) and ``cost_fraction`` = used / total; also
``epochs_used`` and ``epochs_total``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from limr.registry import register_selector
from limr.selectors.curves import (
    check_metric,
    epoch_values,
    make_selection,
    one_thread,
    resolve_cut,
    scoring_view,
)
from limr.selectors.lim import LIM
from limr.types import HistoryLike, Selection


def rollouts(history: HistoryLike) -> int:
    """Rollouts recorded in a history (the sum of its ``n``)."""
    return int(history.n.sum())


def prefix_epochs(num_epochs: int, epochs: int | None, fraction: float | None) -> int:
    """How many of ``num_epochs`` whole epochs a prefix keeps: ``epochs`` (cut to
    ``num_epochs``), or ceil(``fraction`` * num_epochs), at least 1."""
    if epochs is not None:
        return max(1, min(int(epochs), num_epochs))
    assert fraction is not None
    # round first: 0.25 * 20 must give 5, not ceil(5.000000000000001) = 6
    return max(1, min(num_epochs, math.ceil(round(fraction * num_epochs, 9))))


@register_selector("lim_prefix")
class LIMPrefix:
    """LIM over the first epochs of a FULL run: what the run would have cost stopped early.

    ``epochs=k`` scores the first k whole epochs; ``fraction=f`` (default 0.25 when neither is
    given) the first ceil(f * E) of the E whole epochs. Each prompt's LIM is computed against
    the average curve of those epochs only (LIM as ``lim``: one backward fill, prompts still
    missing an epoch dropped). Threshold 0.6 as LIM, or ``size``.

    ``Selection.info`` adds the cost: ``epochs_used``, ``epochs_total``, ``rollouts_used``,
    ``rollouts_total``, ``cost_fraction`` (rollouts_used / rollouts_total).
    """

    kind = "offline"
    default_threshold = 0.6

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        epochs: int | None = None,
        fraction: float | None = None,
        strict: bool = False,
        missing: str = "drop",
        whole_epochs: bool = True,
    ) -> None:
        self.threshold, self.size = resolve_cut(
            "lim_prefix", threshold, size, self.default_threshold
        )
        self.metric = check_metric(metric)
        if epochs is not None and fraction is not None:
            raise ValueError("give epochs or fraction, not both")
        if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
            raise ValueError(f"epochs must be a whole number >= 1, got {epochs!r}")
        if fraction is None and epochs is None:
            fraction = 0.25
        if fraction is not None and not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        self.epochs, self.fraction = epochs, None if fraction is None else float(fraction)
        self.strict = strict
        self.whole_epochs = whole_epochs
        # the prefix is made of whole epochs already: the inner LIM keeps them all
        self._lim = LIM(threshold=0.0, metric=metric, missing=missing, whole_epochs=False)

    def _score(self, history: HistoryLike):
        h, epochs_info = scoring_view(history, self.whole_epochs)
        num_e = int(h.n.shape[1])
        if num_e == 0:
            raise ValueError("lim_prefix: the history has no epoch")
        k = prefix_epochs(num_e, self.epochs, self.fraction)
        view = h.head(k) if k < num_e else h
        used, total = rollouts(view), rollouts(h)
        sel = self._lim.select(view)
        cost = {
            "epochs_used": k,
            "epochs_total": num_e,
            "rollouts_used": used,
            "rollouts_total": total,
            "cost_fraction": used / total if total else math.nan,
            "fraction": self.fraction,
        }
        return view, sel, {**epochs_info, **cost}

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        _, sel, _ = self._score(history)
        return sel.ids, sel.scores

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        view, sel, cost = self._score(history)
        index = {pid: j for j, pid in enumerate(view.ids)}
        rows = None
        if len(sel.ids) != len(view.ids):
            rows = torch.tensor([index[p] for p in sel.ids], dtype=torch.long)
        keys = ("metric", "missing", "avg_curve", "filled_cells", "dropped_missing")
        return make_selection(
            "lim_prefix",
            view,
            rows,
            sel.scores,
            self.threshold,
            self.size,
            self.strict,
            **{k: sel.info[k] for k in keys if k in sel.info},
            **cost,
        )


# ---------------------------------------------------------------------------------------------
# subsample: LIM on a random part of the pool, a predictor for the rest


def extend_by_predictor(
    ids: list[str],
    trained: dict[str, float],
    base: np.ndarray,
    features: dict[str, Any] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Scores for every prompt of ``ids``: the measured LIM of the ``trained`` ones ({id: LIM};
    NaN entries count as unmeasured), a predicted one for the rest.

    The predictor is a least-squares fit (with an intercept) of the measured scores on features
    that cost no training: ``base`` (each prompt's pass rate under the base model, [I] in ``ids``
    order), its square, and any extra ``features`` ({name: values in ``ids`` order}, e.g. the
    MATH level). LIM is close to a quadratic of the base pass rate (prompts that start near the
    average and rise with it score highest), which is what this exploits.

    Returns (scores [I] float64, info with ``fit_r2``, the fit's R^2 on the measured prompts, and
    ``coef``).
    """
    num_i = len(ids)
    base = np.asarray(base, dtype=np.float64)
    if base.shape != (num_i,):
        raise ValueError(f"base pass rates: {base.shape[0]} values for {num_i} prompts")
    cols = [np.ones(num_i), base, base**2]
    names = ["intercept", "base", "base^2"]
    for name, vals in (features or {}).items():
        arr = np.asarray(vals, dtype=np.float64)
        if arr.shape != (num_i,):
            raise ValueError(f"feature {name!r}: {arr.shape[0]} values for {num_i} prompts")
        cols.append(arr)
        names.append(name)
    x = np.stack(cols, axis=1)
    index = {pid: j for j, pid in enumerate(ids)}
    unknown = [p for p in trained if p not in index]
    if unknown:
        raise ValueError(f"{len(unknown)} trained prompts are not in the pool, e.g. {unknown[:3]}")
    rows = np.array([index[p] for p in trained], dtype=np.int64)
    y = np.array(list(trained.values()), dtype=np.float64)
    ok = np.isfinite(y)
    rows, y = rows[ok], y[ok]
    if len(y) < 2:
        raise ValueError(f"the predictor needs 2 or more measured LIM scores, got {len(y)}")
    coef, *_ = np.linalg.lstsq(x[rows], y, rcond=None)
    pred = x @ coef
    resid = y - pred[rows]
    var = float(((y - y.mean()) ** 2).sum())
    scores = pred.copy()
    scores[rows] = y  # a measured prompt keeps its LIM
    info = {
        "fit_r2": 1.0 - float((resid**2).sum()) / var if var > 0 else math.nan,
        "coef": dict(zip(names, coef.tolist())),
        "n_measured": len(y),
        "n_predicted": num_i - len(y),
    }
    return scores, info


def subsample_lim_scores(
    history: HistoryLike,
    fraction: float,
    seed: int = 42,
    metric: str = "accuracy",
    base_epoch: int = 0,
    features: dict[str, list[float]] | None = None,
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """A *simulation*, on one history, of LIM from a run on a random ``fraction`` of the pool.

    1. A seeded random ``fraction`` of the prompts (at least 2) is the *trained* part: their
       curves are scored by LIM against their own average curve (``lim`` on that sub-history).
       The cost is the rollouts of that part (``rollouts_used``) over the whole pool's.
    2. The other prompts get a score from :func:`extend_by_predictor`, with their accuracy in
       epoch ``base_epoch`` (default 0, the base model's pass rate) and any extra ``features``.

    On a FULL run's history the sampled curves are those of a policy trained on the whole pool,
    not on the fraction: the pipeline's ``lim_subsample`` arm runs the fraction for real
    (:mod:`limr.cheap_study`); this is the cheap check for a history one already has.

    Returns (ids in history order, scores [I] float64, info with ``trained`` (ids), ``fit_r2``,
    ``coef``, ``rollouts_used``, ``rollouts_total``, ``cost_fraction``).
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
    h, _ = scoring_view(history, True)
    ids = list(h.ids)
    num_i = len(ids)
    if num_i < 2:
        raise ValueError("subsample: needs at least 2 prompts")
    m = max(2, min(num_i, round(fraction * num_i)))
    gen = torch.Generator().manual_seed(seed)
    trained = torch.sort(torch.randperm(num_i, generator=gen)[:m]).values
    from limr.history import HistoryArrays

    sub = HistoryArrays(
        ids=[ids[j] for j in trained.tolist()],
        n=h.n[trained],
        n_correct=h.n_correct[trained],
        reward_sum=h.reward_sum[trained],
        last_epoch_complete=True,
    )
    sub_ids, sub_scores = LIM(threshold=0.0, metric=metric, whole_epochs=False).score(sub)
    values, _ = epoch_values(h, metric)
    if not 0 <= base_epoch < values.shape[1]:
        raise ValueError(f"base_epoch {base_epoch} is not an epoch of the history")
    measured = dict(zip(sub_ids, sub_scores.tolist()))
    scores, info = extend_by_predictor(ids, measured, values[:, base_epoch].numpy(), features)
    used = rollouts(sub)
    total = rollouts(h)
    info.update(
        trained=[ids[j] for j in trained.tolist()],
        rollouts_used=used,
        rollouts_total=total,
        cost_fraction=used / total if total else math.nan,
    )
    return ids, scores, info


def pass_rates(history: HistoryLike, epoch: int = 0) -> dict[str, float]:
    """{id: accuracy in ``epoch``} of a history (a probe's epoch 0 is the base's pass rate);
    prompts without rollouts that epoch are left out."""
    values, present = epoch_values(history, "accuracy")
    if not 0 <= epoch < values.shape[1]:
        raise ValueError(f"epoch {epoch} is not an epoch of the history ({values.shape[1]})")
    col, ok = values[:, epoch].tolist(), present[:, epoch].tolist()
    return {p: v for p, v, k in zip(history.ids, col, ok) if k}


@register_selector("lim_subsample")
class LIMSubsample:
    """LIM on a part of the pool, predicted for the rest from the base pass rate by a quadratic
    least-squares fit (:func:`extend_by_predictor`).

    Two uses:

    - ``base_history=None`` (default): a simulation on one history: a random ``fraction``
      (default 0.25) of its prompts is scored by LIM, the rest predicted from their accuracy in
      epoch ``base_epoch`` (:func:`subsample_lim_scores`);
    - ``base_history=PATH`` (a reward history of the base model over the whole pool, e.g. from
      ``limr probe``): the history given is a real run on part of the pool; its prompts are
      scored by LIM, every other prompt of ``base_history`` predicted from its pass rate there
      (and from ``features``, {name: {id: value}}, e.g. the level, when given).

    Threshold 0.6 as LIM, or ``size``; ``Selection.info`` has the cost (``rollouts_used``,
    ``rollouts_total``, ``cost_fraction``; with a base history the total is unknown here and the
    used rollouts count the run's and the base history's of the predicted prompts) and
    ``fit_r2``.
    """

    kind = "offline"
    default_threshold = 0.6

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        fraction: float = 0.25,
        base_epoch: int = 0,
        base_history: str | None = None,
        features: dict[str, dict[str, float]] | None = None,
        strict: bool = False,
    ) -> None:
        self.threshold, self.size = resolve_cut(
            "lim_subsample", threshold, size, self.default_threshold
        )
        self.metric = check_metric(metric)
        if not 0.0 < float(fraction) <= 1.0:
            raise ValueError(f"fraction must be in (0, 1], got {fraction!r}")
        self.fraction, self.seed, self.base_epoch, self.strict = (
            float(fraction),
            seed,
            base_epoch,
            strict,
        )
        self.base_history = base_history
        self.features = features

    def _score(self, history: HistoryLike):
        """(the history the rows index, rows or None, scores, info)."""
        h, epochs_info = scoring_view(history, True)
        if self.base_history is None:
            ids, scores, info = subsample_lim_scores(
                h, self.fraction, self.seed, self.metric, self.base_epoch
            )
            return h, None, torch.from_numpy(scores), {**epochs_info, **info}
        from limr.history import RewardHistory

        base = RewardHistory.load(self.base_history)
        rates = pass_rates(base, self.base_epoch)
        ids, scores, info = subsample_scores(h, rates, self.metric, self.features)
        n_base = dict(zip(base.ids, base.n[:, self.base_epoch].tolist()))
        trained = set(h.ids)
        used = rollouts(h) + sum(int(n_base[p]) for p in ids if p not in trained)
        info.update(rollouts_used=used, rollouts_total=None, cost_fraction=math.nan)
        info["epochs"] = int(h.n.shape[1])  # the run's epochs scored, not the base history's
        rows = None
        if len(ids) != len(base.ids):
            index = {p: j for j, p in enumerate(base.ids)}
            rows = torch.tensor([index[p] for p in ids], dtype=torch.long)
        return base, rows, torch.from_numpy(scores), {**epochs_info, **info}

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        view, rows, scores, _ = self._score(history)
        ids = list(view.ids) if rows is None else [view.ids[j] for j in rows.tolist()]
        return ids, scores

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        view, rows, scores, info = self._score(history)
        info = {k: v for k, v in info.items() if k != "trained"}
        return make_selection(
            "lim_subsample",
            view,
            rows,
            scores,
            self.threshold,
            self.size,
            self.strict,
            metric=self.metric,
            fraction=self.fraction,
            **info,
        )


def subsample_scores(
    history: HistoryLike,
    base_rates: dict[str, float],
    metric: str = "accuracy",
    features: dict[str, dict[str, float]] | None = None,
) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """LIM of a real run on part of the pool (``history``), extended to every prompt of
    ``base_rates`` ({id: base pass rate}: the pool) by :func:`extend_by_predictor`.

    ``features``: {name: {id: value}} over the pool (e.g. the level). Returns (pool ids in
    ``base_rates`` order, scores [I] float64, info).
    """
    h, _ = scoring_view(history, True)
    ids = list(base_rates)
    sub_ids, sub_scores = LIM(threshold=0.0, metric=metric, whole_epochs=False).score(h)
    measured = dict(zip(sub_ids, sub_scores.tolist()))
    cols = {name: [vals[p] for p in ids] for name, vals in (features or {}).items()}
    scores, info = extend_by_predictor(ids, measured, np.array([base_rates[p] for p in ids]), cols)
    return ids, scores, info
