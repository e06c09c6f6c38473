"""Fixtures of the reward tests: a started checker worker."""

from __future__ import annotations

import pytest

from limr.rewards import parallel


@pytest.fixture(scope="session")
def warm_pool() -> parallel.Pool:
    """One checker worker, started and ready, so that timings do not include its start-up."""
    pool = parallel.get_pool()
    pool.warm(1)
    pool.run([{"op": "check", "pred": "1", "gold": "1", "budget": 5.0}], 60.0, 1)
    return pool
