# One command each: `make demo` and `make test`, both bootstrapping .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint types pytest demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: lint types pytest

lint: $(STAMP)
	$(BIN)/ruff check agent drivers sync tillpoints ui tests
	$(BIN)/ruff format --check agent drivers sync tillpoints ui tests

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

demo: $(STAMP)
	$(BIN)/tillpoints demo

bench: $(STAMP)
	$(BIN)/tillpoints bench

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
