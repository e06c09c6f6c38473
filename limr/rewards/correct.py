"""``correct``: 1 when the last ``\\boxed{}`` is equivalent to the gold answer, else 0.

Correctness alone, as benchmarks count it: finished or not, one box or ten, only the last box
matters. A check that runs out of its time budget scores 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch

from limr.registry import register_reward
from limr.rewards import parallel
from limr.rewards.rules import NO_RULES
from limr.rewards.verdict import DEFAULT_TIMEOUT, Verdict
from limr.types import Scores


@register_reward("correct")
class CorrectReward:
    """1 / 0 on correctness of the last box.

    Args:
        correct, wrong: the two reward values.
        unboxed: None (no box, no answer) or ``"last_number"``: a response without a box is
            answered by its last number (:class:`limr.rewards.rules.Rules`).
        timeout: seconds for the answer check of one response.
        workers: checker worker processes (None = ``$LIMR_VERIFY_WORKERS`` or half the CPUs).
    """

    def __init__(
        self,
        *,
        correct: float = 1.0,
        wrong: float = 0.0,
        unboxed: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        workers: int | None = None,
    ) -> None:
        self.correct, self.wrong = float(correct), float(wrong)
        if unboxed not in (None, "last_number"):
            raise ValueError(f"unboxed: {unboxed!r} is not one of None, 'last_number'")
        self.rules = replace(NO_RULES, unboxed=unboxed)
        self.timeout = timeout
        self.workers = workers  # started on first need: integer answers never need one

    def __call__(
        self,
        responses: Sequence[str],
        answers: Sequence[str],
        finished: Sequence[bool],
        extras: Sequence[Mapping[str, Any]],
    ) -> Scores:
        if len(extras) != len(responses):
            raise ValueError(f"{len(responses)} responses but {len(extras)} extras")
        results = parallel.score_batch(
            responses, answers, finished, self.rules, self.timeout, self.workers
        )
        correct = [verdict is Verdict.CORRECT for _, verdict in results]
        return Scores(
            rewards=torch.tensor(
                [self.correct if c else self.wrong for c in correct], dtype=torch.float32
            ),
            correct=torch.tensor(correct, dtype=torch.bool),
        )
