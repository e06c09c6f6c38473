"""Reward plugins: importing this package registers every built-in one.

Built in: ``math_rule`` (the paper's +1 / -0.5 / -1 rule reward) and ``correct`` (1 / 0). Both
check answers with :mod:`limr.rewards.answer`.

The contract (:class:`limr.types.Reward`) is one call::

    reward(responses, answers, finished, extras) -> Scores(rewards=[N] float, correct=[N] bool)

with N response texts, the N gold answers (a prompt's answer repeated for each of its samples),
N finished flags (False when generation hit the token limit) and N dicts of the dataset's extra
fields (level, subject, ...). Register your own in a module listed under ``plugins:``::

    from limr.registry import register_reward
    from limr.rewards.answer import extract_boxed
    from limr.rewards.verify import is_equivalent
    from limr.types import Scores

    @register_reward("short_and_right")
    class ShortAndRight:
        def __init__(self, max_chars: int = 2000):  # reward.kwargs in the config
            self.max_chars = max_chars

        def __call__(self, responses, answers, finished, extras):
            ok = [f and len(r) <= self.max_chars and is_equivalent(extract_boxed(r) or "", a)
                  for r, a, f in zip(responses, answers, finished)]
            return Scores(torch.tensor(ok, dtype=torch.float32), torch.tensor(ok))
"""

from limr.rewards import correct, math_rule  # noqa: F401
