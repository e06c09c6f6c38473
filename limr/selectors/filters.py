"""Online group filters, called by the training loop between generation and the update.

Each is a :class:`limr.types.GroupFilter`: ``(correct [G, n] bool, rewards [G, n] float) -> [G]
bool``, True for the prompt groups to train on.
"""

from __future__ import annotations

import torch

from limr.registry import register_selector
from limr.selectors.curves import check_metric


def _check(correct: torch.Tensor, rewards: torch.Tensor) -> None:
    if correct.dim() != 2 or correct.shape != rewards.shape:
        raise ValueError(
            f"group filter: correct and rewards must both be [G, n], got "
            f"{tuple(correct.shape)} and {tuple(rewards.shape)}"
        )


@register_selector("dapo")
class DapoFilter:
    """DAPO dynamic sampling (Yu et al., arXiv 2503.14476, eq. 11): drop groups whose samples are
    all correct or all wrong; they give zero advantage under group normalisation.

    ``metric="reward"`` drops groups whose rewards are all equal instead (e.g. all -1 and all -0.5
    are different groups of wrong answers, but either is a zero-advantage group).
    """

    kind = "online"

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
    ) -> None:
        self.metric = check_metric(metric)

    def __call__(self, correct: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        _check(correct, rewards)
        if self.metric == "reward":
            return (rewards != rewards[:, :1]).any(dim=1)
        k = correct.to(torch.int64).sum(dim=1)
        return (k > 0) & (k < correct.shape[1])


@register_selector("band")
class BandFilter:
    """PRIME's online accuracy filter (Cui et al., arXiv 2502.01456): keep groups whose accuracy
    p = mean(correct) lies in [low, high] (default [0.2, 0.8])."""

    kind = "online"

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        low: float = 0.2,
        high: float = 0.8,
    ) -> None:
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"band: need 0 <= low <= high <= 1, got low={low}, high={high}")
        self.low, self.high = low, high

    def __call__(self, correct: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor:
        _check(correct, rewards)
        p = correct.to(torch.float64).mean(dim=1)
        # A tolerance so that 0.2 = 1/5 or 0.8 = 4/5 is inside despite float rounding.
        eps = 1e-9
        return (p >= self.low - eps) & (p <= self.high + eps)
