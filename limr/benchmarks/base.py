"""A benchmark: named problems with gold answers and the sampling protocol they are scored under.

The paper's protocol (REFERENCE.md): MATH500 greedy with one sample; AIME24 and AMC23 four samples
at temperature 0.4 and top_p 0.95; at most 3,072 new tokens; accuracy is the mean over all
samples. Every field can be overridden (``BENCHMARKS.build("aime24", n_samples=8)``, or the
``eval.*`` config fields, which override every benchmark at once).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from limr.types import Prompt

PAPER_MAX_NEW_TOKENS = 3072


@dataclass(frozen=True)
class Benchmark:
    """Problems and protocol of one benchmark.

    Attributes:
        name: the benchmark's name in results and tables.
        loader: returns the problems (``Prompt.extra`` carries level / subject when known).
        n_samples: samples per problem.
        temperature: sampling temperature; 0 is greedy.
        top_p: nucleus sampling.
        max_new_tokens: generation limit.
    """

    name: str
    loader: Callable[[], list[Prompt]]
    n_samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = PAPER_MAX_NEW_TOKENS

    def __post_init__(self) -> None:
        if self.n_samples < 1:
            raise ValueError(f"benchmark {self.name}: n_samples must be >= 1, got {self.n_samples}")
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.max_new_tokens < 1:
            raise ValueError(
                f"benchmark {self.name}: needs temperature >= 0, 0 < top_p <= 1 and "
                f"max_new_tokens >= 1 (got {self.temperature}, {self.top_p}, "
                f"{self.max_new_tokens})"
            )

    def prompts(self) -> list[Prompt]:
        """The problems, in the benchmark's order."""
        return list(self.loader())

    @property
    def protocol(self) -> dict[str, Any]:
        return {
            "n_samples": self.n_samples,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_new_tokens": self.max_new_tokens,
        }

    def with_protocol(
        self,
        n_samples: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        max_new_tokens: int | None = None,
    ) -> Benchmark:
        """A copy with the given protocol fields replaced (None keeps the benchmark's own)."""
        changes = {
            k: v
            for k, v in dict(
                n_samples=n_samples,
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
            ).items()
            if v is not None
        }
        return dataclasses.replace(self, **changes)
