"""``math_rule``: the LIMR paper's rule reward, +1 correct / -0.5 wrong / -1 badly formed.

The checks run in the paper's order (REFERENCE.md): unfinished, no or too many ``\\boxed``, too
much non-maths text, degenerate repetition, then the last box against the gold answer. A check
that runs out of its time budget scores like a badly formed response (the paper's -1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from limr.registry import register_reward
from limr.rewards import parallel
from limr.rewards.rules import Outcome, Rules
from limr.rewards.verdict import DEFAULT_TIMEOUT, Verdict
from limr.types import Scores


@register_reward("math_rule")
class MathRuleReward:
    """The paper's rule reward; every value and check is a keyword argument.

    Args:
        correct: reward of a well-formed response whose last box is equivalent to the gold.
        wrong: reward of a well-formed response with a wrong answer.
        bad_format: reward of a response that fails any format check.
        timeout_reward: reward when the answer check runs out of time (None = ``bad_format``).
        check_finished: a response cut by the token limit is badly formed.
        max_boxes: more ``\\boxed`` than this is badly formed (None = no limit).
        max_non_math_fraction: more characters outside ASCII and U+2200-U+22FF than this share
            is badly formed (None = no limit).
        repeat_min_length, repeat_min_count: a unit of this many characters repeated this many
            times in a row is badly formed (count 0 = off).
        max_response_chars: longer responses are badly formed without further checks.
        unboxed: None (the paper: a response without a box is badly formed), or
            ``"last_number"``: its last number is its answer (for models too small to box).
        timeout: seconds for the answer check of one response.
        workers: checker worker processes (None = ``$LIMR_VERIFY_WORKERS`` or half the CPUs).

    ``Scores.correct`` is True exactly when the reward is ``correct``: all format checks passed and
    the answer is right (LIM's accuracy counts only +1 rollouts).
    """

    def __init__(
        self,
        *,
        correct: float = 1.0,
        wrong: float = -0.5,
        bad_format: float = -1.0,
        timeout_reward: float | None = None,
        check_finished: bool = True,
        max_boxes: int | None = 4,
        max_non_math_fraction: float | None = 0.3,
        repeat_min_length: int = 5,
        repeat_min_count: int = 5,
        max_response_chars: int = 200_000,
        unboxed: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        workers: int | None = None,
    ) -> None:
        self.values = {
            Verdict.CORRECT: float(correct),
            Verdict.WRONG: float(wrong),
            Verdict.TIMEOUT: float(bad_format if timeout_reward is None else timeout_reward),
        }
        self.bad_format = float(bad_format)
        if unboxed not in (None, "last_number"):
            raise ValueError(f"unboxed: {unboxed!r} is not one of None, 'last_number'")
        self.rules = Rules(
            check_finished=check_finished,
            require_box=True,
            unboxed=unboxed,
            max_boxes=max_boxes,
            max_non_math_fraction=max_non_math_fraction,
            repeat_min_length=repeat_min_length,
            repeat_min_count=repeat_min_count,
            max_response_chars=max_response_chars,
        )
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
        rewards, correct = [], []
        for outcome, verdict in results:
            if outcome is not Outcome.OK or verdict is None:
                rewards.append(self.bad_format)
                correct.append(False)
            else:
                rewards.append(self.values[verdict])
                correct.append(verdict is Verdict.CORRECT)
        return Scores(
            rewards=torch.tensor(rewards, dtype=torch.float32),
            correct=torch.tensor(correct, dtype=torch.bool),
        )
