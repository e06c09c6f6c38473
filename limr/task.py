"""The embedded task: short arithmetic problems in words, with gold answers, generated on demand.

``load("arith", split)`` gives the prompts of the embedded LIMR experiment (``synthetic:arith``).
Everything is generated from fixed seeds with :class:`random.Random` (never the global RNG), so
every call on every machine gives the same prompts in the same order.

Levels: one or two steps of adding or subtracting. Every problem of a level has the same shape
(numbers of fixed widths): the tiny model finds the digits by position, and a level that mixes
widths is learned much more slowly. Every level has at least ~10,000 problems: a first design whose
easy levels had 1,400-2,800 made those the worst on held-out problems (the warm-up memorised them).
Levels are numbered by the measured accuracy of the shipped base (limr/data/tiny_base/figures.json).

    level  shape            example                          problems
    1      3d +- 1d         "What is 243 plus 8?"            14,400
    2      2d +- 1d +- 1d   "What is 43 plus 8 minus 5?"     ~23,000
    3      2d +- 2d         "What is 43 minus 28?"           ~12,000
    4      2d +- 2d +- 1d   "What is 43 plus 28 minus 5?"    ~230,000
    5      2d +- 2d +- 2d   "What is 43 plus 28 minus 15?"   ~1,800,000

Every running total stays positive (no negative numbers anywhere); answers are 1 to 1008.

Splits, drawn per level from one random stream of distinct problems, so that no two splits
share a problem, by the numbers and not only the text: two problems whose terms are the same up
to order ("43 plus 8 minus 5" and "43 minus 5 plus 8") count as one (:func:`canonical`).

    test    200 per level (1,000), held out for evaluation (a paired 95% CI of about +-3 points
            over 3 seeds)
    train   300 per level (1,500), the RL pool that LIM scores
    warmup  the next 4,000 per level (20,000): the supervised warm-up of the tiny base model,
            so the base has never seen a train or test problem

Train and test interleave the levels in random order, so that any ``max_prompts`` keeps them
balanced (the first 5k prompts hold exactly k of each level).
Every problem ends with :data:`INSTRUCTION`; the gold response is ``\\boxed{ANSWER}``.

``load("sums", split)`` (``synthetic:sums``): the 81 one-digit sums "What is 3 plus 4?", in one
seeded order, for a small pretrained chat model on a CPU (configs/smollm2_cpu.yaml); every split
holds the same 81 (there are no more), level 1, the test split in reverse order: the first N test
problems and the first M training prompts are disjoint while N + M <= 81.
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
TASKS = ("arith", "sums")
TEST_PER_LEVEL = 200
TRAIN_PER_LEVEL = 300
WARMUP_PER_LEVEL = 4000


Key = tuple[int, ...]
"""A problem as numbers: (a, op, b) or (a, op, b, op, c) with op = +1 (plus) or -1 (minus)."""

SHAPES: dict[int, tuple[int, ...]] = {
    1: (3, 1),
    2: (2, 1, 1),
    3: (2, 2),
    4: (2, 2, 1),
    5: (2, 2, 2),
}
"""Digits of each number of a level's problems."""

_RANGES = {1: (2, 9), 2: (10, 99), 3: (100, 999)}  # 1-digit numbers skip 0 and 1


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


def canonical(key: Key) -> Key:
    """The problem up to the order of its signed terms after the first: reordered twins such as
    (43, +1, 8, -1, 5) and (43, -1, 5, +1, 8) have the same canonical key (and answer)."""
    terms = sorted(zip(key[1::2], key[2::2]))
    return (key[0], *(x for term in terms for x in term))


@cache
def _level_splits(level: int) -> dict[str, tuple[Key, ...]]:
    rng = random.Random(SEED * 10 + level)
    wanted = TEST_PER_LEVEL + TRAIN_PER_LEVEL + WARMUP_PER_LEVEL
    keys: list[Key] = []
    seen: set[Key] = set()
    for _ in range(20 * wanted):  # never reached: every level has far more problems
        key = _draw(level, rng)
        if key is not None and canonical(key) not in seen:
            seen.add(canonical(key))
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
    if split == "warmup":  # sampled at random by the warm-up: order does not matter
        items = [(level, key) for level in LEVELS for key in _level_splits(level)[split]]
        rng.shuffle(items)
    else:  # interleaved: the first 5k prompts hold exactly k of each level (max_prompts)
        items = []
        for keys in zip(*(_level_splits(level)[split] for level in LEVELS)):
            order = list(zip(LEVELS, keys))
            rng.shuffle(order)
            items += order
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
        name: ``arith`` or ``sums``.
        split: ``train`` (1,500 prompts, the RL pool), ``test`` (1,000, held out) or ``warmup``
            (20,000, for the supervised warm-up of the tiny base model).
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
    if name == "sums":  # the test split in reverse: its first problems are a pool's last ones
        return list(_sums()) if split != "test" else list(reversed(_sums()))
    return list(_build(split))


@cache
def _sums() -> tuple[Prompt, ...]:
    keys = [(a, 1, b) for a in range(1, 10) for b in range(1, 10)]
    random.Random(SEED).shuffle(keys)
    return tuple(
        Prompt(
            id=f"sums-{index:02d}",
            problem=prompt_template(question_of(key)),
            answer=str(answer_of(key)),
            extra={"level": 1, "numbers": list(key[::2]), "question": question_of(key)},
        )
        for index, key in enumerate(keys)
    )
