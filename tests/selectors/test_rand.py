"""RAND: seeded uniform subsets of a given size or the size of another selection."""

from __future__ import annotations

from collections import Counter

import pytest

from limr.registry import SELECTORS


def test_rand_is_seeded_and_sized(make_history):
    h = make_history({f"p{i}": [0.5, 0.5] for i in range(50)})
    a = SELECTORS.build("rand", size=10, seed=1).select(h)
    b = SELECTORS.build("rand", size=10, seed=1).select(h)
    c = SELECTORS.build("rand", size=10, seed=2).select(h)
    assert len(a.kept_ids) == 10 and a.kept_ids == b.kept_ids and a.kept_ids != c.kept_ids
    assert a.threshold is None and a.info["seed"] == 1
    lim = SELECTORS.build("lim", size=7).select(h)
    assert len(SELECTORS.build("rand", like=lim).select(h).kept_ids) == 7
    assert len(SELECTORS.build("rand", like=["x", "y"]).select(h).kept_ids) == 2
    chosen = SELECTORS.build("rand", size=5, seed=3).choose([f"p{i}" for i in range(50)])
    assert len(chosen) == 5 and chosen == sorted(chosen, key=lambda s: int(s[1:]))


def test_rand_needs_a_size(make_history):
    with pytest.raises(ValueError, match="needs a size"):
        SELECTORS.build("rand")
    with pytest.raises(ValueError, match="not a threshold"):
        SELECTORS.build("rand", size=3, threshold=0.5)
    with pytest.raises(ValueError, match="size 5 >"):
        SELECTORS.build("rand", size=5).select(make_history({"a": [1]}))


def test_rand_is_uniform():
    ids = [str(i) for i in range(10)]
    counts = Counter()
    for seed in range(2000):
        counts.update(SELECTORS.build("rand", size=3, seed=seed).choose(ids))
    # each id is chosen with probability 3/10: 600 of 2000 draws, sd ~20
    assert all(500 < counts[i] < 700 for i in ids), counts
