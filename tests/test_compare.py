"""limr.compare: rank correlations and top-k overlap against hand-computed and scipy values."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import numpy as np
import pytest

from limr.compare import (
    average_ranks,
    compare_scores,
    count_inversions,
    default_top_k,
    kendall_tau_b,
    scatter_plot,
    spearman,
)


def _brute_tau_b(a, b) -> float:
    """Kendall's tau-b by its definition, over every pair."""
    conc = disc = 0
    for i, j in itertools.combinations(range(len(a)), 2):
        s = np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])
        conc += s > 0
        disc += s < 0
    n0 = len(a) * (len(a) - 1) / 2
    t_a = sum(c * (c - 1) / 2 for c in Counter(list(a)).values())
    t_b = sum(c * (c - 1) / 2 for c in Counter(list(b)).values())
    return (conc - disc) / math.sqrt((n0 - t_a) * (n0 - t_b))


def test_average_ranks_share_ties():
    assert average_ranks([10, 20, 20, 30]).tolist() == [1.0, 2.5, 2.5, 4.0]
    assert average_ranks([-math.inf, 0.0, -math.inf]).tolist() == [1.5, 3.0, 1.5]


def test_values_scipy_documents():
    # scipy.stats.spearmanr / kendalltau docstring examples (ties in both)
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    assert kendall_tau_b([12, 2, 1, 12, 2], [1, 4, 7, 1, 0]) == pytest.approx(-0.47140452079103173)


def test_perfect_and_reversed_and_constant():
    x = np.arange(10.0)
    assert spearman(x, x * 3 + 1) == pytest.approx(1.0)
    assert kendall_tau_b(x, -x) == pytest.approx(-1.0)
    assert math.isnan(spearman(x, np.ones(10)))
    assert math.isnan(kendall_tau_b(x, np.ones(10)))
    assert math.isnan(spearman([1.0], [2.0]))


@pytest.mark.parametrize("n", [2, 3, 8, 57, 200])
def test_kendall_matches_its_definition_with_ties(n):
    rng = np.random.default_rng(n)
    a = rng.integers(0, 5, n).astype(float)
    b = rng.integers(0, 4, n).astype(float)
    if len(set(a)) < 2 or len(set(b)) < 2:
        a[0], a[-1], b[0], b[-1] = 0.0, 1.0, 1.0, 0.0
    assert kendall_tau_b(a, b) == pytest.approx(_brute_tau_b(a, b), abs=1e-12)


def test_count_inversions():
    assert count_inversions([3, 1, 2]) == 2
    assert count_inversions([1, 1, 1]) == 0
    y = np.random.default_rng(1).integers(0, 30, 301)
    brute = sum(y[i] > y[j] for i, j in itertools.combinations(range(len(y)), 2))
    assert count_inversions(y) == brute


def test_compare_scores_known_answer(tmp_path):
    a = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0, "only_a": 9.0}
    b = {"a": 1.0, "b": 3.0, "c": 4.0, "d": 2.0, "x": 0.0, "y": 1.0}
    r = compare_scores(a, b, [2, 4, 99])
    assert (r.n_common, r.only_a, r.only_b) == (4, 1, 2)
    # d = rank differences (3, 0, -2, -1): rho = 1 - 6 * 14 / (4 * 15)
    assert r.spearman == pytest.approx(-0.4)
    # 2 concordant pairs (b-d, c-d), 4 discordant: (2 - 4) / 6
    assert r.kendall == pytest.approx(-1 / 3)
    # top 2: {a, b} vs {c, b}
    assert r.top_k[2] == {"shared": 1, "overlap": 0.5, "jaccard": pytest.approx(1 / 3)}
    assert r.top_k[4]["overlap"] == 1.0 and 99 not in r.top_k  # cut to the common count
    png = scatter_plot(r, tmp_path / "s.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_nonfinite_scores_rank_lowest():
    a = {"p": -math.inf, "q": 0.5, "r": 0.9}
    b = {"p": -1.0, "q": 0.1, "r": 0.2}
    r = compare_scores(a, b, [1])
    assert r.spearman == pytest.approx(1.0) and r.kendall == pytest.approx(1.0)
    assert r.nonfinite == 1 and r.top_k[1]["shared"] == 1


def test_default_top_k_is_limr_fraction():
    assert default_top_k(8523) == 1389
    assert default_top_k(3) == 1
    r = compare_scores(
        {str(i): float(i) for i in range(100)}, {str(i): float(i) for i in range(100)}
    )
    assert list(r.top_k) == [16]
