"""Online group filters: DAPO dynamic sampling and PRIME's accuracy band."""

from __future__ import annotations

import torch

from limr.registry import SELECTORS
from limr.types import GroupFilter


def test_dapo_drops_all_right_and_all_wrong_groups():
    correct = torch.tensor([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0], [0, 1, 1, 1]], dtype=bool)
    rewards = torch.where(correct, 1.0, -0.5)
    rewards[1, 0] = -1.0  # all wrong but not all equal: dropped by accuracy, kept by reward
    dapo = SELECTORS.build("dapo")
    assert isinstance(dapo, GroupFilter)
    assert dapo(correct, rewards).tolist() == [False, False, True, True]
    assert SELECTORS.build("dapo", metric="reward")(correct, rewards).tolist() == [
        False,
        True,
        True,
        True,
    ]


def test_band_keeps_accuracy_between_low_and_high():
    # accuracies of 5 samples: 0, .2, .4, .8, 1
    correct = torch.tensor(
        [[0] * 5, [1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 1, 0], [1] * 5], dtype=bool
    )
    band = SELECTORS.build("band", low=0.2, high=0.8)
    assert band(correct, correct.float()).tolist() == [False, True, True, True, False]
    assert SELECTORS.build("band", low=0.3, high=0.5)(correct, correct.float()).tolist() == [
        False,
        False,
        True,
        False,
        False,
    ]
