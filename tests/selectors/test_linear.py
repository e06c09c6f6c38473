"""LINEAR = Pearson correlation of the curve with the epoch index (hand-computed values)."""

from __future__ import annotations

import math

import pytest

from limr.registry import SELECTORS


def test_linear_hand_computed(make_history):
    # k centred = [-1, 0, 1]
    #   rise  [0, .5, 1]:  centred [-.5, 0, .5] -> r = 1
    #   fall  [1, .5, 0]:  r = -1
    #   flat  [.5,.5,.5]:  no trend -> 0 (defined)
    #   bump  [0, 1, .5]:  centred [-.5, .5, 0]; cov = .5; |r - m| = sqrt(.5); |k| = sqrt(2)
    #                      -> .5 / (sqrt(.5) sqrt(2)) = .5
    #   slow  [0, .25, .25, .5] (4 epochs, k centred [-1.5, -.5, .5, 1.5]):
    #         centred [-.25, 0, 0, .25]; cov = .75; |.| = sqrt(.125); |k| = sqrt(5)
    #         -> .75 / sqrt(.625) = .9487
    h = make_history(
        {
            "rise": [0, 0.5, 1, None],
            "fall": [1, 0.5, 0, None],
            "flat": [0.5, 0.5, 0.5, None],
            "bump": [0, 1, 0.5, None],
        },
        n=2,
    )
    # The 4th epoch has no rollout at all: scoring uses whole epochs, so it is left out ...
    sel4 = SELECTORS.build("linear").select(h)
    assert sel4.ids == ["rise", "fall", "flat", "bump"] and sel4.info["epochs_dropped"] == 1
    # ... while scoring it leaves nothing to fill from: every prompt would be dropped
    assert SELECTORS.build("linear", whole_epochs=False).select(h).ids == []
    h3 = make_history(
        {"rise": [0, 0.5, 1], "fall": [1, 0.5, 0], "flat": [0.5] * 3, "bump": [0, 1, 0.5]}, n=2
    )
    sel = SELECTORS.build("linear").select(h3)
    assert sel.scores.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.5])
    assert sel4.scores.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.5])
    assert sel.kept_ids == ["rise"]  # default threshold 0.7
    assert sel.info["definition"] == "pearson(r_i^k, k)"
    slow = make_history({"slow": [0, 0.25, 0.25, 0.5]})
    assert SELECTORS.build("linear").select(slow).scores.item() == pytest.approx(
        0.75 / math.sqrt(0.625)
    )


def test_linear_is_scale_free_and_uses_the_lim_fill(make_history):
    h = make_history({"big": [0, 0.5, 1.0], "small": [0, 0.25, None], "gap": [0, None, 0.5]})
    sel = SELECTORS.build("linear", threshold=0.7).select(h)
    assert sel.ids == ["big", "gap"]  # small misses the last epoch
    # gap is filled to [0, .5, .5]: corr with [-1, 0, 1] = .5 / (sqrt(1/6) sqrt(2)) = sqrt(3)/2
    assert sel.scores.tolist() == pytest.approx([1.0, math.sqrt(3) / 2])
    assert SELECTORS.build("linear").threshold == 0.7
