"""RAND: a uniform random subset (the paper's baseline: the size of the LIM selection, seeded)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from limr.registry import register_selector
from limr.selectors.curves import make_selection, one_thread
from limr.types import HistoryLike, Selection


@register_selector("rand")
class Rand:
    """Keep ``size`` prompts drawn uniformly without replacement from the history's prompts.

    Args:
        size: how many to keep; or
        like: another selection (a :class:`Selection` or a list of kept ids) whose size to match.
        seed: the draw depends only on the seed and the order of the ids.
    Each prompt's score is its random priority in [0, 1); the top ``size`` are kept.
    """

    kind = "offline"
    default_threshold = None

    def __init__(
        self,
        threshold: float | None = None,
        size: int | None = None,
        metric: str = "accuracy",
        seed: int = 42,
        like: Selection | Sequence[str] | None = None,
    ) -> None:
        if like is not None:
            like_size = len(like.kept_ids) if isinstance(like, Selection) else len(like)
            if size is not None and size != like_size:
                raise ValueError(f"rand: size={size} but like= has {like_size} prompts")
            size = like_size
        if size is None:
            raise ValueError(
                "selector 'rand' needs a size (size=N, or like=<another selection>); "
                "a threshold means nothing for a random subset"
            )
        if threshold is not None:
            raise ValueError("selector 'rand' takes a size, not a threshold")
        self.size = int(size)
        self.seed = seed

    def priorities(self, num: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        return torch.rand(num, generator=gen, dtype=torch.float64)

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        return list(history.ids), self.priorities(len(history.ids))

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        if self.size > len(history.ids):
            raise ValueError(f"rand: size {self.size} > {len(history.ids)} prompts in the history")
        return make_selection(
            "rand",
            history,
            None,
            self.priorities(len(history.ids)),
            None,
            self.size,
            seed=self.seed,
            metric=None,
        )

    def choose(self, ids: Sequence[str]) -> list[str]:
        """``size`` of ``ids`` (kept in their order), without a history."""
        if self.size > len(ids):
            raise ValueError(f"rand: size {self.size} > {len(ids)} prompts")
        order = torch.argsort(self.priorities(len(ids)), descending=True, stable=True)
        chosen = sorted(order[: self.size].tolist())
        return [ids[j] for j in chosen]
