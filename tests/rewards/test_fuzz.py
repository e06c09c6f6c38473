"""Property-based fuzzing: whatever a model writes, no exception escapes and every check ends
within its time budget."""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from limr.registry import REWARDS, import_plugins
from limr.rewards import answer, verify
from limr.rewards.answer import Verdict

import_plugins()

PIECES = [
    "\\frac", "\\dfrac", "{", "}", "^", "_", "9", "0", "12", "!", ".", ",", "-", "+", "=", "(", ")",
    "[", "]", "\\{", "\\}", "\\sqrt", "\\pi", "x", "y", "e", "i", " ", "\\left", "\\right",
    "\\text", "\\boxed", "\\fbox", "\\infty", "\\cup", "\\pm", "&", "\\\\", "\\begin{pmatrix}",
    "\\end{pmatrix}", "\\sin", "\\log", "\\cdot", "\\times", "$", "%", "^\\circ", "10^{9}", ":",
    "\\le", "<", "/", "\\binom", "\\mbox{ cm}", "'", "__import__('os')", "\n", "答",
]  # fmt: skip
latex = st.lists(st.sampled_from(PIECES), max_size=40).map("".join)
anything = st.one_of(latex, st.text(max_size=60))
FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


@FUZZ
@given(pred=anything, gold=latex)
def test_in_process_checks_never_raise_and_end_in_time(pred, gold):
    start = time.monotonic()
    verdict = answer.check_local(pred, gold, None, timeout=0.5)
    assert verdict is None or isinstance(verdict, Verdict)
    assert time.monotonic() - start < 0.5 + 0.25
    assert answer.extract_boxed(pred) is None or isinstance(answer.extract_boxed(pred), str)


@settings(FUZZ, max_examples=40)
@given(pred=latex, gold=latex)
def test_checks_with_the_symbolic_stage_end_within_budget(warm_pool, pred, gold):
    start = time.monotonic()
    verdict = verify.check(pred, gold, timeout=1.0)
    assert isinstance(verdict, Verdict)
    # the budget, plus a worker restart if this one was killed (that is not counted)
    assert time.monotonic() - start < 1.0 + 0.25


@settings(FUZZ, max_examples=60)
@given(
    responses=st.lists(anything, min_size=1, max_size=4),
    finished=st.booleans(),
    gold=latex,
)
def test_rewards_never_raise(warm_pool, responses, finished, gold):
    for name in REWARDS.names():
        reward = REWARDS.build(name, timeout=1.0)
        out = reward(
            responses, [gold] * len(responses), [finished] * len(responses), [{}] * len(responses)
        )
        assert out.rewards.shape == (len(responses),)
