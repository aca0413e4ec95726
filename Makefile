# Each target does its own set-up: a venv in .venv with the project and its dev extras.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# `make demo PORT=8080` (0: a free port, printed); HOST=0.0.0.0 listens on every interface.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install demo test lint container-test

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/audiosearch demo --host $(HOST) --port $(PORT)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

container-test: $(STAMP)
	$(PY) -m pytest -q -m container tests/test_container.py
