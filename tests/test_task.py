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
    assert len(test) == 5 * task.TEST_PER_LEVEL == 1000
    assert train[42].id == "arith-train-00042"
    assert Counter(p.extra["level"] for p in test) == {lv: 200 for lv in task.LEVELS}
    assert Counter(p.extra["level"] for p in train) == {lv: 300 for lv in task.LEVELS}
    # interleaved, so that data.max_prompts keeps the levels balanced
    for prompts in (train, test):
        for k in (1, 3, 20, 100):
            assert Counter(p.extra["level"] for p in prompts[: 5 * k]) == {
                lv: k for lv in task.LEVELS
            }
    assert [p.extra["level"] for p in train[:10]] != [1, 2, 3, 4, 5] * 2  # in random order
    assert len({p.id for p in train}) == len(train)


def test_deterministic_and_pinned():
    first = task.load("arith", "train")
    assert first is not task.load("arith", "train")  # a fresh list: callers may change it
    task._build.cache_clear()
    task._level_splits.cache_clear()
    again = task.load("arith", "train")
    assert first == again
    # pinned: the same prompts on every machine and Python version (random.Random(int) is stable)
    assert _fingerprint(first) == _fingerprint(again)
    assert _fingerprint(task.load("arith", "test")) == TEST_FINGERPRINT
    assert _fingerprint(first) == TRAIN_FINGERPRINT
    assert _fingerprint(task.load("arith", "warmup")) == WARMUP_FINGERPRINT


TRAIN_FINGERPRINT = "7198dd31afcb7ca6"
TEST_FINGERPRINT = "d553f0db5f4e5391"
# limr/data/tiny_base was warmed up on this split: a change here needs `python -m limr.tiny build`
WARMUP_FINGERPRINT = "623725a2f8926eb6"


def test_splits_share_no_problem():
    splits = {s: task.load("arith", s) for s in task.SPLITS}
    texts = {s: {p.problem for p in ps} for s, ps in splits.items()}
    for a, b in (("train", "test"), ("train", "warmup"), ("test", "warmup")):
        assert not texts[a] & texts[b], (a, b)
    assert all(len(texts[s]) == len(splits[s]) for s in task.SPLITS)  # no duplicates either


def test_splits_share_no_reordered_twin():
    # "43 plus 8 minus 5" and "43 minus 5 plus 8" are one problem: no split may hold both
    def canon(p):
        ops = re.findall(r"plus|minus", p.extra["question"])
        numbers = p.extra["numbers"]
        terms = sorted((1 if op == "plus" else -1, n) for op, n in zip(ops, numbers[1:]))
        return (numbers[0], *terms)

    owner = {}
    for split in task.SPLITS:
        for p in task.load("arith", split):
            assert owner.setdefault(canon(p), split) == split, (p, owner[canon(p)])
    twins = ((43, 1, 8, -1, 5), (43, -1, 5, 1, 8))
    assert task.canonical(twins[0]) == task.canonical(twins[1])
    assert task.canonical((43, 1, 8)) != task.canonical((43, -1, 8))


@pytest.mark.parametrize("split", task.SPLITS)
def test_answers_are_right(split):
    for p in task.load("arith", split):
        assert p.problem == task.prompt_template(p.extra["question"])
        assert p.problem.endswith(" Answer in \\boxed{}.\n")
        assert re.fullmatch(r"[1-9]\d*", p.answer), p.answer  # a positive plain integer
        assert int(p.answer) == _solve(p.extra["question"])
        assert task.response_for(p) == f"\\boxed{{{p.answer}}}"


def test_levels_have_their_shape():
    for p in task.load("arith", "train") + task.load("arith", "test"):
        widths = tuple(len(str(n)) for n in p.extra["numbers"])
        assert widths == task.SHAPES[p.extra["level"]], p
        ops = re.findall(r"plus|minus", p.extra["question"])
        assert len(ops) == len(widths) - 1
        total = p.extra["numbers"][0]  # every running total stays positive
        for op, n in zip(ops, p.extra["numbers"][1:]):
            total += n if op == "plus" else -n
            assert total >= 1


def test_both_operations_at_every_level():
    seen = {
        (p.extra["level"], op)
        for p in task.load("arith", "test")
        for op in ("plus", "minus")
        if op in p.problem
    }
    assert seen == {(lv, op) for lv in task.LEVELS for op in ("plus", "minus")}


def test_prompts_are_short():
    longest = max(len(p.problem) for p in task.load("arith", "train"))
    assert longest <= 50  # every character is a token of the tiny model


def test_unknown_name_or_split_names_the_valid_ones():
    with pytest.raises(ValueError, match="arith"):
        task.load("algebra", "train")
    with pytest.raises(ValueError, match="train, test, warmup"):
        task.load("arith", "validation")


def test_load_prompts_synthetic():
    prompts = load_prompts("synthetic:arith", split="test", max_prompts=10)
    assert prompts == task.load("arith", "test")[:10]


def test_sums_are_the_81_one_digit_sums_with_right_answers():
    prompts = task.load("sums", split="train")
    assert len(prompts) == 81 and len({p.id for p in prompts}) == 81
    pairs = {tuple(p.extra["numbers"]) for p in prompts}
    assert pairs == {(a, b) for a in range(1, 10) for b in range(1, 10)}
    for p in prompts:
        a, b = p.extra["numbers"]
        assert p.answer == str(a + b) and p.problem.startswith(f"What is {a} plus {b}?")
    test = task.load("sums", split="test")  # the same 81, reversed: a train head is not a test head
    assert [p.id for p in test] == [p.id for p in reversed(prompts)]
    assert not {p.id for p in test[:16]} & {p.id for p in prompts[:8]}
