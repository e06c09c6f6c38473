"""Plugins for the training tests: a reward that needs no answer checker."""

import torch

from limr.registry import REWARDS, register_reward
from limr.types import Scores

if "toy_digit" not in REWARDS:

    @register_reward("toy_digit")
    class ToyDigit:
        """+1 when the response contains the gold answer, else 0 (-1 when unfinished)."""

        def __call__(self, responses, answers, finished, extras):  # noqa: ARG002
            correct = torch.tensor([a in r for r, a in zip(responses, answers)], dtype=torch.bool)
            rewards = correct.float()
            rewards[~torch.tensor(list(finished), dtype=torch.bool)] = -1.0
            return Scores(rewards=rewards, correct=correct)
