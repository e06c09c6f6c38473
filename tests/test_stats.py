"""limr.stats: the paired bootstrap, its verdict and the kinds of reward curve."""

import time

import numpy as np
import pytest
import torch

from limr import stats
from limr.stats import (
    HIGHER,
    LEARNED,
    LOWER,
    MASTERED_EARLY,
    NEVER_SOLVED,
    NO_DIFFERENCE,
    OTHER,
    curve_kinds,
    paired_bootstrap,
    verdict_of,
)


def _brute_force(a, b, n_boot, seed, confidence):
    """The resampling of paired_bootstrap written as explicit loops (same RNG, same order)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    num_s, num_p = d.shape
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_boot):
        total = 0.0
        for s in range(num_s):
            for p in rng.integers(0, num_p, size=num_p, dtype=np.int32):
                total += d[s, p]
        means.append(total / (num_s * num_p))
    alpha = 1 - confidence
    return np.quantile(means, [alpha / 2, 1 - alpha / 2])


def test_identical_arms_give_zero_and_a_ci_holding_zero():
    a = np.random.default_rng(0).random((3, 50))
    r = paired_bootstrap(a, a.copy())
    assert r.mean == 0.0 and r.low <= 0.0 <= r.high
    assert verdict_of(r.low, r.high) == NO_DIFFERENCE
    assert (r.n_seeds, r.n_problems, r.n_boot, r.confidence) == (3, 50, 10000, 0.95)


def test_a_constant_shift_gives_a_point_ci():
    b = np.random.default_rng(1).random((3, 40)) * 0.8
    r = paired_bootstrap(b + 0.1, b, n_boot=2000)
    assert r.mean == pytest.approx(0.1, abs=1e-12)
    assert r.low == pytest.approx(0.1, abs=1e-12) and r.high == pytest.approx(0.1, abs=1e-12)
    assert verdict_of(r.low, r.high) == HIGHER
    r = paired_bootstrap(b, b + 0.1, n_boot=2000)
    assert verdict_of(r.low, r.high) == LOWER


def test_matches_an_explicit_loop_over_seeds_and_problems():
    # 2 seeds x 4 problems of accuracies over 4 samples: the same draws, resample by resample
    a = [[1.0, 0.75, 0.0, 0.5], [0.25, 1.0, 0.5, 0.0]]
    b = [[0.5, 0.75, 0.25, 0.0], [0.25, 0.5, 0.75, 0.0]]
    for seed, confidence in ((0, 0.95), (7, 0.8)):
        r = paired_bootstrap(a, b, n_boot=300, seed=seed, confidence=confidence)
        low, high = _brute_force(a, b, 300, seed, confidence)
        assert r.low == pytest.approx(low, abs=1e-12) and r.high == pytest.approx(high, abs=1e-12)
        assert r.mean == pytest.approx(np.mean(np.subtract(a, b)))


def test_chunking_does_not_change_the_result(monkeypatch):
    rng = np.random.default_rng(3)
    a, b = rng.random((3, 30)), rng.random((3, 30))
    whole = paired_bootstrap(a, b, n_boot=500, seed=5)
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 7 * 90 + 1)  # 7 resamples per chunk
    assert paired_bootstrap(a, b, n_boot=500, seed=5) == whole


def test_half_width_of_a_large_iid_case_follows_the_normal_approximation():
    rng = np.random.default_rng(11)
    num_s, num_p = 3, 1000
    a = rng.random((num_s, num_p))
    b = rng.random((num_s, num_p))
    r = paired_bootstrap(a, b, n_boot=10000, seed=2)
    d = a - b
    # the resampling keeps each seed's P problems: the variance is the mean within-seed variance
    sd = np.sqrt(np.mean(d.var(axis=1)))
    expected = 1.96 * sd / np.sqrt(num_s * num_p)
    assert (r.high - r.low) / 2 == pytest.approx(expected, rel=0.1)
    assert r.low < r.mean < r.high


def test_ten_thousand_resamples_of_three_by_a_thousand_are_fast():
    rng = np.random.default_rng(0)
    a, b = rng.random((3, 1000)), rng.random((3, 1000))
    start = time.process_time()
    paired_bootstrap(a, b, n_boot=10000)
    assert time.process_time() - start < 1.0


def test_deterministic_for_a_seed_and_seed_dependent():
    rng = np.random.default_rng(4)
    a, b = rng.random((2, 60)), rng.random((2, 60))
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    assert paired_bootstrap(a, b, seed=3) != paired_bootstrap(a, b, seed=4)


def test_accepts_torch_and_one_seed_vectors():
    a = torch.tensor([1.0, 0.0, 1.0, 1.0])
    b = torch.tensor([0.0, 0.0, 1.0, 0.0])
    r = paired_bootstrap(a, b, n_boot=200)
    assert (r.n_seeds, r.n_problems) == (1, 4) and r.mean == pytest.approx(0.5)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        paired_bootstrap(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="non-finite"):
        paired_bootstrap([[np.nan, 1.0]], [[0.0, 1.0]])
    with pytest.raises(ValueError, match="confidence"):
        paired_bootstrap([[1.0]], [[0.0]], confidence=1.0)
    with pytest.raises(ValueError, match="n_boot"):
        paired_bootstrap([[1.0]], [[0.0]], n_boot=0)


def test_verdict_follows_the_interval():
    assert verdict_of(0.01, 0.2) == HIGHER
    assert verdict_of(-0.2, -0.01) == LOWER
    assert verdict_of(-0.01, 0.2) == NO_DIFFERENCE
    assert verdict_of(0.0, 0.2) == NO_DIFFERENCE  # touching 0 is not excluding it
    with pytest.raises(ValueError):
        verdict_of(0.2, 0.1)


def test_curve_kinds_on_hand_made_curves():
    # 4 rollouts per epoch, 4 epochs; accuracies per prompt:
    curves = {
        "never": [0, 0, 0, 0],
        "mastered": [4, 3, 4, 4],  # 1.0 at the start, 1.0 at the end
        "learned_high_end": [1, 2, 3, 3],  # 0.25 -> 0.75
        "learned_by_rise": [0, 1, 2, 2],  # 0.0 -> 0.5: below 0.6 but a rise of 0.5
        "mastered_then_lost": [4, 4, 1, 1],  # starts high, ends at 0.25: other
        "middling": [2, 2, 2, 2],  # 0.5 throughout: other
        "slow_rise": [1, 1, 2, 2],  # 0.25 -> 0.5: a rise of 0.25 only: other
    }
    n = np.full((len(curves), 4), 4)
    kinds = curve_kinds(n, np.array(list(curves.values())))
    assert kinds.labels == [
        NEVER_SOLVED,
        MASTERED_EARLY,
        LEARNED,
        LEARNED,
        OTHER,
        OTHER,
        OTHER,
    ]
    assert kinds.counts == {NEVER_SOLVED: 1, MASTERED_EARLY: 1, LEARNED: 2, OTHER: 3}
    assert kinds.start.tolist() == [0.0, 1.0, 0.25, 0.0, 1.0, 0.5, 0.25]
    assert kinds.end.tolist() == [0.0, 1.0, 0.75, 0.5, 0.25, 0.5, 0.5]


def test_curve_kinds_ignore_epochs_without_rollouts():
    # prompt 0 is absent in epoch 0: its start is epoch 1 (1.0); prompt 1 is absent in the last
    # epochs: its end is the epochs it has; prompt 2 has no rollout at all; prompt 3 has only one
    # epoch (its end is its start)
    n = torch.tensor([[0, 4, 4, 4], [4, 4, 0, 0], [0, 0, 0, 0], [0, 0, 4, 0]])
    nc = torch.tensor([[0, 4, 4, 3], [0, 4, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0]])
    kinds = curve_kinds(n, nc)
    assert kinds.labels == [MASTERED_EARLY, LEARNED, OTHER, OTHER]
    assert kinds.start[0] == 1.0 and kinds.end[0] == pytest.approx(0.875)
    assert kinds.start[1] == 0.0 and kinds.end[1] == 1.0
    assert np.isnan(kinds.start[2]) and np.isnan(kinds.end[2])
    assert kinds.start[3] == kinds.end[3] == 0.25


def test_curve_kinds_thresholds_are_parameters():
    n = np.full((1, 3), 4)
    nc = np.array([[3, 3, 3]])  # 0.75 throughout: mastered at the default bar only
    assert curve_kinds(n, nc).labels == [MASTERED_EARLY]
    assert curve_kinds(n, nc, mastered_accuracy=0.8).labels == [OTHER]
    with pytest.raises(ValueError):
        curve_kinds(np.zeros((2, 3)), np.zeros((3, 2)))
