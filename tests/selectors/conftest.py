"""Fixtures of the selector tests: histories built from accuracy curves."""

from __future__ import annotations

import pytest

import limr.selectors  # noqa: F401  (registers the built-in selectors)
from limr.history import RewardHistory


def curves_to_history(curves: dict[str, list], n: int = 4, reward_wrong: float = 0.0):
    """A history whose prompt ``id`` has accuracy ``curves[id][k]`` in epoch k (None = absent),
    from ``n`` rollouts per present cell (accuracies must be multiples of 1 / n); a correct
    rollout has reward 1, a wrong one ``reward_wrong``."""
    ids = list(curves)
    num_e = max(len(c) for c in curves.values())
    ns, ncs, rss = [], [], []
    for pid in ids:
        row_n, row_c, row_r = [], [], []
        for k in range(num_e):
            acc = curves[pid][k] if k < len(curves[pid]) else None
            if acc is None:
                row_n.append(0)
                row_c.append(0)
                row_r.append(0.0)
                continue
            c = round(acc * n)
            assert abs(c - acc * n) < 1e-9, f"{acc} is not a multiple of 1/{n}"
            row_n.append(n)
            row_c.append(c)
            row_r.append(c * 1.0 + (n - c) * reward_wrong)
        ns.append(row_n)
        ncs.append(row_c)
        rss.append(row_r)
    return RewardHistory.from_arrays(ids, ns, ncs, rss)


@pytest.fixture
def make_history():
    return curves_to_history
