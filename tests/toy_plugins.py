"""Plugins for the training tests: a reward that needs no answer checker, and an online filter
that leaves the processes of a run with different numbers of rows."""

import torch

from limr.registry import REWARDS, SELECTORS, register_reward, register_selector
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


if "toy_uneven" not in SELECTORS:

    @register_selector("toy_uneven")
    class ToyUneven:
        """An online filter that leaves the processes with different rows: rank 0 keeps all its
        groups, the others their first group at even calls and none at odd ones."""

        kind = "online"

        def __init__(self, **kwargs) -> None:  # noqa: ARG002
            self.calls = 0

        def __call__(self, correct, rewards):  # noqa: ARG002
            import torch.distributed as dist

            rank = dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
            keep = torch.ones(len(correct), dtype=torch.bool)
            if rank > 0:
                keep[:] = False
                keep[0] = self.calls % 2 == 0
            self.calls += 1
            return keep
