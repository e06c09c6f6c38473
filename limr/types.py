"""The data passed between stages and the contracts of the plugins.

Stage modules import only torch and this module. Shapes use these letters:
    B  prompts in a batch          n  samples per prompt        N = B * n  rollouts
    P  prompt tokens (left-padded) T  response tokens (right-padded)
    E  epochs of a reward history  I  prompts in a reward history
Masks are True where a position is kept (a real token, a kept group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: reading data (limr.prompts) must not import torch
    import torch


@dataclass(frozen=True)
class Prompt:
    """One training or benchmark problem.

    Attributes:
        id: unique id within its dataset (string; integer ids are converted).
        problem: the problem statement, before any prompt template.
        answer: the gold final answer as text (e.g. ``"\\frac{1}{2}"``, ``"025"``, ``"27"``).
        extra: every other field of the record (level, subject, solution, ...).
    """

    id: str
    problem: str
    answer: str
    extra: Mapping[str, Any] = field(default_factory=dict)


class Rollout(NamedTuple):
    """What a sampler returns for B prompts x n samples, rollout-major (prompt 0's n samples first).

    Attributes:
        prompt_index: [N] long, index into the B prompts that each rollout answers.
        query_ids: [N, P] long, prompt tokens, left-padded.
        query_mask: [N, P] bool, True on real prompt tokens.
        response_ids: [N, T] long, generated tokens, right-padded (EOS included when emitted).
        response_mask: [N, T] bool, True on generated tokens (up to and including EOS / stop).
        logprobs: [N, T] float, log-prob of each generated token under the sampling policy
            (after temperature; 0 on padding).
        finished: [N] bool, True if the response ended with EOS or a stop string, False if it was
            cut by max_new_tokens.
        texts: N decoded responses (special tokens removed).
    """

    prompt_index: torch.Tensor
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    finished: torch.Tensor
    texts: list[str]


class Scores(NamedTuple):
    """What a reward returns for N responses.

    Attributes:
        rewards: [N] float, the scalar reward of each response.
        correct: [N] bool, True if the final answer is equivalent to the gold answer.
    """

    rewards: torch.Tensor
    correct: torch.Tensor


@runtime_checkable
class Reward(Protocol):
    """A reward plugin: pure function of strings, no model, device or global state.

    Args:
        responses: N response texts.
        answers: N gold answers (the prompt's answer repeated for each of its samples).
        finished: N flags, False when generation was cut before EOS / a stop string.
        extras: N dicts with the dataset's extra fields (level, subject, ...).
    Returns:
        :class:`Scores` with rewards [N] and correct [N].
    """

    def __call__(
        self,
        responses: Sequence[str],
        answers: Sequence[str],
        finished: Sequence[bool],
        extras: Sequence[Mapping[str, Any]],
    ) -> Scores: ...


@runtime_checkable
class Sampler(Protocol):
    """A rollout plugin (``hf``: transformers generate; ``vllm``: a colocated vLLM engine)."""

    def generate(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        temperature: float = 1.0,
        top_p: float = 1.0,
        max_new_tokens: int = 64,
        stop: Sequence[str] = (),
        seed: int | None = None,
    ) -> Rollout:
        """Sample ``n`` responses to each formatted prompt text. ``temperature == 0`` is greedy."""
        ...

    def update_weights(self, model: torch.nn.Module) -> None:
        """Make later generations use ``model``'s current weights (no-op when sharing them)."""
        ...


class Selection(NamedTuple):
    """What an offline selector returns.

    Attributes:
        ids: [I] prompt ids that were scored (prompts the selector could not score are absent).
        scores: [I] float tensor, one score per id (higher = more worth training on).
        keep: [I] bool tensor, True for the selected prompts.
        threshold: the score threshold that was applied, or None (top-N / random selection).
        info: anything else worth reporting (metric used, number of never-solved kept, ...).
    """

    ids: list[str]
    scores: torch.Tensor
    keep: torch.Tensor
    threshold: float | None
    info: dict[str, Any]

    @property
    def kept_ids(self) -> list[str]:
        return [i for i, k in zip(self.ids, self.keep.tolist()) if k]


@runtime_checkable
class HistoryLike(Protocol):
    """Per-prompt, per-epoch reward statistics (see :class:`limr.history.RewardHistory`).

    Arrays are [I, E]; a cell with ``n == 0`` means the prompt was not rolled out that epoch.
    """

    ids: list[str]
    n: torch.Tensor  # [I, E] rollouts
    n_correct: torch.Tensor  # [I, E] correct rollouts
    reward_sum: torch.Tensor  # [I, E] sum of rewards


@runtime_checkable
class Selector(Protocol):
    """An offline selector: scores every prompt of a reward history and decides which to keep."""

    def select(self, history: HistoryLike) -> Selection: ...


@runtime_checkable
class GroupFilter(Protocol):
    """An online filter used inside training between generation and the update (dapo, band).

    Args:
        correct: [G, n] bool, correctness of the n samples of each of G prompt groups.
        rewards: [G, n] float rewards of the same samples.
    Returns:
        [G] bool, True for the groups to train on.
    """

    def __call__(self, correct: torch.Tensor, rewards: torch.Tensor) -> torch.Tensor: ...
