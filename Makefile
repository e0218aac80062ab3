# The two commands of the README: `make demo` and `make test`. Both create .venv and install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
DEMO_EXTRAS := 
TEST_EXTRAS := dev,docker,datasets

.PHONY: demo test setup-demo setup-test system lint typecheck imports pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(VENV)/.demo-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".$(if $(DEMO_EXTRAS),[$(DEMO_EXTRAS)],)"
	touch $@

$(VENV)/.test-installed: pyproject.toml | $(BIN)/python
	$(PIP) install -q -e ".[$(TEST_EXTRAS)]"
	touch $@

setup-demo: $(VENV)/.demo-installed
setup-test: $(VENV)/.test-installed

system:
	bash scripts/setup_system.sh

## demo: set up and run the main job on embedded defaults
demo: setup-demo
	$(BIN)/python examples/quickstart.py

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
