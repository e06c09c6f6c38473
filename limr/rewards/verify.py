"""Answer checking as callers use it: every stage, the symbolic one in killable workers.

:func:`check` runs the in-process stages (:func:`limr.rewards.answer.check_local`) and sends what
they cannot decide to a worker process (:mod:`limr.rewards.parallel`), so the time budget of a
check holds in whichever thread or process asks for it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from limr.rewards import parallel
from limr.rewards.answer import check_local
from limr.rewards.verdict import DEFAULT_TIMEOUT, Verdict


def check(pred: str | None, gold: str, timeout: float = DEFAULT_TIMEOUT) -> Verdict:
    """Is the predicted answer (already extracted from its box) equivalent to ``gold``?

    The in-process stages decide almost every pair; the rest go to a worker process that is
    killed if it has not answered within ``timeout`` seconds, whichever thread calls this.
    """
    start = time.monotonic()
    verdict = check_local(pred, gold, None, timeout)
    if verdict is not None:
        return verdict
    remaining = timeout - (time.monotonic() - start)
    if remaining <= 0:
        return Verdict.TIMEOUT
    return parallel.check_symbolic([(pred, gold)], timeout=remaining)[0]  # type: ignore[list-item]


def is_equivalent(pred: str, gold: str, timeout: float = DEFAULT_TIMEOUT) -> bool:
    """True when ``pred`` (a final answer, not a whole response) is equivalent to ``gold``.

    A check that runs out of its ``timeout`` (seconds) is False.
    """
    return check(pred, gold, timeout) is Verdict.CORRECT


def check_batch(
    preds: Sequence[str | None],
    golds: Sequence[str],
    timeout: float = DEFAULT_TIMEOUT,
    workers: int | None = None,
) -> list[Verdict]:
    """:func:`check` for many pairs: in-process first, the undecided ones in parallel workers.

    Each pair has its own ``timeout``. Results are in input order and do not depend on
    ``workers``.
    """
    if len(preds) != len(golds):
        raise ValueError(f"{len(preds)} predictions but {len(golds)} gold answers")
    verdicts: list[Verdict | None] = [
        check_local(p, g, None, timeout) for p, g in zip(preds, golds)
    ]
    todo = [i for i, v in enumerate(verdicts) if v is None]
    if todo:
        pairs = [(preds[i], golds[i]) for i in todo]
        for i, v in zip(todo, parallel.check_symbolic(pairs, timeout=timeout, workers=workers)):
            verdicts[i] = v
    return verdicts  # type: ignore[return-value]
