"""variance (1-shot RLVR) and learnability p(1-p): hand-computed values."""

from __future__ import annotations

import pytest

from limr.registry import SELECTORS


def test_variance_hand_computed(make_history):
    # a = [0, .5]: mean .25, var = (.0625 + .0625)/2 = .0625
    # b = [.5, None, 1]: over its two epochs: .0625
    # c = [.25, .25, .25]: 0;  d = [0, 1, .5]: mean .5, var = (.25 + .25 + 0)/3 = 1/6
    h = make_history({"a": [0, 0.5], "b": [0.5, None, 1], "c": [0.25] * 3, "d": [0, 1, 0.5]})
    sel = SELECTORS.build("variance", size=2).select(h)
    assert sel.ids == ["a", "b", "c", "d"]
    assert sel.scores.tolist() == pytest.approx([0.0625, 0.0625, 0.0, 1 / 6])
    assert sel.kept_ids == ["a", "d"]
    assert SELECTORS.build("variance", threshold=0.05).select(h).kept_ids == ["a", "b", "d"]
    with pytest.raises(ValueError, match="needs a threshold or a size"):
        SELECTORS.build("variance")


def test_learnability_hand_computed(make_history):
    # n = 4 per cell. a: 1 + 1 of 8 correct -> p = .25 -> .1875
    # b: 4 + 4 of 8 -> p = 1 -> 0 ; c: 2 of 4 (one epoch) -> .25 ; d: 0 -> 0
    h = make_history({"a": [0.25, 0.25], "b": [1, 1], "c": [None, 0.5], "d": [0, 0]})
    sel = SELECTORS.build("learnability").select(h)
    assert sel.scores.tolist() == pytest.approx([0.1875, 0.0, 0.25, 0.0])
    assert sel.kept_ids == ["a", "c"]  # default 0.16: 0.2 <= p <= 0.8
    last = SELECTORS.build("learnability", window=1).select(h)
    assert last.scores.tolist() == pytest.approx([0.1875, 0.0, 0.25, 0.0])
    h2 = make_history({"a": [0, 0.5], "b": [0.5, None]})
    windowed = SELECTORS.build("learnability", window=1).select(h2)
    assert windowed.ids == ["a"]  # b has no rollout in the last epoch: unscored
    assert windowed.scores.tolist() == pytest.approx([0.25])
