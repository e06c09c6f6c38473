"""The embedded arithmetic task: deterministic, disjoint splits, all levels, right answers."""

from __future__ import annotations

import hashlib
import re
from collections import Counter

import pytest

from limr import task
from limr.prompts import load_prompts

QUESTION = re.compile(r"^What is (\d+) (plus|minus) (\d+)(?: (plus|minus) (\d+))?\?$")


def _solve(question: str) -> int:
    """Recompute the answer from the question text alone."""
    match = QUESTION.match(question)
    assert match, question
    a, op1, b, op2, c = match.groups()
    value = int(a) + int(b) if op1 == "plus" else int(a) - int(b)
    if op2:
        value = value + int(c) if op2 == "plus" else value - int(c)
    return value


def _fingerprint(prompts) -> str:
    text = "\n".join(f"{p.id}\t{p.problem}\t{p.answer}" for p in prompts)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def test_sizes_ids_and_levels():
    train, test = task.load("arith", "train"), task.load("arith", "test")
    assert len(train) == 5 * task.TRAIN_PER_LEVEL == 1500
    assert len(test) == 5 * task.TEST_PER_LEVEL == 500
    assert train[42].id == "arith-train-00042"
    assert Counter(p.extra["level"] for p in test) == {lv: 100 for lv in task.LEVELS}
    assert Counter(p.extra["level"] for p in train) == {lv: 300 for lv in task.LEVELS}
    # shuffled across levels, so a quick run's first 64 prompts still see every level
    assert {p.extra["level"] for p in train[:64]} == set(task.LEVELS)
    assert len({p.id for p in train}) == len(train)


def test_deterministic_and_pinned():
    first = task.load("arith", "train")
    task._build.cache_clear()
    task._level_splits.cache_clear()
    again = task.load("arith", "train")
    assert first == again
    # pinned: the same prompts on every machine and Python version (random.Random(int) is stable)
    assert _fingerprint(first) == _fingerprint(again)
    assert _fingerprint(task.load("arith", "test")) == TEST_FINGERPRINT
    assert _fingerprint(first) == TRAIN_FINGERPRINT


TRAIN_FINGERPRINT = "602b0e3359ee0657"
TEST_FINGERPRINT = "6e722af6e1ac957b"


def test_splits_share_no_problem():
    splits = {s: task.load("arith", s) for s in task.SPLITS}
    texts = {s: {p.problem for p in ps} for s, ps in splits.items()}
    numbers = {
        s: {(p.extra["level"], tuple(p.extra["numbers"])) for p in ps} for s, ps in splits.items()
    }
    for a, b in (("train", "test"), ("train", "warmup"), ("test", "warmup")):
        assert not texts[a] & texts[b], (a, b)
        assert not numbers[a] & numbers[b], (a, b)
    assert all(len(texts[s]) == len(splits[s]) for s in task.SPLITS)


@pytest.mark.parametrize("split", task.SPLITS)
def test_answers_are_right(split):
    for p in task.load("arith", split):
        assert p.problem == task.prompt_template(p.extra["question"])
        assert p.problem.endswith(" Answer in \\boxed{}.\n")
        assert re.fullmatch(r"[1-9]\d*", p.answer), p.answer  # a positive plain integer
        assert int(p.answer) == _solve(p.extra["question"])
        assert task.response_for(p) == f"\\boxed{{{p.answer}}}"


def test_levels_mean_what_they_say():
    for p in task.load("arith", "train") + task.load("arith", "test"):
        level, nums = p.extra["level"], p.extra["numbers"]
        a, b = nums[0], nums[1]
        carry = a % 10 + b % 10 >= 10
        borrow = a % 10 < b % 10
        if level == 1:
            assert not carry and (a // 10 + b // 10) <= 9 and "plus" in p.problem
        elif level == 2:
            assert not borrow and a // 10 >= b // 10 and "minus" in p.problem
        elif level == 3:
            assert carry and "plus" in p.problem
        elif level == 4:
            assert borrow and "minus" in p.problem
        else:
            assert level == 5 and len(nums) == 3


def test_prompts_are_short():
    longest = max(len(p.problem) for p in task.load("arith", "train"))
    assert longest <= 48  # every character is a token of the tiny model


def test_unknown_name_or_split_names_the_valid_ones():
    with pytest.raises(ValueError, match="arith"):
        task.load("algebra", "train")
    with pytest.raises(ValueError, match="train, test, warmup"):
        task.load("arith", "validation")


def test_load_prompts_synthetic():
    prompts = load_prompts("synthetic:arith", split="test", max_prompts=10)
    assert prompts == task.load("arith", "test")[:10]
