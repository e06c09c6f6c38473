"""The paper's benchmarks from the shipped files: ``math500``, ``aime24``, ``amc23``."""

from __future__ import annotations

import functools

from limr.benchmarks.base import PAPER_MAX_NEW_TOKENS, Benchmark
from limr.prompts import load_prompts
from limr.registry import register_benchmark
from limr.types import Prompt


@functools.cache
def _load(name: str, id_field: str) -> tuple[Prompt, ...]:
    return tuple(load_prompts(f"shipped:{name}", id_field=id_field))


def _shipped(
    name: str,
    id_field: str,
    n_samples: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
) -> Benchmark:
    return Benchmark(
        name=name,
        loader=functools.partial(_load, name, id_field),  # type: ignore[arg-type]
        n_samples=n_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )


@register_benchmark("math500")
def math500(
    *,
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS,
) -> Benchmark:
    """MATH500 (500 problems with level and subject); the paper: greedy, one sample."""
    return _shipped("math500", "unique_id", n_samples, temperature, top_p, max_new_tokens)


@register_benchmark("aime24")
def aime24(
    *,
    n_samples: int = 4,
    temperature: float = 0.4,
    top_p: float = 0.95,
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS,
) -> Benchmark:
    """AIME 2024 (30 problems, answers zero padded); the paper: 4 samples at temperature 0.4."""
    return _shipped("aime24", "id", n_samples, temperature, top_p, max_new_tokens)


@register_benchmark("amc23")
def amc23(
    *,
    n_samples: int = 4,
    temperature: float = 0.4,
    top_p: float = 0.95,
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS,
) -> Benchmark:
    """AMC 2023 (40 problems); the paper: 4 samples at temperature 0.4."""
    return _shipped("amc23", "id", n_samples, temperature, top_p, max_new_tokens)
