"""Cheap LIM estimators (issue 11) on hand-made histories with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from limr.history import RewardHistory
from limr.registry import SELECTORS
from limr.selectors.cheap import prefix_epochs, subsample_lim_scores

CURVES = {"a": [0, 0.5, 1, 1], "b": [0.5, 1, 1, 1], "c": [0.5, 0.5, 0, 0]}


def test_prefix_epochs_rounding():
    assert prefix_epochs(20, None, 0.25) == 5
    assert prefix_epochs(21, None, 0.25) == 6  # ceil(5.25)
    assert prefix_epochs(4, None, 0.1) == 1
    assert prefix_epochs(4, 9, None) == 4


def test_lim_prefix_two_epochs_is_lim_of_those_epochs(make_history):
    # The first two epochs are test_lim's hand-computed example: r_avg = [1/3, 2/3],
    # scores a = b = 0.75, c = 0.9; 2 rollouts per cell: 12 of 24 rollouts used.
    h = make_history(CURVES, n=2)
    for kwargs in ({"epochs": 2}, {"fraction": 0.5}):
        sel = SELECTORS.build("lim_prefix", threshold=0.8, **kwargs).select(h)
        assert sel.ids == ["a", "b", "c"]
        assert sel.scores.tolist() == pytest.approx([0.75, 0.75, 0.9])
        assert sel.kept_ids == ["c"]
        assert sel.info["avg_curve"] == pytest.approx([1 / 3, 2 / 3])
        assert sel.info["epochs_used"] == 2 and sel.info["epochs_total"] == 4
        assert (sel.info["rollouts_used"], sel.info["rollouts_total"]) == (12, 24)
        assert sel.info["cost_fraction"] == 0.5
        assert sel.info["selector"] == "lim_prefix" and sel.info["epochs"] == 2


def test_lim_prefix_default_quarter(make_history):
    # One epoch: values (0, .5, .5), r_avg = 1/3, denominator (2/3)^2 = 4/9;
    # a: 1 - (1/9)/(4/9) = 0.75, b = c: 1 - (1/36)/(4/9) = 0.9375.
    h = make_history(CURVES, n=2)
    sel = SELECTORS.build("lim_prefix").select(h)
    assert sel.scores.tolist() == pytest.approx([0.75, 0.9375, 0.9375])
    assert sel.info["cost_fraction"] == 0.25 and sel.threshold == 0.6


def test_lim_prefix_all_epochs_equals_lim(make_history):
    h = make_history(CURVES, n=2)
    full = SELECTORS.build("lim").select(h)
    pre = SELECTORS.build("lim_prefix", epochs=10).select(h)
    assert torch.equal(pre.scores, full.scores) and pre.info["cost_fraction"] == 1.0


def test_lim_prefix_cost_counts_rollouts_not_epochs():
    # 2 rollouts per prompt in epoch 0, 4 in epoch 1: the first epoch costs 4 of 12
    h = RewardHistory.from_arrays(
        ["a", "b"], [[2, 4], [2, 4]], [[0, 2], [1, 4]], [[0.0, 2.0], [1.0, 4.0]]
    )
    sel = SELECTORS.build("lim_prefix", epochs=1).select(h)
    assert (sel.info["rollouts_used"], sel.info["rollouts_total"]) == (4, 12)
    assert sel.info["cost_fraction"] == pytest.approx(1 / 3)


def test_lim_prefix_drops_prompts_missing_in_the_prefix(make_history):
    h = make_history({"a": [None, None, 0.5], "b": [0.5, 1, 1], "c": [0.5, 0.5, 0]}, n=2)
    sel = SELECTORS.build("lim_prefix", epochs=2).select(h)
    assert sel.ids == ["b", "c"] and sel.info["unscored"] == 1


def test_lim_prefix_bad_arguments():
    with pytest.raises(ValueError):
        SELECTORS.build("lim_prefix", epochs=2, fraction=0.5)
    with pytest.raises(ValueError):
        SELECTORS.build("lim_prefix", fraction=0)
    with pytest.raises(ValueError):
        SELECTORS.build("lim_prefix", epochs=0)


def _shifted_history():
    """Every prompt's curve is its base rate b plus a shared shift (0, 1/4): LIM is then exactly
    1 - 2 (b - mean b)^2 / sum_k (1 - r_avg^k)^2, a quadratic of the base rate."""
    bases = [0.0, 0.25, 0.5] * 4
    curves = {f"p{i}": [b, b + 0.25] for i, b in enumerate(bases)}
    return curves, np.array(bases)


def test_subsample_fraction_one_is_lim(make_history):
    curves, _ = _shifted_history()
    h = make_history(curves, n=4)
    ids, scores, info = subsample_lim_scores(h, 1.0)
    full_ids, full = SELECTORS.build("lim").score(h)
    assert ids == full_ids and scores == pytest.approx(full.numpy())
    assert info["cost_fraction"] == 1.0


def test_subsample_predicts_the_quadratic_exactly(make_history):
    curves, bases = _shifted_history()
    h = make_history(curves, n=4)
    ids, scores, info = subsample_lim_scores(h, 0.5, seed=3)
    trained = [int(p[1:]) for p in info["trained"]]
    assert len(trained) == 6 and len(set(bases[trained])) == 3  # the fit is determined
    mb = bases[trained].mean()
    avg = np.array([mb, mb + 0.25])
    expected = 1 - 2 * (bases - mb) ** 2 / ((1 - avg) ** 2).sum()
    assert scores == pytest.approx(expected, abs=1e-9)
    assert info["fit_r2"] == pytest.approx(1.0)
    assert info["rollouts_used"] == 6 * 2 * 4 and info["cost_fraction"] == 0.5
    sel = SELECTORS.build("lim_subsample", fraction=0.5, seed=3, size=4).select(h)
    assert sel.scores.numpy() == pytest.approx(expected, abs=1e-9)
    assert int(sel.keep.sum()) == 4 and sel.info["cost_fraction"] == 0.5
    assert not math.isnan(sel.info["fit_r2"])


def test_extend_by_predictor_keeps_measured_and_fits_the_rest():
    from limr.selectors.cheap import extend_by_predictor

    ids = [f"p{i}" for i in range(9)]
    base = np.array([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 0.1, 0.5, 0.9])
    level = np.array([1, 2, 3, 1, 2, 3, 3, 1, 2], dtype=float)

    def truth(b, lv):
        return 0.3 + b - b**2 + 0.1 * lv

    # 4 coefficients (intercept, base, base^2, level) from 5 measured prompts
    trained = {p: truth(base[j], level[j]) for j, p in enumerate(ids) if j not in (2, 4, 8)}
    trained["p5"] = math.nan  # unmeasured: predicted too
    scores, info = extend_by_predictor(ids, trained, base, {"level": level})
    assert scores == pytest.approx(truth(base, level), abs=1e-9)
    assert info["n_measured"] == 5 and info["n_predicted"] == 4 and info["fit_r2"] == 1.0
    assert info["coef"]["level"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="not in the pool"):
        extend_by_predictor(ids, {"zz": 1.0, "p0": 0.0}, base)
    with pytest.raises(ValueError, match="2 or more"):
        extend_by_predictor(ids, {"p0": 0.0}, base)


def test_subsample_of_a_real_run_with_a_base_history(make_history, tmp_path):
    """The history given is a run on part of the pool; the base history (a probe of the base
    over the whole pool) gives every other prompt's pass rate, and the cost counts its rollouts
    of the predicted prompts."""
    curves, bases = _shifted_history()  # p0..p11, curve = [b, b + 0.25]
    sub_ids = ["p0", "p1", "p2", "p3", "p4", "p5"]
    run = make_history({p: curves[p] for p in sub_ids}, n=4)
    base_dir = tmp_path / "probe" / "history"
    hb = RewardHistory(base_dir)
    ids = [p for p in curves for _ in range(4)]
    # 4 samples each: the base's pass rate is exactly the curve's first point
    correct = torch.tensor([k < round(4 * curves[p][0]) for p in curves for k in range(4)])
    hb.record(1, 0, ids, correct, correct.float(), epoch_steps=1)
    hb.commit(1)
    sel = SELECTORS.build("lim_subsample", size=3, base_history=str(base_dir)).select(run)
    assert sel.ids == list(curves)
    mb = bases[:6].mean()
    avg = np.array([mb, mb + 0.25])
    exact = 1 - 2 * (bases - mb) ** 2 / ((1 - avg) ** 2).sum()
    # measured for the six trained, predicted exactly (LIM is a quadratic of the base rate here)
    assert sel.scores.numpy() == pytest.approx(exact, abs=1e-9)
    assert sel.info["rollouts_used"] == 6 * 2 * 4 + 6 * 4 and int(sel.keep.sum()) == 3
