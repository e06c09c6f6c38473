"""RAND: a uniform random subset (the paper's baseline: the size of the LIM selection, seeded)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from limr.registry import register_selector
from limr.selectors.curves import (
    complete_after_fill,
    complete_rows,
    ids_of,
    make_selection,
    one_thread,
    scoring_view,
)
from limr.types import HistoryLike, Selection

POOLS = ("scored", "all")


@register_selector("rand")
class Rand:
    """Keep ``size`` prompts drawn uniformly without replacement from a history's scored prompts.

    Args:
        size: how many to keep; or
        like: another selection (a :class:`Selection` or a list of kept ids) whose size to match.
        seed: the draw depends only on the seed and the order of the history's ids.
        pool: what :meth:`select` and :meth:`score` draw from. ``"scored"`` (default): the prompts
            LIM and LINEAR score, so that RAND is the same-size baseline over the same pool:
            whole epochs only (a partly recorded last epoch is left out, see
            :func:`limr.history.whole_epochs`), and of those the prompts rolled out in every
            epoch after LIM's one backward fill. ``"all"``: every prompt of the history.
        whole_epochs: with ``pool="scored"``, False counts every recorded epoch.

    Each prompt's score is its random priority in [0, 1), drawn for every prompt of the history
    (so a prompt's priority does not depend on which others are in the pool); the top ``size`` of
    the pool are kept.
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
        pool: str = "scored",
        whole_epochs: bool = True,
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
        if pool not in POOLS:
            raise ValueError(f"rand: pool must be one of {', '.join(POOLS)}, got {pool!r}")
        self.size = int(size)
        self.seed = seed
        self.pool = pool
        self.whole_epochs = whole_epochs

    def priorities(self, num: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        return torch.rand(num, generator=gen, dtype=torch.float64)

    def _pool(self, history: HistoryLike):
        """(view, rows of the pool or None for all, their priorities, epoch report)."""
        priorities = self.priorities(len(history.ids))
        if self.pool == "all":
            num_e = int(history.n.shape[1])
            epochs = {"epochs_recorded": num_e, "epochs_dropped": 0, "partial_epoch": None}
            return history, None, priorities, epochs
        h, epochs = scoring_view(history, self.whole_epochs)
        rows = complete_rows(complete_after_fill(h))
        return h, rows, priorities if rows is None else priorities[rows], epochs

    def score(self, history: HistoryLike) -> tuple[list[str], torch.Tensor]:
        h, rows, priorities, _ = self._pool(history)
        return ids_of(h, rows), priorities

    @one_thread()
    def select(self, history: HistoryLike) -> Selection:
        h, rows, priorities, epochs = self._pool(history)
        if self.size > len(priorities):
            where = "" if rows is None else f" (of {len(history.ids)}; pool={self.pool!r})"
            raise ValueError(
                f"rand: size {self.size} > {len(priorities)} prompts in the pool{where}"
            )
        return make_selection(
            "rand",
            h,
            rows,
            priorities,
            None,
            self.size,
            seed=self.seed,
            metric=None,
            pool=self.pool,
            **epochs,
        )

    def choose(self, ids: Sequence[str]) -> list[str]:
        """``size`` of ``ids`` (kept in their order), without a history."""
        if self.size > len(ids):
            raise ValueError(f"rand: size {self.size} > {len(ids)} prompts")
        order = torch.argsort(self.priorities(len(ids)), descending=True, stable=True)
        chosen = sorted(order[: self.size].tolist())
        return [ids[j] for j in chosen]
