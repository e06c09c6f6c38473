"""The embedded task: short arithmetic problems in words, with gold answers, generated on demand.

``load("arith", split)`` gives the prompts of the embedded LIMR experiment (``synthetic:arith``).
Everything is generated from fixed seeds with :class:`random.Random` (never the global RNG), so
every call on every machine gives the same prompts in the same order.

Levels: one or two steps of adding or subtracting, with 1- or 2-digit numbers. Every problem of a
level has the same shape (a 2-digit start, then numbers of fixed widths): the tiny model finds the
digits by position, and a level that mixes widths is learned much more slowly.

    level  shape            example                          problems
    1      2d +- 1d         "What is 43 plus 8?"             1,440
    2      2d +- 2d         "What is 43 minus 28?"           ~12,000
    3      2d +- 1d +- 1d   "What is 43 plus 8 minus 5?"     ~23,000
    4      2d +- 2d +- 1d   "What is 43 plus 28 minus 5?"    ~250,000
    5      2d +- 2d +- 2d   "What is 43 plus 28 minus 15?"   ~2,500,000

Every running total stays positive (no negative numbers anywhere); answers are 1 to 297.

Splits, drawn per level from one random stream of distinct problems, so that no two splits
share a problem (the numbers, not only the text):

    test    100 per level (500), held out for evaluation
    train   300 per level (1,500), the RL pool that LIM scores
    warmup  the next up to 4,000 per level (level 1 has only 1,040 left): the supervised warm-up
            of the tiny base model, so the base has never seen a train or test problem

Train and test are shuffled across levels (``max_prompts: 64`` still covers every level).
Every problem ends with :data:`INSTRUCTION`; the gold response is ``\\boxed{ANSWER}``.
"""

from __future__ import annotations

import random
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
"""A problem as numbers: (a, op, b) or (a, op, b, op, c) with op = +1 (plus) or -1 (minus)."""

SHAPES: dict[int, tuple[int, ...]] = {
    1: (2, 1),
    2: (2, 2),
    3: (2, 1, 1),
    4: (2, 2, 1),
    5: (2, 2, 2),
}
"""Digits of each number of a level's problems."""

_RANGES = {1: (2, 9), 2: (10, 99)}  # 1-digit numbers skip 0 and 1: nothing to compute


def _draw(level: int, rng: random.Random) -> Key | None:
    """A random problem of the level, or None when a running total would drop below 1."""
    widths = SHAPES[level]
    key = [rng.randint(*_RANGES[widths[0]])]
    total = key[0]
    for width in widths[1:]:
        op, value = rng.choice((1, -1)), rng.randint(*_RANGES[width])
        total += op * value
        if total < 1:
            return None
        key += [op, value]
    return tuple(key)


def answer_of(key: Key) -> int:
    """The gold answer of a problem."""
    total = key[0]
    for i in range(1, len(key), 2):
        total += key[i] * key[i + 1]
    return total


def question_of(key: Key) -> str:
    """The question in words, without :data:`INSTRUCTION`."""
    words = [f"What is {key[0]}"]
    for i in range(1, len(key), 2):
        words.append(f"{'plus' if key[i] > 0 else 'minus'} {key[i + 1]}")
    return " ".join(words) + "?"


def response_for(prompt: Prompt) -> str:
    """The gold response text that the warm-up teaches (the tokenizer's EOS goes after it)."""
    return f"\\boxed{{{prompt.answer}}}"


def prompt_template(question: str) -> str:
    """The problem text of a question: the question and the boxed-answer instruction."""
    return question + INSTRUCTION


@cache
def _level_splits(level: int) -> dict[str, tuple[Key, ...]]:
    rng = random.Random(SEED * 10 + level)
    wanted = TEST_PER_LEVEL + TRAIN_PER_LEVEL + WARMUP_PER_LEVEL
    keys: list[Key] = []
    seen: set[Key] = set()
    for _ in range(20 * wanted):  # enough draws to exhaust level 1 (1,440 problems)
        key = _draw(level, rng)
        if key is not None and key not in seen:
            seen.add(key)
            keys.append(key)
            if len(keys) == wanted:
                break
    n_test, n_train = TEST_PER_LEVEL, TRAIN_PER_LEVEL
    return {
        "test": tuple(keys[:n_test]),
        "train": tuple(keys[n_test : n_test + n_train]),
        "warmup": tuple(keys[n_test + n_train :]),
    }


@cache
def _build(split: str) -> tuple[Prompt, ...]:
    rng = random.Random(SEED * 10 + SPLITS.index(split))
    items = [(level, key) for level in LEVELS for key in _level_splits(level)[split]]
    rng.shuffle(items)
    prompts = []
    for index, (level, key) in enumerate(items):
        question = question_of(key)
        prompts.append(
            Prompt(
                id=f"arith-{split}-{index:05d}",
                problem=prompt_template(question),
                answer=str(answer_of(key)),
                extra={"level": level, "numbers": list(key[::2]), "question": question},
            )
        )
    return tuple(prompts)


def load(name: str, split: str) -> list[Prompt]:
    """The prompts of a synthetic task.

    Args:
        name: the task; only ``arith``.
        split: ``train`` (1,500 prompts, the RL pool), ``test`` (500, held out) or ``warmup``
            (17,040, for the supervised warm-up of the tiny base model).
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
