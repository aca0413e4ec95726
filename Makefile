# Each target does its own set-up: a venv in .venv with the project and its dev extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# `make demo PORT=8080` (0: a free port, printed); HOST=0.0.0.0 listens on every interface.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test test-all lint container-test docs

$(STAMP): pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/audiosearch demo --host $(HOST) --port $(PORT)

# The fast suite (tests marked `slow` left out: long runs, full-size models, Ray clusters, benchmarks).
test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

# Everything but the container build: what CI runs (.ci/run).
test-all: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -m 'not container'

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# The documentation site (mkdocs.yml; home page = README.md) into site/, offline; --strict fails on a broken link.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

container-test: $(STAMP)
	$(PY) -m pytest -q -m container tests/test_container.py
