# make demo: a complete cutout fetch against the offline JSOC (FITS files + a picture)
# make test: the test suite (and ruff) in its own virtual environment
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo docs clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[tests,demo,docs,dev]'
	touch $(STAMP)

test: venv
	$(BIN)/python -m pytest
	$(MAKE) lint

lint: venv
	$(BIN)/ruff check sunpy_jsoc_cutout tests docs tools benchmarks
	$(BIN)/ruff format --check sunpy_jsoc_cutout tests docs tools benchmarks

demo: venv
	$(BIN)/python tools/demo.py --output demo-output

docs: venv
	$(BIN)/sphinx-build -W -b html docs docs/_build/html

clean:
	rm -rf $(VENV) demo-output docs/_build docs/generated .pytest_cache
