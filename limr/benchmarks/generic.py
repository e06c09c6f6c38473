"""``jsonl``: any file of ``{problem, answer}`` records (.jsonl, .json or .parquet) as a benchmark.

``BENCHMARKS.build("jsonl", path="my.jsonl")``; on the command line ``--benchmarks my.jsonl`` or
``jsonl:my.jsonl``. A malformed record fails with ``FILE:LINE`` before any generation.
"""

from __future__ import annotations

import functools
from pathlib import Path

from limr.benchmarks.base import PAPER_MAX_NEW_TOKENS, Benchmark
from limr.prompts import load_prompts
from limr.registry import register_benchmark
from limr.types import Prompt


@functools.cache
def _load(path: str, id_field: str, problem_field: str, answer_field: str) -> tuple[Prompt, ...]:
    return tuple(
        load_prompts(
            path, id_field=id_field, problem_field=problem_field, answer_field=answer_field
        )
    )


@register_benchmark("jsonl")
def jsonl(
    path: str,
    *,
    name: str | None = None,
    id_field: str = "id",
    problem_field: str = "problem",
    answer_field: str = "answer",
    n_samples: int = 1,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS,
) -> Benchmark:
    """A benchmark read from ``path`` (named after the file unless ``name`` is given).

    The records are read (and checked) when the benchmark is built, so a bad file fails early.
    """
    fields = (str(path), id_field, problem_field, answer_field)
    _load(*fields)
    return Benchmark(
        name=name or Path(path).stem,
        loader=functools.partial(_load, *fields),  # type: ignore[arg-type]
        n_samples=n_samples,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )
