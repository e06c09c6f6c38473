"""``arith``: the held-out test split of the embedded arithmetic task (:mod:`limr.task`).

Protocol: greedy, one sample, 16 new tokens (answers are ``\\boxed{123}`` and an EOS).
"""

from __future__ import annotations

from limr.benchmarks.base import Benchmark
from limr.registry import register_benchmark
from limr.types import Prompt


def _load() -> list[Prompt]:
    from limr import task  # imported late: the task module is not needed for the maths benchmarks

    return task.load("arith", split="test")


@register_benchmark("arith")
def arith(
    *,
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 16,
) -> Benchmark:
    """1,000 held-out arithmetic problems (200 per level, ``extra["level"]``)."""
    return Benchmark(
        name="arith",
        loader=_load,
        n_samples=n_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )


def _load_sums() -> list[Prompt]:
    from limr import task

    return task.load("sums", split="test")


@register_benchmark("sums")
def sums(
    *,
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 32,
) -> Benchmark:
    """The 81 one-digit sums of ``synthetic:sums`` (a small chat model's check, not held out from
    a ``synthetic:sums`` training pool: there are no other sums)."""
    return Benchmark(
        name="sums",
        loader=_load_sums,
        n_samples=n_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )
