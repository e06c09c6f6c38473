"""The embedded task: short arithmetic problems in words, with gold answers, generated on demand.

``load("arith", split)`` gives the prompts of the embedded LIMR experiment (``synthetic:arith``).
Everything is generated from fixed seeds with :class:`random.Random` (never the global RNG), so
every call on every machine gives the same prompts in the same order.

Levels (each a set of problems the tiny base model finds about equally hard):

    1  add, 2-digit + 1- or 2-digit, no carry       "What is 23 plus 45?"
    2  subtract, no borrow                          "What is 68 minus 25?"
    3  add with a carry                             "What is 47 plus 38?"
    4  subtract with a borrow                       "What is 72 minus 38?"
    5  two steps                                    "What is 47 plus 8 minus 5?"

Splits, drawn per level from one shuffle of every problem of the level, so that no two splits
share a problem (the numbers, not only the text):

    test    100 per level (500), held out for evaluation
    train   300 per level (1,500), the RL pool that LIM scores
    warmup  the rest, up to 4,000 per level: the supervised warm-up of the tiny base model,
            so the base has never seen a train or test problem

Train and test are shuffled across levels (``max_prompts: 64`` still covers every level).
Every problem ends with :data:`INSTRUCTION`; the gold response is ``\\boxed{ANSWER}``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import cache

from limr.types import Prompt

INSTRUCTION = " Answer in \\boxed{}.\n"
"""Appended to every question: the reward reads the last ``\\boxed{}`` of the response."""

SEED = 2502_11886
"""Seed of every split (the LIMR paper's arXiv number)."""

LEVELS = (1, 2, 3, 4, 5)
SPLITS = ("train", "test", "warmup")
TASKS = ("arith",)
TEST_PER_LEVEL = 100
TRAIN_PER_LEVEL = 300
WARMUP_PER_LEVEL = 4000


Key = tuple[int, ...]


def _digits(n: int) -> tuple[int, int]:
    """(tens, units) of a number below 100."""
    return n // 10, n % 10


def _add_no_carry() -> list[Key]:
    return [
        (a, b)
        for a in range(10, 100)
        for b in range(1, 100)
        if _digits(a)[1] + _digits(b)[1] <= 9 and _digits(a)[0] + _digits(b)[0] <= 9
    ]


def _sub_no_borrow() -> list[Key]:
    return [
        (a, b)
        for a in range(10, 100)
        for b in range(1, a)
        if _digits(a)[1] >= _digits(b)[1] and _digits(a)[0] >= _digits(b)[0]
    ]


def _add_carry() -> list[Key]:
    return [(a, b) for a in range(10, 100) for b in range(2, 100) if a % 10 + b % 10 >= 10]


def _sub_borrow() -> list[Key]:
    return [(a, b) for a in range(10, 100) for b in range(2, a) if a % 10 < b % 10]


def _two_steps() -> list[Key]:
    # a + b - c with a 2-digit start and 1-digit changes: one possible carry, one possible borrow.
    return [(a, b, c) for a in range(10, 100) for b in range(2, 10) for c in range(2, 10)]


_SPACES: dict[int, Callable[[], list[Key]]] = {
    1: _add_no_carry,
    2: _sub_no_borrow,
    3: _add_carry,
    4: _sub_borrow,
    5: _two_steps,
}


def answer_of(level: int, key: Key) -> int:
    """The gold answer of a problem given by its level and numbers."""
    if level in (1, 3):
        return key[0] + key[1]
    if level in (2, 4):
        return key[0] - key[1]
    if level == 5:
        return key[0] + key[1] - key[2]
    raise ValueError(f"unknown level {level}; valid: {', '.join(map(str, LEVELS))}")


def question_of(level: int, key: Key) -> str:
    """The question in words, without :data:`INSTRUCTION`."""
    if level in (1, 3):
        return f"What is {key[0]} plus {key[1]}?"
    if level in (2, 4):
        return f"What is {key[0]} minus {key[1]}?"
    if level == 5:
        return f"What is {key[0]} plus {key[1]} minus {key[2]}?"
    raise ValueError(f"unknown level {level}; valid: {', '.join(map(str, LEVELS))}")


def response_for(prompt: Prompt) -> str:
    """The gold response text that the warm-up teaches (the tokenizer's EOS goes after it)."""
    return f"\\boxed{{{prompt.answer}}}"


def prompt_template(question: str) -> str:
    """The problem text of a question: the question and the boxed-answer instruction."""
    return question + INSTRUCTION


@cache
def _level_splits(level: int) -> dict[str, tuple[Key, ...]]:
    keys = _SPACES[level]()
    random.Random(SEED * 10 + level).shuffle(keys)
    n_test, n_train = TEST_PER_LEVEL, TRAIN_PER_LEVEL
    if len(keys) < n_test + n_train + 100:
        raise AssertionError(f"level {level} has only {len(keys)} problems")
    return {
        "test": tuple(keys[:n_test]),
        "train": tuple(keys[n_test : n_test + n_train]),
        "warmup": tuple(keys[n_test + n_train : n_test + n_train + WARMUP_PER_LEVEL]),
    }


@cache
def _build(split: str) -> tuple[Prompt, ...]:
    rng = random.Random(SEED * 10 + SPLITS.index(split))
    items = [(level, key) for level in LEVELS for key in _level_splits(level)[split]]
    rng.shuffle(items)
    prompts = []
    for index, (level, key) in enumerate(items):
        question = question_of(level, key)
        prompts.append(
            Prompt(
                id=f"arith-{split}-{index:05d}",
                problem=prompt_template(question),
                answer=str(answer_of(level, key)),
                extra={"level": level, "numbers": list(key), "question": question},
            )
        )
    return tuple(prompts)


def load(name: str, split: str) -> list[Prompt]:
    """The prompts of a synthetic task.

    Args:
        name: the task; only ``arith``.
        split: ``train`` (1,500 prompts, the RL pool), ``test`` (500, held out) or ``warmup``
            (up to 20,000, for the supervised warm-up of the tiny base model).
    Returns:
        Prompts with ids ``arith-<split>-NNNNN``, ``extra = {"level", "numbers", "question"}``
        and answers as plain integer strings; the same list on every call.
    Raises:
        ValueError: naming the valid tasks or splits.
    """
    if name not in TASKS:
        raise ValueError(f"unknown synthetic task {name!r}; valid: {', '.join(TASKS)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} of synthetic:{name}; valid: {', '.join(SPLITS)}")
    return list(_build(split))
