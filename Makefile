# Two commands: `make demo` (set up, then run the demo) and `make test` (set up, then run the tests).
# `make docs` builds the documentation site into site/ (strict: any warning is an error).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test setup docs lint bench clean

$(BIN)/lip: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

setup: $(BIN)/lip

demo: setup
	$(BIN)/lip demo

test: setup
	$(BIN)/python -m pytest

docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

lint: setup
	$(BIN)/ruff check .

bench: setup
	$(BIN)/python benchmarks/speed.py

clean:
	rm -rf $(VENV) lip-out .pytest_cache site
