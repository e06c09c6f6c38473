"""The synthetic tasks' test splits (:mod:`limr.task`) as benchmarks.

- ``arith``: the held-out test split of the embedded arithmetic task. Protocol: greedy, one
  sample, 16 new tokens (answers are ``\\boxed{123}`` and an EOS).
- ``sums``: the 81 one-digit sums of ``synthetic:sums`` (a small chat model's check, not held out
  from a ``synthetic:sums`` training pool: there are no other sums; the test split runs in
  reverse, so its first problems are not a pool's first). Greedy, one sample, 32 new tokens.
"""

from __future__ import annotations

from limr.benchmarks.base import Benchmark
from limr.registry import register_benchmark


def _task_benchmark(
    task_name: str, n_samples: int, temperature: float, top_p: float, max_new_tokens: int
) -> Benchmark:
    def load():
        from limr import task  # imported late: not needed for the maths benchmarks

        return task.load(task_name, split="test")

    return Benchmark(
        name=task_name,
        loader=load,
        n_samples=n_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )


@register_benchmark("arith")
def arith(
    *, n_samples: int = 1, temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 16
) -> Benchmark:
    """1,000 held-out arithmetic problems (200 per level, ``extra["level"]``)."""
    return _task_benchmark("arith", n_samples, temperature, top_p, max_new_tokens)


@register_benchmark("sums")
def sums(
    *, n_samples: int = 1, temperature: float = 0.0, top_p: float = 1.0, max_new_tokens: int = 32
) -> Benchmark:
    """The 81 one-digit sums, in reverse order of the training split."""
    return _task_benchmark("sums", n_samples, temperature, top_p, max_new_tokens)
