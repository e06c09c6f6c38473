"""The reward plugins: each rule check of ``math_rule``, ``correct``, the registry contract."""

from __future__ import annotations

import pytest
import torch

from limr.registry import REWARDS, import_plugins
from limr.rewards import parallel
from limr.rewards.answer import Verdict
from limr.rewards.rules import NO_RULES, Outcome, Rules, has_repetition, non_math_fraction
from limr.types import Reward, Scores

import_plugins()


def score(reward, response: str, gold: str = "5", finished: bool = True) -> tuple[float, bool]:
    out = reward([response], [gold], [finished], [{}])
    return out.rewards.item(), bool(out.correct.item())


@pytest.fixture(scope="module")
def math_rule():
    return REWARDS.build("math_rule")


def test_builtin_rewards_are_registered():
    assert {"math_rule", "correct"} <= set(REWARDS.names())


@pytest.mark.parametrize("name", REWARDS.names())
def test_every_registered_reward_keeps_the_contract(name):
    reward = REWARDS.build(name)
    assert isinstance(reward, Reward)
    responses = ["so \\boxed{4}", "\\boxed{\\frac{1}{2}}", "no answer"]
    out = reward(responses, ["4", "0.5", "3"], [True, True, False], [{}, {"level": 5}, {}])
    assert isinstance(out, Scores)
    assert out.rewards.shape == (3,) and out.rewards.dtype == torch.float32
    assert out.correct.shape == (3,) and out.correct.dtype == torch.bool
    assert out.correct.tolist() == [True, True, False]
    with pytest.raises(ValueError):
        reward(responses, ["4"], [True], [{}])


# ---------------------------------------------------------------------------------------------
# math_rule: the five checks in order, +1 / -0.5 / -1


def test_math_rule_correct_and_wrong(math_rule):
    assert score(math_rule, "2 + 3 = 5, so the answer is $\\boxed{5}$.") == (1.0, True)
    assert score(math_rule, "The answer is $\\boxed{6}$.") == (-0.5, False)


def test_math_rule_check_1_unfinished(math_rule):
    assert score(math_rule, "the answer is \\boxed{5}", finished=False) == (-1.0, False)


def test_math_rule_check_2_boxes(math_rule):
    assert score(math_rule, "the answer is 5") == (-1.0, False)  # no box
    assert score(math_rule, "\\boxed{5} and then \\boxed{5") == (-1.0, False)  # unclosed
    four = "".join(f"step \\boxed{{{i}}} " for i in range(3)) + "so \\boxed{5}"
    assert score(math_rule, four) == (1.0, True)  # 4 boxes are fine
    assert score(math_rule, "\\boxed{1} " + four) == (-1.0, False)  # 5 are not


def test_math_rule_check_3_non_math_text(math_rule):
    # "答案是" is 3 characters outside ASCII and U+2200-U+22FF
    assert score(math_rule, "答案是 \\fbox5") == (1.0, True)  # 3 of 10: 30% is allowed
    assert score(math_rule, "答案是\\fbox5") == (-1.0, False)  # 3 of 9: 33% is not
    assert score(math_rule, "答案是答案是\\boxed{5}") == (-1.0, False)  # 6 of 15
    assert score(math_rule, "∑∫≤ \\boxed{5}") == (1.0, True)  # the maths block counts as maths
    assert non_math_fraction("ab\u00e9") == pytest.approx(1 / 3)
    assert non_math_fraction("x\u2264y\n") == 0.0


def test_math_rule_check_4_repetition(math_rule):
    assert score(math_rule, "abcde" * 5 + " \\boxed{5}") == (-1.0, False)  # 5 x 5 characters
    assert score(math_rule, "abcde" * 4 + " \\boxed{5}") == (1.0, True)  # 4 times is fine
    # period 4: the shortest unit of 5+ characters is "abcdabcd", which needs 40 characters
    assert score(math_rule, "abcd" * 9 + " \\boxed{5}") == (1.0, True)
    assert score(math_rule, "abcd" * 10 + " \\boxed{5}") == (-1.0, False)
    assert score(math_rule, "x" * 24 + " \\boxed{5}") == (1.0, True)  # "xxxxx" needs 25
    assert score(math_rule, "x" * 25 + " \\boxed{5}") == (-1.0, False)


def test_math_rule_check_5_timeout_scores_like_bad_format(math_rule):
    assert score(math_rule, "\\boxed{9^{9^{9^9}}}") == (-1.0, False)
    gentle = REWARDS.build("math_rule", timeout_reward=-0.5)
    assert score(gentle, "\\boxed{9^{9^{9^9}}}") == (-0.5, False)


def test_math_rule_values_and_switches_are_configurable():
    reward = REWARDS.build("math_rule", correct=2.0, wrong=0.0, bad_format=-3.0)
    assert score(reward, "\\boxed{5}") == (2.0, True)
    assert score(reward, "\\boxed{4}") == (0.0, False)
    assert score(reward, "5") == (-3.0, False)
    off = REWARDS.build(
        "math_rule",
        check_finished=False,
        max_boxes=None,
        max_non_math_fraction=None,
        repeat_min_count=0,
    )
    assert score(off, "\\boxed{5}", finished=False) == (1.0, True)
    assert score(off, "\\boxed{1} then " * 9 + "\\boxed{5}") == (1.0, True)
    assert score(off, "答案是答案是\\boxed{5}") == (1.0, True)
    assert score(off, "abcde" * 9 + "\\boxed{5}") == (1.0, True)


def test_correct_reward_is_correctness_alone():
    reward = REWARDS.build("correct")
    assert score(reward, "\\boxed{5}", finished=False) == (1.0, True)
    assert score(reward, "\\boxed{1} then " * 9 + "\\boxed{5}") == (1.0, True)
    assert score(reward, "\\boxed{4}") == (0.0, False)
    assert score(reward, "five") == (0.0, False)


# ---------------------------------------------------------------------------------------------
# The batch paths agree


def test_scoring_in_the_workers_matches_scoring_here(warm_pool):
    responses = [
        "\\boxed{5}",
        "\\boxed{\\log 8}",  # needs the symbolic stage
        "答案是答案是\\boxed{5}",
        "abcde" * 5 + "\\boxed{5}",
        "\\boxed{6}",
        "\\boxed{9^{9^{9^9}}}",
    ]
    golds = ["5", "3\\log 2", "5", "5", "5", "5"]
    finished = [True, True, True, True, True, False]
    here = parallel.score_batch(responses, golds, finished, Rules(), workers=1)
    there = parallel.score_batch(
        responses, golds, finished, Rules(), workers=2, parallel_min_chars=0
    )
    assert here == there
    assert [o for o, _ in here] == [
        Outcome.OK,
        Outcome.OK,
        Outcome.NON_MATH,
        Outcome.REPETITION,
        Outcome.OK,
        Outcome.UNFINISHED,
    ]
    assert [v for _, v in here] == [
        Verdict.CORRECT,
        Verdict.CORRECT,
        None,
        None,
        Verdict.WRONG,
        None,
    ]
    bare = parallel.score_batch(["x \\boxed{5}"], ["5"], [False], NO_RULES)
    assert bare == [(Outcome.OK, Verdict.CORRECT)]


# ---------------------------------------------------------------------------------------------
# The repetition detector is exact


def _brute_repetition(s: str, m: int, c: int) -> bool:
    n = len(s)
    return any(
        s[i : i + (c - 1) * p] == s[i + p : i + c * p]
        for p in range(m, n // c + 1)
        for i in range(n - c * p + 1)
    )


def test_repetition_matches_brute_force():
    import random

    rng = random.Random(0)
    for _ in range(400):
        alphabet = rng.choice(["ab", "abc", "a b"])
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        if rng.random() < 0.5:
            unit = "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 8)))
            at = rng.randint(0, len(s))
            s = s[:at] + unit * rng.randint(3, 6) + s[at:]
        m, c = rng.choice([1, 3, 5]), rng.choice([3, 4, 5])
        assert has_repetition(s, m, c) == _brute_repetition(s, m, c), (s, m, c)


def test_repetition_of_long_texts_is_fast():
    import time

    text = "".join(f"step {i}: x_{i} = {i * i}\n" for i in range(2000))  # ~40 KB, no loop
    start = time.monotonic()
    assert not has_repetition(text)
    assert has_repetition(text + "the end. " * 5)
    assert time.monotonic() - start < 1.0


def test_odd_text_is_scored_not_raised(math_rule):
    # a lone surrogate (valid in JSON input), a gold that is not a short answer
    assert score(math_rule, "\ud800 so \\boxed{5}") == (1.0, True)
    long_gold = " + ".join(f"x_{{{i}}}" for i in range(200))  # 1,800 characters, no loop
    assert score(math_rule, f"\\boxed{{{long_gold}}}", gold=long_gold) == (1.0, True)
    assert score(math_rule, "\\boxed{5}", gold=long_gold) == (-0.5, False)


def test_hedging_over_adjacent_boxes_is_not_rewarded():
    # several candidates side by side are one answer, a list: not the single gold
    reward = REWARDS.build("correct")
    assert score(reward, "\\boxed{1} \\boxed{2} \\boxed{5}") == (0.0, False)
    assert score(reward, "$\\boxed{-2}$ and $\\boxed{1}$", gold="1, -2") == (1.0, True)


def test_math_rule_unboxed_last_number_is_opt_in():
    from limr.registry import REWARDS
    from limr.rewards.answer import last_number

    assert last_number("3 + 4 = 7.") == "7"
    assert last_number("x2 and y3 are -1.5 or 3/4 units") == "3/4"
    assert last_number("no digits here") is None
    texts = ["3 + 4 = 7.", "The answer is 8", "So \\boxed{7}, not 9", "no number"]
    finished = [True, True, True, True]
    paper = REWARDS.build("math_rule")(texts, ["7"] * 4, finished, [{}] * 4)
    assert paper.rewards.tolist() == [-1.0, -1.0, 1.0, -1.0]  # the paper: a box is required
    lenient = REWARDS.build("math_rule", unboxed="last_number")(
        texts, ["7"] * 4, finished, [{}] * 4
    )
    # the box wins over later numbers; without a box the last number is the answer
    assert lenient.rewards.tolist() == [1.0, -0.5, 1.0, -1.0]
    assert lenient.correct.tolist() == [True, False, True, False]
    with pytest.raises(ValueError, match="unboxed"):
        REWARDS.build("math_rule", unboxed="first_number")


def test_correct_reward_and_eval_config_take_unboxed():
    from limr.config import ConfigError, load_config
    from limr.registry import REWARDS

    texts = ["3 + 4 = 7", "\\boxed{7} or 8", "nothing"]
    assert REWARDS.build("correct")(texts, ["7"] * 3, [True] * 3, [{}] * 3).correct.tolist() == [
        False, True, False,
    ]  # fmt: skip
    lenient = REWARDS.build("correct", unboxed="last_number")
    assert lenient(texts, ["7"] * 3, [True] * 3, [{}] * 3).correct.tolist() == [True, True, False]
    assert load_config(None, ["eval.unboxed=last_number"]).eval.unboxed == "last_number"
    with pytest.raises(ConfigError, match="eval.unboxed"):
        load_config(None, ["eval.unboxed=first"])
