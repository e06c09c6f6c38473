"""Sampler plugins: importing this package registers ``hf`` and ``vllm``."""

from limr.samplers import hf, vllm  # noqa: F401
