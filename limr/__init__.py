"""limr: data-efficient RL for language models on verifiable maths (LIMR, arXiv 2502.11886)."""

__version__ = "0.1.0"
