"""Benchmark metrics as torchmetrics ``Metric``s: their states are sums, so they reduce correctly
across DDP processes (each rank updates with its own problems; ``compute`` sums the states).

All take ``correct``: [B, n] bool, the correctness of n samples of each of B problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric


def _check(correct: torch.Tensor) -> torch.Tensor:
    if correct.dim() != 2:
        raise ValueError(f"correct must be [B, n] (problems x samples), got {tuple(correct.shape)}")
    return correct.bool()


class MeanAccuracy(Metric):
    """Mean accuracy over every sample of every problem (the paper's number)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("n_correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("n_samples", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, correct: torch.Tensor) -> None:
        correct = _check(correct)
        self.n_correct += correct.sum()
        self.n_samples += correct.numel()

    def compute(self) -> torch.Tensor:
        return self.n_correct.double() / self.n_samples.clamp(min=1)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem with c correct of n samples (Chen et al. 2021, Codex):
    1 - C(n - c, k) / C(n, k), computed as a product to stay exact in floating point."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):
        fail *= 1.0 - k / i
    return 1.0 - fail


class PassAtK(Metric):
    """Mean over problems of the unbiased pass@k estimate (needs n >= k samples per problem)."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, k: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if k < 1:
            raise ValueError(f"pass@k needs k >= 1, got {k}")
        self.k = k
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_problems", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, correct: torch.Tensor) -> None:
        correct = _check(correct)
        n = correct.shape[1]
        if n < self.k:
            raise ValueError(f"pass@{self.k} needs at least {self.k} samples per problem, got {n}")
        for c in correct.sum(1).tolist():
            self.total += pass_at_k(n, int(c), self.k)
        self.n_problems += correct.shape[0]

    def compute(self) -> torch.Tensor:
        return self.total / self.n_problems.clamp(min=1)


class GroupAccuracy(Metric):
    """Mean accuracy per group (level, subject); the groups are fixed when the metric is built
    so that every rank holds states of the same shape."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, groups: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.groups = list(groups)
        self.index = {g: i for i, g in enumerate(self.groups)}
        size = len(self.groups)
        self.add_state("n_correct", torch.zeros(size, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("n_samples", torch.zeros(size, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, correct: torch.Tensor, groups: Sequence[str]) -> None:
        correct = _check(correct)
        if len(groups) != correct.shape[0]:
            raise ValueError(f"{correct.shape[0]} problems but {len(groups)} group labels")
        index = torch.tensor([self.index[str(g)] for g in groups], dtype=torch.long)
        self.n_correct.index_add_(0, index, correct.sum(1).long())
        self.n_samples.index_add_(0, index, torch.full_like(index, correct.shape[1]))

    def compute(self) -> torch.Tensor:
        """[G] accuracy per group (NaN for a group without problems)."""
        return torch.where(
            self.n_samples > 0,
            self.n_correct.double() / self.n_samples.clamp(min=1),
            torch.tensor(float("nan"), dtype=torch.float64),
        )

    def as_dict(self) -> dict[str, float]:
        """``{group: accuracy}`` for the groups that had problems."""
        values = torch.atleast_1d(self.compute()).tolist()  # one group comes back squeezed
        return {g: v for g, v in zip(self.groups, values) if v == v}  # NaN != NaN
