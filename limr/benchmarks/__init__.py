"""Benchmark plugins: importing this package registers every built-in one.

``math500``, ``aime24``, ``amc23`` (the paper's, from the shipped files), ``jsonl`` (any file of
``{problem, answer}``) and ``arith`` (the embedded task's test split). Metrics are torchmetrics
(:mod:`limr.benchmarks.metrics`) and :func:`limr.benchmarks.evaluate.evaluate` runs them.
"""

from limr.benchmarks import arith, generic, shipped  # noqa: F401
from limr.benchmarks.base import Benchmark  # noqa: F401
